// The admin console's denials page (docs/admin.md) lists failed sign-ins and failed requests
// next to policy denials, in headless Chromium: a forged callback, an IdP's access_denied and an
// IdP error are there with their reason code and nothing the forged request carried; filtering
// by kind shows one kind only; hostile hosts, paths and claims stay text. The ring is bounded.
// While the session store is down the console answers a 503 that says what is down.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { Browser, Page } from 'playwright-core';
import { Recent } from '../src/observe/recent.js';
import { launchBrowser } from './helpers/browser.js';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import { startTcpProxy, type TcpProxy } from './helpers/session-infra.js';
import { startStack, type Stack } from './helpers/stack.js';

const PREFIX = `pdenials-${randomBytes(6).toString('hex')}:`;
const JSON_ACCEPT = { accept: 'application/json' };
const HOSTILE_EMAIL = 'mallory"><img id=pwnuser src=x>@example.com';

const USERS = [
  { id: 'alice', password: 'alice', name: 'Alice', email: 'alice@example.com', groups: ['admins'] },
  { id: 'carol', password: 'carol', name: 'Carol', email: 'carol@example.com', groups: ['sales'] },
  {
    id: 'mallory',
    password: 'mallory',
    name: 'Mallory',
    email: HOSTILE_EMAIL,
    groups: ['<img id=pwngroup src=x>'],
  },
];

/** Waits for a condition a request shows (a store outage taking hold), not for a fixed time. */
async function until<T>(what: string, f: () => Promise<T | null>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== null) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('admin console: failed sign-ins and failed requests on the denials page', () => {
  let s: Stack;
  let browser: Browser;
  let store: TcpProxy;
  let origin = '';
  const redis = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true });

  before(async () => {
    // The store through a TCP proxy this test can cut: an outage of the session store only.
    store = await startTcpProxy(6379);
    const closed = await freePort();
    s = await startStack({
      hosts: ['app.corp.test'],
      idp: { users: USERS },
      body: `session_storage: "redis://127.0.0.1:${store.port}/?key_prefix=${PREFIX}"
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
    prefix: /down
    to: http://127.0.0.1:${closed}
    allow_public_unauthenticated_access: true
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
`,
    });
    origin = `http://app.corp.test:${s.port}`;
    browser = await launchBrowser(['app.corp.test']);
  });

  after(async () => {
    await browser?.close();
    await s?.close();
    await store?.close();
    await redis.connect().catch(() => {});
    const keys = await redis.keys(`${PREFIX}*`).catch(() => [] as string[]);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  async function login(user: string): Promise<CookieJar> {
    const jar = new CookieJar();
    const { final } = await loginThroughIdp(`${origin}/`, { jar, username: user, password: user });
    assert.equal(final.status, 200, `${user} is signed in`);
    return jar;
  }

  /** A login started for real (its state and login cookie in the jar), stopped at the IdP. */
  async function startedLogin(): Promise<{ jar: CookieJar; state: string }> {
    const jar = new CookieJar();
    let url = `${origin}/`;
    for (let i = 0; i < 5; i++) {
      const r: Resp = await request(url, { jar, headers: BROWSER_HEADERS });
      assert.equal(r.status, 302, `a redirect from ${url}`);
      const next = new URL(r.location!, url);
      const state = next.searchParams.get('state');
      if (next.origin !== origin && state) return { jar, state };
      url = next.href;
    }
    throw new Error('the login never reached the IdP');
  }

  async function denialsPage(page: Page, kind: string): Promise<void> {
    await page.goto(`${origin}/.portcullis/admin/denials`);
    await page.selectOption('#kind', kind);
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(new RegExp(`denials\\?q=&kind=${kind}$`));
  }

  test('a forged callback, an IdP error and an IdP access_denied are listed as failed sign-ins, with nothing the requests carried', async () => {
    // 1. A callback nobody started: a well-formed state without its login cookie.
    const forgedState = `Forged${randomBytes(12).toString('hex')}`;
    const forgedCode = `FORGEDCODE${randomBytes(8).toString('hex')}`;
    const forged = await request(
      `${origin}/.portcullis/callback?${new URLSearchParams({ code: forgedCode, state: forgedState, session_state: 'FORGEDSESSIONSTATE' })}`,
      { headers: BROWSER_HEADERS },
    );
    assert.equal(forged.status, 400);
    // 2. A state that is not one at all, with markup in it.
    const badState = '<img id=pwnstate src=x>';
    const malformed = await request(
      `${origin}/.portcullis/callback?${new URLSearchParams({ code: forgedCode, state: badState })}`,
      { headers: BROWSER_HEADERS },
    );
    assert.equal(malformed.status, 400);
    // 3. A real login's state, answered with an error code no standard defines and a description
    // the attacker chose: the row has neither.
    const started = await startedLogin();
    // The login cookie the callback clears: its value must not reach the page either.
    const loginCookies = started.jar.header(new URL(`${origin}/`))!.split('; ');
    assert.ok(
      loginCookies.some((c) => c.includes('_login_')),
      loginCookies.join('; '),
    );
    const oddError = 'evil_error_FORGED';
    const description = 'FORGEDDESCRIPTION <img id=pwndesc src=x>';
    const idpError = await request(
      `${origin}/.portcullis/callback?${new URLSearchParams({ error: oddError, error_description: description, state: started.state })}`,
      { jar: started.jar, headers: BROWSER_HEADERS },
    );
    assert.equal(idpError.status, 400);
    assert.equal(
      s.logs.filter((l) => l.event === 'login_failed').length,
      3,
      'three audit lines: the rows come from these events',
    );
    // 4. In Chromium, a user cancels at the IdP: it answers access_denied (RFC 6749 4.1.2.1,
    // https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1).
    const userCtx = await browser.newContext();
    const userPage = await userCtx.newPage();
    await userPage.goto(`${origin}/`);
    await userPage.click('#cancel');
    await userPage.waitForURL(/\/\.portcullis\/callback\?/);
    assert.match((await userPage.textContent('body'))!, /Sign-in was refused/);
    await userCtx.close();

    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${origin}/.portcullis/admin/denials`);
    await page.fill('#username', 'alice');
    await page.fill('#password', 'alice');
    await page.click('#submit');
    await page.waitForURL(`${origin}/.portcullis/admin/denials`);
    await denialsPage(page, 'sign_in');
    const rows = page.locator('#denials tbody tr');
    assert.equal(await rows.count(), 4, 'the four failed sign-ins');
    assert.deepEqual(
      [...new Set(await rows.evaluateAll((trs) => trs.map((t) => t.getAttribute('data-kind'))))],
      ['sign_in'],
    );
    const texts = await rows.allTextContents();
    // Newest first: the cancelled one, the IdP error, the malformed state, the forged state.
    assert.match(texts[0]!, /sign-in failed/);
    assert.match(
      texts[0]!,
      /idp_denied: the identity provider refused the sign-in \(access_denied\)/,
    );
    assert.match(texts[1]!, /idp_error: the identity provider answered with an error(?! \()/);
    assert.match(texts[2]!, /invalid_state/);
    assert.match(texts[3]!, /state_not_found: no login of this browser has this state/);
    for (const t of texts) {
      assert.match(t, /\/\.portcullis\/callback/, 'the path');
      assert.match(t, /app\.corp\.test/, 'the host');
      assert.match(t, /not known/, 'nobody is known before the ID token is checked');
    }
    assert.equal(
      await rows.getByRole('link', { name: 'Test this' }).count(),
      0,
      'a sign-in never reached a policy: nothing to test',
    );
    const html = await page.content();
    for (const secret of [
      forgedState,
      forgedCode,
      'FORGEDSESSIONSTATE',
      started.state,
      'FORGEDDESCRIPTION',
      'pwnstate',
      'evil_error',
      'End-User aborted',
    ])
      assert.ok(!html.includes(secret), `the page does not hold ${secret}`);
    for (const cookie of loginCookies)
      assert.ok(!html.includes(cookie.split('=').slice(1).join('=')), `no cookie value: ${cookie}`);
    await page.screenshot({ path: '/tmp/admin-shots/denials-sign-in.png', fullPage: true });
    await ctx.close();
  });

  test('filter by kind: policy denials, errors; hostile hosts, paths and claims are shown as text', async () => {
    const carol = await login('carol');
    const mallory = await login('mallory');
    assert.equal(
      (await request(`${origin}/ops/x`, { jar: carol, headers: BROWSER_HEADERS })).status,
      403,
    );
    const hostilePath = '/ops/"><img/id=pwnpath/src=x>';
    assert.equal(
      (
        await request(`${origin}/`, {
          jar: mallory,
          headers: BROWSER_HEADERS,
          rawPath: hostilePath,
        })
      ).status,
      403,
    );
    // No upstream listens behind /down: an error page, and a row.
    const down = await request(`${origin}/down/report`, { headers: BROWSER_HEADERS });
    assert.equal(down.status, 502);
    // A Host header no parser accepts: refused before any route, listed as it was sent.
    const hostileHost = 'app.corp.test"><img id=pwnhost src=x>';
    const bad = await request(`${origin}/`, { headers: { ...BROWSER_HEADERS, host: hostileHost } });
    assert.equal(bad.status, 400);

    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${origin}/.portcullis/admin/denials`);
    await page.fill('#username', 'alice');
    await page.fill('#password', 'alice');
    await page.click('#submit');
    await page.waitForURL(`${origin}/.portcullis/admin/denials`);
    const rows = page.locator('#denials tbody tr');
    const kinds = async (): Promise<string[]> => [
      ...new Set(await rows.evaluateAll((trs) => trs.map((t) => t.getAttribute('data-kind')!))),
    ];
    assert.deepEqual((await kinds()).sort(), ['deny', 'error', 'sign_in'], 'all kinds by default');

    await denialsPage(page, 'deny');
    assert.deepEqual(await kinds(), ['deny']);
    const mal = rows.filter({ hasText: 'mallory' });
    assert.equal(await mal.count(), 1);
    const malText = (await mal.textContent())!;
    assert.match(malText, /mallory"><img id=pwnuser src=x>@example\.com/, 'the e-mail as text');
    assert.match(malText, /<img id=pwngroup src=x>/, 'the group as text');
    assert.match(malText, /\/ops\/%22%3E%3Cimg\/id=pwnpath\/src=x%3E/, 'the path as normalized');
    const carolRow = rows.filter({ hasText: 'carol@example.com' });
    assert.match((await carolRow.textContent())!, /needs group admins; you have sales/);
    assert.equal(await carolRow.getByRole('link', { name: 'Test this' }).count(), 1);

    await denialsPage(page, 'error');
    assert.deepEqual(await kinds(), ['error']);
    const upstream = rows.filter({ hasText: '/down/report' });
    assert.match(
      (await upstream.textContent())!,
      /routes\[1\][\s\S]*upstream_unavailable: the upstream could not be reached/,
    );
    const hostRow = rows.filter({ hasText: 'malformed Host header' });
    assert.equal(await hostRow.count(), 1);
    assert.match((await hostRow.textContent())!, /app\.corp\.test"><img id=pwnhost src=x>/);
    assert.equal(await hostRow.getByRole('link', { name: 'Test this' }).count(), 0);

    await page.goto(`${origin}/.portcullis/admin/denials`);
    for (const id of ['pwnuser', 'pwngroup', 'pwnpath', 'pwnhost'])
      assert.equal(await page.locator(`#${id}`).count(), 0, `no element #${id}: markup stays text`);
    // An unknown kind is no filter at all, not a page that reflects it.
    await page.goto(`${origin}/.portcullis/admin/denials?kind=%22%3E%3Cb%3Ex`);
    assert.deepEqual((await kinds()).sort(), ['deny', 'error', 'sign_in']);
    await ctx.close();
  });

  test('while the session store is down the console answers 503 and says what is down; Health is back with the store', async () => {
    const alice = await login('alice');
    const health = (headers: Record<string, string> = BROWSER_HEADERS) =>
      request(`${origin}/.portcullis/admin/health`, { jar: alice, headers });
    assert.equal((await health()).status, 200);
    await store.cut();
    try {
      // Sessions checked in the last second are still served (docs/high-availability.md): wait
      // for the outage to reach the console's own check.
      const r = await until('the console to see the outage', async () => {
        const x = await health();
        return x.status === 503 ? x : null;
      });
      assert.match(
        r.body,
        /cannot check who you are: the session store, which holds your session, is not answering/,
      );
      assert.match(r.body, /Health included/);
      assert.match(r.body, /\/ready on metrics_address/);
      assert.doesNotMatch(r.body, /Identity provider discovery|portcullis\.yaml|127\.0\.0\.1/);
      assert.equal(r.headers['retry-after'], '5');
      const json = await health(JSON_ACCEPT);
      assert.equal(json.status, 503);
      assert.equal(json.json().error, 'session_store_unavailable');
    } finally {
      await store.restore();
    }
    await until('the store to answer again', async () =>
      (await health()).status === 200 ? true : null,
    );
    const page = await request(`${origin}/.portcullis/admin/denials?kind=error`, {
      jar: alice,
      headers: BROWSER_HEADERS,
    });
    assert.match(
      page.body,
      /\(portcullis\)[\s\S]*session_store_unavailable<\/code>: the session store is not answering/,
      'the console’s own 503 is on the page',
    );
    const row =
      /<tr data-kind="error">(?:(?!<\/tr>)[\s\S])*session_store_unavailable[\s\S]*?<\/tr>/.exec(
        page.body,
      )![0];
    assert.doesNotMatch(row, /Test this/, 'no policy to test on a Portcullis page');
  });
});

describe('admin console: refused hand-overs and rate-limited sign-ins on the denials page', () => {
  // docs/configuration.md, login_rate_limit: "sign-in starts each client address may make at
  // once, refilled at that many an hour … Beyond it: 429 too_many_logins, Retry-After: 60, audit
  // line login_rate_limited". The limit counts 127.0.0.1 too: this file's own sign-ins stay below.
  const LIMIT = 10;
  const FLOODER = '198.51.100.23';
  const NONCE = '_portcullis_handoff';
  let s: Stack;
  let browser: Browser;
  const auth = (path: string): string => `http://auth.corp.test:${s.port}${path}`;
  const other = (path: string): string => `http://app.other.test:${s.port}${path}`;

  before(async () => {
    s = await startStack({
      hosts: ['auth.corp.test'],
      idp: { users: USERS },
      body: `authenticate_service_url: http://auth.corp.test:\${PORT}
cookie_domain: corp.test
login_rate_limit: ${LIMIT}
admin_policy:
  allow:
    and:
      - groups: { has: admins }
routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
  - from: http://app.other.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
`,
    });
    browser = await launchBrowser(['auth.corp.test', 'app.corp.test', 'app.other.test']);
  });

  after(async () => {
    await browser?.close();
    await s?.close();
  });

  /** The sign-in rows as alice, an administrator, sees them in Chromium, and the page's HTML. */
  async function signInRows(): Promise<{ texts: string[]; html: string }> {
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();
      await page.goto(auth('/.portcullis/admin/denials'));
      await page.fill('#username', 'alice');
      await page.fill('#password', 'alice');
      await page.click('#submit');
      await page.waitForURL(auth('/.portcullis/admin/denials'));
      await page.selectOption('#kind', 'sign_in');
      await page.getByRole('button', { name: 'Filter' }).click();
      await page.waitForURL(/denials\?q=&kind=sign_in$/);
      const rows = page.locator('#denials tbody tr');
      assert.deepEqual(
        [...new Set(await rows.evaluateAll((trs) => trs.map((t) => t.getAttribute('data-kind'))))],
        ['sign_in'],
      );
      return { texts: await rows.allTextContents(), html: await page.content() };
    } finally {
      await ctx.close();
    }
  }

  test('a replayed and a forged hand-over link are listed as failed sign-ins, without the link, nonce or cookies', async () => {
    const carol = new CookieJar();
    const signedIn = await loginThroughIdp(`http://app.corp.test:${s.port}/`, {
      jar: carol,
      username: 'carol',
      password: 'carol',
    });
    assert.equal(signedIn.final.status, 200);
    // app.other.test cannot read the corp.test cookie: the authenticate host hands the session
    // over with a one-time link bound to the nonce cookie app.other.test gave this browser.
    const toAuth = await request(other('/report'), { jar: carol, headers: BROWSER_HEADERS });
    assert.equal(toAuth.status, 302);
    const minted = await request(toAuth.location!, { jar: carol, headers: BROWSER_HEADERS });
    const link = minted.location ?? '';
    assert.match(link, /\/\.portcullis\/handoff\?token=/);
    const token = new URL(link).searchParams.get('token')!;
    const nonce = carol.get(NONCE, 'app.other.test')!;
    assert.ok(nonce, 'the browser holds its nonce');
    const used = await request(link, { jar: carol, headers: BROWSER_HEADERS });
    assert.equal(used.status, 302, 'the link works once, in its browser');
    const sessionCookies = used.setCookies.map((c) =>
      c.split(';')[0]!.split('=').slice(1).join('='),
    );
    // Someone who captured both the link and the nonce cookie replays them.
    const replayed = await request(link, {
      headers: { ...BROWSER_HEADERS, cookie: `${NONCE}=${nonce}` },
    });
    assert.equal(replayed.status, 400);
    assert.match(replayed.body, /was already used/);
    const forgedToken = `FORGEDTOKEN${randomBytes(16).toString('hex')}`;
    const forged = await request(other(`/.portcullis/handoff?token=${forgedToken}`), {
      headers: BROWSER_HEADERS,
    });
    assert.equal(forged.status, 400);
    assert.deepEqual(
      s.logs.filter((l) => l.event === 'handoff_refused').map((l) => l.reason),
      ['replayed', 'invalid_or_expired'],
      'the two audit lines the rows come from',
    );

    const { texts, html } = await signInRows();
    const handoffs = texts.filter((t) => t.includes('/.portcullis/handoff'));
    assert.equal(handoffs.length, 2, texts.join('\n'));
    // Newest first: the forged link, then the replayed one.
    assert.match(
      handoffs[0]!,
      /invalid_handoff: the hand-over link is invalid or has expired \(invalid_or_expired\)/,
    );
    assert.match(handoffs[1]!, /invalid_handoff: the hand-over link was already used \(replayed\)/);
    for (const t of handoffs) {
      assert.match(t, /sign-in failed/);
      assert.match(t, /app\.other\.test/, 'the host');
      assert.match(t, /127\.0\.0\.1/, 'the client address');
      assert.match(t, /not known/, 'a refused link names nobody');
    }
    for (const secret of [token, forgedToken, nonce, ...sessionCookies.filter(Boolean)])
      assert.ok(!html.includes(secret), `the page does not hold ${secret.slice(0, 12)}…`);
  });

  test('sign-ins started from one address beyond login_rate_limit are refused and listed as failed sign-ins', async () => {
    const xff = { ...BROWSER_HEADERS, 'x-forwarded-for': FLOODER };
    /** One sign-in start from the flooding address: the app's redirect, then the sign-in URL. */
    const start = async (): Promise<Resp> => {
      const toSignIn = await request(`http://app.corp.test:${s.port}/dashboard`, { headers: xff });
      assert.equal(toSignIn.status, 302);
      return request(toSignIn.location!, { headers: xff });
    };
    for (let i = 0; i < LIMIT; i++) {
      const r = await start();
      assert.equal(r.status, 302, `start ${i + 1} of ${LIMIT} is let through`);
      assert.equal(new URL(r.location!).origin, new URL(s.idp.issuer).origin, 'to the IdP');
    }
    const refused = await start();
    assert.equal(refused.status, 429);
    assert.equal(refused.headers['retry-after'], '60');
    assert.match(refused.body, /Too many sign-ins were started from your address/);
    const lines = s.logs.filter((l) => l.event === 'login_rate_limited');
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.client, FLOODER);

    const { texts, html } = await signInRows();
    const limited = texts.filter((t) => t.includes('too_many_logins'));
    assert.equal(limited.length, 1, texts.join('\n'));
    assert.match(
      limited[0]!,
      /sign-in failed[\s\S]*\/\.portcullis\/sign_in[\s\S]*auth\.corp\.test[\s\S]*too_many_logins: too many sign-ins were started from this client address \(login_rate_limit\)[\s\S]*198\.51\.100\.23/,
    );
    assert.doesNotMatch(html, /return=/, 'no sealed return address from the sign-in URL');
  });
});

describe('the ring of recent denials and failures', () => {
  test('holds the last 500, newest first, and keeps only safe fields of a failed sign-in', () => {
    const r = new Recent();
    for (let i = 0; i < 600; i++)
      r.audited({
        event: 'login_failed',
        requestId: `req-${i}`,
        reason: i % 2 ? 'state_not_found' : '<script>x</script>',
        detail: `The identity provider answered "secret-${i}".`,
        host: 'app.corp.test',
        path: '/.portcullis/callback',
        client: '192.0.2.1',
        idpError: i % 3 ? 'access_denied' : 'madeup',
      });
    const rows = r.denials();
    assert.equal(rows.length, 500, 'bounded');
    assert.equal(rows[0]!.requestId, 'req-599');
    assert.equal(rows[499]!.requestId, 'req-100');
    const text = JSON.stringify(rows);
    assert.doesNotMatch(text, /secret-|script|madeup/);
    assert.equal(rows[0]!.code, 'state_not_found');
    assert.equal(rows[1]!.code, 'unknown', 'a reason that is not a known code is not shown');
    assert.doesNotMatch(rows.find((d) => d.requestId === 'req-597')!.reason, /\(/);
    assert.match(rows.find((d) => d.requestId === 'req-599')!.reason, /\(access_denied\)$/);
    // Events that are not failures leave the ring alone.
    r.audited({ event: 'login', requestId: 'ok', user: 'alice' });
    assert.equal(r.denials()[0]!.requestId, 'req-599');
  });
});

describe('refused hand-overs and rate limits in the ring', () => {
  test('each becomes a sign-in row with its code; a reason Portcullis did not write is not shown', () => {
    const r = new Recent();
    const base = { host: 'app.corp.test', path: '/.portcullis/x', client: '192.0.2.9' };
    r.audited({ event: 'login_rate_limited_global', requestId: 'g', ...base });
    r.audited({ event: 'handoff_rate_limited', requestId: 'h', ...base });
    r.audited({ event: 'handoff_refused', requestId: 'o', reason: 'other_browser', ...base });
    r.audited({ event: 'handoff_refused', requestId: 'x', reason: '<b>FORGED</b>', ...base });
    r.audited({ event: 'redirect_refused', requestId: 'not-a-sign-in', ...base });
    const rows = r.denials();
    assert.deepEqual(
      rows.map((d) => [d.requestId, d.kind, d.code]),
      [
        ['x', 'sign_in', 'invalid_handoff'],
        ['o', 'sign_in', 'invalid_handoff'],
        ['h', 'sign_in', 'too_many_handoffs'],
        ['g', 'sign_in', 'too_many_logins'],
      ],
    );
    assert.equal(rows[0]!.reason, 'the sign-in hand-over link was refused');
    assert.match(rows[1]!.reason, /did not start the sign-in \(other_browser\)$/);
    assert.match(rows[2]!.reason, /20 at once, then 20 a minute/);
    assert.match(rows[3]!.reason, /all clients together \(login_rate_limit_global\)$/);
    assert.equal(rows[3]!.clientIp, '192.0.2.9');
  });
});
