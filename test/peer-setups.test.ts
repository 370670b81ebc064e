// Issue 18 §1: the integration setups oauth2-proxy, Authentik and Authelia document, run for real
// with Portcullis in the peer's place. Each row is one setup: its fixture under
// test/fixtures/peers/ (written from the peer's documented facts, source cited in the file and
// in the row), the proxy started from it with only addresses and host names substituted, a user
// signed in through it, and the identity headers the upstream receives checked against what the
// peer's documentation promises (names, value formats, one copy each, none of the client's).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startIdp, type RunningIdp } from '../demo/idp.js';
import { startWhoami, type RunningWhoami } from '../demo/whoami.js';
import { parseConfig } from '../src/config/load.js';
import type { RunningPortcullis } from '../src/server.js';
import { startCaddy, type StartedCaddy } from './helpers/caddy.js';
import { CookieJar, request } from './helpers/http.js';
import { startLoggedPortcullis } from './helpers/logged-portcullis.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startNginx, type StartedNginx } from './helpers/nginx.js';
import { freePort } from './helpers/ports.js';
import { sub } from './helpers/recipes.js';

interface Seen {
  rawHeaders: Array<[string, string]>;
  url: string;
}

type Peer = 'oauth2-proxy' | 'authentik' | 'authelia';

interface Ports {
  /** The proxy's listen port; every host the browser sees is on it. */
  port: number;
  /** Portcullis. */
  pc: number;
  upstream: number;
}

interface Row {
  name: string;
  /** The peer's documentation page and version the fixture reproduces. */
  source: string;
  file: string;
  proxy: 'nginx' | 'caddy';
  peer: Peer;
  /** Only addresses and host names: [text in the fixture, text in the test]. */
  subs: (p: Ports) => Array<[string, string]>;
  /**
   * The setup sends no path to the auth endpoint (oauth2-proxy's older snippets): the host is
   * judged alone, so the host has one policy (admins only) instead of a public and an admin path.
   */
  hostOnly?: boolean;
  /** The snippet writes the address into `rd` unescaped: a second query parameter is cut there, as with the peer. */
  unescapedRd?: boolean;
  /** Where the setup sends a browser with an `rd` (AUTH… = on the portal host): hostile ones are tried there. */
  rdEntry: string;
  /** URLs of the peer's own sign-in the browser passes through (prefixes, on the app host unless absolute). */
  signInVia: string[];
  /** What the upstream must receive for alice: header name (lower-case) → the one value. */
  identity: Record<string, string | RegExp>;
}

// The peers' callback URIs, registered at the IdP before the switch and kept as they are.
const CALLBACK: Record<Peer, string> = {
  // oauth2-proxy docs, configuration/overview (v7.x): --redirect-url defaults to /oauth2/callback.
  'oauth2-proxy': '/oauth2/callback',
  // Authentik proxy providers register <external host>/outpost.goauthentik.io/callback
  // ?X-authentik-auth-callback=true (authentik source, providers/proxy/models.py, 2023.x-2024.x).
  authentik: '/outpost.goauthentik.io/callback?X-authentik-auth-callback=true',
  // Authelia is the IdP itself: its users register Portcullis afresh, on the portal host.
  authelia: '/.portcullis/callback',
};

const SPOOF: Record<string, string> = {
  'X-User': 'mallory',
  'X-Email': 'mallory@evil.test',
  'X-Access-Token': 'mallory-token',
  'X-Auth-Request-User': 'mallory',
  'X-Auth-Request-Email': 'mallory@evil.test',
  'X-authentik-username': 'mallory',
  'X-authentik-groups': 'admins',
  'X-Authentik-Jwt': 'mallory',
  'Remote-User': 'mallory',
  'Remote-Groups': 'admins',
  'Remote-Email': 'mallory@evil.test',
};

const localhost = (p: Ports) => `127.0.0.1:${p.pc}`;

// What the rows of one peer (or one peer behind one proxy) have in common. Each row still names
// its own fixture and the documentation page it reproduces.
type Sub = [string, string];
/** Every nginx snippet listens on 80; the tests listen on their own port. */
const listen80 = (p: Ports): Sub => ['listen 80;', `listen 127.0.0.1:${p.port};`];
const OAUTH2_PROXY = { peer: 'oauth2-proxy', rdEntry: '/oauth2/sign_in' } as const;
/** Both oauth2-proxy nginx snippets name the same four addresses. */
const oauth2ProxyNginxSubs = (p: Ports): Sub[] => [
  listen80(p),
  ['server_name app.example.com;', 'server_name app.corp.test;'],
  ['127.0.0.1:4180', localhost(p)],
  ['http://backend/', `http://127.0.0.1:${p.upstream}/`],
];
const AUTHENTIK = { peer: 'authentik', rdEntry: '/outpost.goauthentik.io/start' } as const;
const outpost = (p: Ports): Sub => ['http://outpost.company:9000', `http://${localhost(p)}`];
/** The outpost's start (with the address in `param`) and its callback. */
const authentikSignIn = (param: 'rd' | 'return'): string[] => [
  `/outpost.goauthentik.io/start?${param}=`,
  '/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&',
];
const AUTHENTIK_NGINX = {
  ...AUTHENTIK,
  proxy: 'nginx',
  unescapedRd: true,
  signInVia: authentikSignIn('rd'),
  identity: authentikIdentity(),
} as const;
const AUTHELIA = { peer: 'authelia', identity: autheliaIdentity() } as const;
/** Both Authelia nginx snippets: the portal, the app (nextcloud) and its server_name. */
const autheliaNginxSubs = (p: Ports): Sub[] => [
  listen80(p),
  ['http://authelia:9091', `http://${localhost(p)}`],
  ['http://nextcloud;', `http://127.0.0.1:${p.upstream};`],
  ['server_name nextcloud.*;', 'server_name app.*;'],
];

const ROWS: Row[] = [
  {
    ...OAUTH2_PROXY,
    name: 'oauth2-proxy, nginx auth_request (current docs: X-Forwarded-Uri, @oauth2_signin)',
    source: 'oauth2-proxy docs, configuration/integrations/nginx, v7.13.x',
    file: 'oauth2-proxy-nginx-7.conf',
    proxy: 'nginx',
    subs: oauth2ProxyNginxSubs,
    unescapedRd: true,
    signInVia: ['/oauth2/sign_in?rd=', '/oauth2/callback?'],
    identity: {
      'x-user': 'alice',
      'x-email': 'alice@example.com',
      // --pass-access-token with --set-xauthrequest: the IdP's access token (route setting
      // pass_access_token: X-Auth-Request-Access-Token, as migrating.md says).
      'x-access-token': /^[A-Za-z0-9._~+/=-]{16,}$/,
    },
  },
  {
    ...OAUTH2_PROXY,
    name: 'oauth2-proxy, nginx auth_request (older docs: X-Scheme, no URI header, error_page 401 = /oauth2/sign_in)',
    source:
      'oauth2-proxy docs, configuration/overview "Configuring for use with the Nginx auth_request directive", v6.1.x-v7.2.x',
    file: 'oauth2-proxy-nginx-6.conf',
    proxy: 'nginx',
    subs: oauth2ProxyNginxSubs,
    hostOnly: true,
    signInVia: ['/oauth2/callback?'],
    identity: { 'x-user': 'alice', 'x-email': 'alice@example.com' },
  },
  {
    ...OAUTH2_PROXY,
    name: 'oauth2-proxy, Caddy forward_auth with handle_response 401 → /oauth2/sign_in',
    source: 'oauth2-proxy docs, configuration/integrations/caddy, v7.13.x',
    file: 'oauth2-proxy.Caddyfile',
    proxy: 'caddy',
    subs: (p) => [
      ['example.com {', `http://app.corp.test:${p.port} {`],
      ['oauth2-proxy.internal:4180', localhost(p)],
      ['upstream.internal:3000', `127.0.0.1:${p.upstream}`],
      // {host} has no port; the tests must listen on one.
      ['{scheme}://{host}{uri}', '{scheme}://{hostport}{uri}'],
    ],
    unescapedRd: true,
    signInVia: ['/oauth2/sign_in?rd=', '/oauth2/callback?'],
    identity: { 'x-auth-request-user': 'alice', 'x-auth-request-email': 'alice@example.com' },
  },
  {
    ...AUTHENTIK_NGINX,
    name: 'Authentik outpost, standalone nginx',
    source: 'goauthentik.io docs, providers/proxy/server_nginx "Standalone nginx", 2023.x-2024.x',
    file: 'authentik-nginx.conf',
    subs: (p) => [
      listen80(p),
      outpost(p),
      ['http://localhost:5000', `http://127.0.0.1:${p.upstream}`],
    ],
  },
  {
    ...AUTHENTIK_NGINX,
    name: "Authentik outpost, Nginx Proxy Manager's Advanced snippet",
    source:
      'goauthentik.io docs, providers/proxy/server_nginx "Nginx Proxy Manager", 2023.x-2024.x; NPM v2 backend/templates/proxy_host.conf',
    file: 'authentik-npm.conf',
    subs: (p) => [
      listen80(p),
      ['server_name app.example.com;', 'server_name app.corp.test;'],
      ['"backend.internal"', '"127.0.0.1"'],
      ['set $port           8080;', `set $port           ${p.upstream};`],
      outpost(p),
    ],
  },
  {
    ...AUTHENTIK,
    name: 'Authentik outpost, Caddy forward_auth (copy_headers of all eleven X-Authentik-* names)',
    source: 'goauthentik.io docs, providers/proxy/server_caddy, 2023.x-2024.x',
    file: 'authentik.Caddyfile',
    proxy: 'caddy',
    subs: (p) => [
      ['app.company {', `http://app.corp.test:${p.port} {`],
      outpost(p),
      ['localhost:1234', `127.0.0.1:${p.upstream}`],
    ],
    signInVia: authentikSignIn('return'),
    identity: {
      ...authentikIdentity(),
      // Caddy copies the names as written in copy_headers; what Portcullis does not know it
      // sends empty, so Caddy 2.6 does not copy its placeholder text instead.
      'x-authentik-jwt': '',
      'x-authentik-meta-jwks': '',
      'x-authentik-meta-outpost': '',
      'x-authentik-meta-provider': '',
      'x-authentik-meta-app': '',
      'x-authentik-meta-version': '',
    },
  },
  {
    ...AUTHELIA,
    name: 'Authelia, nginx with /api/authz/auth-request (Location on the 401)',
    source: 'Authelia docs, integration/proxies/nginx, v4.38+',
    file: 'authelia-nginx-authz.conf',
    rdEntry: 'AUTH/.portcullis/sign_in',
    proxy: 'nginx',
    subs: autheliaNginxSubs,
    signInVia: ['AUTH/.portcullis/sign_in?return=', 'AUTH/.portcullis/callback?'],
  },
  {
    ...AUTHELIA,
    name: 'Authelia, nginx with the legacy /api/verify and error_page 401 =302 https://auth/?rd=',
    source: 'Authelia docs, integration/proxies/nginx, v4.37.x (legacy method)',
    file: 'authelia-nginx-verify.conf',
    rdEntry: 'AUTH/',
    proxy: 'nginx',
    subs: (p) => [
      ...autheliaNginxSubs(p),
      ['https://auth.example.com/', `http://auth.corp.test:${p.port}/`],
    ],
    unescapedRd: true,
    signInVia: ['AUTH/?rd=', 'AUTH/.portcullis/callback?'],
  },
  {
    ...AUTHELIA,
    name: 'Authelia, Caddy forward_auth to /api/authz/forward-auth',
    source: 'Authelia docs, integration/proxies/caddy, v4.38+',
    file: 'authelia.Caddyfile',
    rdEntry: 'AUTH/.portcullis/sign_in',
    proxy: 'caddy',
    subs: (p) => [
      ['auth.example.com {', `http://auth.corp.test:${p.port} {`],
      ['nextcloud.example.com {', `http://app.corp.test:${p.port} {`],
      ['authelia:9091', localhost(p)],
      ['nextcloud:80', `127.0.0.1:${p.upstream}`],
    ],
    signInVia: ['AUTH/.portcullis/sign_in?return=', 'AUTH/.portcullis/callback?'],
  },
];

// Authentik docs, providers/proxy (index): X-authentik-username, X-authentik-groups (groups
// separated by a pipe), X-authentik-email, X-authentik-name, X-authentik-uid (2023.x-2024.x).
function authentikIdentity(): Record<string, string> {
  return {
    'x-authentik-username': 'alice',
    'x-authentik-groups': 'admins|eng',
    'x-authentik-email': 'alice@example.com',
    'x-authentik-name': 'Alice Example',
    'x-authentik-uid': 'alice',
  };
}
// Authelia docs, integration/proxies (introduction, "Response Headers"): Remote-User (the
// username), Remote-Groups (comma-separated), Remote-Email, Remote-Name (v4.38).
function autheliaIdentity(): Record<string, string> {
  return {
    'remote-user': 'alice',
    'remote-groups': 'admins,eng',
    'remote-email': 'alice@example.com',
    'remote-name': 'Alice Example',
  };
}

function fixture(file: string): string {
  return readFileSync(new URL(`../../test/fixtures/peers/${file}`, import.meta.url), 'utf8');
}

/** nginx's $host drops the port the tests listen on; on 80/443 it equals $http_host. */
const withPort = (conf: string) => conf.replace(/\$host\b/g, '$http_host');

for (const row of ROWS) {
  describe(`${row.name} [${row.source}]`, () => {
    let idp: RunningIdp;
    let upstream: RunningWhoami;
    let portcullis: RunningPortcullis;
    let nginx: StartedNginx | undefined;
    let caddy: StartedCaddy | undefined;
    let app: string;
    let auth: string;
    /** Portcullis's log as written (empty until it starts). */
    let logText = (): string => '';

    before(async () => {
      const ports: Ports = { port: await freePort(), pc: await freePort(), upstream: 0 };
      app = `http://app.corp.test:${ports.port}`;
      auth = `http://auth.corp.test:${ports.port}`;
      const portal = row.peer === 'authelia';
      const home = portal ? auth : app;
      const secret = randomBytes(24).toString('base64url');
      idp = await startIdp({
        clients: [
          {
            client_id: 'portcullis',
            client_secret: secret,
            redirect_uris: [`${home}${CALLBACK[row.peer]}`],
            post_logout_redirect_uris: [`${home}/.portcullis/signed_out`],
          },
        ],
      });
      upstream = await startWhoami({ name: 'upstream' });
      ports.upstream = upstream.port;
      const routes = row.hostOnly
        ? `  - from: ${app}
    allowed_groups: [admins]
`
        : `  - from: ${app}
    prefix: /admin
    allowed_groups: [admins]
  - from: ${app}
    allow_any_authenticated_user: true
    pass_access_token: X-Auth-Request-Access-Token
`;
      const yaml = `address: 127.0.0.1:${ports.pc}
insecure_server: true
cookie_secure: false
cookie_secret: ${randomBytes(32).toString('base64')}
idp_provider_url: ${idp.issuer}
idp_client_id: portcullis
idp_client_secret: ${secret}
idp_scopes: [openid, profile, email, groups]
compat: [${row.peer}]
${CALLBACK[row.peer] === '/.portcullis/callback' ? '' : `authenticate_callback_path: ${CALLBACK[row.peer]}`}
${portal ? `authenticate_service_url: ${auth}\ncookie_domain: corp.test` : ''}
routes:
${routes}`;
      const logged = await startLoggedPortcullis(parseConfig(yaml, 'test.yaml'), { level: 'info' });
      portcullis = logged.proxy;
      logText = logged.text;
      const conf = sub(fixture(row.file), row.subs(ports));
      if (row.proxy === 'nginx') nginx = await startNginx(withPort(conf));
      else caddy = await startCaddy(conf);
    });
    after(async () => {
      await nginx?.close();
      await caddy?.close();
      await Promise.allSettled([portcullis?.close(), upstream?.close(), idp?.close()]);
    });

    const diag = () =>
      `${nginx?.errorLog().slice(-2000) ?? caddy?.log().slice(-2000) ?? ''}\n${logText().slice(-3000)}`;
    /** alice, signed in through the setup (at /first); her cookies. */
    const aliceSignedIn = async (): Promise<CookieJar> => {
      const jar = new CookieJar();
      const login = await loginThroughIdp(`${app}/first`, {
        jar,
        username: 'alice',
        password: 'alice',
      });
      assert.equal(login.final.status, 200, diag());
      return jar;
    };

    test('alice signs in through the peer’s own URLs and lands on her URL, query intact', async () => {
      const jar = new CookieJar();
      // A space in the path and the query, as %20: the unescaped `rd` of the snippets used to
      // turn it into a 400 at the sign-in.
      const wanted = `${app}/reports/q%203?team=eng%20ops${row.unescapedRd ? '' : '&sort=-date'}`;
      const { final, chain } = await loginThroughIdp(wanted, {
        jar,
        username: 'alice',
        password: 'alice',
        headers: SPOOF,
      });
      assert.equal(
        final.status,
        200,
        `${final.body.slice(0, 300)}\n${chain.join('\n')}\n${diag()}`,
      );
      assert.equal(chain.at(-1), wanted, chain.join('\n'));
      for (const via of row.signInVia) {
        const prefix = via.startsWith('AUTH') ? `${auth}${via.slice(4)}` : `${app}${via}`;
        assert.ok(
          chain.some((u) => u.startsWith(prefix)),
          `the browser passed through ${prefix}:\n${chain.join('\n')}`,
        );
      }
      assert.ok(!logText().includes('forward_auth_misconfigured'), diag());
    });

    test('the upstream receives exactly the identity headers the peer documents, none of the client’s', async () => {
      const jar = await aliceSignedIn();
      const r = await request(`${app}/whoami?format=json`, {
        jar,
        headers: { ...BROWSER_HEADERS, ...SPOOF },
      });
      assert.equal(r.status, 200, diag());
      const seen = r.json<Seen>().rawHeaders.map(([k, v]) => [k.toLowerCase(), v] as const);
      for (const [name, want] of Object.entries(row.identity)) {
        const values = seen.filter(([k]) => k === name).map(([, v]) => v);
        // One copy, the session's: a client's copy (SPOOF) must be replaced, never added to.
        assert.equal(values.length, 1, `one ${name}, got ${JSON.stringify(values)}`);
        if (want instanceof RegExp) assert.match(values[0]!, want, name);
        else assert.equal(values[0], want, name);
      }
      assert.ok(!seen.some(([, v]) => /\{http\./.test(v)), 'no unreplaced Caddy placeholder');
    });

    test('hostile rd values at the setup’s sign-in entry are refused through the proxy: 400, no Location', async () => {
      const entry = row.rdEntry.startsWith('AUTH')
        ? `${auth}${row.rdEntry.slice(4)}`
        : `${app}${row.rdEntry}`;
      const port = new URL(app).port;
      for (const rd of [
        'https://evil.test/',
        '//evil.test/',
        '/\\evil.test',
        '/%2F%2Fevil.test',
        `http://app.corp.test:${port}@evil.test/`,
        `http://evil.test%2F.corp.test:${port}/`,
        `http://app.corp.test:${port}/%0d%0aSet-Cookie:%20x=1`,
        `http://app.corp.test.evil.test:${port}/`,
      ])
        for (const spelled of [rd, encodeURIComponent(rd)]) {
          const r = await request(`${entry}?rd=${spelled}`, { headers: BROWSER_HEADERS });
          assert.equal(r.status, 400, `${entry}?rd=${spelled}\n${diag()}`);
          assert.equal(r.location, undefined);
        }
    });

    test('signing out at the peer’s sign-out URL ends the session the proxy checks', async () => {
      const jar = await aliceSignedIn();
      const bye = `${app}/bye`;
      // oauth2-proxy: /oauth2/sign_out?rd= (docs, features/endpoints "Sign out", v7.13.x): its
      // own session only, then rd. Authentik: /outpost.goauthentik.io/sign_out (docs,
      // providers/proxy "Logging out"). Authelia: the portal's /logout?rd=.
      const out =
        row.peer === 'oauth2-proxy'
          ? `${app}/oauth2/sign_out?rd=${encodeURIComponent(bye)}`
          : row.peer === 'authentik'
            ? `${app}/outpost.goauthentik.io/sign_out`
            : `${auth}/logout?rd=${encodeURIComponent(bye)}`;
      const r = await request(out, { jar, headers: BROWSER_HEADERS });
      assert.equal(r.status, 302, `${r.body.slice(0, 200)}\n${diag()}`);
      if (row.peer === 'oauth2-proxy') assert.equal(r.location, bye, 'straight to rd');
      else assert.ok(r.location!.startsWith(idp.issuer), `on to the IdP: ${r.location}`);
      const after = await request(`${app}/private`, { jar, headers: BROWSER_HEADERS });
      assert.ok([302, 303].includes(after.status), `signed out: ${after.status}\n${diag()}`);
    });

    test('bob is refused where the route says so, and no session means the peer’s sign-in', async () => {
      const bob = new CookieJar();
      const denied = await loginThroughIdp(`${app}${row.hostOnly ? '/' : '/admin/panel'}`, {
        jar: bob,
        username: 'bob',
        password: 'bob',
      });
      assert.equal(denied.final.status, 403, `${denied.chain.join('\n')}\n${diag()}`);
      const anon = await request(`${app}/secret`, { headers: BROWSER_HEADERS });
      assert.ok([302, 303].includes(anon.status), `${anon.status}\n${diag()}`);
    });
  });
}
