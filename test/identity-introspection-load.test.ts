// Opaque bearer tokens cost an introspection call at the IdP. A client must not be able to turn
// its requests into as many IdP calls: a refused token is remembered briefly, identical lookups
// in flight share one call, and the calls one client address can cause are rate-limited.
// Security review, issue 15, "Low 5": 30 requests with one made-up token made 30 calls, and 100
// parallel random tokens made 100 calls in 0.6 s. The counts below are what the real IdP received.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { request, type Resp } from './helpers/http.js';
import { CLI, startIdentityStack, type IdentityStack } from './helpers/identity-stack.js';

const INTROSPECTION = '/token/introspection';
/** The per-address burst in src/identity/bearer.ts; a test below asserts the flood stays near it. */
const BURST = 20;
const LIMITED =
  /too many unknown tokens were checked from your address; try again in a few seconds/;

describe('opaque bearer tokens do not hammer the identity provider', () => {
  let s: IdentityStack;
  const url = (path = '/'): string => `http://api.corp.test:${s.port}${path}`;
  const calls = (): number => s.idp.requestCount(INTROSPECTION);
  /** A request from `client`: the proxy trusts 127.0.0.1, so X-Forwarded-For names the client. */
  const ask = (token: string, client: string, path = '/'): Promise<Resp> =>
    request(url(path), {
      headers: {
        authorization: `Bearer ${token}`,
        accept: 'application/json',
        'x-forwarded-for': client,
      },
    });

  before(async () => {
    s = await startIdentityStack({
      hosts: ['api.corp.test'],
      globals: `bearer_audiences: [${CLI.id}]
idp_introspection: true
trusted_proxies: [127.0.0.1]`,
      body: `routes:
  - from: http://api.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_bearer_tokens: true
    allow_any_authenticated_user: true
`,
    });
  });
  after(() => s.close());

  test('30 requests with one made-up token: one introspection call, every answer the same 401', async () => {
    const token = `made-up-${randomBytes(16).toString('hex')}`;
    const before = calls();
    for (let i = 0; i < 30; i++) {
      const r = await ask(token, '198.51.100.1', `/n/${i}`);
      assert.equal(r.status, 401);
      assert.match(
        String(r.headers['www-authenticate']),
        /error="invalid_token", error_description="the token is not active/,
      );
    }
    assert.equal(calls() - before, 1, 'the IdP was asked once');
  });

  test('25 concurrent requests with one valid token: one introspection call, all let through', async () => {
    const token = await s.userToken('alice');
    const before = calls();
    const all = await Promise.all(
      Array.from({ length: 25 }, (_, i) => ask(token, '198.51.100.2', `/c/${i}`)),
    );
    assert.deepEqual(
      all.map((r) => r.status),
      all.map(() => 200),
    );
    assert.equal(calls() - before, 1, 'identical lookups in flight share one call');
  });

  test('100 parallel random tokens from one address: about a burst reaches the IdP, the rest get 401 saying why, never 5xx', async () => {
    const bob = await s.userToken('bob');
    const before = calls();
    const t0 = Date.now();
    const all = await Promise.all(
      Array.from({ length: 100 }, () => ask(randomBytes(24).toString('base64url'), '198.51.100.3')),
    );
    const ms = Date.now() - t0;
    const made = calls() - before;
    // The bucket refills at 2 a second while the flood runs.
    assert.ok(
      made >= BURST && made <= BURST + Math.ceil(ms / 500) + 1,
      `${made} introspection calls in ${ms} ms`,
    );
    assert.deepEqual(new Set(all.map((r) => r.status)), new Set([401]));
    const limited = all.filter((r) => LIMITED.test(String(r.headers['www-authenticate'])));
    assert.equal(
      limited.length,
      100 - made,
      'every request that did not reach the IdP says it was rate-limited',
    );
    assert.equal(limited[0]!.json().error, 'invalid_token');
    assert.doesNotMatch(limited[0]!.body, /at |Error|stack/, 'no stack trace');

    // The limit is the flooding address's alone: someone else's new token is still checked.
    const other = await ask(bob, '203.0.113.9');
    assert.equal(other.status, 200, other.body);
  });

  test('an IPv6 client cannot escape the limit by hopping addresses inside its /64, nor by spelling them differently', async () => {
    const before = calls();
    const all = await Promise.all(
      Array.from({ length: 60 }, (_, i) => {
        const host = (i + 1).toString(16);
        const client = i % 2 ? `2001:db8:77:1::${host}` : `2001:0db8:0077:0001:0:0:0:${host}`;
        return ask(randomBytes(24).toString('base64url'), client);
      }),
    );
    const made = calls() - before;
    assert.ok(made <= BURST + 3, `${made} introspection calls from one /64`);
    assert.deepEqual(new Set(all.map((r) => r.status)), new Set([401]));
  });
});
