import type { Backend, StoredRecord } from './server-store.js';

/**
 * `session_storage: memory`: this process only, lost on restart, so `portcullis
 * check` warns about it. Records are encrypted like in the shared stores, so tests of the
 * session layer exercise the same code.
 */
export class MemoryBackend implements Backend {
  readonly kind = 'memory';
  private readonly records = new Map<string, StoredRecord>();
  private readonly locks = new Map<string, { token: string; until: number }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(sweepMs = 60_000) {
    this.sweeper = setInterval(() => this.sweep(Date.now()), sweepMs);
    this.sweeper.unref();
  }

  async start(): Promise<void> {}
  async ping(): Promise<void> {}

  async get(id: string, now: number): Promise<StoredRecord | null> {
    const r = this.records.get(id);
    if (!r) return null;
    if (r.expiresAt <= now) {
      this.records.delete(id);
      return null;
    }
    return r;
  }

  async put(rec: StoredRecord, _now: number, mode: 'create' | 'update'): Promise<boolean> {
    if (this.records.has(rec.id) !== (mode === 'update')) return false;
    this.records.set(rec.id, { ...rec });
    return true;
  }

  async delete(ids: string[]): Promise<number> {
    let n = 0;
    for (const id of ids) if (this.records.delete(id)) n++;
    return n;
  }

  async lock(id: string, token: string, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    const held = this.locks.get(id);
    if (held && held.until > now) return false;
    this.locks.set(id, { token, until: now + ttlMs });
    return true;
  }

  async unlock(id: string, token: string): Promise<void> {
    if (this.locks.get(id)?.token === token) this.locks.delete(id);
  }

  async scan(now: number): Promise<StoredRecord[]> {
    return [...this.records.values()].filter((r) => r.expiresAt > now);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  private sweep(now: number): void {
    for (const [id, r] of this.records) if (r.expiresAt <= now) this.records.delete(id);
    for (const [id, l] of this.locks) if (l.until <= now) this.locks.delete(id);
  }
}
