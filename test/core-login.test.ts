import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CookieJar, request } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startStack, type Stack } from './helpers/stack.js';

describe('login through the real IdP and proxy to the upstream', () => {
  let s: Stack;
  let app: string;
  before(async () => {
    s = await startStack({
      hosts: ['app.corp.test', 'admin.corp.test'],
      body: `routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_identity_headers: true
  - from: http://admin.corp.test:\${PORT}
    to: \${UPSTREAM}
    pass_identity_headers: true
    allowed_groups: [admins]
`,
    });
    app = `http://app.corp.test:${s.port}`;
  });
  after(() => s.close());

  test('alice lands on exactly the page she asked for, with identity headers and without spoofed ones', async () => {
    const jar = new CookieJar();
    const { final, chain } = await loginThroughIdp(`${app}/deep/page?x=1&y=%20two`, {
      jar,
      username: 'alice',
      password: 'alice',
      headers: { 'x-forwarded-email': 'mallory@evil.test' },
    });
    assert.equal(final.status, 200, final.body.slice(0, 500));
    assert.equal(chain.at(-1), `${app}/deep/page?x=1&y=%20two`);
    const seen = (
      await request(`${app}/deep/page?x=1&y=%20two&format=json`, {
        jar,
        headers: {
          ...BROWSER_HEADERS,
          'X-Forwarded-Email': 'mallory@evil.test',
          X_Forwarded_Email: 'mallory@evil.test',
          'x-forwarded-groups': 'admins',
        },
      })
    ).json();
    const raw = seen.rawHeaders as Array<[string, string]>;
    const headers = Object.fromEntries(raw.map(([k, v]) => [k.toLowerCase(), v]));
    assert.equal(headers['x-forwarded-email'], 'alice@example.com');
    assert.equal(headers['x-forwarded-groups'], 'admins,eng');
    assert.equal(headers['x-forwarded-user'], 'alice');
    assert.ok(
      !raw.some(([k]) => k.toLowerCase() === 'x_forwarded_email'),
      'underscore spelling must not reach the upstream',
    );
    assert.equal(raw.filter(([k]) => k.toLowerCase() === 'x-forwarded-email').length, 1);
    assert.ok(
      !String(headers.cookie ?? '').includes('_portcullis'),
      'the session cookie is not forwarded to the upstream',
    );
    const cookie = jar.all().find((c) => c.name === '_portcullis');
    assert.ok(cookie?.httpOnly, 'session cookie is HttpOnly');
    assert.equal(cookie?.sameSite?.toLowerCase(), 'lax');
  });

  test('an API client without a session gets 401 JSON, not a redirect', async () => {
    const r = await request(`${app}/api/things`, { headers: { accept: 'application/json' } });
    assert.equal(r.status, 401);
    assert.match(String(r.headers['www-authenticate']), /Bearer/);
    assert.equal(r.json().error, 'unauthenticated');
  });

  test('bob is denied on the admins route with the reason, alice is let in', async () => {
    const bob = new CookieJar();
    const r = await loginThroughIdp(`http://admin.corp.test:${s.port}/`, {
      jar: bob,
      username: 'bob',
      password: 'bob',
    });
    assert.equal(r.final.status, 403);
    assert.match(r.final.body, /admins/);
    assert.match(r.final.body, /Request id/);
    const alice = new CookieJar();
    const a = await loginThroughIdp(`http://admin.corp.test:${s.port}/`, {
      jar: alice,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(a.final.status, 200);
  });

  test('a tampered, truncated or foreign cookie is no session: login again, cookie cleared, never a 500', async () => {
    const jar = new CookieJar();
    await loginThroughIdp(`${app}/`, { jar, username: 'alice', password: 'alice' });
    const good = jar.get('_portcullis')!;
    const flipped = good.slice(0, 40) + (good[40] === 'A' ? 'B' : 'A') + good.slice(41);
    for (const bad of [flipped, good.slice(0, good.length - 10), 'garbage', `${good}x`]) {
      const r = await request(`${app}/`, {
        headers: { ...BROWSER_HEADERS, cookie: `_portcullis=${bad}` },
      });
      assert.equal(r.status, 302, `cookie ${bad.slice(0, 20)}…`);
      assert.ok(
        r.setCookies.some((c) => /^_portcullis=;/.test(c) && /Max-Age=0/.test(c)),
        'garbled cookie is cleared',
      );
    }
  });

  test('the /.portcullis/ page and userinfo show who you are; sign-out ends the session', async () => {
    const jar = new CookieJar();
    await loginThroughIdp(`${app}/`, { jar, username: 'alice', password: 'alice' });
    const info = await request(`${app}/.portcullis/userinfo`, { jar });
    assert.equal(info.status, 200);
    assert.deepEqual(info.json().groups, ['admins', 'eng']);
    assert.ok(Date.parse(info.json().session_expires_at) > Date.now());
    assert.ok(!JSON.stringify(info.json()).includes('token'), 'no token on userinfo');
    const page = await request(`${app}/.portcullis/`, { jar, headers: BROWSER_HEADERS });
    assert.match(page.body, /alice@example.com/);
    assert.match(page.body, /Sign out/);
    const out = await request(`${app}/.portcullis/sign_out`, {
      jar,
      method: 'POST',
      headers: BROWSER_HEADERS,
    });
    assert.equal(out.status, 302);
    assert.ok(out.setCookies.some((c) => /^_portcullis=;/.test(c)));
    const after = await request(`${app}/.portcullis/userinfo`, { jar });
    assert.equal(after.status, 401);
  });

  test('an unknown host gets a 404 page naming the host, never a default route', async () => {
    const r = await request(`http://nope.corp.test:${s.port}/`, { headers: BROWSER_HEADERS });
    assert.equal(r.status, 404);
    assert.match(r.body, /nope\.corp\.test/);
  });
});
