// bearer_token_cache_size (issue 17 item 5) bounds what each process remembers of bearer tokens,
// as session_cache_size does for sessions. Seen from the IdP: a token still in the cache costs
// no introspection call; one pushed out by newer tokens costs one more.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { request } from './helpers/http.js';
import { CLI, startIdentityStack, type IdentityStack } from './helpers/identity-stack.js';

const INTROSPECTION = '/token/introspection';

describe('bearer_token_cache_size', () => {
  let s: IdentityStack;
  before(async () => {
    s = await startIdentityStack({
      hosts: ['api.corp.test'],
      globals: `bearer_audiences: [${CLI.id}]
idp_introspection: true
bearer_token_cache_size: 100
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

  // Each token from its own address, so the per-address introspection limit plays no part.
  const ask = (token: string, i: number) =>
    request(`http://api.corp.test:${s.port}/`, {
      headers: {
        authorization: `Bearer ${token}`,
        accept: 'application/json',
        'x-forwarded-for': `198.51.100.${i}`,
      },
    });
  const calls = (): number => s.idp.requestCount(INTROSPECTION);

  test('101 refused tokens: the last 100 are remembered, the first was pushed out and is asked about again', async (t) => {
    // Refused answers are kept 5 s (REFUSED_MS). Under load the 201 requests below can take
    // longer than that, and then expiry, not the size bound, would push tokens out. The clock
    // Portcullis reads (Date) is held still instead, and moved only where the test says so.
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() });
    const tokens = Array.from({ length: 101 }, () => randomBytes(24).toString('base64url'));
    const t0 = calls();
    for (let i = 0; i < tokens.length; i += 20) {
      await Promise.all(
        tokens
          .slice(i, i + 20)
          .map(async (t, j) => assert.equal((await ask(t, i + j)).status, 401)),
      );
    }
    assert.equal(calls() - t0, 101);
    // Asked again within the 5 s, the 100 newest cost nothing.
    const t1 = calls();
    await Promise.all(
      tokens.slice(1).map(async (t, j) => assert.equal((await ask(t, j + 1)).status, 401)),
    );
    assert.equal(calls() - t1, 0, 'the newest 100 are still cached');
    assert.equal((await ask(tokens[0]!, 0)).status, 401);
    assert.equal(calls() - t1, 1, 'the oldest went when the 101st came');
    // Past the 5 s a refusal is forgotten: the IdP is asked again (it may have learnt the token).
    t.mock.timers.tick(5_001);
    assert.equal((await ask(tokens[100]!, 100)).status, 401);
    assert.equal(calls() - t1, 2, 'a refusal is kept 5 s, not for ever');
  });

  test('a valid token is cached: many requests, one introspection call', async () => {
    const token = await s.userToken('alice');
    const t0 = calls();
    for (let i = 0; i < 10; i++) assert.equal((await ask(token, 200)).status, 200);
    assert.equal(calls() - t0, 1);
  });
});
