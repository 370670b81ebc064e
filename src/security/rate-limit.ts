import { isIP } from 'node:net';

/**
 * Token bucket per key (client address). Bounded: when the table is full, the idlest
 * buckets go first, so a flood from many addresses cannot grow memory.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly burst: number,
    readonly perSecond: number,
    private readonly max = 50_000,
  ) {}

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
 * The key a client address is limited under. An IPv6 client usually holds a whole /64 and can
 * send from any address in it (and behind a trusted proxy, spell one address many ways in
 * X-Forwarded-For), so IPv6 is limited per /64, written canonically.
 */
export function addressBucket(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  const [head = '', tail] = ip.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  // An embedded IPv4 tail (::1.2.3.4) is two groups written as one.
  const missing = 8 - left.length - right.length - (right.at(-1)?.includes('.') ? 1 : 0);
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array<string>(Math.max(0, missing)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
