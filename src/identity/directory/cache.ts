import type { DirectoryResult } from './graph.js';

// Directory answers (Graph, Google's Directory API) per user, so a user signing in on several
// browsers, or a burst of sign-ins after an outage, does not cost one directory walk each.
// Fresh for `ttlMs`; while the directory cannot answer, the last answer stays usable for
// `graceMs` more (idp_directory_outage_grace), then the lookup fails and the sign-in is refused
// with directory_unavailable. Bounded: the least recently used user is dropped first.

export interface DirectoryCacheSettings {
  ttlMs: number;
  graceMs: number;
  maxEntries: number;
}

export type CachedResult = DirectoryResult & { stale?: boolean };

export class DirectoryCache {
  private readonly entries = new Map<string, { groups: string[]; at: number }>();

  constructor(private readonly s: DirectoryCacheSettings) {}

  get size(): number {
    return this.entries.size;
  }

  async lookup(
    key: string,
    ask: () => Promise<DirectoryResult>,
    now: number,
  ): Promise<CachedResult> {
    const hit = this.entries.get(key);
    if (hit && now - hit.at < this.s.ttlMs) {
      this.touch(key, hit);
      return { kind: 'ok', groups: hit.groups };
    }
    const r = await ask();
    if (r.kind === 'ok') {
      if (this.s.ttlMs > 0 || this.s.graceMs > 0) this.touch(key, { groups: r.groups, at: now });
      return r;
    }
    if (hit && now - hit.at < this.s.ttlMs + this.s.graceMs) {
      this.touch(key, hit);
      return { kind: 'ok', groups: hit.groups, stale: true };
    }
    return r;
  }

  private touch(key: string, value: { groups: string[]; at: number }): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.s.maxEntries)
      this.entries.delete(this.entries.keys().next().value!);
  }
}
