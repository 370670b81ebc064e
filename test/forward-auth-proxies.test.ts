// Real nginx and real Caddy in front of the whoami upstream, asking Portcullis through the
// forward-auth endpoints, with the configurations of docs/recipes/nginx.md and caddy.md read
// from the files themselves. Only addresses and host names are substituted.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import type { RunningIdp } from '../demo/idp.js';
import { startWhoami, type RunningWhoami } from '../demo/whoami.js';
import { launchBrowser } from './helpers/browser.js';
import { startCaddy, type StartedCaddy } from './helpers/caddy.js';
import { ADMIN_PUBLIC_ANY, startAuthServer, type AuthServer } from './helpers/auth-server.js';
import { CookieJar, request } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startNginx, type StartedNginx } from './helpers/nginx.js';
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
  'X-Forwarded_Email': 'mallory@evil.test',
  'Remote-User': 'mallory',
  'X-authentik-username': 'mallory',
  // Issue 17 item 5: some frameworks fold `.` like `-` and `_`.
  'X.Forwarded.Email': 'mallory@evil.test',
  'Remote.User': 'mallory',
  'X.Auth.Request.User': 'mallory',
};

for (const kind of ['nginx', 'caddy'] as const) {
  describe(`real ${kind} in front of the upstream, asking /.portcullis/auth/${kind}`, () => {
    let idp: RunningIdp;
    let auth: AuthServer;
    let upstream: RunningWhoami;
    let nginx: StartedNginx | undefined;
    let caddy: StartedCaddy | undefined;
    let browser: Browser | undefined;
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
      ({ idp } = auth);
      if (kind === 'nginx') {
        nginx = await startNginx(
          sub(recipe('nginx.md', 'nginx'), [
            ['listen 80 default_server;', `listen 127.0.0.1:${port} default_server;`],
            ['listen 80;', `listen 127.0.0.1:${port};`],
            ['server_name app.example.com;', 'server_name app.corp.test;'],
            ['?host=app.example.com', '?host=app.corp.test'],
            ['127.0.0.1:4180', `127.0.0.1:${pcPort}`],
            ['127.0.0.1:8080', `127.0.0.1:${upstream.port}`],
          ]),
        );
      } else {
        caddy = await startCaddy(
          sub(recipe('caddy.md', 'caddy'), [
            ['app.example.com {', `http://app.corp.test:${port} {`],
            ['?host=app.example.com', '?host=app.corp.test'],
            ['127.0.0.1:4180', `127.0.0.1:${pcPort}`],
            ['127.0.0.1:8080', `127.0.0.1:${upstream.port}`],
          ]),
        );
      }
    });
    after(async () => {
      await browser?.close();
      await nginx?.close();
      await caddy?.close();
      await Promise.allSettled([auth?.close(), upstream?.close()]);
    });

    const diag = () => `${nginx?.errorLog() ?? caddy?.log() ?? ''}\n${logs.join('').slice(-3000)}`;

    test('alice logs in through the proxy, lands on the URL she asked for (query intact) with identity headers and none of the spoofed ones', async () => {
      const jar = new CookieJar();
      const wanted = `${app}/deep/page?x=1&y=%20two&z=a%26b`;
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
      assert.equal(chain.at(-1), wanted);
      assert.ok(
        chain.some((u) => u.startsWith(`${app}/.portcullis/sign_in?return=`)),
        'the proxy sent the browser to the sign-in page on the app host',
      );
      assert.ok(
        chain.some((u) => u.startsWith(`${app}/.portcullis/callback?`)),
        'the IdP returned to the app host, which the proxy routes to Portcullis',
      );

      const r = await request(`${app}/deep/page?format=json`, {
        jar,
        headers: { ...BROWSER_HEADERS, ...SPOOF },
      });
      assert.equal(r.status, 200);
      const seen = r.json<Seen>();
      const h = headersOf(seen);
      const get = (n: string) => h.filter(([k]) => k === n).map(([, v]) => v);
      assert.deepEqual(get('x-forwarded-email'), ['alice@example.com']);
      assert.deepEqual(get('x-forwarded-user'), ['alice']);
      assert.deepEqual(get('x-forwarded-groups'), ['admins,eng']);
      assert.deepEqual(get('x-forwarded-preferred-username'), ['alice']);
      assert.ok(
        !h.some(([k]) => k.includes('_')),
        `no underscore spelling reaches the upstream: ${h.map(([k]) => k).join(', ')}`,
      );
      assert.ok(
        !h.some(([k]) => k.includes('.')),
        `no dotted spelling reaches the upstream: ${h.map(([k]) => k).join(', ')}`,
      );
      assert.ok(!h.some(([, v]) => /\{http\./.test(v)), 'no unreplaced Caddy placeholder');
    });

    test('a public path needs no session and carries no identity, even a spoofed one', async () => {
      const r = await request(`${app}/public/health?format=json`, { headers: SPOOF });
      assert.equal(r.status, 200, diag());
      const h = headersOf(r.json<Seen>());
      const forwarded = h.filter(
        ([k]) =>
          k === 'x-forwarded-email' || k === 'x-forwarded-user' || k === 'x-forwarded-groups',
      );
      assert.ok(
        forwarded.every(([, v]) => v === ''),
        `no identity on a public path, got ${JSON.stringify(forwarded)}`,
      );
      assert.ok(
        !h.some(([k]) => k.includes('.')),
        `no dotted spelling reaches the upstream: ${h.map(([k]) => k).join(', ')}`,
      );
    });

    test('bob is denied on the admins-only path and allowed elsewhere; alice gets in', async () => {
      const bob = new CookieJar();
      const denied = await loginThroughIdp(`${app}/admin/panel`, {
        jar: bob,
        username: 'bob',
        password: 'bob',
      });
      assert.equal(denied.final.status, 403, diag());
      assert.equal(denied.chain.at(-1), `${app}/admin/panel`);
      if (kind === 'caddy')
        assert.match(
          denied.final.body,
          /admins/,
          'Caddy passes the 403 page naming the missing group',
        );
      const elsewhere = await request(`${app}/home`, { jar: bob, headers: BROWSER_HEADERS });
      assert.equal(elsewhere.status, 200);
      const alice = new CookieJar();
      const ok = await loginThroughIdp(`${app}/admin/panel`, {
        jar: alice,
        username: 'alice',
        password: 'alice',
      });
      assert.equal(ok.final.status, 200);
    });

    test('without a session a browser is sent to the sign-in page and an API client gets 401, never a 500', async () => {
      const b = await request(`${app}/some/where?q=1`, { headers: BROWSER_HEADERS });
      assert.equal(b.status, 302, diag());
      assert.match(
        b.location ?? '',
        new RegExp(`^${app.replace(/\./g, '\\.')}/\\.portcullis/sign_in\\?return=`),
      );
      const api = await request(`${app}/api/things`, { headers: { accept: 'application/json' } });
      assert.equal(api.status, 401);
      const bearer = await request(`${app}/api/things`, {
        headers: { accept: 'text/html', authorization: 'Bearer nonsense' },
      });
      assert.equal(bearer.status, 401);
    });

    test('a forged X-Original-URL / X-Forwarded-* from the client does not change the decision', async () => {
      for (const h of [
        {
          'X-Original-URL': `${app}/public/x`,
          'X-Forwarded-Uri': '/public/x',
          'X-Forwarded-Host': 'app.corp.test',
          'X-Forwarded-Method': 'GET',
        },
        { 'X-Original-URL': 'http://other.corp.test/public/x' },
      ] as Array<Record<string, string>>) {
        const r = await request(`${app}/secret`, { headers: { accept: 'application/json', ...h } });
        // 401 (the decision for /secret without a session) or 403 (Portcullis noticed the forged
        // header disagreeing with the one the proxy set): never the public path's 200.
        assert.ok(
          r.status === 401 || r.status === 403,
          `${r.status} for ${JSON.stringify(h)}\n${diag()}`,
        );
      }
      // The endpoint itself is not for clients.
      const direct = await request(`${app}/.portcullis/auth/${kind}`, {
        headers: { 'X-Original-URL': `${app}/public/x`, 'X-Forwarded-Uri': '/public/x' },
      });
      assert.equal(direct.status, 403);
    });

    if (kind === 'nginx') {
      test('Chromium: sign in through nginx and land on the page asked for', async () => {
        browser = await launchBrowser(['app.corp.test']);
        const page = await browser.newPage();
        const wanted = `${app}/reports/q3?team=eng&sort=-date`;
        await page.goto(wanted);
        await page.waitForSelector('#username');
        assert.ok(page.url().startsWith(idp.issuer), `on the IdP login page, got ${page.url()}`);
        await page.fill('#username', 'alice');
        await page.fill('#password', 'alice');
        await page.click('#submit');
        await page.waitForURL(wanted);
        const body = (await page.textContent('body')) ?? '';
        assert.match(body, /alice@example\.com/);
        assert.match(body, /admins,eng/);
        await page.context().close();
      });
    }
  });
}
