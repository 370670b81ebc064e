import assert from 'node:assert/strict';
import { generateKeyPairSync, createPublicKey } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader, SignJWT, UnsecuredJWT, type JWK } from 'jose';
import { startIdp } from '../demo/idp.js';
import { request, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS } from './helpers/login.js';
import {
  API_AUDIENCE,
  CLI,
  SVC,
  startIdentityStack,
  type IdentityStack,
} from './helpers/identity-stack.js';

// API clients and CLIs with tokens from the real test IdP: client-credentials JWTs, user
// access tokens (JWT for the API resource, opaque through introspection), and every shape
// of forged or misdirected token an attacker would try.

function seen(r: Resp): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of r.json().rawHeaders as Array<[string, string]>)
    (out[k.toLowerCase()] ??= []).push(v);
  return out;
}

function wwwAuthenticate(r: Resp): string {
  return String(r.headers['www-authenticate'] ?? '');
}

describe('bearer tokens from the identity provider', () => {
  let s: IdentityStack;
  let url: (host: string, path?: string) => string;
  before(async () => {
    s = await startIdentityStack({
      hosts: ['api.corp.test', 'admins.corp.test', 'elsewhere.corp.test', 'cookies.corp.test'],
      globals: `bearer_audiences: [${API_AUDIENCE}, ${CLI.id}]
bearer_clock_skew: 0s
idp_introspection: true`,
      body: `routes:
  - from: http://api.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_bearer_tokens: true
    pass_identity_headers: true
    policy:
      allow:
        or:
          - user: { is: ${SVC.id} }
          - groups: { has: admins }
          - groups: { has: eng }
  - from: http://admins.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_bearer_tokens: true
    pass_identity_headers: true
    allowed_groups: [admins]
  - from: http://elsewhere.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_bearer_tokens: true
    bearer_audiences: [https://elsewhere.corp.test]
    allow_any_authenticated_user: true
  - from: http://cookies.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
`,
    });
    url = (host, path = '/') => `http://${host}.corp.test:${s.port}${path}?format=json`;
  });
  after(() => s.close());

  test('a client-credentials token gets through a route whose policy allows the client, not one that does not', async () => {
    const token = await s.clientCredentials();
    assert.equal(decodeJwt(token).aud, API_AUDIENCE);
    const ok = await request(url('api'), {
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    });
    assert.equal(ok.status, 200, ok.body);
    const h = seen(ok);
    assert.deepEqual(h['x-forwarded-user'], [SVC.id]);
    assert.equal(
      decodeJwt(h['x-portcullis-jwt-assertion']![0]!).sub,
      SVC.id,
      'the assertion names the client',
    );
    assert.equal(
      h.authorization,
      undefined,
      'the token that proved the identity is not passed upstream unless the route asks',
    );

    const denied = await request(url('admins'), {
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    });
    assert.equal(denied.status, 403);
    assert.equal(denied.json().error, 'access_denied');
  });

  test('user access tokens (JWT for the API) are judged by the same policy as a browser session', async () => {
    const alice = await s.userToken('alice', API_AUDIENCE);
    const bob = await s.userToken('bob', API_AUDIENCE);
    assert.equal(decodeProtectedHeader(alice).typ, 'at+jwt');
    const a = await request(url('admins'), { headers: { authorization: `Bearer ${alice}` } });
    assert.equal(a.status, 200, a.body);
    assert.deepEqual(seen(a)['x-forwarded-email'], ['alice@example.com']);
    assert.deepEqual(seen(a)['x-forwarded-groups'], ['admins,eng']);
    const b = await request(url('admins'), { headers: { authorization: `Bearer ${bob}` } });
    assert.equal(b.status, 403);
    assert.match(b.body, /admins/);
    const bApi = await request(url('api'), { headers: { authorization: `Bearer ${bob}` } });
    assert.equal(bApi.status, 200, 'bob is in eng, which the API route allows');
  });

  test('an opaque user access token is verified through introspection', async () => {
    const opaque = await s.userToken('alice');
    assert.notEqual(
      opaque.split('.').length,
      3,
      'without a resource the IdP issues an opaque token',
    );
    const r = await request(url('admins'), { headers: { authorization: `Bearer ${opaque}` } });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(seen(r)['x-forwarded-email'], ['alice@example.com']);
    const junk = await request(url('admins'), {
      headers: { authorization: 'Bearer not-a-token-the-idp-issued' },
    });
    assert.equal(junk.status, 401);
    assert.match(wwwAuthenticate(junk), /error="invalid_token"/);
    assert.match(wwwAuthenticate(junk), /not active/);
  });

  test('a route without allow_bearer_tokens ignores the token: no session, so 401 without invalid_token', async () => {
    const token = await s.clientCredentials();
    const r = await request(url('cookies'), { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 401);
    assert.doesNotMatch(wwwAuthenticate(r), /invalid_token/);
    assert.equal(r.json().error, 'unauthenticated');
  });

  describe('forged and misdirected tokens are refused with what was wrong, never a redirect', () => {
    async function refused(token: string, host = 'api'): Promise<{ r: Resp; why: string }> {
      // Browser-like headers on purpose: a token must still get a 401, not a login page.
      const r = await request(url(host), {
        headers: { ...BROWSER_HEADERS, authorization: `Bearer ${token}` },
      });
      assert.equal(r.status, 401, r.body);
      assert.equal(r.location, undefined);
      const h = wwwAuthenticate(r);
      assert.match(
        h,
        /^Bearer realm="portcullis", error="invalid_token", error_description="[^"]+"$/,
      );
      return { r, why: /error_description="([^"]+)"/.exec(h)![1]! };
    }

    let realKid: string;
    let idpJwk: JWK;
    before(async () => {
      const jwks = (await (await fetch(`${s.idp.issuer}/jwks`)).json()) as { keys: JWK[] };
      idpJwk = jwks.keys[0]!;
      realKid = idpJwk.kid!;
    });

    const claims = () => ({ sub: SVC.id, client_id: SVC.id });
    async function signWith(
      alg: string,
      key: Parameters<SignJWT['sign']>[0],
      kid: string,
      o: { iss?: string; aud?: string; exp?: number } = {},
    ): Promise<string> {
      return new SignJWT(claims())
        .setProtectedHeader({ alg, kid, typ: 'at+jwt' })
        .setIssuer(o.iss ?? s.idp.issuer)
        .setAudience(o.aud ?? API_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(o.exp ?? Math.floor(Date.now() / 1000) + 300)
        .sign(key);
    }

    test('expired', async () => {
      await s.restartIdp({ accessTokenTtl: 1 });
      let token: string;
      try {
        token = await s.clientCredentials();
      } finally {
        await s.restartIdp({});
      }
      await new Promise((r) => setTimeout(r, 1500));
      const { why } = await refused(token);
      assert.match(why, /expired at/);
    });

    test('from another issuer (even signed with the same key)', async () => {
      const other = await startIdp({
        clients: [
          {
            client_id: SVC.id,
            client_secret: SVC.secret,
            redirect_uris: [],
            grant_types: ['client_credentials'],
          },
        ],
        jwtAccessTokenAudience: API_AUDIENCE,
      });
      try {
        const token = await s.clientCredentials(other.issuer);
        assert.equal(
          decodeProtectedHeader(token).kid,
          realKid,
          'the test IdPs share one key, so only iss tells them apart',
        );
        const { why } = await refused(token);
        assert.match(
          why,
          /issued by http:\/\/127\.0\.0\.1:\d+, not by the configured identity provider/,
        );
      } finally {
        await other.close();
      }
    });

    test('for another audience', async () => {
      const token = await s.clientCredentials();
      const { why } = await refused(token, 'elsewhere');
      assert.match(why, /audience \(https:\/\/api\.corp\.test\) is not accepted here/);
    });

    test('alg: none', async () => {
      const token = new UnsecuredJWT(claims())
        .setIssuer(s.idp.issuer)
        .setAudience(API_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime('5m')
        .encode();
      const { why } = await refused(token);
      assert.match(why, /algorithm none is not accepted/);
    });

    test('HS256 signed with the IdP public key as the secret', async () => {
      const pem = createPublicKey({
        key: idpJwk as import('node:crypto').JsonWebKey,
        format: 'jwk',
      }).export({ type: 'spki', format: 'pem' }) as string;
      for (const secret of [Buffer.from(pem), Buffer.from(JSON.stringify(idpJwk))]) {
        const { why } = await refused(await signWith('HS256', new Uint8Array(secret), realKid));
        assert.match(why, /algorithm HS256 is not accepted/);
      }
    });

    test('an unknown kid', async () => {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const { why } = await refused(
        await signWith('RS256', privateKey, 'kid-the-idp-never-published'),
      );
      assert.match(why, /unknown key \(kid kid-the-idp-never-published\)/);
    });

    test("the IdP's kid on a token signed by another key", async () => {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const { why } = await refused(await signWith('RS256', privateKey, realKid));
      assert.match(why, /signature is invalid/);
    });

    test('a bad token is refused even when a session cookie comes with it', async () => {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const token = await signWith('RS256', privateKey, realKid);
      const r = await request(url('api'), {
        headers: { authorization: `Bearer ${token}`, cookie: '_portcullis=whatever' },
      });
      assert.equal(r.status, 401);
      assert.match(wwwAuthenticate(r), /invalid_token/);
    });
  });
});
