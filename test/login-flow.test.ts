import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startIdp } from '../demo/idp.js';
import { CookieJar, followRedirects, parseForms, request } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import { startStack, type Stack } from './helpers/stack.js';

const ROUTES = `routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_identity_headers: true
  - from: http://public.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_public_unauthenticated_access: true
  - from: http://app.other.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_identity_headers: true
`;

describe('one authenticate service for two parent domains', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({
      hosts: ['auth.corp.test'],
      body: `authenticate_service_url: http://auth.corp.test:\${PORT}
cookie_domain: corp.test
${ROUTES}`,
    });
  });
  after(() => s.close());

  test('login on one subdomain covers the parent domain; another parent domain gets a handoff without a second login', async () => {
    const jar = new CookieJar();
    const first = await loginThroughIdp(`http://app.corp.test:${s.port}/a?b=c`, {
      jar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(first.final.status, 200);
    assert.equal(first.chain.at(-1), `http://app.corp.test:${s.port}/a?b=c`);
    assert.ok(
      first.chain.some((u) =>
        u.startsWith(`http://auth.corp.test:${s.port}/.portcullis/callback?`),
      ),
      'the IdP returns to the one registered callback',
    );
    const session = jar.all().find((c) => c.name === '_portcullis');
    assert.equal(session?.domain, 'corp.test');
    assert.equal(session?.hostOnly, false);

    // The first hop by hand, to keep the handoff nonce this browser is given for app.other.test.
    const start = await request(`http://app.other.test:${s.port}/x?y=1`, {
      jar,
      headers: BROWSER_HEADERS,
    });
    const nonce = jar.get('_portcullis_handoff', 'app.other.test');
    assert.ok(nonce, 'the app host gives the browser a handoff nonce before sending it away');
    const other = await followRedirects(start.location!, { jar, headers: BROWSER_HEADERS });
    assert.equal(other.final.status, 200, other.chain.join('\n'));
    assert.equal(other.chain.at(-1), `http://app.other.test:${s.port}/x?y=1`);
    assert.ok(
      !other.chain.some((u) => u.includes(`127.0.0.1:${new URL(s.idp.issuer).port}`)),
      'no second trip to the IdP',
    );
    const handoff = other.chain.find((u) => u.includes('/.portcullis/handoff?'))!;
    assert.ok(handoff.startsWith(`http://app.other.test:${s.port}/`));
    // The handoff link is single-use: replaying it (e.g. from a leaked log) gives nothing, even
    // together with the nonce cookie it was bound to.
    const replay = await request(handoff, {
      headers: { ...BROWSER_HEADERS, cookie: `_portcullis_handoff=${nonce}` },
    });
    assert.equal(replay.status, 400);
    assert.match(replay.body, /already used/);
    // And one made for app.other.test cannot be spent on another host.
    const t = new URL(handoff).searchParams.get('token');
    const elsewhere = await request(
      `http://app.corp.test:${s.port}/.portcullis/handoff?token=${t}`,
      { headers: BROWSER_HEADERS, jar: new CookieJar() },
    );
    assert.equal(elsewhere.status, 400);
  });

  test('sign_in refuses a return address outside the configured hosts', async () => {
    for (const rd of [
      'https://evil.test/',
      '//evil.test',
      `http://app.corp.test.evil.test:${s.port}/`,
      'javascript:alert(1)',
    ]) {
      const r = await request(
        `http://auth.corp.test:${s.port}/.portcullis/sign_in?rd=${encodeURIComponent(rd)}`,
        { headers: BROWSER_HEADERS },
      );
      assert.equal(r.status, 400, rd);
      assert.match(r.body, /not one of the sites/);
    }
  });
});

describe('login errors give a clear page, never a 500', () => {
  let s: Stack;
  const app = () => `http://app.corp.test:${s.port}`;
  before(async () => {
    s = await startStack({
      hosts: ['app.corp.test', 'public.corp.test', 'app.other.test'],
      body: ROUTES,
    });
  });
  after(() => s.close());

  test('the user cancels at the IdP (error=access_denied): 403 page with a way to try again', async () => {
    const jar = new CookieJar();
    const toLogin = await followRedirects(`${app()}/wanted`, { jar, headers: BROWSER_HEADERS });
    assert.equal(toLogin.final.status, 200);
    const cancel = /href="([^"]*\/abort)"/.exec(toLogin.final.body)?.[1];
    assert.ok(cancel, 'the IdP login page has a cancel link');
    const r = await followRedirects(new URL(cancel, toLogin.chain.at(-1)).href, {
      jar,
      headers: BROWSER_HEADERS,
    });
    assert.equal(r.final.status, 403);
    assert.match(r.final.body, /access_denied/);
    assert.match(r.final.body, /Try signing in again/);
    assert.ok(!/at .*\.js:\d+/.test(r.final.body), 'no stack trace');
  });

  test('a callback this browser did not start (login CSRF) is refused', async () => {
    const r = await request(
      `${app()}/.portcullis/callback?code=attacker-code&state=${'A'.repeat(24)}`,
      { headers: BROWSER_HEADERS },
    );
    assert.equal(r.status, 400);
    assert.match(r.body, /not started in this browser/);
    const bad = await request(`${app()}/.portcullis/callback?code=x&state=%0d%0aSet-Cookie:x=1`, {
      headers: BROWSER_HEADERS,
    });
    assert.equal(bad.status, 400);
    assert.ok(!bad.setCookies.some((c) => c.startsWith('x=')));
  });

  test('a replayed callback is refused, and a used code is refused with a fresh state', async () => {
    const jar = new CookieJar();
    const first = await loginThroughIdp(`${app()}/`, { jar, username: 'alice', password: 'alice' });
    const cb = first.chain.find((u) => u.includes('/.portcullis/callback?'))!;
    const replay = await request(cb, { jar, headers: BROWSER_HEADERS });
    assert.equal(replay.status, 400);
    assert.match(replay.body, /already used|not started in this browser/);

    // A second login attempt: its own state cookie, but the first (already used) code.
    const jar2 = new CookieJar();
    const start = await request(`${app()}/again`, { jar: jar2, headers: BROWSER_HEADERS });
    const state = new URL(start.location!).searchParams.get('state')!;
    const code = new URL(cb).searchParams.get('code')!;
    const reused = await request(
      `${app()}/.portcullis/callback?code=${encodeURIComponent(code)}&state=${state}&iss=${encodeURIComponent(s.idp.issuer)}`,
      { jar: jar2, headers: BROWSER_HEADERS },
    );
    assert.equal(reused.status, 400);
    assert.match(reused.body, /did not accept the sign-in/);
  });

  test('a failed token exchange (client deleted at the IdP) gives a 400 page naming the IdP error', async () => {
    const jar = new CookieJar();
    const toLogin = await followRedirects(`${app()}/x`, { jar, headers: BROWSER_HEADERS });
    const form = parseForms(toLogin.final.body, toLogin.chain.at(-1)!).find((f) =>
      f.fields.some(([n]) => n === 'password'),
    )!;
    s.idp.removeClient('portcullis');
    const body = new URLSearchParams([
      ...form.fields.filter(([n]) => n !== 'username' && n !== 'password'),
      ['username', 'alice'],
      ['password', 'alice'],
    ]).toString();
    const posted = await request(form.action, {
      method: 'POST',
      jar,
      body,
      headers: { ...BROWSER_HEADERS, 'content-type': 'application/x-www-form-urlencoded' },
    });
    const end = await followRedirects(new URL(posted.location!, form.action).href, {
      jar,
      headers: BROWSER_HEADERS,
    });
    assert.ok([400, 502].includes(end.final.status), `status ${end.final.status}`);
    assert.doesNotMatch(end.final.body, /stack|TypeError/);
  });
});

describe('an identity provider that is down at start', () => {
  test('public routes work, logins get a 503 page, and it recovers by itself when the IdP comes up', async () => {
    const idpPort = await freePort();
    const s = await startStack({
      hosts: ['app.corp.test', 'public.corp.test', 'app.other.test'],
      body: ROUTES,
    });
    // Re-point a second Portcullis at an IdP port where nothing listens yet.
    const { parseConfig } = await import('../src/config/load.js');
    const { startPortcullis } = await import('../src/server.js');
    const { createLogger } = await import('../src/observe/logger.js');
    const pPort = await freePort();
    const yaml = s.yaml
      .replace(s.idp.issuer, `http://127.0.0.1:${idpPort}`)
      .replaceAll(`:${s.port}`, `:${pPort}`);
    const p = await startPortcullis(parseConfig(yaml, 'down.yaml'), {
      logger: createLogger('silent'),
    });
    try {
      const pub = await request(`http://public.corp.test:${p.port}/hello`, {
        headers: BROWSER_HEADERS,
      });
      assert.equal(pub.status, 200);
      const login = await request(`http://app.corp.test:${p.port}/`, { headers: BROWSER_HEADERS });
      assert.equal(login.status, 503);
      assert.match(login.body, /identity provider cannot be reached/);
      const api = await request(`http://app.corp.test:${p.port}/`, {
        headers: { accept: 'application/json' },
      });
      assert.equal(api.status, 401, 'an API client without a session still gets 401');
      const late = await startIdp({ port: idpPort, clients: [] });
      try {
        let status = 0;
        for (let i = 0; i < 60 && status !== 302; i++) {
          await new Promise((r) => setTimeout(r, 250));
          status = (await request(`http://app.corp.test:${p.port}/`, { headers: BROWSER_HEADERS }))
            .status;
        }
        assert.equal(status, 302, 'logins resume once discovery succeeds');
      } finally {
        await late.close();
      }
    } finally {
      await p.close();
      await s.close();
    }
  });
});

describe('migrating from oauth2-proxy without touching the IdP registration', () => {
  for (const compat of [false, true]) {
    test(`authenticate_callback_path: /oauth2/callback is the redirect URI${compat ? ' (with compat: [oauth2-proxy])' : ''}`, async () => {
      const s = await startStack({
        hosts: ['app.corp.test'],
        callbackPath: '/oauth2/callback',
        body: `authenticate_callback_path: /oauth2/callback
${compat ? 'compat: [oauth2-proxy]\n' : ''}routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
`,
      });
      try {
        const jar = new CookieJar();
        const { final, chain } = await loginThroughIdp(`http://app.corp.test:${s.port}/x?y=1`, {
          jar,
          username: 'alice',
          password: 'alice',
        });
        assert.equal(final.status, 200, chain.join('\n'));
        assert.equal(chain.at(-1), `http://app.corp.test:${s.port}/x?y=1`);
        assert.ok(
          chain.some((u) => u.startsWith(`http://app.corp.test:${s.port}/oauth2/callback?`)),
        );
        assert.ok(!chain.some((u) => u.includes('/.portcullis/callback')));
      } finally {
        await s.close();
      }
    });
  }
});

// Authentik's proxy providers registered <host>/outpost.goauthentik.io/callback
// ?X-authentik-auth-callback=true (authentik source, providers/proxy/models.py, 2023.x-2024.x):
// the redirect URI, query included, is kept as it was registered, with or without compat.
describe('migrating from the Authentik outpost without touching the IdP registration', () => {
  const callback = '/outpost.goauthentik.io/callback?X-authentik-auth-callback=true';
  for (const compat of [false, true]) {
    test(`authenticate_callback_path with its registered query is the redirect URI${compat ? ' (with compat: [authentik])' : ''}`, async () => {
      const s = await startStack({
        hosts: ['app.corp.test'],
        callbackPath: callback,
        body: `authenticate_callback_path: ${callback}
${compat ? 'compat: [authentik]\n' : ''}routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
`,
      });
      try {
        const jar = new CookieJar();
        const { final, chain } = await loginThroughIdp(`http://app.corp.test:${s.port}/x?y=1`, {
          jar,
          username: 'alice',
          password: 'alice',
        });
        assert.equal(final.status, 200, chain.join('\n'));
        assert.equal(chain.at(-1), `http://app.corp.test:${s.port}/x?y=1`);
        const authorize = chain.find(
          (u) => u.startsWith(s.idp.issuer) && u.includes('redirect_uri='),
        );
        assert.equal(
          new URL(authorize!).searchParams.get('redirect_uri'),
          `http://app.corp.test:${s.port}${callback}`,
        );
        assert.ok(
          chain.some((u) => u.startsWith(`http://app.corp.test:${s.port}${callback}&code=`)),
          chain.join('\n'),
        );
        // The token request carried the same redirect URI: the IdP compares them (RFC 6749
        // §4.1.3), so the sign-in would have failed at the exchange otherwise.
        assert.ok(!s.logText().includes('token_exchange_failed'));
      } finally {
        await s.close();
      }
    });
  }
});
