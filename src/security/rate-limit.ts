/**
 * Token bucket per key (client address). Bounded: when the table is full, the idlest
 * buckets go first, so a flood from many addresses cannot grow memory.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(readonly burst: number, readonly perSecond: number, private readonly max = 50_000) {}

  /** Keys held now: never more than `max`. */
  get size(): number {
    return this.buckets.size;
  }

  /** True if one more event is allowed for `key` now. */
  take(key: string, now = Date.now()): boolean {
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
      b.at = now;
      // Re-insert so Map order tracks recency and eviction drops the idlest.
      this.buckets.delete(key);
    } else {
      if (this.buckets.size >= this.max) this.buckets.delete(this.buckets.keys().next().value!);
      b = { tokens: this.burst, at: now };
    }
    this.buckets.set(key, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

/**
 * The key a per-client limit counts under: an IPv4 address as is, an IPv6 address by its /64.
 * One IPv6 host is routinely given a whole /64, so per-address keys would hand it 2^64 fresh
 * budgets, and spellings of one address (`2001:db8::1`, `2001:db8:0:0::1`) would count apart.
 * Expects a normalized address (normalizeIp).
 */
export function clientKey(ip: string): string {
  if (!ip.includes(':')) return ip;
  const gap = ip.indexOf('::');
  const head = (gap === -1 ? ip : ip.slice(0, gap)).split(':').filter((g) => g !== '');
  if (gap !== -1 && head.length < 4) {
    // The gap is zeros up to where the tail starts; an embedded IPv4 tail takes two groups.
    const tail = ip.slice(gap + 2).split(':').filter((g) => g !== '');
    const tailGroups = tail.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
    while (head.length < 4 && head.length < 8 - tailGroups) head.push('0');
    for (let i = 0; head.length < 4; i++) head.push(tail[i] ?? '0');
  }
  return `${head.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}
