import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { parseConfig } from '../src/config/load.js';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { startStack, type Stack } from './helpers/stack.js';

// Issue 17, item 3: openid-client v6 checks an ID token's claims but not the signature of one
// that comes straight from the token endpoint. Before the fix, whoever could answer for the
// token endpoint (a man in the middle, a compromised reverse proxy in front of the IdP) chose
// the identity: a token re-signed with any key, under the IdP's real kid, was believed.
// The IdP here is the real demo IdP whose token answers are rewritten on the way out.

type Rewrite = (idToken: string) => Promise<string>;

const ROUTES = `routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    pass_identity_headers: true
    allow_any_authenticated_user: true
`;

function seen(r: Resp): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of r.json().rawHeaders as Array<[string, string]>)
    (out[k.toLowerCase()] ??= []).push(v);
  return out;
}

/** A stack whose IdP passes each ID token through `rewrite` (when set) before handing it out. */
async function tamperedStack(body: string): Promise<{ s: Stack; set(r: Rewrite | null): void }> {
  let rewrite: Rewrite | null = null;
  const s = await startStack({
    hosts: ['app.corp.test'],
    body,
    idp: {
      tokenResponse: async (b) =>
        rewrite && typeof b.id_token === 'string'
          ? { ...b, id_token: await rewrite(b.id_token) }
          : b,
    },
  });
  return {
    s,
    set: (r) => {
      rewrite = r;
    },
  };
}

/** The same claims, but the user the attacker wants to be, signed with the attacker's key under the IdP's kid. */
async function forgeWithForeignKey(idToken: string): Promise<string> {
  const { kid } = decodeProtectedHeader(idToken);
  const { privateKey } = await generateKeyPair('RS256');
  const claims: JWTPayload = {
    ...decodeJwt(idToken),
    sub: 'admin',
    email: 'admin@example.com',
    email_verified: true,
  };
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: kid! }).sign(privateKey);
}

async function signIn(s: Stack, user = 'alice'): Promise<{ final: Resp; jar: CookieJar }> {
  const jar = new CookieJar();
  const { final } = await loginThroughIdp(`http://app.corp.test:${s.port}/?format=json`, {
    jar,
    username: user,
    password: user,
  });
  return { final, jar };
}

async function assertNoSession(s: Stack, jar: CookieJar): Promise<void> {
  const again = await request(`http://app.corp.test:${s.port}/?format=json`, {
    jar,
    headers: { accept: 'text/html' },
  });
  assert.equal(again.status, 302, 'no session was set: the app sends the browser to sign in again');
}

function refusals(s: Stack, reason: string): Array<Record<string, unknown>> {
  return s.logs.filter(
    (l) => l.name === 'audit' && l.event === 'login_failed' && l.reason === reason,
  );
}

describe("ID token signatures (default: public-key algorithms, the IdP's JWKS)", () => {
  let t: Awaited<ReturnType<typeof tamperedStack>>;
  before(async () => {
    t = await tamperedStack(ROUTES);
  });
  after(() => t.s.close());

  test("a token re-signed with a foreign key under the IdP's kid: refused, clear page, audit line, no session", async () => {
    t.set(forgeWithForeignKey);
    try {
      const { final, jar } = await signIn(t.s);
      assert.equal(final.status, 502, final.body);
      assert.match(
        final.body,
        /could not be trusted: the ID token&#39;s signature does not match|could not be trusted: the ID token's signature does not match/,
      );
      assert.doesNotMatch(
        final.body,
        /admin@example\.com|rawHeaders/,
        'the forged identity reached nothing',
      );
      await assertNoSession(t.s, jar);
      const line = refusals(t.s, 'id_token_invalid').at(-1);
      assert.ok(line, 'an audit line says why');
      assert.match(
        String(line.detail),
        /signature does not match the identity provider's key \(kid /,
      );
      assert.ok(!t.s.logs.some((l) => l.event === 'login' && l.user === 'admin@example.com'));
    } finally {
      t.set(null);
    }
  });

  test('a token signed with a kid the IdP does not publish: refused', async () => {
    t.set(async (idToken) => {
      const { privateKey } = await generateKeyPair('RS256');
      return new SignJWT(decodeJwt(idToken))
        .setProtectedHeader({ alg: 'RS256', kid: 'attacker-key' })
        .sign(privateKey);
    });
    try {
      const { final, jar } = await signIn(t.s);
      assert.equal(final.status, 502, final.body);
      assert.match(final.body, /a key the identity provider does not publish \(kid attacker-key\)/);
      await assertNoSession(t.s, jar);
    } finally {
      t.set(null);
    }
  });

  test('a token MACed with the client secret (HS256) is not accepted unless configured', async () => {
    // Not a regression case: this IdP does not advertise HS256, so openid-client refused it
    // before the fix too (400); it guards the default allow-list staying public-key only.
    t.set((idToken) =>
      new SignJWT(decodeJwt(idToken))
        .setProtectedHeader({ alg: 'HS256' })
        .sign(new TextEncoder().encode(t.s.clientSecret)),
    );
    try {
      const { final, jar } = await signIn(t.s);
      assert.ok(final.status === 400 || final.status === 502, final.body);
      assert.match(final.body, /Sign-in could not be completed/);
      await assertNoSession(t.s, jar);
    } finally {
      t.set(null);
    }
  });

  test('the normal login still works', async () => {
    const { final } = await signIn(t.s);
    assert.equal(final.status, 200, final.body);
    assert.deepEqual(seen(final)['x-forwarded-email'], ['alice@example.com']);
  });
});

describe('idp_id_token_algorithms: [HS256] (an IdP that MACs ID tokens with the client secret)', () => {
  let t: Awaited<ReturnType<typeof tamperedStack>>;
  before(async () => {
    t = await tamperedStack(`idp_id_token_algorithms: [HS256]\n${ROUTES}`);
    t.set((idToken) =>
      new SignJWT(decodeJwt(idToken))
        .setProtectedHeader({ alg: 'HS256' })
        .sign(new TextEncoder().encode(t.s.clientSecret)),
    );
  });
  after(() => t.s.close());

  test('a token MACed with the client secret signs in; one MACed with another secret does not', async () => {
    const ok = await signIn(t.s);
    assert.equal(ok.final.status, 200, ok.final.body);
    t.set((idToken) =>
      new SignJWT(decodeJwt(idToken))
        .setProtectedHeader({ alg: 'HS256' })
        .sign(new TextEncoder().encode('x'.repeat(40))),
    );
    const bad = await signIn(t.s);
    assert.equal(bad.final.status, 502, bad.final.body);
    assert.match(bad.final.body, /signature does not match/);
    await assertNoSession(t.s, bad.jar);
  });

  test('and then RS256 (not listed) is refused', async () => {
    t.set(null);
    const { final, jar } = await signIn(t.s);
    // openid-client is told the same allow-list, so it may be the one that refuses (400).
    assert.ok(final.status === 400 || final.status === 502, final.body);
    assert.match(final.body, /Sign-in could not be completed/);
    await assertNoSession(t.s, jar);
  });
});

describe('idp_id_token_algorithms is checked when the config loads', () => {
  const yaml = (extra: string, secret = 'short'): string => `address: 127.0.0.1:9
insecure_server: true
cookie_secret: ${Buffer.alloc(32, 1).toString('base64')}
idp_provider_url: http://127.0.0.1:1
idp_client_id: x
idp_client_secret: ${secret}
${extra}
routes:
  - from: http://a.test
    to: http://127.0.0.1:2
    allow_any_authenticated_user: true
`;
  test('none is refused, unknown names are refused, HMAC needs a long enough client secret', () => {
    assert.throws(
      () => parseConfig(yaml('idp_id_token_algorithms: [RS256, none]'), 't.yaml'),
      /unsigned ID token \(none\) proves nothing/,
    );
    assert.throws(
      () => parseConfig(yaml('idp_id_token_algorithms: [RS256, XY1]'), 't.yaml'),
      /unknown algorithm "XY1"/,
    );
    assert.throws(
      () => parseConfig(yaml('idp_id_token_algorithms: [HS256]'), 't.yaml'),
      /HS256 is keyed with idp_client_secret, which must then be at least 32 bytes/,
    );
    const ok = parseConfig(yaml('idp_id_token_algorithms: [HS256]', 'k'.repeat(32)), 't.yaml');
    assert.deepEqual(ok.idp.idTokenAlgorithms, ['HS256']);
    assert.ok(
      !parseConfig(yaml(''), 't.yaml').idp.idTokenAlgorithms.some(
        (a) => a.startsWith('HS') || a === 'none',
      ),
      'the default is public-key only',
    );
  });
});
