import type { SessionStore } from '../session/types.js';

/**
 * Remembers single-use tokens (login states, handoff ids) until they would have expired
 * anyway, so a replay within their lifetime is refused. Bounded: when full, expired entries
 * are swept, and if it is still full the oldest are dropped (they are the closest to expiry).
 */
export class OnceCache {
  private readonly seen = new Map<string, number>();
  constructor(private readonly max = 100_000) {}

  /** True the first time an id is used; false for a replay. */
  use(id: string, expiresAt: number, now = Date.now()): boolean {
    const exp = this.seen.get(id);
    if (exp !== undefined && exp > now) return false;
    if (this.seen.size >= this.max) {
      for (const [k, e] of this.seen) if (e <= now) this.seen.delete(k);
      while (this.seen.size >= this.max) this.seen.delete(this.seen.keys().next().value!);
    }
    this.seen.set(id, expiresAt);
    return true;
  }

  has(id: string, now = Date.now()): boolean {
    const exp = this.seen.get(id);
    return exp !== undefined && exp > now;
  }
}

/**
 * Spends a single-use id for every process sharing the session store (Redis, PostgreSQL), so a
 * leaked handoff link or sign-in response cannot be used once per replica; with no shared store,
 * for this process. The local cache answers replays here without a round trip, and is only
 * written once the store has answered: an outage (StoreUnavailableError, a 503) spends nothing.
 */
export async function spendOnce(
  local: OnceCache,
  store: Pick<SessionStore, 'spend'>,
  id: string,
  expiresAt: number,
  now: number,
): Promise<boolean> {
  if (local.has(id, now)) return false;
  if (store.spend && !(await store.spend(id, expiresAt, now))) {
    local.use(id, expiresAt, now);
    return false;
  }
  return local.use(id, expiresAt, now);
}
