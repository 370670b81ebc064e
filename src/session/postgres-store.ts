import pg from 'pg';
import type { Backend, StoredRecord } from './server-store.js';
import type { PostgresStorage } from './storage-url.js';

// Portcullis owns four tables: portcullis_schema (component -> version), portcullis_sessions,
// portcullis_session_index (index names of each session: its IdP session and its user, for a
// logout initiated by the IdP; rows go with their session) and portcullis_once (spent login
// states and handoff links), and the NOTIFY channel
// portcullis_sessions_ended (sessions ended or rewritten, server-store.ts).
// Migrations run on first use, in one transaction under an advisory lock, so replicas starting
// together migrate once; a database migrated by a newer Portcullis is refused, not downgraded.

const COMPONENT = 'sessions';
/** Index i takes the schema from version i to version i + 1. */
const MIGRATIONS: string[] = [
  `CREATE TABLE portcullis_sessions (
     id text PRIMARY KEY,
     meta text NOT NULL,
     data text NOT NULL,
     expires_at bigint NOT NULL,
     lock_token text,
     lock_until bigint
   );
   CREATE INDEX portcullis_sessions_expires_at ON portcullis_sessions (expires_at)`,
  `CREATE TABLE portcullis_once (
     id text PRIMARY KEY,
     expires_at bigint NOT NULL
   );
   CREATE INDEX portcullis_once_expires_at ON portcullis_once (expires_at)`,
  `CREATE TABLE portcullis_session_index (
     name text NOT NULL,
     id text NOT NULL REFERENCES portcullis_sessions (id) ON DELETE CASCADE,
     PRIMARY KEY (name, id)
   );
   CREATE INDEX portcullis_session_index_id ON portcullis_session_index (id)`,
];
export const POSTGRES_SCHEMA_VERSION = MIGRATIONS.length;
// Any constant will do, as long as every Portcullis uses the same one.
const MIGRATION_LOCK = 0x706f7274;
const SWEEP_MS = 60_000;
const CHANNEL = 'portcullis_sessions_ended';
const RELISTEN_MAX_MS = 2_000;

export class PostgresBackend implements Backend {
  readonly kind = 'postgres';
  private readonly pool: pg.Pool;
  private migrated: Promise<void> | null = null;
  private sweeper: NodeJS.Timeout | null = null;
  private listener: pg.Client | null = null;
  private relisten: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly url: string;

  constructor(
    s: Omit<PostgresStorage, 'secrets'>,
    private readonly sweepMs = SWEEP_MS,
  ) {
    this.url = s.url;
    // Short timeouts: while the database is unreachable a request gets its 503 in about two
    // seconds instead of hanging on a connection attempt.
    this.pool = new pg.Pool({
      connectionString: s.url,
      max: 10,
      connectionTimeoutMillis: 2_000,
      idleTimeoutMillis: 10_000,
      query_timeout: 3_000,
      statement_timeout: 3_000,
    });
    // An idle connection dropped by the server emits here; unhandled, it would kill the process.
    this.pool.on('error', () => {});
  }

  async start(): Promise<void> {
    await this.ready();
  }

  async ping(): Promise<void> {
    await this.ready();
    await this.pool.query('SELECT 1');
  }

  private ready(): Promise<void> {
    this.migrated ??= this.migrate().catch((e: unknown) => {
      this.migrated = null;
      throw e;
    });
    return this.migrated;
  }

  private async migrate(): Promise<void> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await c.query(
        'CREATE TABLE IF NOT EXISTS portcullis_schema (component text PRIMARY KEY, version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())',
      );
      const r = await c.query<{ version: number }>(
        'SELECT version FROM portcullis_schema WHERE component = $1',
        [COMPONENT],
      );
      const current = r.rows[0]?.version ?? 0;
      if (current > MIGRATIONS.length) {
        throw new Error(
          `the sessions table is at schema version ${current}, newer than this Portcullis knows (${MIGRATIONS.length}); upgrade Portcullis`,
        );
      }
      for (let v = current; v < MIGRATIONS.length; v++) await c.query(MIGRATIONS[v]!);
      if (current < MIGRATIONS.length) {
        await c.query(
          'INSERT INTO portcullis_schema (component, version) VALUES ($1, $2) ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()',
          [COMPONENT, MIGRATIONS.length],
        );
      }
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      c.release();
    }
    if (!this.sweeper) {
      this.sweeper = setInterval(() => void this.sweep(Date.now()).catch(() => {}), this.sweepMs);
      this.sweeper.unref();
    }
  }

  /** Deletes expired sessions (and spent marks); returns how many sessions. Every replica runs it: that is harmless. */
  async sweep(now: number): Promise<number> {
    await this.ready();
    await this.pool.query('DELETE FROM portcullis_once WHERE expires_at <= $1', [now]);
    return (
      (await this.pool.query('DELETE FROM portcullis_sessions WHERE expires_at <= $1', [now]))
        .rowCount ?? 0
    );
  }

  async publish(message: string): Promise<void> {
    await this.ready();
    await this.pool.query('SELECT pg_notify($1, $2)', [CHANNEL, message]);
  }

  /** LISTEN needs a connection of its own, outside the pool, held open and opened again when lost. */
  listen(message: (m: string) => void, state: (up: boolean) => void): void {
    let attempt = 0;
    const connect = async (): Promise<void> => {
      if (this.closed) return;
      let c: pg.Client;
      try {
        // Throws at once for some bad URLs (pg reads ?sslkey= files here).
        c = new pg.Client({
          connectionString: this.url,
          connectionTimeoutMillis: 2_000,
          keepAlive: true,
        });
      } catch {
        this.relisten = setTimeout(() => void connect(), RELISTEN_MAX_MS);
        this.relisten.unref();
        return;
      }
      let up = false;
      let lost = false;
      const drop = (): void => {
        if (lost) return;
        lost = true;
        if (up) state((up = false));
        if (this.listener === c) this.listener = null;
        c.end().catch(() => {});
        if (this.closed) return;
        const wait = Math.min(100 * 2 ** Math.min(attempt++, 5), RELISTEN_MAX_MS);
        this.relisten = setTimeout(() => void connect(), wait);
        this.relisten.unref();
      };
      c.on('error', drop);
      c.on('end', drop);
      c.on('notification', (n) => {
        if (n.channel === CHANNEL && n.payload) message(n.payload);
      });
      try {
        await c.connect();
        await c.query(`LISTEN ${CHANNEL}`);
      } catch {
        drop();
        return;
      }
      if (lost || this.closed) {
        c.end().catch(() => {});
        return;
      }
      attempt = 0;
      this.listener = c;
      state((up = true));
    };
    void connect();
  }

  async spend(key: string, expiresAt: number, now: number): Promise<boolean> {
    await this.ready();
    // An expired mark that the sweep has not removed yet is taken over, like Redis's expired key.
    const r = await this.pool.query(
      `INSERT INTO portcullis_once (id, expires_at) VALUES ($1, $2)
       ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE portcullis_once.expires_at <= $3`,
      [key, expiresAt, now],
    );
    return r.rowCount === 1;
  }

  async get(id: string, now: number): Promise<StoredRecord | null> {
    await this.ready();
    const r = await this.pool.query<{ meta: string; data: string; expires_at: string }>(
      'SELECT meta, data, expires_at FROM portcullis_sessions WHERE id = $1 AND expires_at > $2',
      [id, now],
    );
    const row = r.rows[0];
    return row ? { id, meta: row.meta, data: row.data, expiresAt: Number(row.expires_at) } : null;
  }

  async put(rec: StoredRecord, _now: number, mode: 'create' | 'update'): Promise<boolean> {
    await this.ready();
    // One statement: the record and its index names are stored together or not at all.
    const r =
      mode === 'create'
        ? await this.pool.query(
            `WITH s AS (
               INSERT INTO portcullis_sessions (id, meta, data, expires_at) VALUES ($1, $2, $3, $4)
               RETURNING id
             ), i AS (
               INSERT INTO portcullis_session_index (name, id)
               SELECT n, s.id FROM s, unnest($5::text[]) AS n
             )
             SELECT id FROM s`,
            [rec.id, rec.meta, rec.data, rec.expiresAt, rec.index ?? []],
          )
        : await this.pool.query(
            'UPDATE portcullis_sessions SET meta = $2, data = $3, expires_at = $4 WHERE id = $1',
            [rec.id, rec.meta, rec.data, rec.expiresAt],
          );
    return r.rowCount === 1;
  }

  async delete(ids: string[]): Promise<number> {
    await this.ready();
    return (
      (await this.pool.query('DELETE FROM portcullis_sessions WHERE id = ANY($1::text[])', [ids]))
        .rowCount ?? 0
    );
  }

  async indexed(name: string, now: number): Promise<string[]> {
    await this.ready();
    const r = await this.pool.query<{ id: string }>(
      `SELECT i.id FROM portcullis_session_index i JOIN portcullis_sessions s ON s.id = i.id
       WHERE i.name = $1 AND s.expires_at > $2`,
      [name, now],
    );
    return r.rows.map((row) => row.id);
  }

  async unindex(): Promise<void> {
    // Nothing to do: an index row goes with its session (ON DELETE CASCADE).
  }

  async lock(id: string, token: string, ttlMs: number): Promise<boolean> {
    await this.ready();
    const now = Date.now();
    const r = await this.pool.query(
      'UPDATE portcullis_sessions SET lock_token = $2, lock_until = $3 WHERE id = $1 AND (lock_until IS NULL OR lock_until < $4)',
      [id, token, now + ttlMs, now],
    );
    return r.rowCount === 1;
  }

  async unlock(id: string, token: string): Promise<void> {
    await this.pool.query(
      'UPDATE portcullis_sessions SET lock_token = NULL, lock_until = NULL WHERE id = $1 AND lock_token = $2',
      [id, token],
    );
  }

  async scan(now: number): Promise<StoredRecord[]> {
    await this.ready();
    const r = await this.pool.query<{ id: string; meta: string; expires_at: string }>(
      'SELECT id, meta, expires_at FROM portcullis_sessions WHERE expires_at > $1',
      [now],
    );
    return r.rows.map((row) => ({
      id: row.id,
      meta: row.meta,
      data: '',
      expiresAt: Number(row.expires_at),
    }));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.relisten) clearTimeout(this.relisten);
    await this.listener?.end().catch(() => {});
    if (this.sweeper) clearInterval(this.sweeper);
    await this.pool.end().catch(() => {});
  }
}
