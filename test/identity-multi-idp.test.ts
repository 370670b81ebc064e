// Several IdPs in one deployment (issue 19, section 2): two real OpenID providers (panva's
// oidc-provider, demo/idp.ts), Portcullis configured with `idps:`, routes that accept both or
// one, the sign-in chooser driven from the keyboard in Chromium, sessions that remember their
// IdP (policy, refresh, sign-out), bearer tokens judged by their issuer, the IdP mix-up attack,
// and the configuration errors.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { DEMO_USERS, startIdp, type RunningIdp } from '../demo/idp.js';
import { startWhoami, type RunningWhoami } from '../demo/whoami.js';
import { ConfigError } from '../src/config/errors.js';
import { lintConfig } from '../src/config/lint.js';
import { parseConfig } from '../src/config/load.js';
import { RouteTable } from '../src/decide/route-table.js';
import { runProbe } from '../src/cli/probe.js';
import { runPolicyTests, simulate, SimulationError } from '../src/policy/simulate.js';
import { createLogger } from '../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../src/server.js';
import { launchBrowser } from './helpers/browser.js';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';

const API_AUDIENCE = 'https://api.multi.test';
const SVC = { id: 'svc', secret: 'svc-secret-0123456789' };
const HOSTS = [
  'app.multi.test',
  'corp.multi.test',
  'partner.multi.test',
  'staff.multi.test',
  'api.multi.test',
  'api-corp.multi.test',
];
// Partner users differ from corp's: the same person name at two IdPs is two identities.
const PARTNER_USERS = [
  {
    id: 'pat',
    password: 'pat',
    email: 'pat@partner.example',
    name: 'Pat Partner',
    groups: ['vendors'],
  },
];
// Partner access tokens live 4 s, so a partner session is refreshed within a test.
const PARTNER_TOKEN_TTL_S = 4;

interface World {
  corp: RunningIdp;
  partner: RunningIdp;
  upstream: RunningWhoami;
  proxy: RunningPortcullis;
  port: number;
  /** The second Portcullis: the same routes behind an authenticate service, sessions in memory. */
  second: RunningPortcullis;
  authPort: number;
  /** Its config file (reloads) and text. */
  secondFile: string;
  secondYaml: string;
  dir: string;
  yaml: string;
}

async function startWorld(): Promise<World> {
  const port = await freePort();
  const authPort = await freePort();
  const origins = [
    ...HOSTS.map((h) => `http://${h}:${port}`),
    `http://auth.multi.test:${authPort}`,
  ];
  const secrets = {
    corp: randomBytes(24).toString('base64url'),
    partner: randomBytes(24).toString('base64url'),
  };
  const client = (id: string, secret: string) => ({
    client_id: id,
    client_secret: secret,
    redirect_uris: origins.map((o) => `${o}/.portcullis/callback`),
    post_logout_redirect_uris: origins.map((o) => `${o}/.portcullis/signed_out`),
  });
  const svc = {
    client_id: SVC.id,
    client_secret: SVC.secret,
    redirect_uris: [],
    grant_types: ['client_credentials'],
  };
  const corp = await startIdp({
    clients: [client('portcullis-corp', secrets.corp), svc],
    jwtAccessTokenAudience: API_AUDIENCE,
  });
  const partner = await startIdp({
    clients: [client('portcullis-partner', secrets.partner), svc],
    users: PARTNER_USERS,
    jwtAccessTokenAudience: API_AUDIENCE,
    accessTokenTtl: PARTNER_TOKEN_TTL_S,
  });
  const upstream = await startWhoami({ name: 'upstream' });
  const yaml = `address: 127.0.0.1:${port}
insecure_server: true
cookie_secure: false
cookie_secret: ${randomBytes(32).toString('base64')}
log_level: silent
idp_introspection: true
idps:
  - id: corp
    name: Corp SSO
    idp_provider_url: ${corp.issuer}
    idp_client_id: portcullis-corp
    idp_client_secret: ${secrets.corp}
    idp_scopes: [openid, profile, email, groups, offline_access]
  - id: partner
    name: Partner Login
    idp_provider_url: ${partner.issuer}
    idp_client_id: portcullis-partner
    idp_client_secret: ${secrets.partner}
    idp_scopes: [openid, profile, email, groups, offline_access]
routes:
  - from: http://app.multi.test:${port}
    to: ${upstream.url}
    allow_any_authenticated_user: true
  - from: http://corp.multi.test:${port}
    to: ${upstream.url}
    idps: [corp]
    allow_any_authenticated_user: true
  - from: http://partner.multi.test:${port}
    to: ${upstream.url}
    idps: partner
    allow_any_authenticated_user: true
  - from: http://staff.multi.test:${port}
    to: ${upstream.url}
    policy:
      - allow:
          and:
            - idp: { is: corp }
  - from: http://api.multi.test:${port}
    to: ${upstream.url}
    allow_bearer_tokens: true
    bearer_audiences: [${API_AUDIENCE}]
    allow_any_authenticated_user: true
  - from: http://api-corp.multi.test:${port}
    to: ${upstream.url}
    idps: [corp]
    allow_bearer_tokens: true
    bearer_audiences: [${API_AUDIENCE}]
    allow_any_authenticated_user: true
`;
  const proxy = await startPortcullis(parseConfig(yaml, 'multi.yaml'), {
    logger: createLogger('silent'),
    listen: { host: '127.0.0.1', port },
  });
  // Both discovered before the first request, as a running deployment would be.
  await Promise.all(proxy.state.runtime.identities.all().map((p) => p.idp.start()));
  // Started now, while its port is still free (it is registered at both IdPs): the same routes
  // behind an authenticate service, with sessions in memory, read from a file for reloads.
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-idps-'));
  const secondFile = join(dir, 'second.yaml');
  const secondYaml = `${yaml
    .replace(`address: 127.0.0.1:${port}`, `address: 127.0.0.1:${authPort}`)
    .replaceAll(`.multi.test:${port}`, `.multi.test:${authPort}`)}
authenticate_service_url: http://auth.multi.test:${authPort}
session_storage: memory
`;
  writeFileSync(secondFile, secondYaml);
  const second = await startPortcullis(parseConfig(secondYaml, secondFile), {
    logger: createLogger('silent'),
    listen: { host: '127.0.0.1', port: authPort },
    configFile: secondFile,
  });
  await Promise.all(second.state.runtime.identities.all().map((p) => p.idp.start()));
  return {
    corp,
    partner,
    upstream,
    proxy,
    port,
    second,
    authPort,
    secondFile,
    secondYaml,
    dir,
    yaml,
  };
}

const browserGet = (url: string, jar: CookieJar): Promise<Resp> =>
  request(url, { jar, headers: BROWSER_HEADERS });

/** The sign-in link the chooser page offers for an IdP. */
function chooserLink(page: Resp, pageUrl: string, id: string): string {
  const m = new RegExp(`<a class="button" id="idp-${id}" href="([^"]+)"`).exec(page.body);
  assert.ok(m, `the chooser offers ${id}:\n${page.body}`);
  return new URL(m[1]!.replaceAll('&amp;', '&'), pageUrl).href;
}

/** Opens `url` in a fresh browser-like jar and signs in at `idp` (through the chooser when one is shown). */
async function signIn(url: string, idp: 'corp' | 'partner', user: string): Promise<CookieJar> {
  const jar = new CookieJar();
  let { final, chain } = await loginThroughIdp(url, { jar, username: user, password: user });
  if (final.status === 200 && final.body.includes('id="idp-')) {
    const link = chooserLink(final, chain.at(-1)!, idp);
    ({ final, chain } = await loginThroughIdp(link, { jar, username: user, password: user }));
  }
  assert.equal(final.status, 200, `signed in and back at the app: ${chain.join(' -> ')}`);
  assert.equal(chain.at(-1), url);
  return jar;
}

async function userinfo(host: string, port: number, jar: CookieJar): Promise<Resp> {
  return request(`http://${host}:${port}/.portcullis/userinfo`, { jar });
}

async function clientCredentials(issuer: string): Promise<string> {
  const discovery = (await request(`${issuer}/.well-known/openid-configuration`)).json();
  const r = await request(discovery.token_endpoint as string, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${SVC.id}:${SVC.secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: 'grant_type=client_credentials',
  });
  const token = r.json().access_token as string | undefined;
  assert.ok(token, `client_credentials at ${issuer}: ${r.body}`);
  return token;
}

describe('several IdPs in one deployment', () => {
  let w: World;
  let browser: Browser;
  before(async () => {
    w = await startWorld();
    browser = await launchBrowser(HOSTS);
  });
  after(async () => {
    await browser?.close();
    await Promise.allSettled([
      w?.proxy.close(),
      w?.second.close(),
      w?.corp.close(),
      w?.partner.close(),
    ]);
    await w?.upstream.close();
    if (w) rmSync(w.dir, { recursive: true, force: true });
  });

  test('a route that accepts both shows the chooser; Tab and Enter pick an IdP and sign in there', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const app = `http://app.multi.test:${w.port}/reports?q=1`;
    await page.goto(app);
    assert.equal(await page.title(), 'Sign in');
    const links = await page.locator('ul.idps a').allTextContents();
    assert.deepEqual(links, ['Sign in with Corp SSO', 'Sign in with Partner Login']);
    // Keyboard only: the first Tab reaches the first IdP, the second the next one.
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'idp-corp');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'idp-partner');
    // The focused choice is visibly marked (a focus outline, not only the browser's default).
    const outline = await page.evaluate(
      () => getComputedStyle(document.activeElement as Element).outlineStyle,
    );
    assert.equal(outline, 'solid');
    await page.keyboard.press('Enter');
    await page.waitForURL((u) => u.origin === new URL(w.partner.issuer).origin);
    await page.fill('#username', 'pat');
    await page.fill('#password', 'pat');
    await page.keyboard.press('Enter');
    await page.waitForURL(app);
    const me = await page.goto(`http://app.multi.test:${w.port}/.portcullis/userinfo`);
    const info = (await me!.json()) as Record<string, unknown>;
    assert.equal(info.email, 'pat@partner.example');
    assert.equal(info.idp, 'partner');
    await ctx.close();
  });

  test('a route limited to one IdP sends the browser straight there, without the chooser', async () => {
    const jar = new CookieJar();
    const r = await browserGet(`http://corp.multi.test:${w.port}/`, jar);
    assert.equal(r.status, 302);
    assert.equal(new URL(r.location!).origin, new URL(w.corp.issuer).origin);
    assert.equal(new URL(r.location!).searchParams.get('client_id'), 'portcullis-corp');
    const p = await browserGet(`http://partner.multi.test:${w.port}/`, new CookieJar());
    assert.equal(p.status, 302);
    assert.equal(new URL(p.location!).searchParams.get('client_id'), 'portcullis-partner');
  });

  test('sign_in?idp= naming an IdP the route does not accept is refused with a clear page', async () => {
    const jar = new CookieJar();
    const rd = encodeURIComponent(`http://corp.multi.test:${w.port}/`);
    for (const idp of ['partner', 'nobody', '..%2Fcorp']) {
      const r = await browserGet(
        `http://corp.multi.test:${w.port}/.portcullis/sign_in?rd=${rd}&idp=${idp}`,
        jar,
      );
      assert.equal(r.status, 400, idp);
      assert.match(r.body, /Unknown identity provider/);
      assert.match(r.body, /It accepts: Corp SSO\./);
    }
  });

  test('a session from an IdP the route does not accept is sent to sign in with one it does', async () => {
    const jar = await signIn(`http://app.multi.test:${w.port}/`, 'partner', 'pat');
    // The same cookie on the corp-only route: treated as no session there.
    const cookie = jar.header(new URL(`http://app.multi.test:${w.port}/`));
    const r = await request(`http://corp.multi.test:${w.port}/`, {
      headers: { ...BROWSER_HEADERS, cookie },
    });
    assert.equal(r.status, 302);
    assert.equal(new URL(r.location!).searchParams.get('client_id'), 'portcullis-corp');
    const api = await request(`http://corp.multi.test:${w.port}/`, {
      headers: { cookie, accept: 'application/json' },
    });
    assert.equal(api.status, 401);
  });

  test("a policy tests the session's IdP (idp: {is: corp})", async () => {
    const staff = `http://staff.multi.test:${w.port}/`;
    const corpJar = await signIn(staff, 'corp', 'alice');
    const ok = await browserGet(`${staff}?format=json`, corpJar);
    assert.equal(ok.status, 200);
    // The upstream's assertion names the IdP: the same sub at two IdPs is two people.
    const jwt = String(ok.json().headers['x-portcullis-jwt-assertion']);
    const claims = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString());
    assert.equal(claims.idp, 'corp');
    assert.equal(claims.sub, 'alice');
    const partnerJar = new CookieJar();
    const first = await browserGet(staff, partnerJar);
    const { final } = await loginThroughIdp(chooserLink(first, staff, 'partner'), {
      jar: partnerJar,
      username: 'pat',
      password: 'pat',
    });
    assert.equal(final.status, 403);
    assert.match(final.body, /needs identity provider corp; you signed in with partner/);
  });

  test('a session is refreshed at its own IdP, and its new groups apply', async () => {
    const app = `http://partner.multi.test:${w.port}/`;
    const jar = await signIn(app, 'partner', 'pat');
    const before = (await userinfo('partner.multi.test', w.port, jar)).json();
    assert.deepEqual(before.groups, ['vendors']);
    const corpTokens = w.corp.requestCount('/token');
    const partnerTokens = w.partner.requestCount('/token');
    w.partner.setGroups('pat', ['vendors', 'auditors']);
    // The partner access token lives 4 s: a request after it is due refreshes the session.
    const until = Date.now() + 30_000;
    let groups: unknown = before.groups;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 500));
      const info = await userinfo('partner.multi.test', w.port, jar);
      assert.equal(info.status, 200, info.body);
      groups = info.json().groups;
      if (Array.isArray(groups) && groups.includes('auditors')) break;
    }
    assert.deepEqual(groups, ['vendors', 'auditors']);
    assert.ok(w.partner.requestCount('/token') > partnerTokens, 'refreshed at the partner IdP');
    assert.equal(w.corp.requestCount('/token'), corpTokens, 'the corp IdP was never asked');
  });

  test('sign-out goes to the end-session endpoint of the IdP the session came from', async () => {
    for (const [idp, user, issuer, clientId] of [
      ['partner', 'pat', w.partner.issuer, 'portcullis-partner'],
      ['corp', 'alice', w.corp.issuer, 'portcullis-corp'],
    ] as const) {
      const app = `http://app.multi.test:${w.port}/`;
      const jar = await signIn(app, idp, user);
      const r = await browserGet(`http://app.multi.test:${w.port}/.portcullis/sign_out`, jar);
      assert.equal(r.status, 302);
      const to = new URL(r.location!);
      assert.equal(to.origin, new URL(issuer).origin, idp);
      assert.equal(to.searchParams.get('client_id'), clientId);
      assert.equal(
        to.searchParams.get('post_logout_redirect_uri'),
        `http://app.multi.test:${w.port}/.portcullis/signed_out`,
      );
      assert.equal((await userinfo('app.multi.test', w.port, jar)).status, 401, 'ended here');
    }
  });

  test('with an authenticate service, sign-out on an app host still ends at the session’s IdP', async () => {
    const authOrigin = `http://auth.multi.test:${w.authPort}`;
    // Sessions in memory: the app host's sign-out ends the session before the authenticate
    // host can read which IdP it came from.
    const app = `http://app.multi.test:${w.authPort}/`;
    const jar = await signIn(app, 'partner', 'pat');
    const first = await browserGet(`http://app.multi.test:${w.authPort}/.portcullis/sign_out`, jar);
    assert.equal(first.status, 302);
    const atAuth = new URL(first.location!);
    assert.equal(atAuth.origin, authOrigin);
    assert.equal(atAuth.searchParams.get('idp'), 'partner');
    const last = await browserGet(atAuth.href, jar);
    assert.equal(last.status, 302);
    const to = new URL(last.location!);
    assert.equal(to.origin, new URL(w.partner.issuer).origin);
    assert.equal(to.searchParams.get('client_id'), 'portcullis-partner');
    assert.equal(
      to.searchParams.get('post_logout_redirect_uri'),
      `${authOrigin}/.portcullis/signed_out`,
    );
  });

  test('a reload that removes an IdP ends its sessions and keeps the other IdP as it was', async () => {
    const proxy = w.second;
    const { secondFile: file, secondYaml: yaml } = w;
    const corpIdp = proxy.state.runtime.identities.get('corp')!.idp;
    const jar = await signIn(`http://app.multi.test:${w.authPort}/`, 'partner', 'pat');
    assert.equal((await userinfo('app.multi.test', w.authPort, jar)).json().idp, 'partner');
    try {
      // The partner IdP leaves the config (its route now accepts corp only).
      const partnerBlock = /\n {2}- id: partner\n(?: {4}.*\n)+/;
      assert.match(yaml, partnerBlock);
      writeFileSync(
        file,
        yaml.replace(partnerBlock, '\n').replace('idps: partner', 'idps: [corp]'),
      );
      const r = await proxy.reload('test');
      assert.deepEqual(r.errors, []);
      assert.equal(r.ok, true);
      assert.deepEqual(
        proxy.state.runtime.identities.all().map((p) => p.id),
        ['corp'],
      );
      assert.equal(proxy.state.runtime.identities.get('corp')!.idp, corpIdp, 'corp kept');
      const after = await userinfo('app.multi.test', w.authPort, jar);
      assert.equal(after.status, 401, 'a session from a removed IdP is no session');
      // Back again, then a reload that changes something else keeps its discovery as it is.
      writeFileSync(file, yaml);
      assert.equal((await proxy.reload('test')).ok, true);
      const partnerIdp = proxy.state.runtime.identities.get('partner')!.idp;
      await partnerIdp.start();
      writeFileSync(file, yaml.replace('log_level: silent', 'log_level: error'));
      assert.equal((await proxy.reload('test')).ok, true);
      assert.equal(proxy.state.runtime.identities.get('partner')!.idp, partnerIdp, 'kept');
      await signIn(`http://partner.multi.test:${w.authPort}/`, 'partner', 'pat');
    } finally {
      writeFileSync(file, yaml);
      await proxy.reload('test');
    }
  });

  test('probe checks every IdP and names the one that fails', async () => {
    const cfg = w.proxy.state.runtime.cfg;
    const redirectUri = `http://app.multi.test:${w.port}/.portcullis/callback`;
    const checks = await runProbe(cfg, { timeoutMs: 10_000, redirectUri });
    const idpChecks = checks.filter((c) => c.check.startsWith('idp_'));
    assert.deepEqual(
      idpChecks.map((c) => [c.check, c.status]),
      [
        ['idp_discovery', 'ok'],
        ['idp_jwks', 'ok'],
        ['idp_client', 'ok'],
        ['idp_discovery:partner', 'ok'],
        ['idp_jwks:partner', 'ok'],
        ['idp_client:partner', 'ok'],
      ],
    );
    // A wrong secret for the partner client: only the partner check fails, and says why.
    const broken = {
      ...cfg,
      idps: cfg.idps.map((i) => (i.id === 'partner' ? { ...i, clientSecret: 'wrong' } : i)),
    };
    const again = await runProbe(broken, { timeoutMs: 10_000, redirectUri });
    const byName = new Map(again.map((c) => [c.check, c]));
    assert.equal(byName.get('idp_client')?.status, 'ok');
    assert.equal(byName.get('idp_client:partner')?.status, 'fail');
    assert.match(byName.get('idp_client:partner')!.detail, /invalid_client/);
  });

  test('a bearer token is judged by the IdP that issued it, and only where that IdP is accepted', async () => {
    const fromCorp = await clientCredentials(w.corp.issuer);
    const fromPartner = await clientCredentials(w.partner.issuer);
    const api = `http://api.multi.test:${w.port}/data`;
    const apiCorp = `http://api-corp.multi.test:${w.port}/data`;
    const call = (url: string, token: string) =>
      request(url, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
    assert.equal((await call(api, fromCorp)).status, 200);
    assert.equal((await call(api, fromPartner)).status, 200);
    assert.equal((await call(apiCorp, fromCorp)).status, 200);
    const corpKeys = w.corp.requestCount('/jwks');
    const refused = await call(apiCorp, fromPartner);
    assert.equal(refused.status, 401);
    assert.match(
      String(refused.headers['www-authenticate']),
      /identity provider partner, which this route does not accept/,
    );
    assert.equal(w.corp.requestCount('/jwks'), corpKeys, "never tried against corp's keys");
    // A token naming the corp issuer but signed by the partner IdP: checked with corp's keys
    // (its iss says corp), where its key is unknown.
    const [, payload] = fromPartner.split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString());
    const forged = [
      fromPartner.split('.')[0],
      Buffer.from(JSON.stringify({ ...claims, iss: w.corp.issuer })).toString('base64url'),
      fromPartner.split('.')[2],
    ].join('.');
    const f = await call(apiCorp, forged);
    assert.equal(f.status, 401);
    assert.match(String(f.headers['www-authenticate']), /unknown key|signature is invalid/);
    const unknown = [
      fromPartner.split('.')[0],
      Buffer.from(JSON.stringify({ ...claims, iss: 'https://idp.evil.test' })).toString(
        'base64url',
      ),
      fromPartner.split('.')[2],
    ].join('.');
    const u = await call(api, unknown);
    assert.equal(u.status, 401);
    assert.match(String(u.headers['www-authenticate']), /not by a configured identity provider/);
  });

  test('an opaque token is introspected only where one IdP is accepted, and only at that IdP', async () => {
    const opaque = randomBytes(32).toString('base64url');
    const call = (host: string) =>
      request(`http://${host}:${w.port}/data`, {
        headers: { authorization: `Bearer ${opaque}`, accept: 'application/json' },
      });
    const corpCalls = w.corp.requestCount('/token/introspection');
    const partnerCalls = w.partner.requestCount('/token/introspection');
    const both = await call('api.multi.test');
    assert.equal(both.status, 401);
    assert.match(
      String(both.headers['www-authenticate']),
      /names no issuer, and this route accepts several identity providers/,
    );
    assert.equal(w.corp.requestCount('/token/introspection'), corpCalls);
    const corpOnly = await call('api-corp.multi.test');
    assert.equal(corpOnly.status, 401);
    assert.match(String(corpOnly.headers['www-authenticate']), /the token is not active/);
    assert.equal(w.corp.requestCount('/token/introspection'), corpCalls + 1, 'asked corp once');
    assert.equal(
      w.partner.requestCount('/token/introspection'),
      partnerCalls,
      'never shown to the partner IdP',
    );
  });

  test('IdP mix-up: a code from one IdP is never exchanged at the other', async () => {
    const app = `http://app.multi.test:${w.port}/mixup`;
    // The victim's browser starts a sign-in with the partner IdP (state bound to partner).
    const victim = new CookieJar();
    const startPartner = async (): Promise<string> => {
      const chooser = await browserGet(app, victim);
      const r = await browserGet(chooserLink(chooser, app, 'partner'), victim);
      assert.equal(r.status, 302);
      assert.equal(new URL(r.location!).searchParams.get('client_id'), 'portcullis-partner');
      return new URL(r.location!).searchParams.get('state')!;
    };
    // A genuine corp code for this Portcullis (the attacker's own corp sign-in), not yet used:
    // its callback is made from another browser, which never started that sign-in.
    const attacker = new CookieJar();
    const chooser = await browserGet(app, attacker);
    const corpStart = await browserGet(chooserLink(chooser, app, 'corp'), attacker);
    const { chain } = await loginThroughIdp(corpStart.location!, {
      jar: new CookieJar(),
      username: 'bob',
      password: 'bob',
    });
    const corpCallback = new URL(chain.at(-1)!);
    assert.equal(corpCallback.pathname, '/.portcullis/callback');
    const code = corpCallback.searchParams.get('code')!;
    assert.equal(corpCallback.searchParams.get('iss'), w.corp.issuer);
    const corpTokens = w.corp.requestCount('/token');
    const partnerTokens = w.partner.requestCount('/token');

    // 1. The code with the corp `iss` (RFC 9207) but the partner sign-in's state.
    const state1 = await startPartner();
    const withIss = await browserGet(
      `http://app.multi.test:${w.port}/.portcullis/callback?code=${code}&state=${state1}&iss=${encodeURIComponent(w.corp.issuer)}`,
      victim,
    );
    assert.equal(withIss.status, 400);
    assert.match(withIss.body, /came from another identity provider/);
    // 2. The same code with the `iss` stripped: the partner IdP, which started it, is asked.
    const state2 = await startPartner();
    const noIss = await browserGet(
      `http://app.multi.test:${w.port}/.portcullis/callback?code=${code}&state=${state2}`,
      victim,
    );
    assert.equal(noIss.status, 400);
    assert.match(noIss.body, /Sign-in could not be completed/);
    assert.equal(w.corp.requestCount('/token'), corpTokens, 'the corp code never went to corp');
    assert.equal((await userinfo('app.multi.test', w.port, victim)).status, 401, 'no session');
    assert.ok(w.partner.requestCount('/token') <= partnerTokens + 1);

    // Control: the very same code, in the browser that started the corp sign-in, works.
    const own = await browserGet(corpCallback.href, attacker);
    assert.equal(own.status, 302, own.body);
    assert.equal(own.location, app);
    const info = (await userinfo('app.multi.test', w.port, attacker)).json();
    assert.equal(info.email, DEMO_USERS.find((u) => u.id === 'bob')!.email);
    assert.equal(info.idp, 'corp');
  });
});

describe('several IdPs: configuration errors name the key and the line', () => {
  const HEAD = [
    'address: 127.0.0.1:8080', // 1
    'insecure_server: true', // 2
    `cookie_secret: ${Buffer.alloc(32, 7).toString('base64')}`, // 3
  ];
  const idp = (id: string, issuer: string): string[] => [
    `  - id: ${id}`,
    `    idp_provider_url: ${issuer}`,
    `    idp_client_id: portcullis`,
    `    idp_client_secret: s3cret-s3cret-s3cret`,
  ];
  const TENANT_A = '72f988bf-86f1-41af-91ab-2d7cd011db47';
  const TENANT_B = '0b2f6d4e-5a1c-4f3e-9d8b-7c6a5e4d3c2b';
  /** An Entra entry: idp() and two lines more (its `- id` line, then the issuer on the next). */
  const azure = (id: string, issuer: string): string[] => [
    ...idp(id, issuer),
    '    idp_provider: azure',
    `    idp_allowed_tenants: [${TENANT_A}]`,
  ];
  /** HEAD, then an `idps:` list of these entries (the first entry's `- id` is line 5). */
  const idps = (...entries: string[][]): string[] => [...HEAD, 'idps:', ...entries.flat()];
  /** One route whose policy lets in only users of the IdP `is`. */
  const onlyIdpRoute = (is: string): string[] => [
    'routes:',
    '  - from: https://app.example.com',
    '    to: http://127.0.0.1:3000',
    '    policy:',
    '      - allow:',
    '          and:',
    `            - idp: { is: ${is} }`,
  ];
  const route = (...extra: string[]): string[] => [
    'routes:',
    '  - from: https://app.example.com',
    '    to: http://127.0.0.1:3000',
    '    allow_any_authenticated_user: true',
    ...extra,
  ];
  function configError(lines: string[]): ConfigError {
    try {
      parseConfig(lines.join('\n'), 'multi.yaml', {});
    } catch (e) {
      if (e instanceof ConfigError) return e;
      throw e;
    }
    return assert.fail('expected a ConfigError');
  }
  function one(lines: string[], key: string, line: number, message: RegExp): void {
    const e = configError(lines);
    assert.equal(e.issues.length, 1, e.message);
    const i = e.issues[0]!;
    assert.equal(i.key, key, e.message);
    assert.equal(i.line, line, e.message);
    assert.match(i.message, message);
    assert.ok(e.message.startsWith(`multi.yaml:${line}:`), e.message);
  }

  test('a valid list loads, the first IdP is the default, every route accepts all by default', () => {
    const cfg = parseConfig(
      [
        ...HEAD,
        'idps:',
        ...idp('corp', 'https://corp.example.com'),
        '    name: Corp SSO',
        ...idp('github', 'https://github.com'),
        '    idp_provider: github',
        ...route(),
        '  - from: https://ops.example.com',
        '    to: http://127.0.0.1:3001',
        '    idps: [github]',
        '    allow_any_authenticated_user: true',
      ].join('\n'),
      'multi.yaml',
      {},
    );
    assert.deepEqual(
      cfg.idps.map((i) => [i.id, i.name, i.provider]),
      [
        ['corp', 'Corp SSO', 'oidc'],
        ['github', 'github', 'github'],
      ],
    );
    assert.equal(cfg.idp.id, 'corp');
    assert.deepEqual(
      cfg.routes.map((r) => r.idps),
      [['corp', 'github'], ['github']],
    );
  });

  test('top-level idp_* keys stay the IdP `default` beside the list', () => {
    const cfg = parseConfig(
      [
        ...HEAD,
        'idp_provider_url: https://idp.example.com',
        'idp_client_id: portcullis',
        'idp_client_secret: s3cret',
        'idps:',
        ...idp('corp', 'https://corp.example.com'),
        ...route('    idps: [default]'),
      ].join('\n'),
      'multi.yaml',
      {},
    );
    assert.deepEqual(
      cfg.idps.map((i) => i.id),
      ['default', 'corp'],
    );
    assert.deepEqual(cfg.routes[0]!.idps, ['default']);
  });

  // Each: the YAML, then the key, the line and the message its one error must name.
  const ONE_ISSUE: Array<[name: string, lines: string[], key: string, line: number, msg: RegExp]> =
    [
      [
        'a duplicate IdP id',
        [
          ...idps(idp('corp', 'https://a.example.com'), idp('corp', 'https://b.example.com')),
          ...route(),
        ],
        'idps[1].id',
        9,
        /duplicate IdP id "corp": idps\[0\] has it already/,
      ],
      [
        'the id `default` beside top-level idp_* keys',
        [
          ...HEAD,
          'idp_provider_url: https://idp.example.com', // 4
          'idp_client_id: portcullis',
          'idp_client_secret: s3cret',
          'idps:',
          ...idp('default', 'https://b.example.com'), // 8
          ...route(),
        ],
        'idps[0].id',
        8,
        /names the IdP of the top-level idp_\* keys/,
      ],
      [
        'two IdPs with one issuer',
        [
          ...idps(idp('a', 'https://same.example.com'), idp('b', 'https://same.example.com/')),
          ...route(),
        ],
        'idps[1].idp_provider_url',
        10,
        /the IdP "a" has this issuer already/,
      ],
      // Entra's /common/v2.0 and /organizations/v2.0 both publish the issuer
      // https://login.microsoftonline.com/{tenantid}/v2.0 (the openid-configuration table of
      // https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc), and an
      // access token's aud is the API's, not the client's
      // (https://learn.microsoft.com/en-us/entra/identity-platform/access-tokens#payload-claims):
      // nothing in a token says which of two such IdPs it is for.
      [
        'two Entra IdPs on shared authorities (/organizations, /common): one template issuer',
        [
          ...idps(
            azure('contoso', 'https://login.microsoftonline.com/organizations/v2.0'), // 5
            azure('fabrikam', 'https://login.microsoftonline.com/common/v2.0'), // 11
          ),
          ...route(),
        ],
        'idps[1].idp_provider_url',
        12,
        /^the Entra IdPs "contoso" \(idps\[0\]\.idp_provider_url, line 6\) and "fabrikam" both use a shared multi-tenant authority, whose tokens all carry the issuer https:\/\/login\.microsoftonline\.com\/\{tenantid\}\/v2\.0: .*every token would go to "contoso"\. Use one IdP with idp_allowed_tenants listing every tenant, or give each its tenant's own authority \(https:\/\/login\.microsoftonline\.com\/<tenant id>\/v2\.0\)$/,
      ],
      [
        'the top-level Entra IdP and an entry on one shared authority',
        [
          ...HEAD,
          'idp_provider: azure', // 4
          'idp_provider_url: https://login.microsoftonline.com/common/v2.0', // 5
          'idp_client_id: portcullis',
          'idp_client_secret: s3cret-s3cret-s3cret',
          `idp_allowed_tenants: [${TENANT_A}]`,
          'idps:', // 9
          ...azure('partner', 'https://LOGIN.microsoftonline.com/Common/v2.0/'), // 10
          ...route(),
        ],
        'idps[0].idp_provider_url',
        11,
        /^the Entra IdPs "default" \(idp_provider_url, line 5\) and "partner" both use a shared/,
      ],
      [
        'an id that cannot name an IdP',
        [...idps(idp('Corp SSO', 'https://a.example.com')), ...route()],
        'idps[0].id',
        5,
        /expected the IdP `id` as 1-32 lower-case letters/,
      ],
      [
        'a route naming an unknown IdP',
        [...idps(idp('corp', 'https://a.example.com')), ...route('    idps: [corp, gihtub]')],
        'routes[0].idps[1]',
        13,
        /unknown IdP "gihtub"; expected one of corp/,
      ],
      [
        'a route with an empty list of IdPs',
        [...idps(idp('corp', 'https://a.example.com')), ...route('    idps: []')],
        'routes[0].idps',
        13,
        /expected at least one IdP id/,
      ],
    ];
  for (const [name, lines, key, line, msg] of ONE_ISSUE)
    test(name, () => one(lines, key, line, msg));

  test('Entra IdPs whose tokens carry different issuers load: a tenant beside a shared authority, two clouds, consumers', () => {
    const cfg = parseConfig(
      [
        ...idps(
          azure('orgs', 'https://login.microsoftonline.com/organizations/v2.0'),
          // A tenant's own authority issues https://login.microsoftonline.com/<tenant>/v2.0: an
          // exact issuer, chosen before any template (identity/registry.ts forIssuer).
          azure('partner', `https://login.microsoftonline.com/${TENANT_B}/v2.0`),
          azure('gov', 'https://login.microsoftonline.us/organizations/v2.0'),
          azure('msa', 'https://login.microsoftonline.com/consumers/v2.0'),
          // Not azure, so no template: its issuer is its own.
          idp('corp', 'https://corp.example.com'),
        ),
        ...route(),
      ].join('\n'),
      'multi.yaml',
      {},
    );
    assert.deepEqual(
      cfg.idps.map((i) => i.id),
      ['orgs', 'partner', 'gov', 'msa', 'corp'],
    );
  });

  test('a policy naming an unknown IdP', () => {
    const e = configError([...idps(idp('corp', 'https://a.example.com')), ...onlyIdpRoute('crop')]);
    assert.equal(e.issues.length, 1, e.message);
    assert.match(e.issues[0]!.message, /unknown identity provider "crop"; expected one of corp/);
    assert.equal(e.issues[0]!.line, 15, e.message);
  });

  test('an entry missing its client id, and an unknown key in an entry', () => {
    const e = configError([
      ...HEAD,
      'idps:',
      '  - id: corp', // 5
      '    idp_provider_url: https://a.example.com',
      '    idp_client_secret: s3cret',
      '    idp_scope: [openid]', // 8
      ...route(),
    ]);
    const byKey = new Map(e.issues.map((i) => [i.key, i]));
    assert.equal(byKey.get('idps[0].idp_scope')?.line, 8, e.message);
    assert.match(byKey.get('idps[0].idp_scope')!.message, /did you mean `idp_scopes`/);
    assert.match(byKey.get('idps[0].idp_client_id')?.message ?? '', /^is required/, e.message);
  });

  test('policy_tests and explain simulate a user of a given IdP', async () => {
    const cfg = parseConfig(
      [
        ...idps(
          idp('corp', 'https://corp.example.com'),
          idp('partner', 'https://partner.example.com'),
        ),
        ...onlyIdpRoute('corp'),
        'policy_tests:',
        '  - name: corp staff get in',
        '    request: { url: https://app.example.com/, email: a@corp.example, idp: corp }',
        '    expect: allow',
        '  - name: a partner user does not',
        '    request: { url: https://app.example.com/, email: p@partner.example, idp: partner }',
        '    expect: deny',
      ].join('\n'),
      'multi.yaml',
      {},
    );
    const routes = new RouteTable(cfg.routes);
    assert.deepEqual(await runPolicyTests(cfg, routes), []);
    const d = await simulate(cfg, routes, { url: 'https://app.example.com/', idp: 'partner' });
    assert.equal(d.kind, 'deny');
    await assert.rejects(
      simulate(cfg, routes, { url: 'https://app.example.com/', idp: 'nobody' }),
      (e: unknown) =>
        e instanceof SimulationError &&
        /unknown identity provider "nobody"; expected one of corp, partner/.test(e.message),
    );
  });

  test('`check` asks for the callback at each IdP; `explain --idp` judges a user of that IdP', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-idps-'));
    const file = join(dir, 'multi.yaml');
    writeFileSync(
      file,
      [
        ...idps(
          idp('corp', 'https://corp.example.com'),
          idp('partner', 'https://partner.example.com'),
        ),
        ...onlyIdpRoute('corp'),
      ].join('\n'),
    );
    const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
    const cli = (...args: string[]) =>
      new Promise<{ code: number; out: string }>((resolve) => {
        execFile(process.execPath, [main, ...args], { timeout: 30_000 }, (e, stdout, stderr) =>
          resolve({ code: e ? Number(e.code ?? 1) : 0, out: `${stdout}${stderr}` }),
        );
      });
    try {
      const check = await cli('check', '--config', file);
      assert.match(check.out, /Register these at each identity provider \(corp, partner\)/);
      assert.match(check.out, /redirect URI: +https:\/\/app\.example\.com\/\.portcullis\/callback/);
      const url = 'https://app.example.com/';
      const corp = await cli(
        'explain',
        '--config',
        file,
        '--url',
        url,
        '--email',
        'a@x',
        '--idp',
        'corp',
      );
      assert.equal(corp.code, 0, corp.out);
      assert.match(corp.out, /^ALLOW/);
      const partner = await cli(
        'explain',
        '--config',
        file,
        '--url',
        url,
        '--email',
        'p@x',
        '--idp',
        'partner',
      );
      assert.equal(partner.code, 1, partner.out);
      assert.match(partner.out, /needs identity provider corp; you signed in with partner/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('check warns about a group rule on a route accepting an IdP not asked for groups', () => {
    const text = [
      ...HEAD,
      'idps:',
      ...idp('corp', 'https://corp.example.com'),
      '    idp_scopes: [openid, email, groups]',
      ...idp('partner', 'https://partner.example.com'),
      '    idp_scopes: [openid, email]',
      'routes:',
      '  - from: https://both.example.com', // 16
      '    to: http://127.0.0.1:3000',
      '    allowed_groups: [admins]', // 18
      '  - from: https://corp.example.com',
      '    to: http://127.0.0.1:3000',
      '    idps: [corp]',
      '    allowed_groups: [admins]',
    ].join('\n');
    const issues = lintConfig(parseConfig(text, 'multi.yaml', {}), text).filter((i) =>
      /decides by group/.test(i.message),
    );
    assert.equal(issues.length, 1, JSON.stringify(issues));
    assert.equal(issues[0]!.key, 'routes[0].allowed_groups');
    assert.equal(issues[0]!.line, 18);
    assert.match(issues[0]!.message, /idps partner \(openid email\)/);
  });

  test('no IdP at all', () => {
    const e = configError([...HEAD, 'idp_client_secret: s3cret', ...route()]);
    const keys = e.issues.map((i) => i.key).sort();
    assert.deepEqual(keys, ['idp_client_id', 'idp_provider_url'], e.message);
    for (const i of e.issues) assert.match(i.message, /^is required/);
  });
});
