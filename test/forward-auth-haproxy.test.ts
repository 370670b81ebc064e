// Real HAProxy 2.6 in front of the whoami upstream, asking Portcullis through its Lua
// httpclient, with haproxy.cfg and the Lua script read from docs/recipes/haproxy.md.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startWhoami, type RunningWhoami } from '../demo/whoami.js';
import type { RunningPortcullis } from '../src/server.js';
import { ADMIN_PUBLIC_ANY, startAuthServer, type AuthServer } from './helpers/auth-server.js';
import { CookieJar, request } from './helpers/http.js';
import { startHaproxy, type StartedHaproxy } from './helpers/haproxy.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import { recipe, sub } from './helpers/recipes.js';

interface Seen {
  rawHeaders: Array<[string, string]>;
  url: string;
}
const headersOf = (s: Seen) => s.rawHeaders.map(([k, v]) => [k.toLowerCase(), v] as const);

const SPOOF = {
  'X-Forwarded-Email': 'mallory@evil.test',
  'X-Forwarded-User': 'mallory',
  'X-Forwarded-Groups': 'admins',
  X_Forwarded_Email: 'mallory@evil.test',
  X_Forwarded_User: 'mallory',
  // Issue 17 item 5: some frameworks fold `.` like `-` and `_`.
  'X.Forwarded.Email': 'mallory@evil.test',
  'X-Forwarded.User': 'mallory',
  'X-Original-URL': 'http://app.corp.test/public/x',
};

describe('real HAProxy in front of the upstream, asking /.portcullis/auth/nginx from Lua', () => {
  let auth: AuthServer;
  let upstream: RunningWhoami;
  let portcullis: RunningPortcullis;
  let haproxy: StartedHaproxy;
  let port: number;
  let app: string;
  const logs: string[] = [];

  before(async () => {
    port = await freePort();
    const pcPort = await freePort();
    app = `http://app.corp.test:${port}`;
    upstream = await startWhoami({ name: 'upstream' });
    auth = await startAuthServer({
      app,
      port: pcPort,
      routes: ADMIN_PUBLIC_ANY(app),
      logs,
    });
    ({ portcullis } = auth);
    const cfg = sub(recipe('haproxy.md', 'haproxy'), [
      ['bind :80', `bind 127.0.0.1:${port}`],
      // The exact Host a browser sends for this origin (with its port), as the recipe says.
      ['-m str app.example.com', `-m str app.corp.test:${port}`],
      ['127.0.0.1:4180', `127.0.0.1:${pcPort}`],
      ['127.0.0.1:8080', `127.0.0.1:${upstream.port}`],
    ]);
    const lua = sub(recipe('haproxy.md', 'haproxy-lua'), [
      ['127.0.0.1:4180', `127.0.0.1:${pcPort}`],
      ['?host=app.example.com', `?host=app.corp.test:${port}`],
    ]);
    haproxy = await startHaproxy(cfg, { '/etc/haproxy/portcullis.lua': lua });
  });
  after(async () => {
    await haproxy?.close();
    await Promise.allSettled([auth?.close(), upstream?.close()]);
  });

  const diag = () => `${haproxy?.log() ?? ''}\n${logs.join('').slice(-3000)}`;

  test('alice signs in through HAProxy, lands on the URL she asked for, with her identity and none of the spoofed headers', async () => {
    const jar = new CookieJar();
    const wanted = `${app}/deep/page?x=1&y=%20two&z=a%26b`;
    const { final, chain } = await loginThroughIdp(wanted, {
      jar,
      username: 'alice',
      password: 'alice',
      headers: SPOOF,
    });
    assert.equal(final.status, 200, `${final.body.slice(0, 300)}\n${chain.join('\n')}\n${diag()}`);
    assert.equal(chain.at(-1), wanted);
    assert.ok(
      chain.some((u) => u.startsWith(`${app}/.portcullis/sign_in?return=`)),
      'HAProxy sent the browser to the sign-in page on the app host',
    );
    assert.ok(
      chain.some((u) => u.startsWith(`${app}/.portcullis/callback?`)),
      'the callback on the app host reached Portcullis',
    );

    const r = await request(`${app}/deep/page?format=json`, {
      jar,
      headers: { ...BROWSER_HEADERS, ...SPOOF },
    });
    assert.equal(r.status, 200, diag());
    const h = headersOf(r.json<Seen>());
    const get = (n: string) => h.filter(([k]) => k === n).map(([, v]) => v);
    assert.deepEqual(get('x-forwarded-email'), ['alice@example.com']);
    assert.deepEqual(get('x-forwarded-user'), ['alice']);
    assert.deepEqual(get('x-forwarded-groups'), ['admins,eng']);
    assert.deepEqual(get('x-forwarded-preferred-username'), ['alice']);
    assert.ok(
      !h.some(([k]) => k.includes('_')),
      `no underscore spelling reaches the upstream: ${JSON.stringify(h)}`,
    );
    assert.ok(
      !h.some(([k]) => k.includes('.')),
      `no dotted spelling reaches the upstream: ${JSON.stringify(h)}`,
    );
  });

  test('a public path needs no session and carries no identity, even a spoofed one', async () => {
    const r = await request(`${app}/public/health?format=json`, { headers: SPOOF });
    assert.equal(r.status, 200, diag());
    const h = headersOf(r.json<Seen>());
    const ids = h.filter(([k]) => /^x[-_.]forwarded[-_.](user|email|groups)/.test(k));
    assert.ok(
      ids.every(([, v]) => v === ''),
      `no identity on a public path, got ${JSON.stringify(ids)}`,
    );
  });

  test('bob is denied on the admins-only path and allowed elsewhere', async () => {
    const bob = new CookieJar();
    const denied = await loginThroughIdp(`${app}/admin/panel`, {
      jar: bob,
      username: 'bob',
      password: 'bob',
    });
    assert.equal(denied.final.status, 403, diag());
    assert.equal(denied.chain.at(-1), `${app}/admin/panel`);
    const elsewhere = await request(`${app}/home`, { jar: bob, headers: BROWSER_HEADERS });
    assert.equal(elsewhere.status, 200);
  });

  test('without a session a browser is redirected to sign in and an API client gets 401; the upstream sees neither', async () => {
    const b = await request(`${app}/some/where?q=1`, { headers: BROWSER_HEADERS });
    assert.equal(b.status, 302, diag());
    assert.match(
      b.location ?? '',
      new RegExp(`^${app.replace(/\./g, '\\.')}/\\.portcullis/sign_in\\?return=`),
    );
    const api = await request(`${app}/api/things`, { headers: { accept: 'application/json' } });
    assert.equal(api.status, 401);
    assert.doesNotMatch(api.body, /whoami|rawHeaders/);
  });

  test('an unknown Host, a Host with another port and the forward-auth endpoint are closed by HAProxy itself', async () => {
    for (const host of ['other.corp.test', `app.corp.test:${port + 1}`, 'app.corp.test.']) {
      const r = await request(`${app}/public/x`, { headers: { host } });
      assert.equal(r.status, 404, `Host ${host}: ${r.status}\n${diag()}`);
    }
    const direct = await request(`${app}/.portcullis/auth/nginx`, {
      headers: { 'X-Original-URL': `${app}/public/x` },
    });
    assert.equal(direct.status, 403);
  });

  test('Portcullis down: HAProxy refuses with 403, never serves the request', async () => {
    await portcullis.close();
    const r = await request(`${app}/public/x`, { headers: { accept: 'application/json' } });
    assert.equal(r.status, 403, diag());
    assert.doesNotMatch(r.body, /rawHeaders/);
  });
});
