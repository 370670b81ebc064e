// Contract tests of the forward-auth endpoints, with requests shaped exactly as each proxy sends
// them (docs/recipes/contracts.md). Traefik and Envoy cannot be installed here, so their
// requests are built from their documentation and source; nginx and Caddy run for real in
// forward-auth-proxies.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startStack, type Stack } from './helpers/stack.js';

const ROUTES = `routes:
  - from: http://app.corp.test:\${PORT}
    prefix: /public/
    allow_public_unauthenticated_access: true
  - from: http://app.corp.test:\${PORT}
    prefix: /files/
    allow_ambiguous_paths: true
    allow_any_authenticated_user: true
  - from: http://app.corp.test:\${PORT}
    prefix: /admin
    allowed_groups: [admins]
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
  - from: http://solo.corp.test:\${PORT}
    allow_any_authenticated_user: true
`;

const SPOOF: Record<string, string> = {
  'X-Forwarded-Email': 'mallory@evil.test',
  'X-Forwarded-User': 'mallory',
  'X-Forwarded-Groups': 'admins',
  X_Forwarded_Email: 'mallory@evil.test',
  'Remote-User': 'mallory',
  'Remote-Groups': 'admins',
  'X-authentik-username': 'mallory',
  'X-Auth-Request-User': 'mallory',
};

/** No header of the answer carries a value the client made up. */
function noSpoofEcho(r: Resp): void {
  for (const [k, v] of Object.entries(r.headers)) {
    assert.ok(!String(v).includes('mallory'), `answer header ${k}: ${String(v)} echoes the client`);
  }
  assert.equal(r.headers['x_forwarded_email'], undefined);
}

describe('forward-auth contracts (trusted proxy on loopback)', () => {
  let s: Stack;
  let app: string;
  let fa: string;
  let alice: string;
  let bob: string;
  before(async () => {
    s = await startStack({
      hosts: ['app.corp.test', 'solo.corp.test'],
      body: `compat: [oauth2-proxy, authentik, authelia]\n${ROUTES}`,
    });
    app = `http://app.corp.test:${s.port}`;
    fa = `http://127.0.0.1:${s.port}`;
    const a = new CookieJar();
    assert.equal(
      (await loginThroughIdp(`${app}/`, { jar: a, username: 'alice', password: 'alice' })).final
        .status,
      200,
    );
    alice = a.header(new URL(app));
    const b = new CookieJar();
    assert.equal(
      (await loginThroughIdp(`${app}/`, { jar: b, username: 'bob', password: 'bob' })).final.status,
      200,
    );
    bob = b.header(new URL(app));
  });
  after(() => s.close());

  // nginx auth_request as in docs/recipes/nginx.md: Host is the proxy_pass address, GET, no body.
  const nginx = (
    path: string,
    extra: Record<string, string> = {},
    endpoint = '/.portcullis/auth/nginx',
  ) =>
    request(`${fa}${endpoint}`, {
      headers: {
        'X-Original-URL': `${app}${path}`,
        'X-Original-Method': 'GET',
        'X-Forwarded-For': '127.0.0.1',
        ...extra,
      },
    });
  // Traefik forwardAuth (pkg/middlewares/auth/forward.go) and Caddy forward_auth: GET to the address.
  const traefik = (
    path: string,
    extra: Record<string, string> = {},
    endpoint = '/.portcullis/auth/traefik',
    method = 'GET',
  ) =>
    request(`${fa}${endpoint}`, {
      headers: {
        'X-Forwarded-Method': method,
        'X-Forwarded-Proto': 'http',
        'X-Forwarded-Host': `app.corp.test:${s.port}`,
        'X-Forwarded-Uri': path,
        'X-Forwarded-For': '203.0.113.7',
        ...extra,
      },
    });
  // Envoy ext_authz HTTP service: client's method, path_prefix + path, Host = the original authority.
  const envoy = (
    path: string,
    extra: Record<string, string> = {},
    method = 'GET',
    prefix = '/.portcullis/auth/envoy',
  ) =>
    request(`${app}${prefix}${path}`, {
      method,
      rawPath: `${prefix}${path}`,
      headers: { 'content-length': '0', 'x-forwarded-proto': 'http', ...extra },
    });

  test('nginx: 200 with identity headers from the session, none from the client', async () => {
    const r = await nginx('/deep?x=1', { cookie: alice, ...SPOOF });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-forwarded-user'], 'alice');
    assert.equal(r.headers['x-forwarded-email'], 'alice@example.com');
    assert.equal(r.headers['x-forwarded-groups'], 'admins,eng');
    assert.equal(r.headers['x-forwarded-preferred-username'], 'alice');
    noSpoofEcho(r);
  });

  test('nginx: no session is 401 (sign-in URL in Location for browsers only), denied is 403, never a redirect', async () => {
    const browser = await nginx('/wanted?a=1&b=2', { accept: BROWSER_HEADERS.accept! });
    assert.equal(browser.status, 401);
    assert.match(
      browser.location ?? '',
      new RegExp(`^${app.replace(/\./g, '\\.')}/\\.portcullis/sign_in\\?return=`),
    );
    // The sealed return URL brings the browser back to exactly the URL it asked for.
    const start = await request(browser.location!, { headers: BROWSER_HEADERS });
    assert.equal(start.status, 302);
    const api = await nginx('/wanted', { accept: 'application/json' });
    assert.equal(api.status, 401);
    assert.equal(api.location, undefined);
    assert.match(String(api.headers['www-authenticate']), /Bearer/);
    const denied = await nginx('/admin/x', { cookie: bob });
    assert.equal(denied.status, 403);
    assert.equal(denied.headers['x-forwarded-user'], undefined);
    for (const r of [
      await nginx('/x', { cookie: '_portcullis=garbage', accept: 'text/html' }),
      await request(`${fa}/.portcullis/auth/nginx`, {
        headers: { 'X-Original-URL': `http://nope.corp.test:${s.port}/` },
      }),
      await nginx('/public/..%2fadmin', { cookie: bob }),
      await nginx('/admin', { 'X-Forwarded-Uri': '/public/x' }),
      await request(`${fa}/.portcullis/auth/nginx`, {
        headers: { 'X-Original-URL': 'javascript:alert(1)' },
      }),
    ])
      assert.ok(
        [200, 401, 403].includes(r.status) && r.status !== 200,
        `nginx answers only 401/403 here, got ${r.status}`,
      );
  });

  test('nginx: an unknown host is a 403, and the log names it with the configured hosts', async () => {
    const r = await request(`${fa}/.portcullis/auth/nginx`, {
      headers: { 'X-Original-URL': `http://nope.corp.test:${s.port}/`, cookie: alice },
    });
    assert.equal(r.status, 403);
    const line = s.logs.find(
      (l) => l.event === 'forward_auth_unknown_host' && l.host === 'nope.corp.test',
    );
    assert.ok(line, 'logged');
    assert.ok(JSON.stringify(line.configuredHosts).includes('app.corp.test'));
  });

  // Issue 17 item 5: missing, empty or malformed forwarding headers are a 4xx, never a 5xx (a
  // 500 reads as Portcullis failing); nginx is answered 403, the only refusal its auth_request
  // passes on (any other status becomes its own 500).
  test('nginx: a trusted proxy that does not describe the original request is a logged misconfiguration, not a guess', async () => {
    const r = await request(`${fa}/.portcullis/auth/nginx`, {
      headers: { cookie: alice, accept: 'application/json' },
    });
    assert.equal(r.status, 403);
    assert.equal(r.json().error, 'forward_auth_misconfigured');
    assert.ok(
      s.logs.some(
        (l) =>
          l.event === 'forward_auth_misconfigured' &&
          l.requestId === r.json().request_id &&
          String(l.detail).includes('X-Original-URL'),
      ),
    );
    const half = await request(`${fa}/.portcullis/auth/nginx`, {
      headers: { cookie: alice, 'X-Forwarded-Host': `app.corp.test:${s.port}` },
    });
    assert.equal(half.status, 403);
    assert.ok(
      s.logs.some(
        (l) =>
          l.event === 'forward_auth_misconfigured' &&
          String(l.detail).includes('X-Forwarded-Uri is missing'),
      ),
    );
  });

  test('empty forwarding headers from a trusted proxy are a 4xx that names the empty header, never a 500 or a pass', async () => {
    const host = `app.corp.test:${s.port}`;
    const cases: Array<[string, Record<string, string>, string]> = [
      ['traefik', { 'X-Forwarded-Host': '', 'X-Forwarded-Uri': '/admin/x' }, 'X-Forwarded-Host'],
      ['traefik', { 'X-Forwarded-Host': host, 'X-Forwarded-Uri': '' }, 'X-Forwarded-Uri'],
      ['caddy', { 'X-Forwarded-Host': '  ', 'X-Forwarded-Uri': '/x' }, 'X-Forwarded-Host'],
      [
        'caddy',
        { 'X-Forwarded-Host': host, 'X-Forwarded-Uri': '/x', 'X-Forwarded-Proto': '' },
        'X-Forwarded-Proto',
      ],
      ['nginx', { 'X-Original-URL': '' }, 'X-Original-URL'],
      [
        'nginx',
        { 'X-Original-URL': '', 'X-Forwarded-Host': host, 'X-Forwarded-Uri': '/x' },
        'X-Original-URL',
      ],
      ['nginx', { 'X-Forwarded-Host': '', 'X-Forwarded-Uri': '/x' }, 'X-Forwarded-Host'],
      ['nginx', { 'X-Original-URL': `${app}/x`, 'X-Original-Method': '' }, 'X-Original-Method'],
    ];
    for (const [ep, headers, named] of cases) {
      const r = await request(`${fa}/.portcullis/auth/${ep}`, {
        headers: { cookie: alice, accept: 'application/json', ...headers },
      });
      const what = `${ep} ${JSON.stringify(headers)}`;
      assert.equal(r.status, ep === 'nginx' ? 403 : 400, what);
      assert.equal(r.json().error, 'bad_request', what);
      assert.equal(
        r.json().message,
        `This request was refused: the ${named} header is empty.`,
        what,
      );
      assert.equal(r.headers['x-forwarded-user'], undefined, `${what}: no identity answered`);
      const line = s.logs.find(
        (l) => l.requestId === r.json().request_id && l.event === 'forward_auth_refused',
      );
      assert.equal(line?.detail, `the ${named} header is empty`, what);
    }
    // Missing is told apart from empty.
    const missing = await request(`${fa}/.portcullis/auth/traefik`, {
      headers: { cookie: alice, accept: 'application/json', 'X-Forwarded-Uri': '/x' },
    });
    assert.equal(missing.status, 400);
    assert.equal(missing.json().error, 'forward_auth_misconfigured');
    const line = s.logs.find(
      (l) => l.requestId === missing.json().request_id && l.event === 'forward_auth_misconfigured',
    );
    assert.match(
      String(line?.detail),
      /no X-Forwarded-Host and X-Forwarded-Uri \(X-Forwarded-Host is missing\)/,
    );
  });

  test('nginx: X-Forwarded-Proto/-Host/-Uri work without X-Original-URL (ingress-style)', async () => {
    const r = await request(`${fa}/.portcullis/auth/nginx`, {
      headers: {
        'X-Forwarded-Proto': 'http',
        'X-Forwarded-Host': `app.corp.test:${s.port}`,
        'X-Forwarded-Uri': '/admin/x',
        cookie: alice,
      },
    });
    assert.equal(r.status, 200);
    const b = await request(`${fa}/.portcullis/auth/nginx`, {
      headers: {
        'X-Forwarded-Proto': 'http',
        'X-Forwarded-Host': `app.corp.test:${s.port}`,
        'X-Forwarded-Uri': '/admin/x',
        cookie: bob,
      },
    });
    assert.equal(b.status, 403);
  });

  for (const ep of ['traefik', 'caddy'] as const) {
    test(`${ep}: 200 with headers; browser without session 302 to sign-in; API client 401 JSON; denied 403 page`, async () => {
      const path = `/.portcullis/auth/${ep}`;
      const ok = await traefik('/deep?x=1', { cookie: alice, ...SPOOF }, path);
      assert.equal(ok.status, 200);
      assert.equal(ok.headers['x-forwarded-email'], 'alice@example.com');
      assert.equal(ok.headers['x-forwarded-groups'], 'admins,eng');
      noSpoofEcho(ok);
      const b = await traefik(
        '/wanted?a=1&b=two%20words',
        { accept: BROWSER_HEADERS.accept! },
        path,
      );
      assert.equal(b.status, 302);
      assert.ok(b.location!.startsWith(`${app}/.portcullis/sign_in?return=`));
      const api = await traefik('/wanted', { accept: 'application/json' }, path);
      assert.equal(api.status, 401);
      assert.equal(api.json().error, 'unauthenticated');
      const denied = await traefik(
        '/admin/x',
        { cookie: bob, accept: BROWSER_HEADERS.accept! },
        path,
      );
      assert.equal(denied.status, 403);
      assert.match(denied.body, /admins/);
      const pub = await traefik('/public/x', SPOOF, path);
      assert.equal(pub.status, 200);
      assert.equal(
        pub.headers['x-forwarded-user'],
        '',
        'public route: every header present, empty',
      );
      noSpoofEcho(pub);
    });
  }

  test('traefik: the return URL with its query string survives the whole login', async () => {
    const jar = new CookieJar();
    const b = await traefik('/reports?team=eng&sort=-date&q=a%26b', {
      accept: BROWSER_HEADERS.accept!,
    });
    const { chain } = await loginThroughIdp(b.location!, {
      jar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(chain.at(-1), `${app}/reports?team=eng&sort=-date&q=a%26b`);
  });

  test('traefik: only X-Forwarded-* counts; a client X-Original-URL passed along by Traefik is ignored', async () => {
    const r = await traefik('/admin/x', { cookie: bob, 'X-Original-URL': `${app}/public/x` });
    assert.equal(r.status, 403);
  });

  test("envoy: only 200 allows; the original path follows the prefix, the method is the client's", async () => {
    const ok = await envoy('/admin/x?y=1', { cookie: alice, ...SPOOF }, 'POST');
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['x-forwarded-user'], 'alice');
    noSpoofEcho(ok);
    assert.equal((await envoy('/admin/x', { cookie: bob })).status, 403);
    const b = await envoy('/x?a=1&b=2', { accept: BROWSER_HEADERS.accept! });
    assert.equal(b.status, 302);
    assert.ok(b.location!.startsWith(`${app}/.portcullis/sign_in?return=`));
    assert.equal((await envoy('/x', { accept: 'application/json' })).status, 401);
    assert.equal((await envoy('/public/ok')).status, 200);
    // The path is normalized exactly like the reverse proxy's: ambiguous encodings are refused.
    for (const p of ['/public/..%2fadmin', '/public/%2e%2e/admin', '/public/../admin']) {
      const r = await envoy(p, { cookie: bob });
      assert.notEqual(r.status, 200, p);
    }
    // A prefix that only normalization turns into the endpoint is not one.
    const tricky = await request(`${app}/.portcullis/auth/%65nvoy/public/ok`, {
      rawPath: '/.portcullis/auth/%65nvoy/public/ok',
    });
    assert.notEqual(tricky.status, 200);
  });

  test('?host= on the auth URL binds it: another original host is refused by every contract that has a URL of its own', async () => {
    const cases: Array<
      [string, (p: string, h: Record<string, string>, ep: string) => Promise<Resp>, number]
    > = [
      ['/.portcullis/auth/nginx', nginx, 200],
      ['/.portcullis/auth/traefik', traefik, 200],
      ['/.portcullis/auth/caddy', traefik, 200],
      ['/oauth2/auth', nginx, 202],
      ['/outpost.goauthentik.io/auth/nginx', nginx, 200],
      ['/api/authz/forward-auth', traefik, 200],
    ];
    for (const [ep, ask, allow] of cases) {
      assert.equal(
        (await ask('/x', { cookie: alice }, `${ep}?host=app.corp.test`)).status,
        allow,
        ep,
      );
      assert.equal(
        (await ask('/x', { cookie: alice }, `${ep}?host=*.corp.test`)).status,
        allow,
        `${ep} wildcard`,
      );
      assert.equal(
        (await ask('/x', { cookie: alice }, `${ep}?host=a.test,APP.corp.test.&host=b.test`)).status,
        allow,
        `${ep} list`,
      );
      assert.equal(
        (await ask('/x', { cookie: alice }, `${ep}?host=app.corp.test:${s.port}`)).status,
        allow,
        `${ep} port`,
      );
      for (const binding of [
        'status.corp.test',
        `app.corp.test:${s.port + 1}`,
        '*.app.corp.test',
        'corp.test',
      ]) {
        const r = await ask(
          '/x',
          { cookie: alice, accept: 'application/json' },
          `${ep}?host=${binding}`,
        );
        assert.equal(r.status, 403, `${ep}?host=${binding}`);
        assert.equal(r.json().error, 'wrong_host');
      }
      const bad = await ask(
        '/x',
        { cookie: alice, accept: 'application/json' },
        `${ep}?host=app.corp.test/x`,
      );
      assert.equal(
        bad.status,
        500,
        `${ep}: a malformed binding is the operator's error, said as such`,
      );
      assert.equal(bad.json().error, 'forward_auth_misconfigured');
    }
    const logged = s.logs.filter((l) => l['event'] === 'forward_auth_wrong_host');
    assert.ok(
      logged.some(
        (l) => l['host'] === 'app.corp.test' && String(l['binding']).includes('status.corp.test'),
      ),
      'the log names host and binding',
    );
    // Unbound URLs work on, and the operator is told once, not on every request.
    const unbound = s.logs.filter((l) => l['event'] === 'forward_auth_unbound');
    assert.equal(unbound.length, 1, 'routes span several hosts: one line per config');
  });

  test('a path with . .. or // segments is judged as the proxy forwards it: refused, not normalized', async () => {
    // An application matching raw bytes reads `/%70ublic/x` as its private area, not /public/.
    for (const p of [
      '/admin/../x',
      '/admin/%2e%2e/x',
      '/admin/./../x',
      '//admin/../x',
      '/x/./y',
      '/x//y',
      '/%70ublic/x',
      '/%61dmin',
    ]) {
      assert.equal((await nginx(p, { cookie: bob })).status, 403, `nginx ${p}`);
      const t = await traefik(p, { cookie: bob, accept: 'application/json' });
      assert.equal(t.status, 400, `traefik ${p}`);
      assert.equal(t.json().error, 'ambiguous_path');
      assert.equal((await envoy(p, { cookie: bob })).status, 400, `envoy ${p}`);
    }
    // A route that allows ambiguous paths accepts them only where both spellings are its own:
    // /files/../admin would select the admins-only route in an app that routes on the raw path.
    assert.equal((await traefik('/files/a/../b', { cookie: bob })).status, 200);
    assert.equal((await traefik('/files/%61', { cookie: bob })).status, 200);
    assert.equal(
      (await traefik('/%66iles/a', { cookie: bob })).status,
      400,
      'raw, this is not /files/',
    );
    assert.equal((await traefik('/files/a//b', { cookie: bob })).status, 200);
    assert.equal((await traefik('/files/../admin', { cookie: bob })).status, 400);
    assert.equal((await traefik('/admin/../files/x', { cookie: bob })).status, 400);
    assert.equal((await nginx('/files/../admin', { cookie: alice })).status, 403, 'whoever asks');
  });

  test('health endpoints never answer a forward-auth question; probe user agents bypass nothing', async () => {
    const ping = await request(`${fa}/.portcullis/ping`, {
      headers: { 'X-Original-URL': `${app}/admin` },
    });
    assert.equal(ping.status, 400);
    for (const ua of ['GoogleHC/1.0', 'kube-probe/1.29', 'ELB-HealthChecker/2.0']) {
      assert.equal((await nginx('/x', { 'user-agent': ua })).status, 401, ua);
      assert.equal((await traefik('/x', { 'user-agent': ua })).status, 401, ua);
    }
    assert.equal(
      (await request(`${fa}/ping`, { headers: { 'X-Forwarded-Uri': '/admin' } })).status,
      400,
    );
    assert.equal((await request(`${fa}/ping`)).body, 'OK\n');
  });

  test('oauth2-proxy: /oauth2/auth 202/401/403 with X-Auth-Request-*, never a redirect', async () => {
    const ok = await nginx('/x', { cookie: alice, ...SPOOF }, '/oauth2/auth');
    assert.equal(ok.status, 202);
    assert.equal(ok.headers['x-auth-request-user'], 'alice');
    assert.equal(ok.headers['x-auth-request-email'], 'alice@example.com');
    assert.equal(ok.headers['x-auth-request-groups'], 'admins,eng');
    assert.equal(ok.headers['x-auth-request-preferred-username'], 'alice');
    assert.equal(ok.headers['x-auth-request-access-token'], undefined, 'tokens are not handed out');
    noSpoofEcho(ok);
    assert.equal(
      (await nginx('/x', { accept: BROWSER_HEADERS.accept! }, '/oauth2/auth')).status,
      401,
    );
    assert.equal((await nginx('/admin', { cookie: bob }, '/oauth2/auth')).status, 403);
    // Per-location restrictions in the query keep restricting after a migration.
    assert.equal(
      (await nginx('/x', { cookie: bob }, '/oauth2/auth?allowed_groups=admins')).status,
      403,
    );
    assert.equal(
      (await nginx('/x', { cookie: alice }, '/oauth2/auth?allowed_groups=admins')).status,
      202,
    );
    assert.equal(
      (await nginx('/x', { cookie: alice }, '/oauth2/auth?allowed_email_domains=evil.test')).status,
      403,
    );
    assert.equal((await nginx('/public/x', {}, '/oauth2/auth?allowed_groups=admins')).status, 401);
  });

  // oauth2-proxy's documented auth location, as it reaches us. Current docs (Integration page,
  // https://oauth2-proxy.github.io/oauth2-proxy/configuration/integration, versions 7.9.x to
  // 7.13.x): `Host $host`, `X-Real-IP $remote_addr`, `X-Forwarded-Uri $request_uri`, an empty
  // Content-Length (which nginx leaves out), no X-Original-URL and no X-Forwarded-Host. The older form, still in the wild
  // (for example the nixpkgs release-21.05 module nixos/modules/services/security/
  // oauth2_proxy_nginx.nix): `X-Scheme $scheme` and no path header at all.
  const oauth2Snippet = (
    path: string | undefined,
    extra: Record<string, string> = {},
    host = `app.corp.test:${s.port}`,
  ) =>
    request(`${fa}/oauth2/auth`, {
      headers: {
        host,
        'X-Real-IP': '203.0.113.7',
        ...(path === undefined ? { 'X-Scheme': 'http' } : { 'X-Forwarded-Uri': path }),
        ...extra,
      },
    });

  test('oauth2-proxy: its own documented nginx snippet (Host + X-Forwarded-Uri) works unchanged', async () => {
    const ok = await oauth2Snippet('/deep?x=1', { cookie: alice, ...SPOOF });
    assert.equal(ok.status, 202, ok.body);
    assert.equal(ok.headers['x-auth-request-user'], 'alice');
    assert.equal(ok.headers['x-auth-request-email'], 'alice@example.com');
    noSpoofEcho(ok);
    const denied = await oauth2Snippet('/admin/x', { cookie: bob, accept: 'application/json' });
    assert.equal(denied.status, 403);
    assert.equal(denied.json().error, 'access_denied');
    assert.equal(denied.headers['x-auth-request-user'], undefined);
    assert.equal((await oauth2Snippet('/deep', { accept: 'application/json' })).status, 401);
    assert.equal((await oauth2Snippet('/public/x')).status, 202);
    // The older snippet's X-Scheme and the ingress-style X-Forwarded-Proto are both read.
    assert.equal(
      (await oauth2Snippet('/admin/x', { cookie: alice, 'X-Scheme': 'http' })).status,
      202,
    );
    assert.equal(
      (await oauth2Snippet('/admin/x', { cookie: alice, 'X-Scheme': 'https' })).status,
      403,
      'https://app.corp.test:PORT is no route here: the scheme was read, not assumed',
    );
    // X-Original-URI is ingress-nginx's spelling of the same path.
    const uri = await request(`${fa}/oauth2/auth`, {
      headers: { host: `app.corp.test:${s.port}`, 'X-Original-URI': '/admin/x', cookie: bob },
    });
    assert.equal(uri.status, 403);
  });

  test('oauth2-proxy snippet: a client header that the snippet does not set cannot move the judged request', async () => {
    // The snippet sets X-Forwarded-Uri, so the client's X-Original-URL / X-Original-URI pass
    // through untouched: they must agree with the path nginx wrote, or the request is refused.
    const strays: Array<Record<string, string>> = [
      { 'X-Original-URL': `http://app.corp.test:${s.port}/public/x` },
      { 'X-Original-URI': '/public/x' },
    ];
    for (const stray of strays) {
      const r = await oauth2Snippet('/admin/x', {
        cookie: bob,
        accept: 'application/json',
        ...stray,
      });
      assert.equal(r.status, 403, JSON.stringify(stray));
      assert.equal(r.json().error, 'bad_request');
      assert.match(r.json().message, /name different requests/);
      assert.equal(r.headers['x-auth-request-user'], undefined);
      const anon = await oauth2Snippet('/x', { accept: 'application/json', ...stray });
      assert.notEqual(anon.status, 202, `anonymous with ${JSON.stringify(stray)}`);
    }
    // Nor the host: bob's X-Original-URL naming solo.corp.test (any signed-in user) at the same
    // path would otherwise be judged there and let him past /admin.
    const elsewhere = await oauth2Snippet('/admin/x', {
      cookie: bob,
      accept: 'application/json',
      'X-Original-URL': `http://solo.corp.test:${s.port}/admin/x`,
    });
    assert.equal(elsewhere.status, 403, elsewhere.body);
    assert.match(elsewhere.json().message, /X-Original-URL and Host name different hosts/);
    assert.equal(elsewhere.headers['x-auth-request-user'], undefined, 'no identity answered');
    // Host is the proxy's (`Host $host`); an X-Forwarded-Host beside it is the client's. Naming
    // no route, it is stray and ignored: a signed-in user is not refused over it.
    const stray = await oauth2Snippet('/admin/x', {
      cookie: alice,
      'X-Forwarded-Host': 'evil.test',
    });
    assert.equal(stray.status, 202, stray.body);
    assert.equal(stray.headers['x-auth-request-user'], 'alice');
    // Naming another route (solo.corp.test lets bob in), it is refused, never judged.
    const moved = await oauth2Snippet('/admin/x', {
      cookie: bob,
      accept: 'application/json',
      'X-Forwarded-Host': `solo.corp.test:${s.port}`,
    });
    assert.equal(moved.status, 403);
    assert.equal(moved.json().error, 'bad_request');
    assert.match(moved.json().message, /X-Forwarded-Host and Host name different hosts/);
    const same = await oauth2Snippet('/admin/x', {
      cookie: alice,
      'X-Forwarded-Host': `app.corp.test:${s.port}`,
    });
    assert.equal(same.status, 202, 'an agreeing X-Forwarded-Host changes nothing');
  });

  test('a snippet that sends no path is judged by host where one route serves the whole host, else a named misconfiguration logged once a minute', async () => {
    const solo = `solo.corp.test:${s.port}`;
    const ok = await oauth2Snippet(undefined, { cookie: alice }, solo);
    assert.equal(ok.status, 202, ok.body);
    assert.equal(ok.headers['x-auth-request-user'], 'alice');
    assert.equal(
      (await oauth2Snippet(undefined, { accept: 'application/json' }, solo)).status,
      401,
    );

    // app.corp.test has an admins-only prefix and a public one: the path decides, and there is none.
    const refused: Resp[] = [];
    for (let i = 0; i < 3; i++)
      refused.push(await oauth2Snippet(undefined, { cookie: alice, accept: 'application/json' }));
    for (const r of refused) {
      assert.equal(r.status, 403, 'nginx turns anything but 2xx/401/403 into its own 500');
      assert.equal(r.json().error, 'forward_auth_misconfigured');
      assert.equal(r.headers['x-auth-request-user'], undefined, 'no identity answered');
      assert.doesNotMatch(r.body, /at .*\.js:\d+/, 'no stack trace');
    }
    // The same reason was met earlier in this file (a bare nginx request): within the minute,
    // the operator reads it once however many requests fail.
    const lines = s.logs.filter(
      (l) =>
        l.event === 'forward_auth_misconfigured' &&
        String(l.detail).startsWith('the proxy sent neither X-Original-URL nor X-Forwarded-Uri,'),
    );
    assert.equal(lines.length, 1, 'one log line within the minute');
    assert.match(String(lines[0]!.detail), /proxy_set_header X-Forwarded-Uri \$request_uri;/);
  });

  // Issue 18 section 3: where the proxy's own contract header is present it alone decides, in
  // both directions. nginx's auth location sets X-Original-URL (every nginx recipe we answer does),
  // so nginx overwrites a client's copy; a client's X-Forwarded-Host is passed through untouched.
  test('nginx contracts: a stray client X-Forwarded-Host neither refuses a signed-in user nor lets a denied one in', async () => {
    for (const endpoint of [
      '/.portcullis/auth/nginx',
      '/oauth2/auth',
      '/outpost.goauthentik.io/auth/nginx',
      '/api/authz/auth-request',
    ]) {
      const allowed = endpoint === '/oauth2/auth' ? 202 : 200;
      const stray = { 'X-Forwarded-Host': 'evil.test' };
      const a = await nginx('/admin/x', { cookie: alice, ...stray }, endpoint);
      assert.equal(
        a.status,
        allowed,
        `${endpoint}: alice with a stray X-Forwarded-Host: ${a.body}`,
      );
      // solo.corp.test lets any signed-in user in: naming it must not carry bob past /admin.
      const b = await nginx(
        '/admin/x',
        { cookie: bob, 'X-Forwarded-Host': `solo.corp.test:${s.port}` },
        endpoint,
      );
      assert.equal(b.status, 403, `${endpoint}: bob with X-Forwarded-Host solo.corp.test`);
      for (const h of Object.keys(b.headers))
        assert.ok(!/user|remote-|authentik-username/i.test(h), `${endpoint}: ${h} on a 403`);
      const anon = await nginx('/x', { accept: 'application/json', ...stray }, endpoint);
      assert.equal(anon.status, 401, `${endpoint}: anonymous stays unauthenticated`);
    }
  });

  test('Traefik/Caddy contracts: X-Forwarded-* alone decide; a stray X-Original-URL/-URI flips nothing either way', async () => {
    for (const endpoint of [
      '/.portcullis/auth/traefik',
      '/.portcullis/auth/caddy',
      '/outpost.goauthentik.io/auth/traefik',
      '/api/authz/forward-auth',
    ]) {
      const a = await traefik(
        '/admin/x',
        { cookie: alice, 'X-Original-URL': 'http://evil.test/', 'X-Original-URI': '/nope' },
        endpoint,
      );
      assert.equal(a.status, 200, `${endpoint}: alice with stray X-Original-URL: ${a.body}`);
      const b = await traefik(
        '/admin/x',
        {
          cookie: bob,
          accept: 'application/json',
          'X-Original-URL': `http://solo.corp.test:${s.port}/`,
          'X-Original-URI': '/public/x',
        },
        endpoint,
      );
      assert.equal(b.status, 403, `${endpoint}: bob with stray X-Original-URL`);
    }
  });

  test('oauth2-proxy: start, sign_in, callback, sign_out, userinfo, ping, ready on the route host; rd is validated', async () => {
    const start = await request(
      `${app}/oauth2/start?rd=${encodeURIComponent(`${app}/after?x=1`)}`,
      { headers: BROWSER_HEADERS },
    );
    assert.equal(start.status, 302);
    assert.ok(start.location!.startsWith(s.idp.issuer), start.location);
    const jar = new CookieJar();
    const { chain } = await loginThroughIdp(
      `${app}/oauth2/sign_in?rd=${encodeURIComponent(`${app}/after?x=1&y=2`)}`,
      { jar, username: 'alice', password: 'alice' },
    );
    assert.equal(chain.at(-1), `${app}/after?x=1&y=2`);
    for (const rd of [
      'https://evil.test/',
      '//evil.test',
      '/\\evil.test',
      `http://app.corp.test.evil.test:${s.port}/`,
    ]) {
      assert.equal(
        (
          await request(`${app}/oauth2/start?rd=${encodeURIComponent(rd)}`, {
            headers: BROWSER_HEADERS,
          })
        ).status,
        400,
        rd,
      );
      assert.equal(
        (
          await request(`${app}/oauth2/sign_out?rd=${encodeURIComponent(rd)}`, {
            headers: BROWSER_HEADERS,
          })
        ).status,
        400,
        rd,
      );
    }
    // /oauth2/callback is the real callback (authenticate_callback_path can make it the redirect
    // URI): a callback this browser did not start is refused like on /.portcullis/callback.
    const cb = await request(`${app}/oauth2/callback?code=abc&state=${'x'.repeat(24)}`, {
      headers: BROWSER_HEADERS,
    });
    assert.equal(cb.status, 400);
    assert.match(cb.body, /not started in this browser/);
    const info = await request(`${app}/oauth2/userinfo`, { jar });
    assert.deepEqual(info.json(), {
      user: 'alice',
      email: 'alice@example.com',
      groups: ['admins', 'eng'],
      preferredUsername: 'alice',
    });
    assert.equal((await request(`${app}/oauth2/userinfo`)).status, 401);
    assert.equal((await request(`${app}/ping`)).status, 200);
    assert.equal((await request(`${app}/ready`)).status, 200);
    const out = await request(`${app}/oauth2/sign_out?rd=${encodeURIComponent(`${app}/bye`)}`, {
      jar,
      headers: BROWSER_HEADERS,
    });
    assert.equal(out.status, 302);
    assert.equal((await request(`${app}/oauth2/userinfo`, { jar })).status, 401);
    // Browser endpoints answer on route hosts only, like /.portcullis/.
    assert.equal(
      (await request(`http://nope.corp.test:${s.port}/oauth2/start`, { headers: BROWSER_HEADERS }))
        .status,
      404,
    );
  });

  test('Authentik outpost: auth/nginx, auth/traefik, auth/envoy with X-authentik-* (groups pipe-separated); start with rd', async () => {
    const n = await nginx('/x', { cookie: alice, ...SPOOF }, '/outpost.goauthentik.io/auth/nginx');
    assert.equal(n.status, 200);
    assert.equal(n.headers['x-authentik-username'], 'alice');
    assert.equal(n.headers['x-authentik-groups'], 'admins|eng');
    assert.equal(n.headers['x-authentik-email'], 'alice@example.com');
    assert.equal(n.headers['x-authentik-name'], 'Alice Example');
    assert.ok(n.headers['x-authentik-uid']);
    noSpoofEcho(n);
    assert.equal((await nginx('/x', {}, '/outpost.goauthentik.io/auth/nginx')).status, 401);
    const t = await traefik(
      '/x',
      { accept: BROWSER_HEADERS.accept! },
      '/outpost.goauthentik.io/auth/traefik',
    );
    assert.equal(t.status, 302);
    assert.equal(
      (await traefik('/admin', { cookie: bob }, '/outpost.goauthentik.io/auth/caddy')).status,
      403,
    );
    const e = await envoy(
      '/admin/x',
      { cookie: alice },
      'GET',
      '/outpost.goauthentik.io/auth/envoy',
    );
    assert.equal(e.status, 200);
    assert.equal(e.headers['x-authentik-groups'], 'admins|eng');
    const start = await request(
      `${app}/outpost.goauthentik.io/start?rd=${encodeURIComponent(`${app}/x`)}`,
      { headers: BROWSER_HEADERS },
    );
    assert.equal(start.status, 302);
    assert.equal(
      (
        await request(
          `${app}/outpost.goauthentik.io/start?rd=${encodeURIComponent('https://evil.test/')}`,
          { headers: BROWSER_HEADERS },
        )
      ).status,
      400,
    );
  });

  test('Authelia: forward-auth (302/303 browsers, 401 others), auth-request (401 + Location), ext-authz, verify; Remote-* headers', async () => {
    const ok = await traefik('/x', { cookie: alice, ...SPOOF }, '/api/authz/forward-auth');
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['remote-user'], 'alice');
    assert.equal(ok.headers['remote-groups'], 'admins,eng');
    assert.equal(ok.headers['remote-email'], 'alice@example.com');
    assert.equal(ok.headers['remote-name'], 'Alice Example');
    noSpoofEcho(ok);
    assert.equal(
      (await traefik('/x', { accept: BROWSER_HEADERS.accept! }, '/api/authz/forward-auth')).status,
      302,
    );
    assert.equal(
      (await traefik('/x', { accept: BROWSER_HEADERS.accept! }, '/api/authz/forward-auth', 'POST'))
        .status,
      303,
    );
    assert.equal(
      (
        await traefik(
          '/x',
          { accept: BROWSER_HEADERS.accept!, 'X-Requested-With': 'XMLHttpRequest' },
          '/api/authz/forward-auth',
        )
      ).status,
      401,
    );
    const ar = await nginx('/x', { accept: 'application/json' }, '/api/authz/auth-request');
    assert.equal(ar.status, 401);
    assert.ok(
      ar.location!.includes('/.portcullis/sign_in?return='),
      'Location on every 401, for error_page 401 =302 $redirection_url',
    );
    assert.equal((await nginx('/admin', { cookie: bob }, '/api/authz/auth-request')).status, 403);
    assert.equal(
      (await envoy('/admin', { cookie: alice }, 'GET', '/api/authz/ext-authz')).status,
      200,
    );
    assert.equal((await nginx('/x', { cookie: alice }, '/api/verify')).status, 200);
    assert.equal((await nginx('/x', {}, '/api/verify')).status, 401);
  });
});

describe('forward-auth from an untrusted peer (trusted_proxies: [10.0.0.0/8], so 127.0.0.1 is not)', () => {
  let s: Stack;
  let app: string;
  let bob: string;
  before(async () => {
    s = await startStack({
      hosts: ['app.corp.test'],
      body: `trusted_proxies: [10.0.0.0/8]\n${ROUTES}`,
    });
    app = `http://app.corp.test:${s.port}`;
    const b = new CookieJar();
    await loginThroughIdp(`${app}/`, { jar: b, username: 'bob', password: 'bob' });
    bob = b.header(new URL(app));
  });
  after(() => s.close());

  test('a forged X-Forwarded-Host / -Uri / X-Original-URL does not change the route or policy', async () => {
    const forged = {
      'X-Forwarded-Proto': 'http',
      'X-Forwarded-Host': `app.corp.test:${s.port}`,
      'X-Forwarded-Uri': '/public/health',
      'X-Original-URL': `${app}/public/health`,
      accept: 'application/json',
    };
    for (const ep of ['nginx', 'traefik', 'caddy']) {
      const r = await request(`http://127.0.0.1:${s.port}/.portcullis/auth/${ep}`, {
        headers: forged,
      });
      assert.notEqual(r.status, 200, `${ep} believed an untrusted peer`);
      const onApp = await request(`${app}/.portcullis/auth/${ep}`, { headers: forged });
      assert.equal(onApp.status, 401, `${ep}: judged as the request that arrived (no session)`);
    }
    // A request for /admin carrying X-Forwarded-Uri: /public/health gets /admin's decision.
    const envoy = await request(`${app}/.portcullis/auth/envoy/admin`, {
      headers: { ...forged, cookie: bob },
    });
    assert.equal(envoy.status, 403);
    const proxied = await request(`${app}/admin`, { headers: { ...forged, cookie: bob } });
    assert.equal(proxied.status, 403);
  });

  test('compat endpoints are not answered unless enabled', async () => {
    const r = await request(`${app}/oauth2/auth`, { headers: { accept: 'application/json' } });
    assert.equal(r.status, 401);
    assert.equal(
      r.json().error,
      'unauthenticated',
      'the ordinary decision for the path, not an oauth2-proxy answer',
    );
    const ping = await request(`${app}/ping`, { headers: { accept: 'application/json' } });
    assert.equal(ping.status, 401);
  });
});

describe('domain level: one wildcard route without `to`, one login for every subdomain', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({
      hosts: ['auth.corp.test'],
      body: `authenticate_service_url: http://auth.corp.test:\${PORT}
cookie_domain: corp.test
routes:
  - from: http://*.corp.test:\${PORT}
    allow_any_authenticated_user: true
`,
    });
  });
  after(() => s.close());

  test('a login started from one subdomain serves the others through Traefik-shaped requests', async () => {
    const ask = (host: string, path: string, extra: Record<string, string> = {}) =>
      request(`http://127.0.0.1:${s.port}/.portcullis/auth/traefik`, {
        headers: {
          'X-Forwarded-Method': 'GET',
          'X-Forwarded-Proto': 'http',
          'X-Forwarded-Host': `${host}:${s.port}`,
          'X-Forwarded-Uri': path,
          ...extra,
        },
      });
    const first = await ask('wiki.corp.test', '/page?id=7&v=2', {
      accept: BROWSER_HEADERS.accept!,
    });
    assert.equal(first.status, 302);
    assert.ok(
      first.location!.startsWith(`http://auth.corp.test:${s.port}/.portcullis/sign_in?return=`),
      'one sign-in host for the domain',
    );
    const jar = new CookieJar();
    const { chain } = await loginThroughIdp(first.location!, {
      jar,
      username: 'bob',
      password: 'bob',
    });
    assert.equal(chain.at(-1), `http://wiki.corp.test:${s.port}/page?id=7&v=2`);
    const cookie = jar.all().find((c) => c.name === '_portcullis');
    assert.equal(cookie?.domain, 'corp.test');
    for (const host of ['wiki.corp.test', 'grafana.corp.test', 'deep.sub.corp.test']) {
      const r = await ask(host, '/', { cookie: jar.header(new URL(`http://${host}:${s.port}/`)) });
      assert.equal(r.status, 200, host);
      assert.equal(r.headers['x-forwarded-email'], 'bob@example.com');
    }
    // Not a subdomain: no route, no answer but a refusal.
    assert.notEqual(
      (
        await ask('corp.test.evil.test', '/', {
          cookie: jar.header(new URL(`http://wiki.corp.test:${s.port}/`)),
        })
      ).status,
      200,
    );
  });
});
