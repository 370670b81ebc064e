// Issue 18 §1 (the proxies that cannot run here) and §4 (the peers' flows as their users know
// them). Traefik, ingress-nginx and Envoy are not installable on this machine, so their requests
// are built from their source as cited; Portcullis answers as the peer would, and the flows a
// user of the peer relies on (per-location restrictions, sign-in and sign-out URLs with `rd`,
// the callback registered at the IdP, the redirect allow-list) are followed end to end.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startStack, type Stack } from './helpers/stack.js';

/** Go's url.QueryEscape, which Traefik's errors middleware applies to `{url}`. */
function goQueryEscape(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
}

describe("the peers' flows (Portcullis in oauth2-proxy's, Authentik's and Authelia's place)", () => {
  let s: Stack;
  let app: string;
  let alice: CookieJar;
  let bob: CookieJar;

  before(async () => {
    s = await startStack({
      hosts: ['app.corp.test'],
      // The redirect URI oauth2-proxy registered (--redirect-url, default /oauth2/callback).
      callbackPath: '/oauth2/callback',
      body: `compat: [oauth2-proxy, authentik, authelia]
authenticate_callback_path: /oauth2/callback
allowed_redirect_domains: [".docs.corp.test:\${PORT}", "wiki.corp.test:*"]
routes:
  - from: http://app.corp.test:\${PORT}
    prefix: /admin
    to: \${UPSTREAM}
    allowed_groups: [admins]
  - from: http://app.corp.test:\${PORT}
    prefix: /token/
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_access_token: X-Auth-Request-Access-Token
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
`,
    });
    app = `http://app.corp.test:${s.port}`;
    alice = new CookieJar();
    bob = new CookieJar();
    for (const [jar, who] of [
      [alice, 'alice'],
      [bob, 'bob'],
    ] as const) {
      const r = await loginThroughIdp(`${app}/`, { jar, username: who, password: who });
      assert.equal(r.final.status, 200, r.chain.join('\n'));
    }
  });
  after(() => s.close());

  const cookie = (jar: CookieJar) => jar.header(new URL(app));

  // ingress-nginx's auth location (rootfs/etc/nginx/template/nginx.tmpl, controller v1.9-v1.11):
  // Host of auth-url, X-Original-URL $scheme://$http_host$request_uri, X-Original-Method,
  // X-Sent-From nginx-ingress-controller, X-Real-IP, X-Forwarded-For, X-Auth-Request-Redirect
  // $request_uri, the client's own headers, no body; the auth-url's query passed as written.
  const ingress = (authUrlPath: string, uri: string, extra: Record<string, string> = {}) =>
    request(`http://oauth2-proxy.auth.svc:${s.port}${authUrlPath}`, {
      headers: {
        'X-Original-URL': `${app}${uri}`,
        'X-Original-Method': 'GET',
        'X-Sent-From': 'nginx-ingress-controller',
        'X-Real-IP': '203.0.113.7',
        'X-Forwarded-For': '203.0.113.7',
        'X-Auth-Request-Redirect': uri,
        ...extra,
      },
    });

  // Traefik forwardAuth (pkg/middlewares/auth/forward.go, v2.10/v3): GET to the address, the
  // client's headers, X-Forwarded-Method/-Proto/-Host/-Uri/-For; Host is the address's host.
  const forwardAuth = (address: string, uri: string, extra: Record<string, string> = {}) =>
    request(`http://auth-server.corp.test:${s.port}${address}`, {
      headers: {
        'X-Forwarded-Method': 'GET',
        'X-Forwarded-Proto': 'http',
        'X-Forwarded-Host': `app.corp.test:${s.port}`,
        'X-Forwarded-Uri': uri,
        'X-Forwarded-For': '203.0.113.7',
        ...extra,
      },
    });

  describe('§4 per-location restrictions in the auth URL, through ingress-nginx annotation shapes', () => {
    // oauth2-proxy docs, features/endpoints "Auth" (v7.13.x): allowed_groups, allowed_emails,
    // allowed_email_domains, allowed_users, require_all_matches, constraints_required;
    // auth-url: https://<oauth2-proxy>/oauth2/auth?allowed_groups=... as ingress users write it.
    const cases: Array<[string, string, 'alice' | 'bob' | null, number]> = [
      ['/oauth2/auth?allowed_groups=admins,ops', '/x', 'alice', 202],
      ['/oauth2/auth?allowed_groups=admins,ops', '/x', 'bob', 403],
      ['/oauth2/auth?allowed_groups=admins,ops', '/x', null, 401],
      // Narrowing only: the URL cannot open what the route closes, nor the reverse.
      ['/oauth2/auth?allowed_groups=eng', '/admin/panel', 'bob', 403],
      ['/oauth2/auth?allowed_groups=ops', '/x', 'alice', 403],
      ['/oauth2/auth?allowed_emails=bob@example.com', '/x', 'bob', 202],
      ['/oauth2/auth?allowed_emails=bob@example.com', '/x', 'alice', 403],
      ['/oauth2/auth?allowed_emails=bob@example.com', '/admin/panel', 'bob', 403],
      ['/oauth2/auth?allowed_email_domains=example.com', '/x', 'alice', 202],
      ['/oauth2/auth?allowed_email_domains=corp.test', '/x', 'alice', 403],
      ['/oauth2/auth?allowed_email_domains=ample.com', '/x', 'alice', 403],
      ['/oauth2/auth?allowed_users=bob', '/x', 'alice', 403],
      // Every restriction given must hold (require_all_matches defaults to true)...
      ['/oauth2/auth?allowed_groups=eng&allowed_emails=bob@example.com', '/x', 'alice', 403],
      // ...one is enough with require_all_matches=false; still never past the route.
      [
        '/oauth2/auth?allowed_groups=eng&allowed_emails=bob@example.com&require_all_matches=false',
        '/x',
        'alice',
        202,
      ],
      [
        '/oauth2/auth?allowed_groups=ops&allowed_emails=bob@example.com&require_all_matches=false',
        '/admin/panel',
        'bob',
        403,
      ],
      // A value that is not a boolean keeps the stricter meaning.
      [
        '/oauth2/auth?allowed_groups=eng&allowed_emails=bob@example.com&require_all_matches=nope',
        '/x',
        'alice',
        403,
      ],
      ['/oauth2/auth?constraints_required=true', '/x', 'alice', 403],
      ['/oauth2/auth?constraints_required=yes', '/x', 'alice', 403],
      ['/oauth2/auth?constraints_required=false', '/x', 'alice', 202],
      // Encodings and duplicates: a restriction is a restriction however it is spelled.
      ['/oauth2/auth?allowed%5Fgroups=ops', '/x', 'alice', 403],
      ['/oauth2/auth?allowed_groups=ops&allowed_groups=', '/x', 'alice', 403],
      ['/oauth2/auth?allowed_groups=%20ops%20', '/x', 'alice', 403],
    ];
    for (const [authUrl, uri, who, want] of cases)
      test(`${authUrl} for ${who ?? 'no session'} on ${uri} → ${want}`, async () => {
        const jar = who === 'alice' ? alice : who === 'bob' ? bob : null;
        const r = await ingress(authUrl, uri, jar ? { cookie: cookie(jar) } : {});
        assert.equal(r.status, want, r.body.slice(0, 300));
        if (want === 202) assert.equal(r.headers['x-auth-request-user'], who);
        else assert.equal(r.headers['x-auth-request-user'], undefined, 'no identity on a refusal');
      });

    test('auth-signin with $escaped_request_uri (and the rd ingress-nginx appends) comes back to the URL, query intact', async () => {
      // ingress-nginx annotations doc (External Authentication): auth-signin
      // https://$host/oauth2/start?rd=$escaped_request_uri; without rd the controller appends
      // rd=$pass_access_scheme://$http_host$escaped_request_uri (template.go buildAuthSignURL).
      const uri = '/reports/q%203?team=eng%20ops&sort=-date';
      for (const signin of [
        `${app}/oauth2/start?rd=${encodeURIComponent(uri)}`,
        `${app}/oauth2/start?rd=${encodeURIComponent(`${app}${uri}`)}`,
      ]) {
        const jar = new CookieJar();
        const { final, chain } = await loginThroughIdp(signin, {
          jar,
          username: 'alice',
          password: 'alice',
        });
        assert.equal(final.status, 200, chain.join('\n'));
        assert.equal(chain.at(-1), `${app}${uri}`);
        assert.ok(
          chain.some((u) => u.startsWith(`${app}/oauth2/callback?`)),
          chain.join('\n'),
        );
      }
    });
  });

  describe('§1 Traefik: oauth2-proxy with the errors middleware, Authentik, Authelia', () => {
    test('oauth2-proxy forwardAuth + errors middleware (401 → /oauth2/sign_in?rd={url}, statusRewrites 401→302): the whole sign-in', async () => {
      // oauth2-proxy docs, configuration/integrations/traefik (v7.13.x): middlewares
      // [oauth-errors, oauth-auth]; errors: status 401-403, service oauth-backend,
      // query /oauth2/sign_in?rd={url}, statusRewrites "401": 302. Traefik's errors middleware
      // (pkg/middlewares/customerrors/custom_errors.go, v2.10): {url} is
      // url.QueryEscape(req.URL.String()), the page is a GET http://<req.Host><query> carrying
      // the client's headers, its headers returned with the (rewritten) status.
      const uri = '/reports/q%203?team=eng%20ops&sort=-date';
      const jar = new CookieJar();
      const auth = await forwardAuth('/oauth2/auth', uri, BROWSER_HEADERS);
      assert.equal(auth.status, 401);
      const page = await request(`${app}/oauth2/sign_in?rd=${goQueryEscape(uri)}`, {
        jar,
        headers: BROWSER_HEADERS,
      });
      assert.equal(page.status, 302, page.body.slice(0, 300));
      assert.ok(page.location!.startsWith(s.idp.issuer), page.location);
      const { final, chain } = await loginThroughIdp(page.location!, {
        jar,
        username: 'alice',
        password: 'alice',
      });
      assert.equal(final.status, 200, chain.join('\n'));
      assert.equal(chain.at(-1), `${app}${uri}`);
      const again = await forwardAuth('/oauth2/auth', uri, { cookie: cookie(jar) });
      assert.equal(again.status, 202);
      assert.equal(again.headers['x-auth-request-email'], 'alice@example.com');
      assert.equal(again.headers['x-auth-request-groups'], 'admins,eng');
    });

    test('Authentik forwardAuth (auth/traefik, trustForwardHeader): 302 to /outpost.goauthentik.io/start, back with the query; 200 with X-authentik-*', async () => {
      // goauthentik.io docs, providers/proxy/server_traefik (standalone, 2023.x-2024.x): address
      // http://outpost.company:9000/outpost.goauthentik.io/auth/traefik, trustForwardHeader,
      // authResponseHeaders X-authentik-username ... X-authentik-meta-version; a router
      // Host(app) && PathPrefix(/outpost.goauthentik.io/) to the outpost: that prefix is the only
      // one routed here, so the sign-in must start under it.
      const uri = '/wiki/Main%20Page?action=edit&section=2';
      const r = await forwardAuth('/outpost.goauthentik.io/auth/traefik', uri, BROWSER_HEADERS);
      assert.equal(r.status, 302);
      assert.ok(r.location!.startsWith(`${app}/outpost.goauthentik.io/start?return=`), r.location);
      const jar = new CookieJar();
      const { chain } = await loginThroughIdp(r.location!, {
        jar,
        username: 'alice',
        password: 'alice',
      });
      assert.equal(chain.at(-1), `${app}${uri}`);
      const ok = await forwardAuth('/outpost.goauthentik.io/auth/traefik', uri, {
        cookie: cookie(jar),
        'X-authentik-username': 'mallory',
      });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers['x-authentik-username'], 'alice');
      assert.equal(ok.headers['x-authentik-groups'], 'admins|eng');
      assert.equal(ok.headers['x-authentik-jwt'], '', 'listed in authResponseHeaders: sent, empty');
    });

    test('Authelia forwardAuth (/api/authz/forward-auth): 302 for a browser GET, 303 after a POST, 401 for XHR; Remote-* on 200', async () => {
      // Authelia docs, integration/proxies/traefik (v4.38+): address
      // http://authelia:9091/api/authz/forward-auth, trustForwardHeader, authResponseHeaders
      // Remote-User, Remote-Groups, Remote-Email, Remote-Name; reference/guides/proxy-authorization
      // "ForwardAuth": 302 (303 for methods other than GET/HEAD/OPTIONS) to the portal, 401 for
      // requests that do not accept HTML.
      const get = await forwardAuth('/api/authz/forward-auth', '/x?y=1', BROWSER_HEADERS);
      assert.equal(get.status, 302);
      const post = await forwardAuth('/api/authz/forward-auth', '/x', {
        ...BROWSER_HEADERS,
        'X-Forwarded-Method': 'POST',
      });
      assert.equal(post.status, 303);
      const xhr = await forwardAuth('/api/authz/forward-auth', '/x', {
        accept: 'application/json',
        'X-Requested-With': 'XMLHttpRequest',
      });
      assert.equal(xhr.status, 401);
      const ok = await forwardAuth('/api/authz/forward-auth', '/x', {
        cookie: cookie(alice),
        'Remote-User': 'mallory',
      });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers['remote-user'], 'alice');
      assert.equal(ok.headers['remote-groups'], 'admins,eng');
      assert.equal(ok.headers['remote-email'], 'alice@example.com');
      assert.equal(ok.headers['remote-name'], 'Alice Example');
    });
  });

  test('Authelia before v4.38 on Traefik (/api/verify?rd=<portal>): a browser is sent to sign in and comes back; the rd value sends no one anywhere', async () => {
    // Authelia docs, integration/proxies/traefik (v4.37.x): forwardAuth address
    // http://authelia:9091/api/verify?rd=https://auth.example.com/, trustForwardHeader,
    // authResponseHeaders Remote-User, Remote-Groups, Remote-Name, Remote-Email.
    const uri = '/dash?tab=2&q=a%20b';
    for (const portal of ['https://auth.example.com/', 'https://evil.test/']) {
      const r = await forwardAuth(
        `/api/verify?rd=${encodeURIComponent(portal)}`,
        uri,
        BROWSER_HEADERS,
      );
      assert.equal(r.status, 302);
      assert.ok(r.location!.startsWith(`${app}/.portcullis/sign_in?return=`), r.location);
    }
    const r = await forwardAuth('/api/verify?rd=https://auth.example.com/', uri, BROWSER_HEADERS);
    const { chain } = await loginThroughIdp(r.location!, {
      jar: new CookieJar(),
      username: 'bob',
      password: 'bob',
    });
    assert.equal(chain.at(-1), `${app}${uri}`);
    const ok = await forwardAuth('/api/verify?rd=https://auth.example.com/', uri, {
      cookie: cookie(bob),
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['remote-user'], 'bob');
  });

  describe('§1 HAProxy with haproxy-auth-request for Authelia (the Lua module is not in Debian)', () => {
    test("HEAD /api/authz/forward-auth with the frontend's X-Forwarded-*: 200 with the four Remote-* it copies; a browser without a session gets the Location HAProxy redirects to", async () => {
      // Authelia docs, integration/proxies/haproxy (v4.38+): the frontend sets X-Forwarded-Method
      // %[method], -Proto, -Host %[req.hdr(Host)], -URI %[path]?%[query], -For; then
      // lua.auth-intercept be_authelia /api/authz/forward-auth HEAD * remote-user,remote-groups,
      // remote-name,remote-email -: a HEAD with every header of the request (TimWolla/haproxy-
      // auth-request auth-request.lua), success on 2xx, else `http-request redirect location
      // %[var(txn.auth_response_location)]` (403 denied).
      const haproxy = (extra: Record<string, string>) =>
        request(`http://authelia.corp.test:${s.port}/api/authz/forward-auth`, {
          method: 'HEAD',
          headers: {
            Host: `app.corp.test:${s.port}`,
            'X-Forwarded-Method': 'GET',
            'X-Forwarded-Proto': 'http',
            'X-Forwarded-Host': `app.corp.test:${s.port}`,
            'X-Forwarded-URI': '/wiki?page=1',
            'X-Forwarded-For': '203.0.113.7',
            ...extra,
          },
        });
      const ok = await haproxy({ cookie: cookie(alice), 'Remote-User': 'mallory' });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers['remote-user'], 'alice');
      assert.equal(ok.headers['remote-groups'], 'admins,eng');
      assert.equal(ok.headers['remote-name'], 'Alice Example');
      assert.equal(ok.headers['remote-email'], 'alice@example.com');
      const anon = await haproxy(BROWSER_HEADERS);
      assert.equal(anon.status, 302);
      const { chain } = await loginThroughIdp(anon.location!, {
        jar: new CookieJar(),
        username: 'bob',
        password: 'bob',
      });
      assert.equal(chain.at(-1), `${app}/wiki?page=1`);
    });
  });

  describe('§1 Envoy ext_authz and ingress-nginx for Authentik', () => {
    test('Authelia ext_authz (path_prefix /api/authz/ext-authz/): 200 with Remote-* only for 200, the path after the prefix judged', async () => {
      // Authelia docs, integration/proxies/envoy (v4.38+): http_service server_uri authelia:9091,
      // path_prefix /api/authz/ext-authz/, allowed_headers Cookie, Authorization ...;
      // allowed_upstream_headers Remote-User, Remote-Groups, Remote-Email, Remote-Name.
      // Envoy's check request: the client's method, path_prefix + path, Host the original one.
      const check = (path: string, jar: CookieJar | null) =>
        request(`${app}/api/authz/ext-authz${path}`, {
          rawPath: `/api/authz/ext-authz${path}`,
          headers: {
            'content-length': '0',
            'x-forwarded-proto': 'http',
            ...(jar ? { cookie: cookie(jar) } : BROWSER_HEADERS),
          },
        });
      const ok = await check('/admin/panel?x=1', alice);
      assert.equal(ok.status, 200);
      assert.equal(ok.headers['remote-groups'], 'admins,eng');
      assert.equal((await check('/admin/panel', bob)).status, 403);
      const anon = await check('/x', null);
      assert.equal(anon.status, 302);
    });

    test('Authentik ingress-nginx annotations (auth/nginx, auth-snippet X-Forwarded-Host $http_host): 200 / 401', async () => {
      // goauthentik.io docs, providers/proxy/server_nginx "Ingress" (2023.x-2024.x): auth-url
      // http://ak-outpost-<name>.<ns>.svc.cluster.local:9000/outpost.goauthentik.io/auth/nginx,
      // auth-signin https://<app>/outpost.goauthentik.io/start?rd=$escaped_request_uri,
      // auth-response-headers Set-Cookie,X-authentik-*, auth-snippet proxy_set_header
      // X-Forwarded-Host $http_host.
      const extra = { 'X-Forwarded-Host': `app.corp.test:${s.port}` };
      const ok = await ingress('/outpost.goauthentik.io/auth/nginx', '/x', {
        ...extra,
        cookie: cookie(bob),
      });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers['x-authentik-groups'], 'eng');
      const anon = await ingress('/outpost.goauthentik.io/auth/nginx', '/x', {
        ...extra,
        ...BROWSER_HEADERS,
      });
      assert.equal(anon.status, 401);
      const jar = new CookieJar();
      const uri = '/x?a=1&b=2';
      const { chain } = await loginThroughIdp(
        `${app}/outpost.goauthentik.io/start?rd=${encodeURIComponent(uri)}`,
        { jar, username: 'alice', password: 'alice' },
      );
      assert.equal(chain.at(-1), `${app}${uri}`);
    });
  });

  describe('§4 sign-in, sign-out and the redirect allow-list', () => {
    test('/oauth2/sign_in?rd= with %20 as the snippets write it (unescaped) lands on the address, not a 400', async () => {
      const wanted = `${app}/a%20b/c?q=x%20y`;
      const r = await request(`${app}/oauth2/sign_in?rd=${wanted}`, { headers: BROWSER_HEADERS });
      assert.equal(r.status, 302, r.body.slice(0, 300));
      const { chain } = await loginThroughIdp(`${app}/oauth2/sign_in?rd=${wanted}`, {
        jar: new CookieJar(),
        username: 'bob',
        password: 'bob',
      });
      assert.equal(chain.at(-1), wanted);
    });

    test('allowed_redirect_domains (--whitelist-domain): a subdomain of a leading-dot entry, on its port, is reached straight after the sign-in', async () => {
      const target = `http://team.docs.corp.test:${s.port}/handbook?page=2`;
      const { chain } = await loginThroughIdp(
        `${app}/oauth2/start?rd=${encodeURIComponent(target)}`,
        { jar: new CookieJar(), username: 'bob', password: 'bob' },
      );
      // No handoff detour: Portcullis serves no route there, as oauth2-proxy did not.
      assert.equal(chain.at(-1), target, chain.join('\n'));
      for (const ok of [
        `http://docs.corp.test:${s.port}/`,
        'http://wiki.corp.test:8443/x',
        'http://wiki.corp.test/x',
      ]) {
        const r = await request(`${app}/oauth2/start?rd=${encodeURIComponent(ok)}`, {
          headers: BROWSER_HEADERS,
        });
        assert.equal(r.status, 302, ok);
        assert.ok(r.location!.startsWith(s.idp.issuer), ok);
      }
    });

    const hostile = (port: number) => [
      // not on the list: another port, another host, a look-alike
      'http://team.docs.corp.test/x',
      `http://team.docs.corp.test:${port + 1}/x`,
      `http://docs.corp.test.evil.test:${port}/`,
      `http://xdocs.corp.test:${port}/`,
      'http://evil.test/',
      // open-redirect spellings
      '//evil.test/',
      '/\\evil.test',
      '/%2F%2Fevil.test',
      '%2F%2Fevil.test',
      '/%5Cevil.test',
      `http://team.docs.corp.test:${port}@evil.test/`,
      `http://evil.test%40team.docs.corp.test:${port}/`,
      `http://evil.test%2F.docs.corp.test:${port}/`,
      `http://evil.test\\.docs.corp.test:${port}/`,
      `http://evil.test%23.docs.corp.test:${port}/`,
      `http://team.docs.corp.test:${port}/%0d%0aSet-Cookie:%20x=1`,
      `http://team.docs.corp.test:${port}/%250d%250aSet-Cookie:x=1`,
      `http:\\\\evil.test`,
      'javascript:alert(1)//',
      `HTTP://EVIL.TEST/`,
    ];

    test('open-redirect attempts through every sign-in and sign-out URL stay refused: 400, no Location, nothing started', async () => {
      const endpoints = [
        '/oauth2/start',
        '/oauth2/sign_in',
        '/oauth2/sign_out',
        '/outpost.goauthentik.io/start',
        '/outpost.goauthentik.io/sign_out',
        '/.portcullis/sign_in',
        '/.portcullis/sign_out',
      ];
      const refusedBefore = s.logs.filter((l) => l['event'] === 'redirect_refused').length;
      let tries = 0;
      for (const endpoint of endpoints)
        for (const rd of hostile(s.port))
          for (const spelled of [encodeURIComponent(rd), rd]) {
            const r: Resp = await request(`${app}${endpoint}?rd=${spelled}`, {
              headers: BROWSER_HEADERS,
            });
            tries++;
            const where = `${endpoint}?rd=${spelled}`;
            assert.equal(r.status, 400, where);
            assert.equal(r.location, undefined, where);
            assert.match(r.body, /not one of the sites this proxy protects/, where);
            assert.ok(
              !r.setCookies.some((c) => c.includes('_login_')),
              `${where}: no login started`,
            );
          }
      const refused = s.logs.filter((l) => l['event'] === 'redirect_refused').length;
      assert.equal(refused - refusedBefore, tries, 'each refusal is in the audit log');
    });

    test('X-Auth-Request-Redirect on /oauth2/sign_out (oauth2-proxy docs, features/endpoints "Sign out") is validated like rd', async () => {
      const jar = new CookieJar();
      await loginThroughIdp(`${app}/`, { jar, username: 'bob', password: 'bob' });
      const bad = await request(`${app}/oauth2/sign_out`, {
        jar,
        headers: { ...BROWSER_HEADERS, 'X-Auth-Request-Redirect': 'https://evil.test/' },
      });
      assert.equal(bad.status, 400);
      assert.equal(
        (await request(`${app}/oauth2/userinfo`, { jar })).status,
        200,
        'still signed in',
      );
      const good = await request(`${app}/oauth2/sign_out`, {
        jar,
        headers: {
          ...BROWSER_HEADERS,
          'X-Auth-Request-Redirect': `http://team.docs.corp.test:${s.port}/bye`,
        },
      });
      assert.equal(good.status, 302);
      // oauth2-proxy's sign-out ends its own session and goes straight to the target; the IdP,
      // which never had a post-logout URI registered for it, is not involved.
      assert.equal(good.location, `http://team.docs.corp.test:${s.port}/bye`);
      assert.equal((await request(`${app}/oauth2/userinfo`, { jar })).status, 401);
      await loginThroughIdp(`${app}/`, { jar, username: 'bob', password: 'bob' });
      const home = await request(`${app}/oauth2/sign_out`, { jar, headers: BROWSER_HEADERS });
      assert.equal(home.location, `${app}/`, 'no rd: the host root, as oauth2-proxy');
      assert.equal((await request(`${app}/oauth2/userinfo`, { jar })).status, 401);
    });

    test("opening /oauth2/start through nginx's /oauth2/ location (X-Auth-Request-Redirect: /oauth2/start) signs in once and lands on /, not in a loop", async () => {
      // oauth2-proxy docs, configuration/integrations/nginx (v7.13.x): the `/oauth2/` location
      // sets X-Auth-Request-Redirect $request_uri, so a user who opens /oauth2/start sends itself.
      for (const own of ['/oauth2/start', '/oauth2/sign_in', '/outpost.goauthentik.io/start']) {
        const { final, chain } = await loginThroughIdp(`${app}${own}`, {
          jar: new CookieJar(),
          username: 'bob',
          password: 'bob',
          headers: { 'X-Auth-Request-Redirect': own },
          max: 12,
        });
        assert.equal(final.status, 200, chain.join('\n'));
        assert.equal(chain.at(-1), `${app}/`, chain.join('\n'));
      }
    });

    test('Authentik: /outpost.goauthentik.io/sign_out ends the session', async () => {
      const jar = new CookieJar();
      await loginThroughIdp(`${app}/`, { jar, username: 'bob', password: 'bob' });
      const out = await request(`${app}/outpost.goauthentik.io/sign_out`, {
        jar,
        headers: BROWSER_HEADERS,
      });
      assert.equal(out.status, 302);
      const after = await forwardAuth('/outpost.goauthentik.io/auth/traefik', '/x', {
        cookie: cookie(jar),
        accept: 'application/json',
      });
      assert.equal(after.status, 401);
    });

    test('X-Auth-Request-Access-Token reaches /oauth2/auth answers only where the route passes the token', async () => {
      // oauth2-proxy docs, configuration/overview: --pass-access-token with --set-xauthrequest
      // adds X-Auth-Request-Access-Token to /oauth2/auth's answer (v7.x).
      const withToken = await ingress('/oauth2/auth', '/token/x', { cookie: cookie(alice) });
      assert.equal(withToken.status, 202);
      assert.match(String(withToken.headers['x-auth-request-access-token']), /^\S{16,}$/);
      const without = await ingress('/oauth2/auth', '/x', { cookie: cookie(alice) });
      assert.equal(without.status, 202);
      assert.equal(without.headers['x-auth-request-access-token'], undefined);
    });
  });
});
