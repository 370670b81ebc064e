// The admin console (docs/admin.md) in headless Chromium and over plain HTTP: an admin finds
// bob's sessions and revokes one, and another Portcullis process sharing the Redis store refuses
// it; everyone else gets a 403 on every page and action, forged POSTs included; the denials page
// and the policy tester say what `portcullis explain` says; every action is in the audit log.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { Browser, Page } from 'playwright-core';
import { ConfigError } from '../src/config/errors.js';
import { parseConfig } from '../src/config/load.js';
import { RouteTable } from '../src/decide/route-table.js';
import { runPolicyTests } from '../src/policy/simulate.js';
import { launchBrowser } from './helpers/browser.js';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import {
  createTempDatabase,
  startServeProcess,
  yamlOnPort,
  type ServeProcess,
  type TempDatabase,
} from './helpers/session-infra.js';
import { startStack, type Stack } from './helpers/stack.js';

const SHOTS = '/tmp/admin-shots';
const CLI = new URL('../src/cli/main.js', import.meta.url).pathname;
const PREFIX = `padmin-${randomBytes(6).toString('hex')}:`;
const JSON_ACCEPT = { accept: 'application/json' };

/** The route of docs/policy.md's "Shape" example, pasted under our routes as it is written. */
function docsPolicyRoute(): string {
  const md = readFileSync(new URL('../../docs/policy.md', import.meta.url), 'utf8');
  const block = /## Shape\s+```yaml\n([\s\S]*?)```/.exec(md)![1]!;
  assert.match(block, /^routes:\n/);
  return block.slice('routes:\n'.length);
}

const USERS = [
  {
    id: 'alice',
    password: 'alice',
    name: 'Alice',
    email: 'alice@example.com',
    groups: ['admins', 'eng'],
  },
  { id: 'bob', password: 'bob', name: 'Bob', email: 'bob@example.com', groups: ['eng'] },
  { id: 'carol', password: 'carol', name: 'Carol', email: 'carol@example.com', groups: ['sales'] },
];

function unescapeHtml(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&');
}

function pre(html: string, id: string): string | null {
  const m = new RegExp(`<pre id="${id}">([\\s\\S]*?)</pre>`).exec(html);
  return m ? unescapeHtml(m[1]!) : null;
}

function csrfOf(html: string): string {
  const m = /name="csrf" value="([^"]+)"/.exec(html);
  assert.ok(m, 'the page carries a CSRF field');
  return unescapeHtml(m[1]!);
}

describe('admin console', () => {
  let s: Stack;
  let browser: Browser;
  let dir: string;
  let replica: ServeProcess | null = null;
  let replicaPort = 0;
  let origin = '';
  const redis = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true });

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    dir = mkdtempSync(join(tmpdir(), 'portcullis-admin-'));
    // Nothing listens there: the balanced route's second upstream fails its health checks.
    const CLOSED_PORT = await freePort();
    s = await startStack({
      hosts: ['app.corp.test'],
      configFile: join(dir, 'portcullis.yaml'),
      idp: { users: USERS },
      body: `session_storage: "redis://127.0.0.1:6379/?key_prefix=${PREFIX}"
admin_policy:
  allow:
    and:
      - groups: { has: admins }
routes:
  - from: http://app.corp.test:\${PORT}
    prefix: /ops
    to: \${UPSTREAM}
    allowed_groups: [admins]
  - from: http://app.corp.test:\${PORT}
    prefix: /balanced
    to: [\${UPSTREAM}, "http://127.0.0.1:${CLOSED_PORT}"]
    allowed_groups: [admins]
    health_checks:
      - timeout: 1s
        interval: 300ms
        unhealthy_threshold: 1
        healthy_threshold: 1
        tcp_health_check: {}
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_identity_headers: true
${docsPolicyRoute()}`,
    });
    origin = `http://app.corp.test:${s.port}`;
    // Another Portcullis process (portcullis serve), same config and Redis store, own port.
    replicaPort = await freePort();
    replica = await startServeProcess(yamlOnPort(s.yaml, s.port, replicaPort), replicaPort);
    browser = await launchBrowser(['app.corp.test']);
  });

  after(async () => {
    await browser?.close();
    await replica?.close();
    await s?.close();
    await redis.connect().catch(() => {});
    const keys = await redis.keys(`${PREFIX}*`).catch(() => [] as string[]);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function login(user: string, ua = BROWSER_HEADERS['user-agent']!): Promise<CookieJar> {
    const jar = new CookieJar();
    const { final } = await loginThroughIdp(`${origin}/`, {
      jar,
      username: user,
      password: user,
      headers: { 'user-agent': ua },
    });
    assert.equal(final.status, 200, `${user} is signed in`);
    return jar;
  }

  function get(url: string, jar: CookieJar | null, headers: Record<string, string> = {}) {
    return request(url, {
      ...(jar ? { jar } : {}),
      headers: { ...BROWSER_HEADERS, ...headers },
    });
  }

  function post(url: string, jar: CookieJar | null, form: Record<string, string>, extra = {}) {
    return request(url, {
      method: 'POST',
      ...(jar ? { jar } : {}),
      headers: {
        ...BROWSER_HEADERS,
        'content-type': 'application/x-www-form-urlencoded',
        origin,
        ...extra,
      },
      body: new URLSearchParams(form).toString(),
    });
  }

  async function signInInBrowser(page: Page, user: string): Promise<void> {
    await page.goto(`${origin}/.portcullis/admin/`);
    await page.waitForSelector('#username');
    await page.fill('#username', user);
    await page.fill('#password', user);
    await page.click('#submit');
    await page.waitForURL(`${origin}/.portcullis/admin/sessions`);
  }

  /** The replica's answer to one of bob's sessions. */
  const onReplica = (jar: CookieJar): Promise<Resp> => {
    const cookie = jar.header(new URL(`${origin}/`));
    return request(`http://app.corp.test:${replicaPort}/`, {
      headers: { ...JSON_ACCEPT, ...(cookie ? { cookie } : {}) },
    });
  };

  test('an admin finds bob’s sessions, revokes one, and the other Portcullis process refuses it at once', async () => {
    const laptop = await login('bob', `${BROWSER_HEADERS['user-agent']} laptop-one`);
    const phone = await login('bob', `${BROWSER_HEADERS['user-agent']} phone-two`);
    assert.equal((await onReplica(laptop)).status, 200, 'the replica accepts the laptop session');
    assert.equal((await onReplica(phone)).status, 200, 'and the phone session');

    // The command line shows the same sign-in details as the page.
    const listed = spawnSync(
      process.execPath,
      [
        CLI,
        'sessions',
        'list',
        '--user',
        'bob@example.com',
        '--format',
        'json',
        '--config',
        join(dir, 'portcullis.yaml'),
      ],
      { encoding: 'utf8' },
    );
    assert.equal(listed.status, 0, listed.stderr);
    const agents = (JSON.parse(listed.stdout) as any[]).map((x) => x.user_agent as string);
    assert.ok(
      agents.some((ua) => ua.endsWith('laptop-one')) &&
        agents.some((ua) => ua.endsWith('phone-two')),
    );

    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content.Security.Policy|Refused to/i.test(m.text())) violations.push(m.text());
    });
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.accept();
    });
    await signInInBrowser(page, 'alice');
    await page.fill('#q', 'bob@example.com');
    await page.keyboard.press('Enter');
    await page.waitForURL(/sessions\?q=bob%40example\.com/);
    const rows = page.locator('tbody tr');
    assert.equal(await rows.count(), 2, 'both of bob’s sessions are listed');
    const text = (await page.textContent('table'))!;
    assert.match(text, /laptop-one/);
    assert.match(text, /phone-two/);
    assert.match(text, /127\.0\.0\.1/, 'the client address at sign-in');
    assert.match(text, /127\.0\.0\.1:\d+/, 'the identity provider');
    assert.doesNotMatch(text, /alice@example\.com/, 'the search shows bob only');
    await page.screenshot({ path: `${SHOTS}/sessions.png`, fullPage: true });

    await rows
      .filter({ hasText: 'laptop-one' })
      .getByRole('button', { name: /Revoke/ })
      .click();
    await page.waitForSelector('.flash');
    assert.match((await page.textContent('.flash'))!, /Revoked session/);
    assert.equal(dialogs.length, 1, 'the console’s script asked first (it runs under the CSP)');
    assert.match(dialogs[0]!, /bob@example\.com/);
    assert.deepEqual(violations, [], 'no Content-Security-Policy violation');
    assert.equal(await page.locator('tbody tr').count(), 1, 'one session of bob is left');
    assert.match((await page.textContent('table'))!, /phone-two/);

    // The other process: the revoked session is refused on its very next request.
    const refused = await onReplica(laptop);
    assert.equal(refused.status, 401, 'the replica refuses the revoked session');
    assert.equal(refused.json().error, 'unauthenticated');
    assert.equal((await onReplica(phone)).status, 200, 'bob’s other session still works');
    const line = s.logs.find((l) => l.event === 'admin_sessions_revoked');
    assert.ok(line, 'the revocation is in the audit log');
    assert.equal(line.name, 'audit');
    assert.equal(line.admin, 'alice@example.com');
    assert.equal(line.scope, 'session');
    assert.equal(line.revoked, 1);

    // All of a user's sessions.
    await page.getByRole('button', { name: /Revoke all 1 session of bob@example\.com/ }).click();
    await page.waitForSelector('.flash');
    assert.match((await page.textContent('.flash'))!, /Revoked 1 session of bob@example\.com/);
    assert.equal((await onReplica(phone)).status, 401, 'and then the phone session too');
    assert.ok(
      s.logs.some(
        (l) => l.event === 'admin_sessions_revoked' && l.scope === 'user' && l.revoked === 1,
      ),
    );
    await ctx.close();
  });

  test('the sessions page answers with headers that keep it to itself: nonce CSP, no framing, no caching', async () => {
    const jar = await login('alice');
    const r = await get(`${origin}/.portcullis/admin/sessions`, jar);
    assert.equal(r.status, 200);
    const csp = String(r.headers['content-security-policy']);
    const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
    assert.ok(nonce, `a nonce in ${csp}`);
    const directive = (name: string): string =>
      csp.split(';').find((d) => d.trim().startsWith(`${name} `)) ?? '';
    for (const d of ['script-src', 'style-src'])
      assert.doesNotMatch(directive(d), /unsafe|'self'|\*/, `${d} allows only the nonce`);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.ok(r.body.includes(`<script nonce="${nonce}" src="/.portcullis/admin/admin.js"`));
    assert.ok(!/<script(?![^>]*nonce)/.test(r.body), 'every script carries the nonce');
    assert.ok(!/ on[a-z]+="/i.test(r.body), 'no inline event handler');
    assert.equal(r.headers['x-frame-options'], 'DENY');
    assert.equal(r.headers['cache-control'], 'no-store');
    const again = await get(`${origin}/.portcullis/admin/sessions`, jar);
    assert.notEqual(
      /nonce-([^']+)/.exec(String(again.headers['content-security-policy']))![1],
      nonce,
      'a new nonce per response',
    );
  });

  test('a non-admin gets a 403 on every admin URL and action; anonymous users are sent to sign in', async () => {
    const carol = await login('carol');
    const bob = await login('bob');
    const alice = await login('alice');
    const alice2 = await login('alice');
    const page = await get(`${origin}/.portcullis/admin/sessions?q=bob`, alice);
    const aliceToken = csrfOf(page.body);
    const gets = [
      '/.portcullis/admin',
      '/.portcullis/admin/',
      '/.portcullis/admin/sessions',
      '/.portcullis/admin/sessions?q=bob',
      '/.portcullis/admin/denials',
      '/.portcullis/admin/tester?url=http%3A%2F%2Fapp.corp.test%2F',
      '/.portcullis/admin/health',
      '/.portcullis/admin/admin.js',
      '/.portcullis/admin/no-such-page',
      '/.portcullis/admin/sessions/revoke',
    ];
    for (const path of gets) {
      const html = await get(`${origin}${path}`, carol);
      assert.equal(html.status, 403, `GET ${path} as carol`);
      assert.match(html.body, /carol@example\.com is not an administrator/);
      assert.doesNotMatch(html.body, /bob@example\.com/);
      const json = await get(`${origin}${path}`, carol, JSON_ACCEPT);
      assert.equal(json.status, 403);
      assert.equal(json.json().error, 'not_an_admin');
      const anon = await get(`${origin}${path}`, null);
      assert.equal(anon.status, 302, `GET ${path} anonymous: sign in first`);
      assert.match(anon.location ?? '', /authorize|\/\.portcullis\/|auth/);
      assert.equal((await get(`${origin}${path}`, null, JSON_ACCEPT)).status, 401);
    }
    // Spellings of the same paths: never a page of the console for carol or anyone anonymous.
    const hostile = [
      '/.portcullis/admin/sessions/',
      '/.portcullis/admin/sessions?q=bob&q=alice',
      '/.portcullis/admin/%73essions',
      '/.portcullis/%61dmin/sessions',
      '/.portcullis/admin/./sessions',
      '/.portcullis/x/../admin/sessions',
      '/.portcullis/admin//sessions',
      '/.portcullis/admin/sessions%2f',
      '/.portcullis/admin/sessions;x=1',
      '/.portcullis/ADMIN/sessions',
      '/.portcullis/admin\\sessions',
      '//.portcullis/admin/sessions',
    ];
    for (const rawPath of hostile) {
      for (const jar of [carol, null]) {
        const r = await request(`${origin}/`, {
          rawPath,
          ...(jar ? { jar } : {}),
          headers: BROWSER_HEADERS,
        });
        assert.ok(
          r.status !== 200 && !r.body.includes('bob@example.com'),
          `${rawPath} ${jar ? 'as carol' : 'anonymous'}: ${r.status}`,
        );
      }
    }
    const before = await redis.connect().then(() => redis.keys(`${PREFIX}*`));
    const forms: Array<Record<string, string>> = [
      { all: 'yes', confirm: 'yes' },
      { all: 'yes', confirm: 'yes', csrf: '' },
      { all: 'yes', confirm: 'yes', csrf: 'forged' },
      { all: 'yes', confirm: 'yes', csrf: aliceToken },
      { user: 'bob@example.com', csrf: aliceToken },
    ];
    for (const form of forms) {
      for (const path of ['/.portcullis/admin/sessions/revoke', '/.portcullis/admin/sessions']) {
        const r = await post(`${origin}${path}`, carol, form);
        assert.equal(r.status, 403, `POST ${path} as carol with ${JSON.stringify(form)}`);
        const anon = await post(`${origin}${path}`, null, form, JSON_ACCEPT);
        assert.equal(anon.status, 401, `POST ${path} anonymous`);
      }
    }
    // The admin's own cookie without a valid token: a forged cross-site form.
    const forged: Array<[Record<string, string>, Record<string, string>, RegExp]> = [
      [{ user: 'bob@example.com' }, {}, /CSRF token is missing/],
      [{ user: 'bob@example.com', csrf: 'x'.repeat(43) }, {}, /does not belong/],
      [
        { user: 'bob@example.com', csrf: aliceToken },
        { origin: 'http://evil.test' },
        /another site/,
      ],
      [
        { user: 'bob@example.com', csrf: aliceToken },
        { 'sec-fetch-site': 'cross-site' },
        /another site/,
      ],
    ];
    for (const [form, headers, why] of forged) {
      const r = await post(`${origin}/.portcullis/admin/sessions/revoke`, alice, form, headers);
      assert.equal(r.status, 403, `forged ${JSON.stringify(form)} ${JSON.stringify(headers)}`);
      assert.match(r.body, why);
    }
    // Another session of the same admin has another token.
    const r = await post(`${origin}/.portcullis/admin/sessions/revoke`, alice2, {
      user: 'bob@example.com',
      csrf: aliceToken,
    });
    assert.equal(r.status, 403, 'a token is bound to its session');
    const after = await redis.keys(`${PREFIX}*`);
    assert.deepEqual(after.sort(), before.sort(), 'no refused action ended a session');
    assert.equal((await get(`${origin}/`, bob, JSON_ACCEPT)).status, 200, 'bob is still in');
    assert.ok(
      s.logs.some(
        (l) =>
          l.event === 'admin_refused' &&
          l.user === 'carol@example.com' &&
          l.path === '/.portcullis/admin/sessions',
      ),
      'refusals are audited with who',
    );
    assert.ok(
      s.logs.some((l) => l.event === 'admin_csrf_refused' && l.user === 'alice@example.com'),
    );
    // And the same request with the right token does what it says: the checks above can fail.
    const ok = await post(`${origin}/.portcullis/admin/sessions/revoke`, alice, {
      user: 'bob@example.com',
      csrf: aliceToken,
    });
    assert.equal(ok.status, 303);
    const result = await get(new URL(ok.location!, origin).href, alice);
    assert.match(result.body, /class="flash"[^>]*>Revoked 1 session of bob@example\.com/);
    const spoofed = new URL(ok.location!, origin);
    spoofed.searchParams.set('done', 'Revoked all 9000 sessions.');
    const shown = await get(spoofed.href, alice);
    assert.doesNotMatch(shown.body, /9000/, 'a link cannot make the page claim an action');
    assert.equal((await get(`${origin}/`, bob, JSON_ACCEPT)).status, 401, 'now bob is out');
    // Methods the console does not take.
    const put = await request(`${origin}/.portcullis/admin/sessions`, {
      method: 'PUT',
      jar: alice,
      headers: JSON_ACCEPT,
    });
    assert.equal(put.status, 405);
  });

  test('denials: carol’s refused request is listed with route, user and reason, and opens the tester filled in', async () => {
    const carol = await login('carol');
    const denied = await request(`${origin}/ops/reports`, {
      jar: carol,
      headers: BROWSER_HEADERS,
      rawPath: '/ops/reports?q=<b>x</b>',
    });
    assert.equal(denied.status, 403);
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await signInInBrowser(page, 'alice');
    await page.getByRole('link', { name: 'Denials' }).click();
    await page.waitForURL(/\/denials$/);
    await page.fill('#q', 'carol');
    await page.keyboard.press('Enter');
    await page.waitForURL(/denials\?q=carol/);
    const row = page.locator('tbody tr').first();
    const text = (await row.textContent())!;
    assert.match(text, /carol@example\.com/);
    assert.match(text, /\/ops\/reports/);
    assert.match(text, /routes\[0\]/);
    assert.match(text, /needs group admins; you have sales/);
    assert.equal(
      await page.locator('tbody b').count(),
      0,
      'the query string is shown as text, never as markup',
    );
    await page.screenshot({ path: `${SHOTS}/denials.png`, fullPage: true });
    await row.getByRole('link', { name: 'Test this' }).click();
    await page.waitForURL(/\/tester\?/);
    assert.equal(await page.inputValue('#email'), 'carol@example.com');
    assert.equal(await page.inputValue('#groups'), 'sales');
    assert.match((await page.textContent('#verdict'))!, /^DENY$/);
    assert.match((await page.textContent('#trace'))!, /needs group admins; you have sales/);
    const yaml = (await page.textContent('#policy-test'))!;
    const { parse } = await import('yaml');
    const entry = (parse(yaml) as any[])[0];
    assert.equal(entry.expect, 'deny');
    assert.equal(entry.request.email, 'carol@example.com');
    assert.deepEqual(entry.request.groups, ['sales']);
    // The entry is a policy test this config passes, as `portcullis check` runs it.
    const cfg = parseConfig(
      `${s.yaml}\npolicy_tests:\n${yaml.replace(/^(?=.)/gm, '  ')}`,
      'with-test.yaml',
    );
    assert.equal(cfg.policyTests.length, 1);
    assert.deepEqual(await runPolicyTests(cfg, new RouteTable(cfg.routes)), []);
    await page.screenshot({ path: `${SHOTS}/tester.png`, fullPage: true });
    // A recent user fills the form (the script), and keyboard alone runs it.
    await page.goto(`${origin}/.portcullis/admin/tester`);
    await page.selectOption('#route', { index: 1 });
    await page.selectOption('#recent', 'carol@example.com');
    assert.equal(await page.inputValue('#groups'), 'sales');
    await page.focus('#run');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#verdict');
    assert.match((await page.textContent('#verdict'))!, /DENY/);
    await ctx.close();
    assert.ok(
      s.logs.some((l) => l.event === 'admin_policy_test' && l.admin === 'alice@example.com'),
    );
  });

  test('the tester says what `portcullis explain` says on the examples of docs/policy.md', async () => {
    const alice = await login('alice');
    const url = 'https://grafana.example.com';
    const cases: Array<Record<string, string>> = [
      // The explain example and the policy_tests of docs/policy.md.
      { url: `${url}/admin`, email: 'bob@example.com', groups: 'eng' },
      { url: `${url}/admin`, email: 'alice@example.com', groups: 'admins' },
      { url: `${url}/` },
      // Each criterion of the "Shape" example.
      { url: `${url}/d`, email: 'dan@example.com' },
      { url: `${url}/d`, email: 'dan@example.com', method: 'POST' },
      { url: `${url}/d`, email: 'dan@elsewhere.test', groups: 'eng' },
      { url: `${url}/d`, email: 'alice@example.com', groups: 'admins', ip: '198.51.100.7' },
      { url: `${url}/d`, email: 'alice@example.com', groups: 'admins', ip: '2001:db8::1' },
      {
        url: `${url}/d`,
        user: 'u-42',
        claims: '{"email":"x@example.com"}',
        time: '2026-03-29T08:30:00Z',
      },
    ];
    for (const c of cases) {
      const args = ['explain', '--config', join(dir, 'portcullis.yaml'), '--url', c.url!];
      for (const k of ['method', 'user', 'email', 'groups', 'ip', 'time'])
        if (c[k] !== undefined) args.push(`--${k}`, c[k]);
      if (c.claims)
        for (const [k, v] of Object.entries(JSON.parse(c.claims) as Record<string, string>))
          args.push('--claim', `${k}=${v}`);
      const cli = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
      assert.ok(cli.status === 0 || cli.status === 1, cli.stderr);
      const r = await get(
        `${origin}/.portcullis/admin/tester?${new URLSearchParams(c).toString()}`,
        alice,
      );
      assert.equal(r.status, 200);
      assert.equal(pre(r.body, 'trace'), cli.stdout.trimEnd(), `${JSON.stringify(c)}`);
    }
  });

  test('the tester explains what it cannot test', async () => {
    const alice = await login('alice');
    const bad: Array<[Record<string, string>, RegExp]> = [
      [{ url: 'not a url' }, /expected an absolute URL/],
      [{ url: 'ftp://app.corp.test/' }, /expected an http\(s\)( or tcp\+https)? URL/],
      [{ url: `${origin}/`, time: 'yesterday' }, /expected an ISO 8601 time/],
      [{ url: `${origin}/`, claims: '[1,2]' }, /Claims: expected a JSON object/],
      [{ url: `${origin}/`, claims: '{oops' }, /Claims: expected a JSON object/],
    ];
    for (const [q, why] of bad) {
      const r = await get(`${origin}/.portcullis/admin/tester?${new URLSearchParams(q)}`, alice);
      assert.equal(r.status, 200);
      assert.match(unescapeHtml(r.body), why);
      assert.doesNotMatch(r.body, /id="verdict"/);
    }
  });

  test('health: IdP, keys, store, channel, routes, the running config, its reloads and `check` findings', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await signInInBrowser(page, 'alice');
    const reload = await s.proxy.reload('test');
    assert.ok(reload.ok, reload.errors.join('\n'));
    await page.getByRole('link', { name: 'Health' }).click();
    await page.waitForURL(/\/health$/);
    const body = (await page.textContent('main'))!;
    assert.match(body, /Identity provider discovery\s*✓ ok/);
    assert.match(body, /Session store\s*✓ ok\s*redis answers/);
    assert.match(body, /Revocations from other replicas\s*✓ ok\s*listening since/);
    assert.match(body, /Identity provider keys \(JWKS\)\s*✓ ok\s*\d+ keys? cached/);
    assert.match(body, /portcullis\.yaml/);
    assert.match(body, /sha256 [0-9a-f]{12}/);
    assert.match(body, /test\s*✓ in force/, 'the reload just made');
    assert.match(body, /grafana\.example\.com/);
    // The balanced route's upstreams as the proxy sees them: one healthy, one failing its checks.
    const balanced = (await page.locator('tr', { hasText: '/balanced' }).textContent())!;
    assert.match(balanced, /✓ healthy, \d+ in flight/);
    assert.match(balanced, /127\.0\.0\.1:\d+\/?\s*✗ failing its health checks/);
    // The findings are `portcullis check`'s.
    const check = spawnSync(
      process.execPath,
      [CLI, 'check', '--config', join(dir, 'portcullis.yaml')],
      {
        encoding: 'utf8',
      },
    );
    const fromCheck = [
      ...`${check.stdout}${check.stderr}`.matchAll(/: (?:warning|error|info): ([^\s:]+):/g),
    ].map((m) => m[1]!);
    assert.ok(fromCheck.length > 0, `check finds something in this config:\n${check.stdout}`);
    const onPage = await page.locator('#lints tbody tr td:nth-child(2) code').allTextContents();
    assert.deepEqual(onPage.sort(), fromCheck.sort(), 'the page lists what `check` lists');
    await page.screenshot({ path: `${SHOTS}/health.png`, fullPage: true });
    await ctx.close();
  });
});

for (const kind of ['postgres', 'memory'] as const) {
  describe(`admin console with the ${kind} session store`, () => {
    let s: Stack;
    let db: TempDatabase | null = null;
    before(async () => {
      if (kind === 'postgres') db = await createTempDatabase();
      s = await startStack({
        hosts: ['app.corp.test'],
        idp: { users: USERS },
        body: `session_storage: "${db ? db.url() : 'memory'}"
admin_policy: { allow: { or: [{ groups: { has: admins } }] } }
routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
`,
      });
    });
    after(async () => {
      await s?.close();
      await db?.drop();
    });

    test('bob’s session is listed and revoked, and his next request is refused', async () => {
      const origin = `http://app.corp.test:${s.port}`;
      const signIn = async (user: string, start = `${origin}/`) => {
        const jar = new CookieJar();
        const { final } = await loginThroughIdp(start, { jar, username: user, password: user });
        assert.equal(final.status, 200);
        return { jar, final };
      };
      const bob = await signIn('bob');
      const { jar, final } = await signIn('alice', `${origin}/.portcullis/admin/sessions?q=bob`);
      assert.match(final.body, /bob@example\.com/);
      assert.doesNotMatch(final.body, /<td>alice@example\.com/);
      if (kind === 'memory')
        assert.match(final.body, /these are the sessions of this process only/);
      const id = /name="id" value="([^"]+)"/.exec(final.body)![1]!;
      const r = await request(`${origin}/.portcullis/admin/sessions/revoke`, {
        method: 'POST',
        jar,
        headers: {
          ...BROWSER_HEADERS,
          origin,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ id, q: 'bob', csrf: csrfOf(final.body) }).toString(),
      });
      assert.equal(r.status, 303);
      const after = await request(new URL(r.location!, origin).href, {
        jar,
        headers: BROWSER_HEADERS,
      });
      assert.match(after.body, /Revoked session/);
      assert.match(after.body, /No session matches “bob”/);
      const out = await request(`${origin}/`, { jar: bob.jar, headers: JSON_ACCEPT });
      assert.equal(out.status, 401, 'bob must sign in again');
    });
  });
}

describe('admin console with the cookie store, off, or on another host', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({
      hosts: ['app.corp.test', 'admin.corp.test'],
      idp: { users: USERS },
      body: `admin_policy:
  allow:
    or:
      - email: { is: alice@example.com }
admin_host: admin.corp.test:\${PORT}
routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
  - from: http://admin.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
`,
    });
  });
  after(async () => {
    await s?.close();
  });

  test('the cookie store: the page says what cannot be listed and what can be done instead', async () => {
    const origin = `http://admin.corp.test:${s.port}`;
    const jar = new CookieJar();
    const { final } = await loginThroughIdp(`${origin}/.portcullis/admin/sessions`, {
      jar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(final.status, 200);
    assert.match(final.body, /session_storage is cookie/);
    assert.match(final.body, /cannot list who is signed in/);
    assert.match(final.body, /deny: \{or: \[\{email: \{is: bob@example\.com\}\}\]\}/);
    assert.match(final.body, /change <code>cookie_secret<\/code>/);
    assert.match(final.body, /redis:\/\/…<\/code> or <code>postgres:\/\/…/);
    assert.doesNotMatch(final.body, /<form method="post"/, 'nothing to revoke from here');
    const r = await request(`${origin}/.portcullis/admin/sessions/revoke`, {
      method: 'POST',
      jar,
      headers: {
        ...BROWSER_HEADERS,
        origin,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'all=yes&confirm=yes',
    });
    assert.equal(r.status, 403, 'an action still needs its CSRF token');
  });

  test('admin_host: the console answers there only; elsewhere it is a 404 before any session is read', async () => {
    const r = await request(`http://app.corp.test:${s.port}/.portcullis/admin/sessions`, {
      headers: BROWSER_HEADERS,
    });
    assert.equal(r.status, 404);
    assert.match(r.body, new RegExp(`not served on app\\.corp\\.test:${s.port}`));
  });

  test('without admin_policy there is no console: a 404 that says how to turn it on', async () => {
    const port = await freePort();
    const yaml = yamlOnPort(s.yaml, s.port, port)
      .replace(/^admin_policy:[\s\S]*?^admin_host:.*\n/m, '')
      .replace(/^address: .*$/m, `address: 127.0.0.1:${port}`);
    assert.doesNotMatch(yaml, /admin_/);
    const { startProxy } = await import('./helpers/session-infra.js');
    const p = await startProxy(yaml, 'no-admin.yaml');
    try {
      const r = await request(`http://app.corp.test:${port}/.portcullis/admin/`, {
        headers: JSON_ACCEPT,
      });
      assert.equal(r.status, 404);
      assert.match(r.json().message, /admin_policy is not set/);
    } finally {
      await p.close();
    }
  });
});

describe('admin_policy and admin_host in the config', () => {
  const base = `address: 127.0.0.1:4180
insecure_server: true
cookie_secret: ${Buffer.alloc(32, 7).toString('base64')}
idp_provider_url: http://127.0.0.1:9/
idp_client_id: x
idp_client_secret: y
routes:
  - from: http://app.test
    allow_any_authenticated_user: true
`;
  const issues = (extra: string): string => {
    try {
      parseConfig(`${extra}\n${base}`, 'admin.yaml');
    } catch (e) {
      if (e instanceof ConfigError) return e.message;
      throw e;
    }
    return '';
  };

  test('a valid admin_policy compiles like a route policy and decides who is admin', () => {
    const cfg = parseConfig(
      `admin_policy:\n  - allow:\n      or:\n        - groups: { has: admins }\n${base}`,
      'admin.yaml',
    );
    assert.ok(cfg.admin);
    const ctx: any = { method: 'GET', path: '/', headers: {}, now: Date.now() };
    const id = (groups: string[]): any => ({ sub: 's', user: 's', email: 'e', groups, claims: {} });
    assert.equal(cfg.admin.policy({ ctx, identity: id(['admins']) }).allow, true);
    assert.equal(cfg.admin.policy({ ctx, identity: id(['eng']) }).allow, false);
    assert.equal(cfg.admin.host, null);
    assert.equal(parseConfig(base, 'plain.yaml').admin, null, 'no admin_policy, no console');
  });

  test('bad admin settings are errors that name the key, the line and what was expected', () => {
    assert.match(
      issues('admin_host: auth.example.com'),
      /admin\.yaml:1:\d+: error: admin_host: needs admin_policy: nobody is an administrator/,
    );
    assert.match(
      issues('admin_policy:'),
      /admin\.yaml:1:\d+: error: admin_policy: expected a policy \(PPL\)/,
    );
    assert.match(
      issues('admin_policy:\n  allow:\n    or:\n      - grops: { has: admins }'),
      /admin\.yaml:4:\d+: error: admin_policy\.allow\.or\[0\]\.grops: unknown criterion "grops" \(did you mean "groups"\?\)/,
    );
    assert.match(issues('admin_policy: []'), /admin_policy.*empty list/s);
    assert.match(
      issues('admin_policy: {allow: {or: [{groups: {has: a}}]}}\nadmin_host: other.test'),
      /admin_host: expected the host of a route or of authenticate_service_url: Portcullis does not serve other\.test/,
    );
    assert.equal(
      issues('admin_policy: {allow: {or: [{groups: {has: a}}]}}\nadmin_host: APP.test:80'),
      '',
      'a route host, any case, with its default port',
    );
    assert.match(
      issues('admin_policy: {allow: {or: [{groups: {has: a}}]}}\nadmin_host: "a b/c"'),
      /admin_host.*expected admin_host as a host name/s,
    );
  });
});
