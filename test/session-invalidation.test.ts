// Issue 17, item 4: a sign-out or `portcullis sessions revoke` is final on every replica at once.
// Before: each process trusted its decoded copy of a session for 2 s, so a copied cookie kept
// working on the other replicas for up to 2 s after the sign-out, and cached sessions were served
// for up to 2 s after the store went down. Login states and handoff links were single-use per
// process only, so a leaked handoff link could be spent once on every replica.
//
// Here the replica is a real second process (`portcullis serve`), sharing the config and the
// store with the in-process one, and reached under the same host and port, as a load balancer
// would spread one browser's requests.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import { CookieJar, request, type RequestOptions, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import {
  createTempDatabase,
  PG_ADMIN,
  startPrivateRedis,
  type TempDatabase,
} from './helpers/session-infra.js';
import { startStack, type Stack } from './helpers/stack.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const JSON_HEADERS = { accept: 'application/json' };
/** While the channel is down, how long a cached session may still be served (issue 17; UNWATCHED_MS). */
const UNWATCHED_MS = 1_000;
/**
 * Between the test's clock and the server's reading of Date.now(): the server may still be
 * handling I/O that arrived before the test's reference instant (a heartbeat, the close).
 */
const CLOCK_SLACK_MS = 200;
/**
 * How long a process may take to hear an ending through the store's channel before the test
 * fails. Usually milliseconds; a process that never hears it trusts its cached copy for WATCHED_MS
 * (30 s), so this deadline tells the two apart on however loaded a machine.
 */
const HEARD_WITHIN_MS = 5_000;
const ROUTES = `routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_identity_headers: true
`;
const dir = mkdtempSync(join(tmpdir(), 'portcullis-invalidate-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Replica {
  port: number;
  logs(): Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** `portcullis serve` in a child process, the stack's config on another listening port. */
async function startReplicaProcess(s: Stack, name: string): Promise<Replica> {
  const port = await freePort();
  const file = join(dir, `${name}.yaml`);
  const yaml = s.yaml.replace(`address: 127.0.0.1:${s.port}`, `address: 127.0.0.1:${port}`);
  assert.notEqual(yaml, s.yaml, 'the replica listens elsewhere');
  writeFileSync(file, yaml);
  const env = { ...process.env };
  delete env.PORTCULLIS_CONFIG;
  const child: ChildProcess = spawn(process.execPath, [MAIN, 'serve', '--config', file], {
    cwd: dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const logs = (): Array<Record<string, unknown>> =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const deadline = Date.now() + 20_000;
  // Listening, and subscribed to the store's channel (it subscribes at start).
  while (
    !logs().some((l) => l.event === 'listening') ||
    !logs().some((l) => l.event === 'session_channel_up')
  ) {
    assert.ok(
      Date.now() < deadline && child.exitCode === null,
      `the replica did not start:\n${out}`,
    );
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    logs,
    async close() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Asks until the answer is not 200, failing past HEARD_WITHIN_MS (see there). */
async function untilRefused(
  get: () => Promise<Resp>,
  what: string,
): Promise<{ resp: Resp; served: number }> {
  const deadline = performance.now() + HEARD_WITHIN_MS;
  let served = 0;
  for (;;) {
    const resp = await get();
    if (resp.status !== 200) return { resp, served };
    served++;
    assert.ok(
      performance.now() < deadline,
      `still answered 200 ${HEARD_WITHIN_MS} ms after ${what}: the ending was never heard`,
    );
    await new Promise((r) => setTimeout(r, 20));
  }
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

async function waitForLog(
  logs: () => Array<Record<string, unknown>>,
  event: string,
  from = 0,
): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (
    !logs()
      .slice(from)
      .some((l) => l.event === event)
  ) {
    assert.ok(Date.now() < deadline, `no ${event} log line`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const kind of ['redis', 'postgres'] as const) {
  describe(`sign-out and revocation are final on every replica at once (${kind}, two processes)`, () => {
    let s: Stack;
    let b: Replica;
    let db: TempDatabase | null = null;
    const prefix = `portcullis-test-${randomBytes(6).toString('hex')}:`;
    const app = (path = '/'): string => `http://app.corp.test:${s.port}${path}`;
    /** The same URL, answered by the replica process. */
    const onB = (o: RequestOptions = {}): RequestOptions => ({
      ...o,
      connectTo: { host: '127.0.0.1', port: b.port },
    });
    const latencies: string[] = [];

    before(async () => {
      let url: string;
      if (kind === 'postgres') {
        db = await createTempDatabase();
        url = db.url();
      } else {
        url = `redis://127.0.0.1:6379/0?key_prefix=${prefix}`;
      }
      s = await startStack({
        hosts: ['app.corp.test'],
        body: `session_storage: "${url}"\n${ROUTES}`,
      });
      await waitForLog(() => s.logs, 'session_channel_up');
      b = await startReplicaProcess(s, `replica-${kind}`);
    });
    after(async () => {
      if (latencies.length)
        console.log(`# ${kind} invalidation latencies: ${latencies.join('; ')}`);
      await Promise.allSettled([b?.close(), s?.close()]);
      if (db) await db.drop();
      else {
        const r = new Redis({ host: '127.0.0.1', port: 6379 });
        const keys = await r.keys(`${prefix}*`);
        if (keys.length) await r.del(...keys);
        r.disconnect();
      }
    });

    async function signedIn(user: string): Promise<string> {
      const jar = new CookieJar();
      assert.equal(
        (await loginThroughIdp(app(), { jar, username: user, password: user })).final.status,
        200,
      );
      const cookie = jar.header(new URL(app()));
      // Both processes now hold the decoded session in their caches.
      assert.equal(
        (await request(app('/warm'), { headers: { ...JSON_HEADERS, cookie } })).status,
        200,
      );
      const viaB = await request(app('/warm'), onB({ headers: { ...JSON_HEADERS, cookie } }));
      assert.equal(viaB.status, 200);
      assert.equal(viaB.json().headers['x-forwarded-email'], `${user}@example.com`);
      return cookie;
    }

    test('a sign-out through one process: the other refuses the copied cookie as soon as it hears of it', async () => {
      // Each of these is what a user sees: sign out in one tab, the copied cookie tried at once on
      // the other replica. The other process hears of the sign-out through the store's channel;
      // the sign-out waits up to 100 ms for that message to come back, which on a loaded machine
      // (a PostgreSQL backend descheduled) is not always enough for the other process to have it
      // too. So the test waits for that event, and fails if it does not come within
      // HEARD_WITHIN_MS; the latencies are logged, not asserted.
      for (let i = 0; i < 7; i++) {
        const cookie = await signedIn('alice');
        const t0 = performance.now();
        const out = await request(app('/.portcullis/sign_out'), {
          headers: { ...BROWSER_HEADERS, cookie },
        });
        const t1 = performance.now();
        assert.ok([200, 302].includes(out.status), `sign-out answered ${out.status}`);
        const { resp: next, served } = await untilRefused(
          () => request(app('/after-sign-out'), onB({ headers: { ...JSON_HEADERS, cookie } })),
          'the sign-out',
        );
        const t2 = performance.now();
        assert.equal(next.status, 401, 'the copied cookie is refused by the other process');
        assert.equal(next.json().error, 'unauthenticated');
        assert.ok(!next.body.includes('alice@example.com'), 'nothing of the session leaks');
        latencies.push(
          `sign-out answered in ${(t1 - t0).toFixed(1)} ms, B refused ${(t2 - t0).toFixed(1)} ms after it began (${served} answers before)`,
        );
        const page = await request(app('/page'), onB({ headers: { ...BROWSER_HEADERS, cookie } }));
        assert.equal(page.status, 302, 'a browser is sent to sign in again');
      }
    });

    test('portcullis sessions revoke (a third process): either process refuses the session as soon as it hears of it', async () => {
      const file = join(dir, `cli-${kind}.yaml`);
      writeFileSync(file, s.yaml);
      for (const first of ['A', 'B', 'A', 'B', 'A'] as const) {
        const cookie = await signedIn('bob');
        const revoke = await cli([
          'sessions',
          'revoke',
          '--user',
          'bob@example.com',
          '--config',
          file,
        ]);
        const t0 = performance.now();
        assert.equal(revoke.code, 0, revoke.stderr);
        assert.match(revoke.stdout, /revoked 1 session of bob@example\.com/);
        const ask = (onOther: boolean): Promise<Resp> =>
          request(
            app('/after-revoke'),
            onOther
              ? onB({ headers: { ...JSON_HEADERS, cookie } })
              : { headers: { ...JSON_HEADERS, cookie } },
          );
        // The CLI publishes the revocation before it exits; each process acts on it once heard.
        const { resp: r1 } = await untilRefused(() => ask(first === 'B'), 'the revocation');
        const t1 = performance.now();
        const { resp: r2 } = await untilRefused(() => ask(first !== 'B'), 'the revocation');
        assert.equal(r1.status, 401, `process ${first} refuses the revoked session`);
        assert.equal(r2.status, 401, 'and so does the other');
        assert.ok(!r1.body.includes('bob@example.com') && !r2.body.includes('bob@example.com'));
        latencies.push(`revoke: ${first} refused ${(t1 - t0).toFixed(1)} ms after the CLI exited`);
      }
    });

    test('a sign-in response is spent for every process: replayed on the other, it is refused', async () => {
      const jar = new CookieJar();
      // Up to the IdP: the login cookie (state, PKCE verifier) is in the jar then.
      let next = app('/replay');
      for (let i = 0; i < 5 && next.startsWith(app('')); i++) {
        const r = await request(next, { jar, headers: BROWSER_HEADERS });
        assert.equal(r.status, 302);
        next = new URL(r.location!, next).href;
      }
      const loginCookie = jar.header(new URL(app()));
      assert.match(loginCookie, /=/, 'a login cookie was set');
      const done = await loginThroughIdp(next, { jar, username: 'alice', password: 'alice' });
      assert.equal(
        done.final.status,
        200,
        `the sign-in completes through the first process: ${done.chain.join(' -> ')} ${done.final.body.slice(0, 300)}`,
      );
      // Someone holding a copy of the browser's callback request (URL and cookies) replays it.
      const callbackUrl = done.chain.find((u) => u.includes('/.portcullis/callback?'));
      assert.ok(callbackUrl, `the chain went through the callback: ${done.chain.join(' -> ')}`);
      const replay = await request(
        callbackUrl,
        onB({ headers: { ...JSON_HEADERS, cookie: loginCookie } }),
      );
      const t = replay.json<{ error: string }>();
      assert.equal(replay.status, 400);
      assert.equal(t.error, 'state_replayed', replay.body);
      assert.ok(
        !replay.setCookies.some((c) => /^_portcullis=[^;]/.test(c)),
        'no session is issued',
      );
    });
  });
}

describe('a leaked handoff link cannot be spent once per replica', () => {
  for (const kind of ['redis', 'postgres'] as const) {
    test(`${kind}: spent through one process, refused by the other`, async () => {
      const db = kind === 'postgres' ? await createTempDatabase() : null;
      const prefix = `portcullis-test-${randomBytes(6).toString('hex')}:`;
      const url = db ? db.url() : `redis://127.0.0.1:6379/0?key_prefix=${prefix}`;
      const s = await startStack({
        hosts: ['auth.corp.test'],
        body: `session_storage: "${url}"
authenticate_service_url: http://auth.corp.test:\${PORT}
cookie_domain: corp.test
routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
  - from: http://app.other.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_identity_headers: true
`,
      });
      let b: Replica | null = null;
      try {
        b = await startReplicaProcess(s, `handoff-${kind}`);
        const other = (path: string): string => `http://app.other.test:${s.port}${path}`;
        const jar = new CookieJar();
        assert.equal(
          (
            await loginThroughIdp(`http://app.corp.test:${s.port}/`, {
              jar,
              username: 'bob',
              password: 'bob',
            })
          ).final.status,
          200,
        );
        const toAuth = await request(other('/secret'), { jar, headers: BROWSER_HEADERS });
        assert.equal(toAuth.status, 302);
        const fromAuth = await request(toAuth.location!, { jar, headers: BROWSER_HEADERS });
        const link = fromAuth.location ?? '';
        assert.match(link, /\/\.portcullis\/handoff\?token=/);
        // The link and the browser's nonce cookie leak together (a copy of the whole request).
        const cookie = jar.header(new URL(link));
        const first = await request(link, { headers: { ...BROWSER_HEADERS, cookie } });
        assert.equal(first.status, 302, 'the link works once');
        assert.ok(first.setCookies.some((c) => /^_portcullis=[^;]/.test(c)));
        const again = await request(link, {
          headers: { ...BROWSER_HEADERS, cookie },
          connectTo: { host: '127.0.0.1', port: b.port },
        });
        assert.equal(again.status, 400, 'the other process refuses the spent link');
        assert.match(again.body, /was already used/);
        assert.ok(
          !again.setCookies.some((c) => /^_portcullis=[^;]/.test(c)),
          'no session cookie is set',
        );
        assert.ok(!again.body.includes('bob@example.com'));
        await waitForLog(() => b!.logs(), 'handoff_refused');
        const refused = b.logs().find((l) => l.event === 'handoff_refused');
        assert.equal(refused?.reason, 'replayed', 'an audit line names the refusal');
      } finally {
        await b?.close();
        await s.close();
        if (db) await db.drop();
        else {
          const r = new Redis({ host: '127.0.0.1', port: 6379 });
          const keys = await r.keys(`${prefix}*`);
          if (keys.length) await r.del(...keys);
          r.disconnect();
        }
      }
    });
  }
});

/**
 * Polls every 20 ms until the answer is not 200 (10 s at most). The bound is judged by when each
 * request was *sent*: a request sent more than UNWATCHED_MS after `t0` and still answered 200 was
 * served from a cache older than the bound allows. A slow round trip on a loaded machine makes
 * the polls fewer, never a request that was sent in time look late.
 */
async function untilNot200(
  get: () => Promise<Resp>,
  what: string,
): Promise<{ resp: Resp; ms: number; served: number }> {
  const t0 = performance.now();
  let served = 0;
  for (;;) {
    const sent = performance.now() - t0;
    const resp = await get();
    if (resp.status !== 200) return { resp, ms: performance.now() - t0, served };
    served++;
    assert.ok(
      sent <= UNWATCHED_MS + CLOCK_SLACK_MS,
      `a request sent ${sent.toFixed(0)} ms after ${what} was still answered 200 (bound ${UNWATCHED_MS} ms)`,
    );
    assert.ok(performance.now() - t0 < 10_000, `still answered 200 10 s after ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Once the stack listens on its store's channel, alice signs in; `get` asks for /api with her
 * cookies (answered 200 before it returns).
 */
async function aliceSignedIn(s: Stack): Promise<{ jar: CookieJar; get: () => Promise<Resp> }> {
  await waitForLog(() => s.logs, 'session_channel_up');
  const jar = new CookieJar();
  const login = await loginThroughIdp(`http://app.corp.test:${s.port}/`, {
    jar,
    username: 'alice',
    password: 'alice',
  });
  assert.equal(login.final.status, 200);
  const get = (): Promise<Resp> =>
    request(`http://app.corp.test:${s.port}/api`, { jar, headers: JSON_HEADERS });
  assert.equal((await get()).status, 200);
  return { jar, get };
}

describe('while the invalidation channel is down, cached sessions are trusted for at most 1 s', () => {
  test('redis: the subscriber killed (CLIENT KILL) while a session is deleted unannounced: refused within 1 s', async () => {
    const redis = await startPrivateRedis();
    const s = await startStack({
      hosts: ['app.corp.test'],
      body: `session_storage: redis://127.0.0.1:${redis.port}\n${ROUTES}`,
    });
    const admin = new Redis({ host: '127.0.0.1', port: redis.port });
    try {
      const { get } = await aliceSignedIn(s);
      const from = s.logs.length;
      // The message about this deletion is lost: it happens while nobody listens.
      assert.ok(
        Number(await admin.client('KILL', 'TYPE', 'pubsub')) >= 1,
        'the subscriber connection was killed',
      );
      const keys = await admin.keys('portcullis:s:*');
      assert.equal(keys.length, 1);
      await admin.del(keys[0]!);
      const { resp, ms } = await untilNot200(get, 'the deletion');
      assert.equal(resp.status, 401, 'the deleted session is refused');
      console.log(
        `# redis: lost message, refused ${ms.toFixed(0)} ms after the unannounced deletion`,
      );
      await waitForLog(() => s.logs, 'session_channel_down', from);
      await waitForLog(() => s.logs, 'session_channel_up', from);
    } finally {
      admin.disconnect();
      await s.close();
      await redis.close();
    }
  });

  test('redis: the store goes down: cached sessions are served for at most 1 s, then 503, never a 500', async () => {
    const redis = await startPrivateRedis();
    const s = await startStack({
      hosts: ['app.corp.test'],
      body: `session_storage: redis://127.0.0.1:${redis.port}\n${ROUTES}`,
    });
    try {
      const { jar, get } = await aliceSignedIn(s);
      await redis.shutdown();
      const { resp, ms, served } = await untilNot200(get, 'the store went down');
      assert.equal(resp.status, 503);
      assert.equal(resp.json().error, 'session_store_unavailable');
      console.log(
        `# redis down: cached session served ${served} times for ${ms.toFixed(0)} ms, then 503`,
      );
      for (let i = 0; i < 5; i++) assert.equal((await get()).status, 503);
      assert.ok(
        !s.logText().includes(jar.get('_portcullis', 'app.corp.test')!),
        'the cookie never reaches the log',
      );
    } finally {
      await s.close();
      await redis.close();
    }
  });

  test('postgres: the LISTEN connection terminated while a session is deleted unannounced: refused within 1 s', async () => {
    const db = await createTempDatabase();
    const s = await startStack({
      hosts: ['app.corp.test'],
      body: `session_storage: "${db.url()}"\n${ROUTES}`,
    });
    const admin = new pg.Client({ connectionString: PG_ADMIN });
    await admin.connect();
    try {
      const { get } = await aliceSignedIn(s);
      const from = s.logs.length;
      const killed = await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
        [db.name],
      );
      assert.equal(killed.rowCount, 1, 'the listening connection was terminated');
      await db.query('DELETE FROM portcullis_sessions');
      const { resp, ms } = await untilNot200(get, 'the deletion');
      assert.equal(resp.status, 401, 'the deleted session is refused');
      console.log(
        `# postgres: lost message, refused ${ms.toFixed(0)} ms after the unannounced deletion`,
      );
      await waitForLog(() => s.logs, 'session_channel_down', from);
      await waitForLog(() => s.logs, 'session_channel_up', from);
    } finally {
      await admin.end();
      await s.close();
      await db.drop();
    }
  });
});
