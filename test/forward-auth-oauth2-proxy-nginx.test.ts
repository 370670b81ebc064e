// oauth2-proxy's own nginx auth_request setup, run by a real nginx in front of Portcullis with
// `compat: [oauth2-proxy]`: the user swaps oauth2-proxy's address for Portcullis's and changes
// nothing else. The snippet and the facts it is written from: helpers/oauth2-proxy-nginx.ts
// (https://oauth2-proxy.github.io/oauth2-proxy/configuration/integration, 7.10.x to 7.13.x).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startWhoami, type RunningWhoami } from '../demo/whoami.js';
import { ADMIN_PUBLIC_ANY, startAuthServer, type AuthServer } from './helpers/auth-server.js';
import { CookieJar, request } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startNginx, type StartedNginx } from './helpers/nginx.js';
import { oauth2ProxyNginx } from './helpers/oauth2-proxy-nginx.js';
import { freePort } from './helpers/ports.js';

interface Seen {
  rawHeaders: Array<[string, string]>;
  url: string;
}

describe("real nginx with oauth2-proxy's documented auth_request setup, Portcullis in oauth2-proxy's place", () => {
  let auth: AuthServer;
  let upstream: RunningWhoami;
  let nginx: StartedNginx;
  let app: string;
  const logs: string[] = [];

  before(async () => {
    const port = await freePort();
    const pcPort = await freePort();
    app = `http://app.corp.test:${port}`;
    upstream = await startWhoami({ name: 'upstream' });
    // The redirect URI registered at the IdP for oauth2-proxy, kept as it was.
    auth = await startAuthServer({
      app,
      port: pcPort,
      routes: ADMIN_PUBLIC_ANY(app),
      globals: `compat: [oauth2-proxy]
authenticate_callback_path: /oauth2/callback`,
      logs,
      redirectUris: [`${app}/oauth2/callback`],
      postLogoutRedirectUris: [`${app}/`],
    });
    nginx = await startNginx(
      oauth2ProxyNginx({ port, auth: pcPort, upstream: upstream.port, groups: true }),
    );
  });
  after(async () => {
    await nginx?.close();
    await Promise.allSettled([auth?.close(), upstream?.close()]);
  });

  const diag = () => `${nginx?.errorLog() ?? ''}\n${logs.join('').slice(-3000)}`;

  test('alice signs in through /oauth2/sign_in and /oauth2/callback and lands on her URL, query intact, with identity', async () => {
    const jar = new CookieJar();
    // One parameter: the snippet puts the URL into `rd` unencoded, so a second `&name=` would be
    // read as the sign-in URL's own parameter, by oauth2-proxy as by us.
    const wanted = `${app}/reports/q3?team=eng`;
    const { final, chain } = await loginThroughIdp(wanted, {
      jar,
      username: 'alice',
      password: 'alice',
      headers: {
        'X-User': 'mallory',
        'X-Auth-Request-Groups': 'admins',
        'X-Forwarded-Host': 'evil.test',
      },
    });
    assert.equal(final.status, 200, `${final.body.slice(0, 300)}\n${chain.join('\n')}\n${diag()}`);
    assert.equal(chain.at(-1), wanted);
    assert.ok(
      chain.some((u) => u.startsWith(`${app}/oauth2/sign_in?rd=`)),
      `nginx's named location sent the browser to /oauth2/sign_in: ${chain.join('\n')}`,
    );
    assert.ok(
      chain.some((u) => u.startsWith(`${app}/oauth2/callback?`)),
      'the IdP came back to /oauth2/callback',
    );

    const r = await request(`${app}/reports/q3?format=json`, {
      jar,
      headers: { ...BROWSER_HEADERS, 'X-User': 'mallory', 'X-Forwarded-Host': 'evil.test' },
    });
    assert.equal(r.status, 200, diag());
    const h = r.json<Seen>().rawHeaders.map(([k, v]) => [k.toLowerCase(), v] as const);
    const get = (n: string) => h.filter(([k]) => k === n).map(([, v]) => v);
    assert.deepEqual(get('x-user'), ['alice']);
    assert.deepEqual(get('x-email'), ['alice@example.com']);
    assert.deepEqual(get('x-auth-request-groups'), ['admins,eng']);
    assert.ok(
      !logs.join('').includes('forward_auth_misconfigured'),
      'nothing asks the operator to add a header',
    );
  });

  test('bob is refused on the admins-only path, the public path needs no session, an API client without one gets 401 → 302', async () => {
    const bob = new CookieJar();
    const denied = await loginThroughIdp(`${app}/admin/panel`, {
      jar: bob,
      username: 'bob',
      password: 'bob',
    });
    assert.equal(denied.final.status, 403, diag());
    const h = await request(`${app}/home?format=json`, { jar: bob, headers: BROWSER_HEADERS });
    assert.equal(h.status, 200);
    const pub = await request(`${app}/public/health?format=json`, {
      headers: { 'X-User': 'mallory' },
    });
    assert.equal(pub.status, 200);
    const seen = pub.json<Seen>().rawHeaders.filter(([k]) => k.toLowerCase() === 'x-user');
    assert.deepEqual(seen, [], "no identity, and nginx drops the client's copy");
    const anon = await request(`${app}/secret?a=1`, { headers: { accept: 'application/json' } });
    assert.equal(anon.status, 302, 'the snippet turns every 401 into its sign-in redirect');
    assert.equal(anon.location, `${app}/oauth2/sign_in?rd=${app}/secret?a=1`);
  });

  test("a client's stray X-Original-URL cannot move the judged path past nginx's X-Forwarded-Uri", async () => {
    const bob = new CookieJar();
    assert.equal(
      (await loginThroughIdp(`${app}/home`, { jar: bob, username: 'bob', password: 'bob' })).final
        .status,
      200,
    );
    const r = await request(`${app}/admin/panel`, {
      jar: bob,
      headers: { ...BROWSER_HEADERS, 'X-Original-URL': `${app}/public/x` },
    });
    assert.equal(r.status, 403, diag());
    const anon = await request(`${app}/admin/panel`, {
      headers: { accept: 'application/json', 'X-Original-URI': '/public/x' },
    });
    assert.notEqual(anon.status, 200);
  });
});
