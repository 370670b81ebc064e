import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { startIdentityStack, startLoopback, type IdentityStack } from './helpers/identity-stack.js';

// The programmatic login a command-line tool performs: ask Portcullis for a login URL with a
// loopback redirect, let the user sign in in a browser, receive the token on the loopback
// port, then call the API with `Authorization: Portcullis <token>`.

function seen(r: Resp): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of r.json().rawHeaders as Array<[string, string]>)
    (out[k.toLowerCase()] ??= []).push(v);
  return out;
}

describe('programmatic login for command-line tools', () => {
  let s: IdentityStack;
  let loopback: Awaited<ReturnType<typeof startLoopback>>;
  const app = (path = '/') => `http://app.corp.test:${s.port}${path}`;

  before(async () => {
    loopback = await startLoopback();
    s = await startIdentityStack({
      hosts: ['app.corp.test', 'admin.corp.test'],
      body: `routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_identity_headers: true
  - from: http://admin.corp.test:\${PORT}
    to: \${UPSTREAM}
    allowed_groups: [admins]
`,
    });
  });
  after(async () => {
    await s.close();
    await loopback.close();
  });

  async function cliLogin(username: string): Promise<string> {
    const start = await request(
      app(
        `/.portcullis/api/v1/login?redirect_uri=${encodeURIComponent(`${loopback.url}/callback?cli=1`)}`,
      ),
    );
    assert.equal(start.status, 200, start.body);
    assert.match(String(start.headers['content-type']), /text\/plain/);
    assert.equal(start.headers['cache-control'], 'no-store');
    assert.ok(start.body.startsWith(app('/.portcullis/sign_in?return=')), start.body);
    const before = loopback.hits.length;
    const { final, chain } = await loginThroughIdp(start.body, {
      jar: new CookieJar(),
      username,
      password: username,
    });
    assert.equal(final.status, 200, final.body);
    assert.match(final.body, /Login complete/);
    assert.ok(
      chain.at(-1)!.startsWith(`${loopback.url}/callback?cli=1&portcullis_token=`),
      chain.at(-1),
    );
    assert.equal(loopback.hits.length, before + 1);
    const token = loopback.hits.at(-1)!.searchParams.get('portcullis_token');
    assert.ok(token);
    return token;
  }

  test('login URL, browser sign-in, token on the loopback port, then API calls with Authorization: Portcullis', async () => {
    const token = await cliLogin('alice');
    const r = await request(app('/api/things?format=json'), {
      headers: { authorization: `Portcullis ${token}`, accept: 'application/json' },
    });
    assert.equal(r.status, 200, r.body);
    const h = seen(r);
    assert.deepEqual(h['x-forwarded-user'], ['alice']);
    assert.equal(decodeJwt(h['x-portcullis-jwt-assertion']![0]!).email, 'alice@example.com');
    assert.equal(h.authorization, undefined, 'the Portcullis token never reaches the upstream');
    const admin = await request(`http://admin.corp.test:${s.port}/?format=json`, {
      headers: { authorization: `Portcullis ${token}` },
    });
    assert.equal(
      admin.status,
      200,
      "the token works on every route host, judged by that route's policy",
    );
  });

  test("the route's policy applies to the token's user", async () => {
    const token = await cliLogin('bob');
    const r = await request(`http://admin.corp.test:${s.port}/`, {
      headers: { authorization: `Portcullis ${token}`, accept: 'application/json' },
    });
    assert.equal(r.status, 403);
    assert.equal(r.json().error, 'access_denied');
  });

  test('a tampered token, or a session cookie passed off as a token, is refused with invalid_token', async () => {
    const token = await cliLogin('alice');
    const flipped = token.slice(0, 30) + (token[30] === 'A' ? 'B' : 'A') + token.slice(31);
    const jar = new CookieJar();
    await loginThroughIdp(app('/'), { jar, username: 'alice', password: 'alice' });
    for (const bad of [flipped, jar.get('_portcullis')!, 'x']) {
      const r = await request(app('/'), {
        headers: { authorization: `Portcullis ${bad}`, accept: 'text/html' },
      });
      assert.equal(r.status, 401, bad.slice(0, 20));
      assert.equal(r.location, undefined, 'never a redirect to a login page');
      assert.match(
        String(r.headers['www-authenticate']),
        /error="invalid_token", error_description="the Portcullis token is (invalid or has expired|malformed)/,
      );
    }
  });

  test('only loopback redirect URIs are accepted', async () => {
    for (const bad of [
      'http://evil.test:8400/cb',
      'https://127.0.0.1.evil.test:8400/cb',
      'http://127.0.0.1/cb',
      'http://user@127.0.0.1:8400/cb',
      'http://10.0.0.1:8400/cb',
      'javascript:alert(1)',
      '//127.0.0.1:8400/cb',
      'http://127.0.0.1:8400\\@evil.test/',
      '',
    ]) {
      const r = await request(
        app(`/.portcullis/api/v1/login?redirect_uri=${encodeURIComponent(bad)}`),
      );
      assert.equal(r.status, 400, bad);
      assert.equal(r.json().error, 'invalid_redirect_uri');
    }
    const json = await request(
      app(`/.portcullis/api/v1/login?redirect_uri=${encodeURIComponent('http://[::1]:8400/cb')}`),
      { headers: { accept: 'application/json' } },
    );
    assert.equal(json.status, 200);
    assert.ok(String(json.json().login_url).startsWith(app('/.portcullis/sign_in?return=')));
  });

  test('a forged or stale completion link does not mint a token', async () => {
    const r = await request(app('/.portcullis/api/v1/login/complete?request=bogus'), {
      headers: { accept: 'application/json' },
    });
    assert.equal(r.status, 400);
    assert.equal(r.json().error, 'invalid_login_request');
  });
});
