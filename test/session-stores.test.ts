// The server-side session stores against the real Redis and PostgreSQL on this machine: what
// is stored (nothing usable), that several processes see one store, revocation, TTL and
// sweep, the schema version, and outages (a private redis-server we stop and start, and a TCP
// proxy in front of PostgreSQL we cut): 503 while down, one log line, back by itself, nothing lost.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { parseConfig } from '../src/config/load.js';
import type { Config } from '../src/config/types.js';
import { createLogger } from '../src/observe/logger.js';
import { createSessionStore } from '../src/session/create.js';
import { PostgresBackend, POSTGRES_SCHEMA_VERSION } from '../src/session/postgres-store.js';
import { Sealer } from '../src/session/seal.js';
import { parseSessionStorage } from '../src/session/storage-url.js';
import {
  StoreUnavailableError,
  type SessionData,
  type SessionStore,
} from '../src/session/types.js';
import {
  createTempDatabase,
  startPrivateRedis,
  startTcpProxy,
  type TempDatabase,
} from './helpers/session-infra.js';

const SECRET = randomBytes(32).toString('base64');

function config(storage: string, secret = SECRET): Config {
  return parseConfig(
    `address: 127.0.0.1:0
insecure_server: true
cookie_secret: ${secret}
idp_provider_url: http://127.0.0.1:1
idp_client_id: c
idp_client_secret: s
session_storage: ${JSON.stringify(storage)}
routes:
  - from: http://app.test
    to: http://127.0.0.1:2
    allow_any_authenticated_user: true
`,
    'stores.yaml',
  );
}

function logged(): { log: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n'))
        if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: createLogger('debug', sink), lines };
}

function store(
  storage: string,
  secret = SECRET,
): SessionStore & { lines: Array<Record<string, unknown>> } {
  const cfg = config(storage, secret);
  const { log, lines } = logged();
  return Object.assign(createSessionStore(cfg, new Sealer(cfg.cookie.secret), log), { lines });
}

function session(email = 'alice@example.com', ttlMs = 3_600_000): SessionData {
  const now = Date.now();
  return {
    v: 1,
    sid: randomBytes(18).toString('base64url'),
    sub: 'alice',
    iat: now,
    exp: now + ttlMs,
    claims: { sub: 'alice', email, groups: ['admins', 'eng'], name: 'Alice Example' },
    accessToken: `at-${randomBytes(24).toString('base64url')}`,
    accessTokenExp: now + 300_000,
    refreshToken: `rt-${randomBytes(24).toString('base64url')}`,
  };
}

/** Every secret a session holds, as an attacker reading a dump would search for it. */
function secretsOf(s: SessionData): string[] {
  return [s.accessToken!, s.refreshToken!, String(s.claims.email), 'Alice Example', 'admins'];
}

describe('session_storage parsing', () => {
  test('single node, Sentinel and Cluster URLs, with the password masked for display', () => {
    const single = parseSessionStorage('rediss://:p%40ss@redis.internal:6380/2?key_prefix=iap:');
    assert.ok(typeof single === 'object' && single.kind === 'redis');
    assert.deepEqual(
      [single.mode, single.nodes, single.password, single.db, single.tls, single.prefix],
      ['single', [{ host: 'redis.internal', port: 6380 }], 'p@ss', 2, true, 'iap:'],
    );
    assert.doesNotMatch(single.display, /p%40ss/);
    const sentinel = parseSessionStorage(
      'redis://:pw@s1:26379,s2:26379,s3/0?sentinel=mymaster&sentinel_password=spw',
    );
    assert.ok(typeof sentinel === 'object' && sentinel.kind === 'redis');
    assert.equal(sentinel.mode, 'sentinel');
    assert.equal(sentinel.sentinelName, 'mymaster');
    assert.equal(sentinel.nodes.length, 3);
    assert.doesNotMatch(sentinel.display, /spw|:pw@/);
    const cluster = parseSessionStorage('redis://n1:7000,n2:7001?cluster=true');
    assert.ok(
      typeof cluster === 'object' && cluster.kind === 'redis' && cluster.mode === 'cluster',
    );
    assert.match(
      String(parseSessionStorage('redis://a:1,b:2')),
      /sentinel=MASTER_NAME or cluster=true/,
    );
    assert.match(
      String(parseSessionStorage('redis://a:1?clustr=true')),
      /unknown Redis URL option "clustr"/,
    );
    assert.match(String(parseSessionStorage('mysql://db')), /expected cookie, memory, redis/);
  });

  test('a bad session_storage is a config error naming the key and line', () => {
    assert.throws(
      () => config('redis://a:1,b:2'),
      /stores\.yaml:7:\d+: error: session_storage: several Redis hosts need/,
    );
    assert.throws(
      () =>
        parseConfig(`address: 127.0.0.1:0
insecure_server: true
cookie_secret: ${SECRET}
idp_provider_url: http://127.0.0.1:1
idp_client_id: c
idp_client_secret: s
idp_refresh_directory_interval: 2s
routes:
  - from: http://app.test
    to: http://127.0.0.1:2
`),
      /idp_refresh_directory_interval: expected at least 10s/,
    );
  });
});

for (const kind of ['redis', 'postgres'] as const) {
  describe(`${kind} session store`, () => {
    let url = '';
    let db: TempDatabase | null = null;
    const prefix = `portcullis-test-${randomBytes(6).toString('hex')}:`;
    const opened: SessionStore[] = [];
    const open = (secret = SECRET): SessionStore & { lines: Array<Record<string, unknown>> } => {
      const s = store(url, secret);
      opened.push(s);
      return s;
    };
    /** Everything an attacker with a dump (Redis keys and values, or the table's rows) would see. */
    const dump = async (): Promise<string> => {
      if (kind === 'redis') {
        const r = new Redis({ host: '127.0.0.1', port: 6379 });
        try {
          const keys = await r.keys(`${prefix}*`);
          const vals = await Promise.all(keys.map((k) => r.get(k)));
          return keys.map((k, i) => `${k} ${vals[i]}`).join('\n');
        } finally {
          r.disconnect();
        }
      }
      return JSON.stringify(await db!.query('SELECT * FROM portcullis_sessions'));
    };

    before(async () => {
      if (kind === 'postgres') {
        db = await createTempDatabase();
        url = db.url();
      } else {
        url = `redis://127.0.0.1:6379/0?key_prefix=${prefix}`;
      }
    });
    after(async () => {
      await Promise.allSettled(opened.map((s) => s.close()));
      if (db) await db.drop();
      if (kind === 'redis') {
        const r = new Redis({ host: '127.0.0.1', port: 6379 });
        const keys = await r.keys(`${prefix}*`);
        if (keys.length) await r.del(...keys);
        r.disconnect();
      }
    });

    test('a session saved by one process loads in another; the cookie holds no id or token in clear', async () => {
      const a = open();
      const b = open();
      const s = session();
      const cookie = await a.save(s);
      assert.ok(cookie.length < 200, `cookie is ${cookie.length} characters`);
      assert.ok(!cookie.includes(s.sid) && !cookie.includes(s.accessToken!));
      const back = await b.load(cookie, Date.now());
      assert.equal(back?.accessToken, s.accessToken);
      assert.deepEqual(back?.claims, s.claims);
    });

    test('a dump of the store holds no token, no e-mail address, no name and no group in clear text', async () => {
      const a = open();
      const s = session(`dump-${randomBytes(4).toString('hex')}@example.com`);
      await a.save(s);
      const text = await dump();
      assert.ok(text.length > 0, 'the dump is not empty');
      for (const secret of secretsOf(s))
        assert.ok(!text.includes(secret), `the dump contains ${secret.slice(0, 12)}…`);
    });

    test('a forged, tampered or foreign cookie is no session, and a cookie sealed under another cookie_secret is refused', async () => {
      const a = open();
      const cookie = await a.save(session());
      const now = Date.now();
      assert.equal(await a.load(`${cookie.slice(0, -2)}AA`, now), null);
      assert.equal(await a.load('garbage', now), null);
      assert.equal(await open(randomBytes(32).toString('base64')).load(cookie, now), null);
    });

    test('destroy ends the session for every process, and a refresh that races it does not bring it back', async () => {
      const a = open();
      const b = open();
      const s = session();
      const cookie = await a.save(s);
      await b.destroy(cookie);
      assert.equal(await a.load(cookie, Date.now()), null);
      assert.equal(await a.update!({ ...s, accessToken: 'new' }, cookie), false);
      assert.equal(await a.load(cookie, Date.now()), null);
    });

    test('update keeps the cookie valid and is seen by the other process', async () => {
      const a = open();
      const b = open();
      const s = session();
      const cookie = await a.save(s);
      assert.equal(
        await a.update!({ ...s, accessToken: 'at-2', refreshedAt: Date.now() }, cookie),
        true,
      );
      assert.equal((await b.load(cookie, Date.now()))?.accessToken, 'at-2');
    });

    test('the refresh lock is held by one process at a time and expires on its own', async () => {
      const a = open();
      const b = open();
      const cookie = await a.save(session());
      const release = await a.lock!(cookie, 300);
      assert.ok(release);
      assert.equal(await b.lock!(cookie, 300), null);
      await release();
      const again = await b.lock!(cookie, 200);
      assert.ok(again, 'free after release');
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(
        await a.lock!(cookie, 200),
        'free after its TTL even without release (a crashed holder)',
      );
    });

    test('sessions list shows users (sealed under cookie_secret), and revoke by id ends exactly that one', async () => {
      const a = open();
      const email = `list-${randomBytes(4).toString('hex')}@example.com`;
      const c1 = await a.save(session(email));
      const s2 = session(email);
      const c2 = await a.save(s2);
      const mine = (await a.list!(Date.now())).filter((x) => x.email === email);
      assert.equal(mine.length, 2);
      assert.equal(await a.revoke!([s2.sid]), 1);
      assert.ok(await a.load(c1, Date.now()));
      assert.equal(await a.load(c2, Date.now()), null);
    });

    test('expired sessions disappear on their own (Redis TTL, PostgreSQL sweep)', async () => {
      const a = open();
      const s = session('ttl@example.com', 1_000);
      const cookie = await a.save(s);
      if (kind === 'redis') {
        const r = new Redis({ host: '127.0.0.1', port: 6379 });
        const pttl = await r.pttl(`${prefix}s:${s.sid}`);
        r.disconnect();
        assert.ok(pttl > 0 && pttl <= 1_000, `TTL ${pttl} ms`);
        await new Promise((r2) => setTimeout(r2, 1_200));
        assert.ok(!(await dump()).includes(s.sid), 'Redis dropped the key');
      } else {
        await new Promise((r) => setTimeout(r, 1_200));
        assert.equal(await a.load(cookie, Date.now()), null);
        const sweeper = new PostgresBackend({ kind: 'postgres', url, display: url });
        try {
          assert.ok((await sweeper.sweep(Date.now())) >= 1);
        } finally {
          await sweeper.close();
        }
        assert.equal(
          (await db!.query('SELECT id FROM portcullis_sessions WHERE id = $1', [s.sid])).length,
          0,
        );
      }
    });

    if (kind === 'postgres') {
      test('the table is created and migrated by Portcullis, once, with a version number', async () => {
        const fresh = await createTempDatabase();
        try {
          const stores = [0, 1, 2].map(() => store(fresh.url()));
          // Three replicas starting together: one migrates, the others wait on the advisory lock.
          await Promise.all(stores.map((s) => s.start!()));
          const rows = await fresh.query<{ component: string; version: number }>(
            'SELECT component, version FROM portcullis_schema',
          );
          assert.deepEqual(rows, [{ component: 'sessions', version: POSTGRES_SCHEMA_VERSION }]);
          for (const s of stores)
            assert.ok(
              !s.lines.some((l) => l.event === 'session_store_unavailable'),
              JSON.stringify(s.lines),
            );
          await Promise.all(stores.map((s) => s.close()));
          await fresh.query('UPDATE portcullis_schema SET version = 99');
          const newer = store(fresh.url());
          await assert.rejects(newer.list!(Date.now()), StoreUnavailableError);
          assert.match(
            JSON.stringify(newer.lines),
            /schema version 99, newer than this Portcullis knows/,
          );
          await newer.close();
        } finally {
          await fresh.drop();
        }
      });
    }
  });
}

describe('a Redis outage (a private redis-server, shut down and started again)', () => {
  test('503 while down, one error line per outage, back by itself, nothing written before is lost', async () => {
    const redis = await startPrivateRedis();
    const s = store(`redis://127.0.0.1:${redis.port}`);
    try {
      const before = session();
      const cookie = await s.save(before);
      await redis.shutdown();
      for (let i = 0; i < 20; i++)
        await assert.rejects(s.load(cookie, Date.now()), StoreUnavailableError);
      await assert.rejects(s.save(session()), StoreUnavailableError);
      assert.equal(
        s.lines.filter((l) => l.event === 'session_store_unavailable').length,
        1,
        'one error line for the whole outage',
      );
      assert.equal(s.lines.filter((l) => l.level === 50).length, 1);
      await redis.start();
      let back: SessionData | null = null;
      for (let i = 0; i < 60 && !back; i++) {
        back = await s.load(cookie, Date.now()).catch(() => null);
        if (!back) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(
        back?.accessToken,
        before.accessToken,
        'the session written before the outage is still there',
      );
      assert.equal(s.lines.filter((l) => l.event === 'session_store_recovered').length, 1);
      // A second outage is a second line.
      await redis.shutdown();
      await assert.rejects(s.load(cookie, Date.now()), StoreUnavailableError);
      assert.equal(s.lines.filter((l) => l.event === 'session_store_unavailable').length, 2);
    } finally {
      await s.close();
      await redis.close();
    }
  });
});

describe('a PostgreSQL outage (a TCP proxy in front of the server, cut and restored)', () => {
  test('503 while down, one error line, back by itself, nothing written before is lost, and a sign-out during the outage still ends the session', async () => {
    const db = await createTempDatabase();
    const proxy = await startTcpProxy(5432);
    const s = store(db.url(proxy.port));
    try {
      const kept = session();
      const keptCookie = await s.save(kept);
      const ended = session();
      const endedCookie = await s.save(ended);
      await proxy.cut();
      await db.terminateConnections();
      const t0 = Date.now();
      for (let i = 0; i < 10; i++)
        await assert.rejects(s.load(keptCookie, Date.now()), StoreUnavailableError);
      assert.ok(Date.now() - t0 < 10_000, 'each failure is fast, not a hang');
      // Sign-out while down: the browser's cookie is cleared by the caller; the record goes when the store is back.
      await s.destroy(endedCookie);
      assert.equal(s.lines.filter((l) => l.event === 'session_store_unavailable').length, 1);
      await proxy.restore();
      let back: SessionData | null = null;
      for (let i = 0; i < 60 && !back; i++) {
        back = await s.load(keptCookie, Date.now()).catch(() => null);
        if (!back) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(back?.refreshToken, kept.refreshToken);
      for (let i = 0; i < 50; i++) {
        if (
          !(await db.query('SELECT id FROM portcullis_sessions WHERE id = $1', [ended.sid])).length
        )
          break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(
        (await db.query('SELECT id FROM portcullis_sessions WHERE id = $1', [ended.sid])).length,
        0,
        'the deferred sign-out reached the store',
      );
      const other = store(db.url());
      assert.equal(
        await other.load(endedCookie, Date.now()),
        null,
        'another process refuses it too',
      );
      await other.close();
    } finally {
      await s.close();
      await proxy.close();
      await db.drop();
    }
  });
});
