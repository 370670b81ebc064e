import type { Config } from '../config/types.js';
import { claimText } from '../identity/claims.js';
import type { Logger } from '../observe/logger.js';
import { CookieSessionStore } from './cookie-store.js';
import { MemoryBackend } from './memory-store.js';
import type { Sealer } from './seal.js';
import { ServerSessionStore, type Backend, type StoredRecord } from './server-store.js';
import { scrubSecrets, type RedisStorage, type PostgresStorage } from './storage-url.js';
import type { SessionStore } from './types.js';

/**
 * The store `session_storage` names. Nothing connects here: Redis and PostgreSQL connect on
 * first use (or on start()), so `portcullis check` can build a Runtime without touching them.
 * Their client libraries (ioredis, pg) are not even loaded until then: a deployment with
 * cookie or memory sessions never pays for them in memory or start-up time.
 */
export function createSessionStore(cfg: Config, sealer: Sealer, log: Logger): SessionStore {
  const s = cfg.sessionStorage;
  if (s.kind === 'cookie')
    return new CookieSessionStore(sealer, cfg.cookie.name, cfg.cookie.expireMs, (floor) =>
      log.warn(
        { event: 'idp_logout_list_full', before: new Date(floor).toISOString() },
        'more logouts from the identity provider than this process can remember: every cookie ' +
          'session that started before the oldest one forgotten is refused (its users sign in again)',
      ),
    );
  const label = (session: { sub: string; claims: Record<string, unknown> }) => {
    return {
      user: claimText(session.claims, cfg.idp.userClaim) || session.sub,
      email: claimText(session.claims, cfg.idp.emailClaim),
    };
  };
  const backend: Backend = s.kind === 'memory' ? new MemoryBackend() : new LazyBackend(s);
  return new ServerSessionStore(
    backend,
    sealer,
    cfg.cookie.name,
    log,
    s.kind === 'memory' ? 'this process' : s.display,
    label,
  );
}

/**
 * A Redis or PostgreSQL backend whose module (and client library) is imported on the first
 * storage call. Every Backend call is already asynchronous, so callers see no difference; a
 * failed import is an error like any other (the store reports itself unavailable).
 */
class LazyBackend implements Backend {
  readonly kind: string;
  private real: Promise<Backend> | null = null;
  private loaded: Backend | null = null;

  constructor(private readonly s: RedisStorage | PostgresStorage) {
    this.kind = s.kind;
  }

  private backend(): Promise<Backend> {
    this.real ??= (
      this.s.kind === 'redis'
        ? import('./redis-store.js').then((m) => new m.RedisBackend(this.s as RedisStorage))
        : import('./postgres-store.js').then(
            (m) => new m.PostgresBackend(this.s as PostgresStorage),
          )
    ).then(
      (b) => (this.loaded = b),
      (e: unknown) => {
        this.real = null; // try again on the next call
        throw e;
      },
    );
    return this.real;
  }

  // Every call goes through try/catch, which costs nothing until something throws: a client's
  // error can quote the URL's secrets (pg's ENOENT names the sslkey file), and it ends up in
  // the outage log line, `portcullis probe` and `portcullis sessions`.
  async start(): Promise<void> {
    try {
      return await (await this.backend()).start();
    } catch (e) {
      throw this.scrub(e);
    }
  }
  async ping(): Promise<void> {
    try {
      return await (await this.backend()).ping();
    } catch (e) {
      throw this.scrub(e);
    }
  }
  async get(id: string, now: number): Promise<StoredRecord | null> {
    try {
      return await (this.loaded ?? (await this.backend())).get(id, now);
    } catch (e) {
      throw this.scrub(e);
    }
  }
  async put(rec: StoredRecord, now: number, mode: 'create' | 'update'): Promise<boolean> {
    try {
      return await (await this.backend()).put(rec, now, mode);
    } catch (e) {
      throw this.scrub(e);
    }
  }
  async delete(ids: string[]): Promise<number> {
    try {
      return await (await this.backend()).delete(ids);
    } catch (e) {
      throw this.scrub(e);
    }
  }
  async indexed(name: string, now: number): Promise<string[]> {
    try {
      return await (await this.backend()).indexed(name, now);
    } catch (e) {
      throw this.scrub(e);
    }
  }
  async unindex(name: string, ids: string[]): Promise<void> {
    try {
      return await (await this.backend()).unindex(name, ids);
    } catch (e) {
      throw this.scrub(e);
    }
  }
  async lock(id: string, token: string, ttlMs: number): Promise<boolean> {
    try {
      return await (await this.backend()).lock(id, token, ttlMs);
    } catch (e) {
      throw this.scrub(e);
    }
  }
  async unlock(id: string, token: string): Promise<void> {
    try {
      return await (await this.backend()).unlock(id, token);
    } catch (e) {
      throw this.scrub(e);
    }
  }
  async scan(now: number): Promise<Array<Pick<StoredRecord, 'id' | 'meta' | 'expiresAt'>>> {
    try {
      return await (await this.backend()).scan(now);
    } catch (e) {
      throw this.scrub(e);
    }
  }
  async publish(message: string): Promise<void> {
    try {
      return await (
        await this.backend()
      ).publish!(message);
    } catch (e) {
      throw this.scrub(e);
    }
  }
  listen(message: (m: string) => void, state: (up: boolean) => void): void {
    // Should the import fail, the channel simply never comes up: sessions get the short bound.
    void this.backend().then(
      (b) => b.listen!(message, state),
      () => {},
    );
  }
  async spend(key: string, expiresAt: number, now: number): Promise<boolean> {
    try {
      return await (
        await this.backend()
      ).spend!(key, expiresAt, now);
    } catch (e) {
      throw this.scrub(e);
    }
  }

  private scrub(e: unknown): unknown {
    return scrubError(e, this.s.secrets);
  }
  async close(): Promise<void> {
    // Never used: nothing to load, nothing to close.
    if (!this.real) return;
    const b = await this.real.catch(() => null);
    await b?.close();
  }
}

/**
 * Whether a reloaded config can keep the running store (and its connections). A memory store
 * is always kept: replacing it would sign everyone out.
 */
export function sameSessionStorage(a: Config, b: Config): boolean {
  const x = a.sessionStorage;
  const y = b.sessionStorage;
  if (
    x.kind !== y.kind ||
    !a.cookie.secret.equals(b.cookie.secret) ||
    a.cookie.name !== b.cookie.name
  )
    return false;
  if (x.kind === 'redis' && y.kind === 'redis') return JSON.stringify(x) === JSON.stringify(y);
  if (x.kind === 'postgres' && y.kind === 'postgres') return x.url === y.url;
  return true;
}

/** The error, or a copy with the secrets blanked out of its message (and its causes'), code and name kept. */
export function scrubError(e: unknown, secrets: readonly string[]): unknown {
  if (!secrets.length) return e;
  if (typeof e === 'string') return scrubSecrets(e, secrets);
  if (!(e instanceof Error)) return e;
  const nested = e instanceof AggregateError ? e.errors.map((x) => scrubError(x, secrets)) : null;
  const cause = e.cause === undefined ? undefined : scrubError(e.cause, secrets);
  const message = scrubSecrets(e.message, secrets);
  const nestedChanged =
    nested !== null && nested.some((x, i) => x !== (e as AggregateError).errors[i]);
  if (message === e.message && cause === e.cause && !nestedChanged) return e;
  const out = nested
    ? new AggregateError(nested, message)
    : new Error(message, cause === undefined ? undefined : { cause });
  out.name = e.name;
  const code = (e as NodeJS.ErrnoException).code;
  if (code !== undefined) (out as NodeJS.ErrnoException).code = code;
  return out;
}
