import type { Backend, StoredRecord } from './server-store.js';

/**
 * `session_storage: memory`: this process only, lost on restart, so `portcullis
 * check` warns about it. Records are encrypted like in the shared stores, so tests of the
 * session layer exercise the same code.
 */
export class MemoryBackend implements Backend {
  readonly kind = 'memory';
  private readonly records = new Map<string, StoredRecord>();
  /** Index name -> ids; a record keeps its names (rec.index) so deleting it cleans up. */
  private readonly index = new Map<string, Set<string>>();
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
      this.drop(id);
      return null;
    }
    return r;
  }

  async indexed(name: string): Promise<string[]> {
    return [...(this.index.get(name) ?? [])];
  }

  async unindex(name: string, ids: string[]): Promise<void> {
    const set = this.index.get(name);
    for (const id of ids) set?.delete(id);
    if (set && !set.size) this.index.delete(name);
  }

  async put(rec: StoredRecord, _now: number, mode: 'create' | 'update'): Promise<boolean> {
    const old = this.records.get(rec.id);
    if ((old !== undefined) !== (mode === 'update')) return false;
    this.records.set(rec.id, { ...rec, index: old?.index ?? rec.index });
    for (const name of mode === 'create' ? (rec.index ?? []) : []) {
      let set = this.index.get(name);
      if (!set) this.index.set(name, (set = new Set()));
      set.add(rec.id);
    }
    return true;
  }

  async delete(ids: string[]): Promise<number> {
    let n = 0;
    for (const id of ids) if (this.drop(id)) n++;
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
    for (const [id, r] of this.records) if (r.expiresAt <= now) this.drop(id);
    for (const [id, l] of this.locks) if (l.until <= now) this.locks.delete(id);
  }

  private drop(id: string): boolean {
    const r = this.records.get(id);
    if (!r) return false;
    this.records.delete(id);
    for (const name of r.index ?? []) void this.unindex(name, [id]);
    return true;
  }
}
