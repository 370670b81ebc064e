// Token refresh with a 5-second IdP access-token lifetime (IdP tokens that expire in five minutes): the user never bounces
// through the IdP, each refresh token is spent exactly once however many requests (and
// replicas) race for it, a group removed at the IdP stops working within a token lifetime, and
// a user disabled at the IdP is sent to the login (browser) or gets 401 (API), never a 500.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import {
  spyOnTokenEndpoint,
  startProxy,
  yamlOnPort,
  type Proxy,
  type TokenSpy,
} from './helpers/session-infra.js';
import { startStack, type Stack } from './helpers/stack.js';

const TTL_S = 5;
const LOAD_MS = 12_000;
const ROUTES = `routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allowed_groups: [admins]
    pass_identity_headers: true
`;
const JSON_HEADERS = { accept: 'application/json' };

async function until(
  get: () => Promise<Resp>,
  done: (r: Resp) => boolean,
  withinMs: number,
  seen: number[],
): Promise<Resp> {
  const end = Date.now() + withinMs;
  for (;;) {
    const r = await get();
    seen.push(r.status);
    if (done(r) || Date.now() > end) return r;
    await new Promise((res) => setTimeout(res, 200));
  }
}

for (const kind of ['redis', 'cookie'] as const) {
  describe(`token refresh with the ${kind} store${kind === 'redis' ? ' and two replicas' : ''}`, () => {
    let s: Stack;
    let spy: TokenSpy;
    let b: Proxy | null = null;
    const prefix = `portcullis-test-${randomBytes(6).toString('hex')}:`;
    const ports: number[] = [];

    before(async () => {
      const storage =
        kind === 'redis'
          ? `session_storage: "redis://127.0.0.1:6379/0?key_prefix=${prefix}"\n`
          : '';
      s = await startStack({
        hosts: ['app.corp.test'],
        body: `${storage}${ROUTES}`,
        idp: { accessTokenTtl: TTL_S },
      });
      spy = spyOnTokenEndpoint(s.idp.issuer);
      ports.push(s.port);
      if (kind === 'redis') {
        const pb = await freePort();
        b = await startProxy(yamlOnPort(s.yaml, s.port, pb), 'replica.yaml');
        ports.push(pb);
      }
    });
    after(async () => {
      spy?.restore();
      await Promise.allSettled([b?.close(), s?.close()]);
      if (kind === 'redis') {
        const r = new Redis({ host: '127.0.0.1', port: 6379 });
        const keys = await r.keys(`${prefix}*`);
        if (keys.length) await r.del(...keys);
        r.disconnect();
      }
    });

    test('concurrent requests across several token lifetimes: none fails, each refresh token is spent once', async () => {
      const jar = new CookieJar();
      assert.equal(
        (
          await loginThroughIdp(`http://app.corp.test:${s.port}/`, {
            jar,
            username: 'alice',
            password: 'alice',
          })
        ).final.status,
        200,
      );
      const before = spy.refreshes.length;
      const failures: string[] = [];
      let done = 0;
      const end = Date.now() + LOAD_MS;
      // Eight clients sharing the browser's cookie jar, alternating between the replicas: requests
      // still carrying the pre-refresh cookie keep arriving while a refresh is in flight.
      await Promise.all(
        Array.from({ length: 8 }, async (_, w) => {
          for (let i = 0; Date.now() < end; i++) {
            const port = ports[(w + i) % ports.length]!;
            const r = await request(`http://app.corp.test:${port}/load/${w}/${i}`, {
              jar,
              headers: JSON_HEADERS,
            });
            done++;
            if (r.status !== 200) failures.push(`${r.status} ${r.body.slice(0, 200)}`);
            else if (r.json().headers['x-forwarded-email'] !== 'alice@example.com')
              failures.push('wrong identity');
          }
        }),
      );
      const refreshes = spy.refreshes.slice(before);
      assert.deepEqual(failures, [], `${failures.length} of ${done} requests failed`);
      assert.ok(done > 200, `only ${done} requests ran`);
      // Due a quarter of the lifetime early: 12 s of 5-second tokens is three refreshes.
      assert.ok(refreshes.length >= 2, `${refreshes.length} refreshes in ${LOAD_MS} ms`);
      assert.ok(
        refreshes.length <= Math.ceil(LOAD_MS / ((TTL_S * 1000 * 3) / 4)) + 1,
        `${refreshes.length} refreshes: more than one per token lifetime`,
      );
      assert.equal(
        new Set(refreshes.map((r) => r.refreshToken)).size,
        refreshes.length,
        'a refresh token was presented twice',
      );
      assert.deepEqual(
        refreshes.map((r) => r.status),
        refreshes.map(() => 200),
      );
    });

    test('a group removed at the IdP stops granting access within one token lifetime', async () => {
      const jar = new CookieJar();
      assert.equal(
        (
          await loginThroughIdp(`http://app.corp.test:${s.port}/`, {
            jar,
            username: 'alice',
            password: 'alice',
          })
        ).final.status,
        200,
      );
      s.idp.setGroups('alice', ['eng']);
      try {
        const seen: number[] = [];
        const t0 = Date.now();
        const r = await until(
          () => request(`http://app.corp.test:${ports.at(-1)}/`, { jar, headers: JSON_HEADERS }),
          (x) => x.status !== 200,
          TTL_S * 1000 + 3_000,
          seen,
        );
        assert.equal(r.status, 403, `statuses seen: ${seen.join(',')}`);
        assert.ok(Date.now() - t0 <= TTL_S * 1000 + 2_500);
        assert.match(r.body, /admins/);
      } finally {
        s.idp.setGroups('alice', ['admins', 'eng']);
      }
    });

    test('a user disabled at the IdP: the API client gets 401 and the browser goes to the login, never a 500', async () => {
      const api = new CookieJar();
      assert.equal(
        (
          await loginThroughIdp(`http://app.corp.test:${s.port}/`, {
            jar: api,
            username: 'alice',
            password: 'alice',
          })
        ).final.status,
        200,
      );
      const browserCookie = api.header(new URL(`http://app.corp.test:${s.port}/`));
      s.idp.disableUser('alice');
      const seen: number[] = [];
      const r = await until(
        () => request(`http://app.corp.test:${s.port}/`, { jar: api, headers: JSON_HEADERS }),
        (x) => x.status !== 200,
        TTL_S * 1000 + 3_000,
        seen,
      );
      assert.equal(r.status, 401, `statuses seen: ${seen.join(',')}`);
      assert.equal(r.json().error, 'unauthenticated');
      assert.ok(
        r.setCookies.some((c) => /^_portcullis=;/.test(c)),
        'the dead session cookie is cleared',
      );
      const page = await request(`http://app.corp.test:${ports.at(-1)}/page`, {
        headers: { ...BROWSER_HEADERS, cookie: browserCookie },
      });
      assert.equal(page.status, 302, 'the browser is sent to sign in again');
      assert.match(page.location ?? '', /\/auth\?|\/\.portcullis\/sign_in/);
      assert.ok(!seen.includes(500));
      assert.ok(
        spy.refreshes.some((x) => x.status === 400),
        'the IdP refused the refresh',
      );
      assert.ok(s.logs.some((l) => l.event === 'session_refresh_rejected'));
    });
  });
}
