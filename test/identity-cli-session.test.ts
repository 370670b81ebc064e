// A CLI token (`Authorization: Portcullis …`) is only another way to present a session, so it
// must lose access exactly when the session's cookie does: when the IdP drops a group or
// disables the user (seen at the next refresh), at sign-out, and at `portcullis sessions revoke`.
// Security review, issue 15, "Medium 3": the token used to be served from a 30-second cache of
// the stored session and never refreshed, so it outlived all three.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { UNWATCHED_MS } from '../src/session/manager.js';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { startLoopback } from './helpers/identity-stack.js';
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

/** The smallest idp_refresh_directory_interval the config accepts. */
const INTERVAL_MS = 10_000;
const JSON_HEADERS = { accept: 'application/json' };
const CLI = new URL('../src/cli/main.js', import.meta.url).pathname;
const ENDED = 'the session behind this Portcullis token has ended; log in again';

const routes = (storage: string): string => `${storage}idp_refresh_directory_interval: 10s
cookie_domain: corp.test
routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_identity_headers: true
  - from: http://admin.corp.test:\${PORT}
    to: \${UPSTREAM}
    allowed_groups: [admins]
`;

type Loopback = Awaited<ReturnType<typeof startLoopback>>;

/** The programmatic login: returns the CLI's token and the browser's cookie jar (the same session). */
async function cliLogin(
  port: number,
  loopback: Loopback,
  username: string,
): Promise<{ token: string; jar: CookieJar }> {
  const start = await request(
    `http://app.corp.test:${port}/.portcullis/api/v1/login?redirect_uri=${encodeURIComponent(`${loopback.url}/cb`)}`,
  );
  assert.equal(start.status, 200, start.body);
  const jar = new CookieJar();
  const { final } = await loginThroughIdp(start.body, { jar, username, password: username });
  assert.equal(final.status, 200, final.body);
  const token = loopback.hits.at(-1)?.searchParams.get('portcullis_token');
  assert.ok(token, 'the loopback received a token');
  return { token, jar };
}

function withToken(token: string): Record<string, string> {
  return { ...JSON_HEADERS, authorization: `Portcullis ${token}` };
}

/** Polls until the answer is not 200; every status seen is kept for the failure message. */
async function untilRefused(
  get: () => Promise<Resp>,
  withinMs: number,
  seen: number[] = [],
): Promise<{ resp: Resp; ms: number }> {
  const t0 = Date.now();
  for (;;) {
    const resp = await get();
    seen.push(resp.status);
    if (resp.status !== 200 || Date.now() - t0 > withinMs) return { resp, ms: Date.now() - t0 };
    await new Promise((r) => setTimeout(r, 200));
  }
}

function assertEnded(r: Resp): void {
  assert.equal(r.status, 401, r.body);
  assert.equal(r.json().error, 'invalid_token');
  assert.equal(
    r.headers['www-authenticate'],
    `Bearer realm="portcullis", error="invalid_token", error_description="${ENDED}"`,
  );
  assert.equal(r.location, undefined, 'a refused token never gets a login redirect');
  assert.ok(!r.body.includes('alice'), 'nothing about the user leaks into the refusal');
}

describe('a CLI token with the cookie store follows what the IdP says at each refresh', () => {
  let s: Stack;
  let spy: TokenSpy;
  let loopback: Loopback;
  before(async () => {
    loopback = await startLoopback();
    s = await startStack({ hosts: ['app.corp.test', 'admin.corp.test'], body: routes('') });
    spy = spyOnTokenEndpoint(s.idp.issuer);
  });
  after(async () => {
    spy?.restore();
    await Promise.allSettled([s?.close(), loopback?.close()]);
  });

  test('removed from admins, then disabled: the token loses access like the cookie, each refresh token spent once', async () => {
    const { token, jar } = await cliLogin(s.port, loopback, 'alice');
    const admin = `http://admin.corp.test:${s.port}/`;
    const app = `http://app.corp.test:${s.port}/`;
    assert.equal((await request(admin, { headers: withToken(token) })).status, 200);
    const refreshesBefore = spy.refreshes.length;
    try {
      s.idp.setGroups('alice', ['eng']);
      const seen: number[] = [];
      const dropped = await untilRefused(
        () => request(admin, { headers: withToken(token) }),
        INTERVAL_MS + 3_000,
        seen,
      );
      assert.equal(dropped.resp.status, 403, `statuses seen: ${seen.join(',')}`);
      assert.match(dropped.resp.body, /admins/);
      assert.ok(dropped.ms <= INTERVAL_MS + 2_000, `the token kept the group for ${dropped.ms} ms`);
      assert.equal(
        (await request(admin, { jar, headers: JSON_HEADERS })).status,
        403,
        'the cookie agrees',
      );
      assert.equal(
        (await request(app, { headers: withToken(token) })).status,
        200,
        'the token still works where eng suffices',
      );

      s.idp.disableUser('alice');
      const ended = await untilRefused(
        () => request(app, { headers: withToken(token) }),
        INTERVAL_MS + 3_000,
        seen,
      );
      assertEnded(ended.resp);
      assert.ok(
        ended.ms <= INTERVAL_MS + 2_000,
        `the disabled user's token worked for ${ended.ms} ms`,
      );
      const cookie = await request(app, { jar, headers: JSON_HEADERS });
      assert.equal(cookie.status, 401);
      assert.equal(cookie.json().error, 'unauthenticated');
      assert.ok(!seen.some((x) => x >= 500), `statuses seen: ${seen.join(',')}`);
    } finally {
      s.idp.users.get('alice')!.disabled = false;
      s.idp.setGroups('alice', ['admins', 'eng']);
    }
    const refreshes = spy.refreshes.slice(refreshesBefore);
    assert.deepEqual(
      refreshes.map((r) => r.status),
      [200, 400],
      'one refresh for the group change, one refused for the disabled user',
    );
    // The token carries the login-time cookie; the IdP rotates refresh tokens, so the second
    // refresh must present the rotated one, or the IdP sees a replay and revokes the grant.
    assert.equal(
      new Set(refreshes.map((r) => r.refreshToken)).size,
      refreshes.length,
      'a refresh token was presented twice',
    );
    assert.ok(s.logs.some((l) => l.event === 'session_refresh_rejected'));
  });
});

for (const kind of ['memory', 'redis'] as const) {
  describe(`a CLI token with the ${kind} store ends with its session`, () => {
    let s: Stack;
    let b: Proxy | null = null;
    let portB = 0;
    let loopback: Loopback;
    let dir = '';
    const prefix = `portcullis-test-${randomBytes(6).toString('hex')}:`;
    const app = (port: number, path = '/'): string => `http://app.corp.test:${port}${path}`;

    before(async () => {
      loopback = await startLoopback();
      const storage =
        kind === 'memory'
          ? 'session_storage: memory\n'
          : `session_storage: "redis://127.0.0.1:6379/0?key_prefix=${prefix}"\n`;
      s = await startStack({ hosts: ['app.corp.test', 'admin.corp.test'], body: routes(storage) });
      if (kind === 'redis') {
        portB = await freePort();
        b = await startProxy(yamlOnPort(s.yaml, s.port, portB), 'replica.yaml');
      }
      dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-session-'));
    });
    after(async () => {
      await Promise.allSettled([b?.close(), s?.close(), loopback?.close()]);
      if (kind === 'redis') {
        const r = new Redis({ host: '127.0.0.1', port: 6379 });
        const keys = await r.keys(`${prefix}*`);
        if (keys.length) await r.del(...keys);
        r.disconnect();
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('sign-out in the browser: the token is refused on the very next request', async () => {
      const { token, jar } = await cliLogin(s.port, loopback, 'alice');
      for (let i = 0; i < 3; i++)
        assert.equal((await request(app(s.port), { headers: withToken(token) })).status, 200);
      const out = await request(app(s.port, '/.portcullis/sign_out'), {
        jar,
        headers: BROWSER_HEADERS,
      });
      assert.equal(out.status, 302, out.body);
      assertEnded(await request(app(s.port, '/right-after'), { headers: withToken(token) }));
      const cookie = await request(app(s.port), { jar, headers: JSON_HEADERS });
      assert.equal(cookie.status, 401);
    });

    if (kind === 'redis') {
      test('portcullis sessions revoke: every replica refuses the token within the bound it refuses the cookie', async () => {
        const { token, jar } = await cliLogin(s.port, loopback, 'alice');
        const cookie = jar.header(new URL(app(s.port)));
        // Both replicas now hold the session in their caches, through the token and the cookie.
        for (const port of [s.port, portB]) {
          assert.equal((await request(app(port), { headers: withToken(token) })).status, 200);
          assert.equal(
            (await request(app(port), { headers: { ...JSON_HEADERS, cookie } })).status,
            200,
          );
        }
        const file = join(dir, 'portcullis.yaml');
        writeFileSync(file, s.yaml);
        const revoke = await new Promise<{ code: number; stdout: string; stderr: string }>(
          (resolve) => {
            execFile(
              process.execPath,
              [CLI, 'sessions', 'revoke', '--user', 'alice@example.com', '--config', file],
              { timeout: 20_000 },
              (err, stdout, stderr) => {
                resolve({
                  code: err ? (typeof err.code === 'number' ? err.code : 1) : 0,
                  stdout,
                  stderr,
                });
              },
            );
          },
        );
        assert.equal(revoke.code, 0, revoke.stderr);
        assert.match(revoke.stdout, /revoked \d+ sessions? of alice@example\.com/);
        for (const port of [portB, s.port]) {
          const { resp, ms } = await untilRefused(
            () => request(app(port), { headers: withToken(token) }),
            UNWATCHED_MS + 3_000,
          );
          assertEnded(resp);
          assert.ok(
            ms <= UNWATCHED_MS + 1_000,
            `port ${port}: the revoked session's token worked for ${ms} ms`,
          );
          assert.equal(
            (await request(app(port), { headers: { ...JSON_HEADERS, cookie } })).status,
            401,
          );
        }
      });
    }
  });
}
