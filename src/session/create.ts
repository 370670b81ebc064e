import type { Config } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import { CookieSessionStore } from './cookie-store.js';
import { MemoryBackend } from './memory-store.js';
import { PostgresBackend } from './postgres-store.js';
import { RedisBackend } from './redis-store.js';
import type { Sealer } from './seal.js';
import { ServerSessionStore } from './server-store.js';
import type { SessionStore } from './types.js';

/**
 * The store `session_storage` names. Nothing connects here: Redis and PostgreSQL connect on
 * first use (or on start()), so `portcullis check` can build a Runtime without touching them.
 */
export function createSessionStore(cfg: Config, sealer: Sealer, log: Logger): SessionStore {
  const s = cfg.sessionStorage;
  if (s.kind === 'cookie') return new CookieSessionStore(sealer, cfg.cookie.name);
  const label = (session: { sub: string; claims: Record<string, unknown> }) => {
    const str = (v: unknown): string => (typeof v === 'string' ? v : '');
    return { user: str(session.claims[cfg.idp.userClaim]) || session.sub, email: str(session.claims[cfg.idp.emailClaim]) };
  };
  const backend = s.kind === 'memory' ? new MemoryBackend() : s.kind === 'redis' ? new RedisBackend(s) : new PostgresBackend(s);
  return new ServerSessionStore(backend, sealer, cfg.cookie.name, log, s.kind === 'memory' ? 'this process' : s.display, label);
}

/**
 * Whether a reloaded config can keep the running store (and its connections). A memory store
 * is always kept: replacing it would sign everyone out.
 */
export function sameSessionStorage(a: Config, b: Config): boolean {
  const x = a.sessionStorage;
  const y = b.sessionStorage;
  if (x.kind !== y.kind || !a.cookie.secret.equals(b.cookie.secret) || a.cookie.name !== b.cookie.name) return false;
  if (x.kind === 'redis' && y.kind === 'redis') return JSON.stringify(x) === JSON.stringify(y);
  if (x.kind === 'postgres' && y.kind === 'postgres') return x.url === y.url;
  return true;
}
