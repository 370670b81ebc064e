import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  calculateJwkThumbprint,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  SignJWT,
  type JWK,
} from 'jose';
import { parseConfig } from '../src/config/load.js';
import type { Identity } from '../src/decide/types.js';
import { AssertionSigner, parseSigningKeys } from '../src/identity/assertion.js';
import { claimHeaderValue, headerValue } from '../src/identity/presets.js';
import { portcullisVerifier } from './examples/verify-assertion.js';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startIdentityStack, type IdentityStack } from './helpers/identity-stack.js';

// X-Portcullis-Jwt-Assertion end to end: a real upstream verifies it with the published JWKS
// using the example from docs/upstream-verification.md; keys rotate; the header presets and
// claim headers arrive, and client-sent copies of any of them never do.

const pemOf = () =>
  generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;

function seen(r: Resp): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of r.json().rawHeaders as Array<[string, string]>)
    (out[k.toLowerCase()] ??= []).push(v);
  return out;
}

async function kidOf(pem: string): Promise<string> {
  const keys = parseSigningKeys(pem);
  assert.ok('keys' in keys);
  return calculateJwkThumbprint(await exportJWK(keys.keys[0]!.key));
}

const SPOOFED: Record<string, string> = {
  'X-Portcullis-Jwt-Assertion': 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.',
  'X-Forwarded-Email': 'mallory@evil.test',
  X_Forwarded_User: 'admin',
  'X-Auth-Request-User': 'admin',
  'X-Auth_Request_Email': 'admin@corp.test',
  'Remote-User': 'admin',
  'Remote-Groups': 'admins',
  'X-authentik-username': 'admin',
  'X-Authentik-Groups': 'admins',
  'X-User-Email': 'admin@corp.test',
  'X-Team': 'admins',
  'X-Access-Token': 'stolen',
  'X-Id-Token': 'forged',
};

describe('signed identity assertion and identity headers', () => {
  let s: IdentityStack;
  let keyA: string;
  let keyB: string;
  let dir: string;
  let verifierUrl: string;
  let verify: ((a: string | undefined) => Promise<unknown>) | null = null;
  let verifier: http.Server;
  const app = () => `http://127.0.0.1:${s.port}`;

  before(async () => {
    // The application Portcullis protects: it trusts nothing but a verified assertion.
    verifier = http.createServer((req, res) => {
      const raw = req.headers['x-portcullis-jwt-assertion'];
      verify!(Array.isArray(raw) ? raw[0] : raw).then(
        (user) =>
          res.writeHead(200, { 'content-type': 'application/json' }).end(
            JSON.stringify({
              user,
              count: req.rawHeaders.filter((h) => h.toLowerCase() === 'x-portcullis-jwt-assertion')
                .length,
            }),
          ),
        (e: Error) =>
          res
            .writeHead(401, { 'content-type': 'application/json' })
            .end(JSON.stringify({ error: `${e.constructor.name}: ${e.message}`, assertion: raw })),
      );
    });
    await new Promise<void>((r) => verifier.listen(0, '127.0.0.1', r));
    verifierUrl = `http://127.0.0.1:${(verifier.address() as AddressInfo).port}`;
    keyA = pemOf();
    keyB = pemOf();
    dir = mkdtempSync(join(tmpdir(), 'portcullis-keys-'));
    writeFileSync(join(dir, 'ab.pem'), `${keyA}${keyB}`);
    writeFileSync(join(dir, 'ba.pem'), `${keyB}${keyA}`);
    s = await startIdentityStack({
      hosts: ['127.0.0.1', 'other.corp.test', 'presets.corp.test', 'plain.corp.test'],
      globals: `signing_key_file: ${join(dir, 'ab.pem')}
jwt_claims_headers:
  X-User-Email: email
  X-Team: groups
jwt_claims: [preferred_username]`,
      body: `routes:
  - from: http://127.0.0.1:\${PORT}
    to: ${verifierUrl}
    allow_any_authenticated_user: true
  - from: http://other.corp.test:\${PORT}
    to: ${verifierUrl}
    allow_any_authenticated_user: true
  - from: http://presets.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    identity_headers: [portcullis, oauth2-proxy, authentik, authelia]
    pass_access_token: X-Access-Token
    pass_id_token: X-Id-Token
  - from: http://plain.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
`,
    });
    verify = portcullisVerifier({
      jwksUrl: `${app()}/.well-known/portcullis/jwks.json`,
      issuer: app(),
      audience: `127.0.0.1:${s.port}`,
    });
  });
  after(async () => {
    await s.close();
    await new Promise<void>((r) => verifier.close(() => r()));
  });

  test('the docs show exactly the example the suite runs', () => {
    const md = readFileSync(
      new URL('../../docs/upstream-verification.md', import.meta.url),
      'utf8',
    );
    const example = readFileSync(
      new URL('../../test/examples/verify-assertion.ts', import.meta.url),
      'utf8',
    );
    assert.ok(
      md.includes(`\`\`\`ts\n${example}\`\`\``),
      'docs/upstream-verification.md must embed test/examples/verify-assertion.ts verbatim',
    );
  });

  test('the JWKS is published on every route host, under both paths, with every configured key', async () => {
    const kids = [await kidOf(keyA), await kidOf(keyB)];
    for (const u of [
      `${app()}/.well-known/portcullis/jwks.json`,
      `http://plain.corp.test:${s.port}/.portcullis/jwks.json`,
    ]) {
      const r = await request(u);
      assert.equal(r.status, 200);
      assert.match(String(r.headers['content-type']), /jwk-set\+json/);
      const keys = r.json().keys as JWK[];
      assert.deepEqual(
        keys.map((k) => k.kid),
        kids,
      );
      for (const k of keys) {
        assert.equal(k.alg, 'ES256');
        assert.equal(k.d, undefined, 'never the private part');
      }
    }
    const unknown = await request(
      `http://nowhere.corp.test:${s.port}/.well-known/portcullis/jwks.json`,
    );
    assert.equal(unknown.status, 404);
  });

  test('the upstream verifies the assertion with the published JWKS; a client-sent one never arrives', async () => {
    const jar = new CookieJar();
    const { final } = await loginThroughIdp(`${app()}/`, {
      jar,
      username: 'alice',
      password: 'alice',
      headers: { 'X-Portcullis-Jwt-Assertion': SPOOFED['X-Portcullis-Jwt-Assertion']! },
    });
    assert.equal(final.status, 200, final.body);
    const r = await request(`${app()}/x`, {
      jar,
      headers: { 'X-Portcullis-Jwt-Assertion': 'forged', x_portcullis_jwt_assertion: 'forged' },
    });
    assert.equal(r.status, 200, r.body);
    const { user, count } = r.json();
    assert.equal(count, 1);
    assert.equal(user.sub, 'alice');
    assert.equal(user.email, 'alice@example.com');
    assert.deepEqual(user.groups, ['admins', 'eng']);
    assert.equal(user.claims.iss, app());
    assert.equal(user.claims.aud, `127.0.0.1:${s.port}`);
    assert.equal(user.claims.preferred_username, 'alice', 'jwt_claims are copied in');
    assert.equal(user.claims.exp - user.claims.iat, 300, 'short-lived: five minutes');
    assert.ok(typeof user.claims.jti === 'string' && user.claims.jti.length >= 16);
  });

  test('an assertion minted for another host is refused by the upstream (aud), as is one signed by another key', async () => {
    const jar = new CookieJar();
    await loginThroughIdp(`http://other.corp.test:${s.port}/`, {
      jar,
      username: 'bob',
      password: 'bob',
    });
    const r = await request(`http://other.corp.test:${s.port}/`, { jar });
    assert.equal(
      r.status,
      401,
      'the upstream for 127.0.0.1 must not accept an assertion for other.corp.test',
    );
    // Without authenticate_service_url every host is its own issuer, so iss already differs;
    // a verifier that expected that issuer still refuses it for its audience.
    assert.match(r.json().error, /JWTClaimValidationFailed: unexpected "iss" claim value/);
    const sameIssuer = portcullisVerifier({
      jwksUrl: `${app()}/.well-known/portcullis/jwks.json`,
      issuer: `http://other.corp.test:${s.port}`,
      audience: `127.0.0.1:${s.port}`,
    });
    await assert.rejects(sameIssuer(r.json().assertion), /unexpected "aud" claim value/);

    // Straight to the upstream, bypassing Portcullis: a well-formed assertion under the real kid, but another key.
    const forger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({ email: 'mallory@evil.test', groups: ['admins'] })
      .setProtectedHeader({ alg: 'ES256', kid: await kidOf(keyA) })
      .setIssuer(app())
      .setAudience(`127.0.0.1:${s.port}`)
      .setSubject('alice')
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(forger);
    const direct = await request(`${verifierUrl}/`, {
      headers: { 'x-portcullis-jwt-assertion': forged },
    });
    assert.equal(direct.status, 401);
    assert.match(direct.json().error, /signature verification failed/);
    const none = await request(`${verifierUrl}/`, {
      headers: { 'x-portcullis-jwt-assertion': SPOOFED['X-Portcullis-Jwt-Assertion']! },
    });
    assert.equal(none.status, 401);
    const missing = await request(`${verifierUrl}/`);
    assert.equal(missing.status, 401);
    assert.match(missing.json().error, /did not come through Portcullis/);
  });

  test('rotation: the new key signs, both are published, and the upstream accepts old and new assertions', async () => {
    const jar = new CookieJar();
    await loginThroughIdp(`${app()}/`, { jar, username: 'alice', password: 'alice' });
    const before = await request(`${app()}/`, { jar });
    assert.equal(before.status, 200);
    const rotated = await s.startVariant(s.yaml.replace(join(dir, 'ab.pem'), join(dir, 'ba.pem')));
    const via = { host: '127.0.0.1', port: rotated.port };
    const jwks = (
      await request(`${app()}/.well-known/portcullis/jwks.json`, { connectTo: via })
    ).json().keys as JWK[];
    assert.deepEqual(
      jwks.map((k) => k.kid),
      [await kidOf(keyB), await kidOf(keyA)],
    );
    // The same session (same cookie_secret), now through the instance that signs with key B.
    const after = await request(`${app()}/`, { jar, connectTo: via });
    assert.equal(after.status, 200, after.body);
    assert.equal(after.json().user.sub, 'alice');
    const whoami = await request(`http://plain.corp.test:${s.port}/?format=json`, {
      connectTo: via,
      jar: await loginJar('plain'),
    });
    assert.equal(
      decodeProtectedHeader(seen(whoami)['x-portcullis-jwt-assertion']![0]!).kid,
      await kidOf(keyB),
    );
  });

  async function loginJar(host: string): Promise<CookieJar> {
    const jar = new CookieJar();
    const { final } = await loginThroughIdp(`http://${host}.corp.test:${s.port}/`, {
      jar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(final.status, 200, final.body);
    return jar;
  }

  test('the presets, claim headers and passed tokens arrive; client-sent copies of every one of them do not', async () => {
    const jar = await loginJar('presets');
    const r = await request(`http://presets.corp.test:${s.port}/?format=json`, {
      jar,
      headers: { ...BROWSER_HEADERS, ...SPOOFED },
    });
    assert.equal(r.status, 200);
    const h = seen(r);
    const one = (name: string) => {
      assert.equal(
        h[name]?.length,
        1,
        `${name}: exactly one, ours (got ${JSON.stringify(h[name])})`,
      );
      return h[name]![0]!;
    };
    assert.equal(one('x-forwarded-user'), 'alice');
    assert.equal(one('x-forwarded-email'), 'alice@example.com');
    assert.equal(one('x-forwarded-groups'), 'admins,eng');
    assert.equal(one('x-auth-request-user'), 'alice');
    assert.equal(one('x-auth-request-email'), 'alice@example.com');
    assert.equal(one('x-authentik-username'), 'alice');
    assert.equal(one('x-authentik-groups'), 'admins|eng');
    assert.equal(one('x-authentik-email'), 'alice@example.com');
    assert.equal(one('remote-user'), 'alice');
    assert.equal(one('remote-groups'), 'admins,eng');
    assert.equal(one('remote-email'), 'alice@example.com');
    assert.equal(one('remote-name'), 'Alice Example');
    assert.equal(one('x-user-email'), 'alice@example.com');
    assert.equal(one('x-team'), 'admins,eng');
    assert.notEqual(one('x-access-token'), 'stolen');
    assert.ok(one('x-access-token').length > 20);
    const idToken = decodeJwt(one('x-id-token'));
    assert.equal(idToken.aud, 'portcullis', 'the ID token Portcullis received at login');
    assert.equal(idToken.sub, 'alice');
    assert.equal(decodeJwt(one('x-portcullis-jwt-assertion')).sub, 'alice');
    for (const k of Object.keys(h))
      assert.ok(!k.includes('_'), `underscore spelling ${k} reached the upstream`);
  });

  test('a route that passes no identity headers still gets the assertion and the configured claim headers, and no spoofed header or token', async () => {
    const jar = await loginJar('plain');
    const r = await request(`http://plain.corp.test:${s.port}/?format=json`, {
      jar,
      headers: SPOOFED,
    });
    const h = seen(r);
    assert.equal(h['x-portcullis-jwt-assertion']?.length, 1);
    assert.deepEqual(h['x-user-email'], ['alice@example.com']);
    for (const name of [
      'x-forwarded-email',
      'x-forwarded-user',
      'x-auth-request-user',
      'remote-user',
      'remote-groups',
      'x-authentik-username',
      'x-authentik-groups',
      'x-access-token',
      'x-id-token',
      'authorization',
    ]) {
      assert.equal(h[name], undefined, `${name} must not reach the upstream`);
    }
  });

  test('the assertion is signed once per session and audience, then served from cache', async () => {
    const jar = await loginJar('plain');
    const a = seen(await request(`http://plain.corp.test:${s.port}/?format=json`, { jar }))[
      'x-portcullis-jwt-assertion'
    ]![0]!;
    const signed = s.proxy.state.runtime.assertions.signed;
    const b = seen(await request(`http://plain.corp.test:${s.port}/?format=json`, { jar }))[
      'x-portcullis-jwt-assertion'
    ]![0]!;
    assert.equal(b, a);
    assert.equal(
      s.proxy.state.runtime.assertions.signed,
      signed,
      'no new signature for the same session and host',
    );
  });
});

describe('assertion signer and signing keys', () => {
  const identity = (): Identity => ({
    sub: 'u1',
    user: 'u1',
    email: 'u1@example.com',
    emailVerified: true,
    name: 'U One',
    preferredUsername: 'u1',
    groups: ['g'],
    claims: { department: 'ops' },
    via: 'session',
  });

  test('a cached assertion is renewed before it expires, and never outlives the session', async () => {
    const keys = parseSigningKeys(pemOf());
    assert.ok('keys' in keys);
    const signer = new AssertionSigner(keys.keys, ['department']);
    const id = identity();
    const t0 = Date.now();
    const first = await signer.assertion(id, {
      issuer: 'https://auth.test',
      audience: 'app.test',
      now: t0,
    });
    assert.equal(
      await signer.assertion(id, {
        issuer: 'https://auth.test',
        audience: 'app.test',
        now: t0 + 200_000,
      }),
      first,
    );
    const renewed = await signer.assertion(id, {
      issuer: 'https://auth.test',
      audience: 'app.test',
      now: t0 + 245_000,
    });
    assert.notEqual(renewed, first, 'within a minute of expiry a fresh one is signed');
    assert.equal(decodeJwt(first).department, 'ops');
    const other = await signer.assertion(id, {
      issuer: 'https://auth.test',
      audience: 'other.test',
      now: t0,
    });
    assert.equal(decodeJwt(other).aud, 'other.test');
    const short = await signer.assertion(identity(), {
      issuer: 'https://auth.test',
      audience: 'app.test',
      now: t0,
      notAfter: t0 + 30_000,
    });
    assert.ok(decodeJwt(short).exp! <= Math.floor((t0 + 30_000) / 1000));
  });

  test('header values: non-Latin names travel as UTF-8 bytes, CR/LF never', () => {
    const v = headerValue('山田 太郎')!;
    assert.equal(Buffer.from(v, 'latin1').toString('utf8'), '山田 太郎');
    assert.doesNotThrow(() => new Headers([['x-name', v]]));
    assert.equal(headerValue('alice\r\nX-Admin: yes'), null);
    assert.equal(claimHeaderValue(['a', 'b']), 'a,b');
    assert.equal(claimHeaderValue({ team: 'x' }), '{"team":"x"}');
    assert.equal(claimHeaderValue(undefined), null);
  });

  test('signing keys: several PEM blocks, base64 PEM, and clear errors for what cannot sign', () => {
    const two = parseSigningKeys(`${pemOf()}\n${pemOf()}`);
    assert.ok('keys' in two && two.keys.length === 2);
    const b64 = parseSigningKeys(Buffer.from(pemOf()).toString('base64'));
    assert.ok('keys' in b64 && b64.keys[0]!.alg === 'ES256');
    const rsa = parseSigningKeys(
      generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
        type: 'pkcs8',
        format: 'pem',
      }) as string,
    );
    assert.ok('keys' in rsa && rsa.keys[0]!.alg === 'RS256');
    const pub = parseSigningKeys(
      generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({
        type: 'spki',
        format: 'pem',
      }) as string,
    );
    assert.ok('error' in pub && /public key/.test(pub.error));
    const weak = parseSigningKeys(
      generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
        type: 'pkcs8',
        format: 'pem',
      }) as string,
    );
    assert.ok('error' in weak && /too weak/.test(weak.error));
    assert.ok('error' in parseSigningKeys('hello'));
  });

  test('config: a missing signing_key is a warning naming replicas; bad keys and claims are errors with the key path', () => {
    const base = `insecure_server: true
cookie_secret: ${Buffer.alloc(32, 1).toString('base64')}
idp_provider_url: http://127.0.0.1:9
idp_client_id: x
idp_client_secret: y
`;
    const route = `routes:
  - from: http://app.test
    to: http://127.0.0.1:1
    allow_any_authenticated_user: true
`;
    const cfg = parseConfig(base + route);
    assert.ok(cfg.assertion.generated);
    assert.ok(cfg.warnings.some((w) => w.key === 'signing_key' && /replicas/.test(w.message)));
    assert.throws(
      () => parseConfig(`${base}signing_key: not a key\n${route}`),
      /signing_key: expected a PEM private key/,
    );
    assert.throws(
      () => parseConfig(`${base}jwt_claims: [iss]\n${route}`),
      /jwt_claims\[0\]: "iss" is always set by Portcullis/,
    );
    assert.throws(
      () => parseConfig(`${base}jwt_claims_headers:\n  Host: email\n${route}`),
      /"host" cannot carry a claim/,
    );
    assert.throws(
      () => parseConfig(`${base}identity_headers: traefik\n${route}`),
      /identity_headers.*portcullis, oauth2-proxy, authentik, authelia/,
    );
    const withHeaders = parseConfig(
      `${base}jwt_claims_headers: [department]\n${route.replace('allow_any', 'pass_access_token: X-Token\n    allow_any')}`,
    );
    assert.deepEqual(withHeaders.assertion.claimHeaders, [
      ['x-portcullis-claim-department', 'department'],
    ]);
    assert.ok(
      withHeaders.extraIdentityHeaders.includes('x-token'),
      'a token header is stripped from client requests',
    );
  });
});
