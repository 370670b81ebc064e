import type { LbPolicy, Route } from '../config/types.js';
import { upstreamLabel } from '../config/upstream-url.js';
import type { Logger } from '../observe/logger.js';
import type { UpstreamStatus } from '../observe/health.js';

// Which of a route's `to` upstreams a request goes to, with Envoy's policy names and meaning
// (https://www.pomerium.com/docs/reference/routes/load-balancing): weighted round robin,
// least request, random, and the two consistent hashes keyed on the session. An upstream is
// skipped while its active health checks fail or outlier detection has ejected it; when none
// is left, every upstream is tried anyway (Envoy's panic mode) so a wrong health check
// cannot take a working application down. Only routes with several `to` have a Balancer: a
// single upstream keeps the plain path of src/proxy/upstreams.ts.

/** Round-robin schedules longer than this are scaled down (weights up to 10,000 each). */
const MAX_SCHEDULE = 4096;
/** Envoy's ring_hash_lb_config.minimum_ring_size default. */
const RING_SIZE = 1024;
/** Envoy's maglev_lb_config.table_size default (a prime). */
const MAGLEV_SIZE = 65537;
/** Up to this many upstreams, LEAST_REQUEST compares them all; beyond, two random choices (Envoy's choice_count). */
const FULL_SCAN = 8;

/** Outlier detection's view of one upstream, carried across a reload. */
export interface Ejection {
  failures: number;
  ejections: number;
  /** How much longer it stays ejected; 0 when it is not. */
  remainingMs: number;
}

export class Balancer {
  readonly n: number;
  readonly hashed: boolean;
  private readonly policy: LbPolicy;
  private readonly weights: number[];
  /** Failing its active health checks. */
  private readonly down: Uint8Array;
  /** Ejected by outlier detection until its timer ends. */
  private readonly ejected: Uint8Array;
  private readonly failures: Uint32Array;
  private readonly ejections: Uint32Array;
  private readonly ejectTimers: Array<NodeJS.Timeout | null>;
  /** When each ejection ends (Date.now() ms), for a reload to carry the rest of it over. */
  private readonly ejectEnds: Float64Array;
  /** Requests in flight per upstream (LEAST_REQUEST, and the status page). */
  private readonly inFlight: Uint32Array;
  private unavailable = 0;
  private cursor = 0;
  private readonly schedule: Uint16Array;
  private readonly totalWeight: number;
  private readonly cumulative: Float64Array;
  private ring: { points: Uint32Array; owners: Uint16Array } | null = null;
  private maglev: Uint16Array | null = null;
  /** Bumped on every health change: a Maglev table built for another version is rebuilt. */
  private version = 0;
  private maglevVersion = -1;
  private stopped = false;

  constructor(
    readonly route: Route,
    private readonly log: Logger | null,
  ) {
    this.n = route.to.length;
    this.policy = route.lbPolicy;
    this.weights = route.weights.length === this.n ? route.weights : route.to.map(() => 1);
    this.hashed = this.policy === 'RING_HASH' || this.policy === 'MAGLEV';
    this.down = new Uint8Array(this.n);
    this.ejected = new Uint8Array(this.n);
    this.failures = new Uint32Array(this.n);
    this.ejections = new Uint32Array(this.n);
    this.inFlight = new Uint32Array(this.n);
    this.ejectTimers = route.to.map(() => null);
    this.ejectEnds = new Float64Array(this.n);
    this.schedule = roundRobinSchedule(this.weights);
    this.totalWeight = this.weights.reduce((a, b) => a + b, 0);
    this.cumulative = new Float64Array(this.n);
    let sum = 0;
    for (let i = 0; i < this.n; i++) this.cumulative[i] = sum += this.weights[i]!;
    if (this.policy === 'RING_HASH') this.ring = buildRing(route.to, this.weights);
  }

  available(i: number): boolean {
    return this.down[i] === 0 && this.ejected[i] === 0;
  }

  /** The upstream for a new request; `key` is the session (or client address) for the hash policies. */
  pick(key: string | null): number {
    const panic = this.unavailable >= this.n;
    switch (this.policy) {
      case 'RING_HASH':
        return this.ringPick(hash32(key ?? ''), panic);
      case 'MAGLEV':
        return this.maglevTable(panic)[hash32(key ?? '') % MAGLEV_SIZE]!;
      case 'RANDOM':
        return this.randomPick(panic);
      case 'LEAST_REQUEST':
        return this.leastPick(panic);
      default:
        return this.roundRobinPick(panic);
    }
  }

  /**
   * Another upstream after a failed connection (`tried` so far): the next available one in
   * `to` order after the last tried, else any not tried yet; -1 when every one has been tried.
   */
  retry(tried: readonly number[]): number {
    const last = tried[tried.length - 1]!;
    let fallback = -1;
    for (let step = 1; step < this.n; step++) {
      const i = (last + step) % this.n;
      if (tried.includes(i)) continue;
      if (this.available(i)) return i;
      if (fallback < 0) fallback = i;
    }
    return fallback;
  }

  started(i: number): void {
    this.inFlight[i]!++;
  }

  /** The request is over: `failed` (a connect error, a timeout or a 5xx) feeds outlier detection. */
  ended(i: number, failed: boolean | null): void {
    if (this.inFlight[i]! > 0) this.inFlight[i]!--;
    if (failed !== null) this.outcome(i, failed);
  }

  /**
   * What outlier detection learns from one use of upstream i. A tunnel reports it when its
   * connection opens (or fails to), long before it ends: its outcome is whether the upstream
   * accepted it, as Envoy counts a TCP proxy's connect failures among the consecutive errors.
   */
  outcome(i: number, failed: boolean): void {
    const od = this.route.outlierDetection;
    if (!od) return;
    if (!failed) {
      this.failures[i] = 0;
      return;
    }
    if (++this.failures[i]! < od.consecutive5xx || this.ejected[i] || this.stopped) return;
    // Envoy ejects at least one upstream whatever max_ejection_percent says.
    let ejectedNow = 0;
    for (let j = 0; j < this.n; j++) ejectedNow += this.ejected[j]!;
    if (ejectedNow >= Math.max(1, Math.floor((this.n * od.maxEjectionPercent) / 100))) return;
    const ms = Math.min(od.baseEjectionMs * ++this.ejections[i]!, od.maxEjectionMs);
    this.log?.warn(
      {
        event: 'upstream_ejected',
        route: this.route.id,
        upstream: upstreamLabel(this.route.to[i]!),
        ms,
      },
      `upstream ${upstreamLabel(this.route.to[i]!)} of route ${this.route.id} failed ${this.failures[i]} times in a row: ejected for ${Math.round(ms / 1000)} s`,
    );
    this.eject(i, ms);
  }

  private eject(i: number, ms: number): void {
    this.setEjected(i, true);
    this.ejectEnds[i] = Date.now() + ms;
    const timer = setTimeout(() => {
      this.ejectTimers[i] = null;
      this.failures[i] = 0;
      this.setEjected(i, false);
    }, ms);
    timer.unref();
    this.ejectTimers[i] = timer;
  }

  /** What outlier detection knows of upstream i, for the same upstream in the next config. */
  ejection(i: number): Ejection {
    return {
      failures: this.failures[i]!,
      ejections: this.ejections[i]!,
      remainingMs: this.ejected[i] ? Math.max(0, this.ejectEnds[i]! - Date.now()) : 0,
    };
  }

  /**
   * Takes over what the previous config's balancer knew of this upstream (see ejection()): an
   * upstream ejected there stays out for the rest of its time. Only a route that still has
   * outlier_detection takes it: without it nothing would have ejected the upstream.
   */
  restoreEjection(i: number, e: Ejection): void {
    if (!this.route.outlierDetection || this.stopped) return;
    this.failures[i] = e.failures;
    this.ejections[i] = e.ejections;
    if (e.remainingMs > 0 && !this.ejected[i]) this.eject(i, e.remainingMs);
  }

  /** From the active health checks (src/proxy/health-check.ts). */
  setDown(i: number, down: boolean): void {
    if (this.down[i] === (down ? 1 : 0)) return;
    const wasAvailable = this.available(i);
    this.down[i] = down ? 1 : 0;
    this.changed(i, wasAvailable);
  }

  status(): UpstreamStatus[] {
    return this.route.to.map((u, i) => ({
      route: this.route.id,
      upstream: upstreamLabel(u),
      weight: this.weights[i]!,
      healthy: this.down[i] === 0,
      ejected: this.ejected[i] === 1,
      inFlight: this.inFlight[i]!,
    }));
  }

  stop(): void {
    this.stopped = true;
    for (let i = 0; i < this.n; i++) {
      const t = this.ejectTimers[i];
      if (t) clearTimeout(t);
      this.ejectTimers[i] = null;
    }
  }

  private setEjected(i: number, on: boolean): void {
    const wasAvailable = this.available(i);
    this.ejected[i] = on ? 1 : 0;
    this.changed(i, wasAvailable);
  }

  private changed(i: number, wasAvailable: boolean): void {
    const now = this.available(i);
    if (now === wasAvailable) return;
    this.unavailable += now ? -1 : 1;
    this.version++;
  }

  private roundRobinPick(panic: boolean): number {
    const len = this.schedule.length;
    for (let tries = 0; tries < len; tries++) {
      const i = this.schedule[this.cursor++ % len]!;
      if (panic || this.available(i)) return i;
    }
    return this.schedule[this.cursor++ % len]!;
  }

  private randomPick(panic: boolean): number {
    const r = Math.random() * this.totalWeight;
    let lo = 0;
    let hi = this.n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cumulative[mid]! > r) hi = mid;
      else lo = mid + 1;
    }
    if (panic) return lo;
    for (let step = 0; step < this.n; step++) {
      const i = (lo + step) % this.n;
      if (this.available(i)) return i;
    }
    return lo;
  }

  /** Fewest requests in flight per unit of weight; ties go round the upstreams in turn. */
  private leastPick(panic: boolean): number {
    if (this.n <= FULL_SCAN) {
      const start = this.cursor++ % this.n;
      let best = -1;
      let bestScore = Infinity;
      for (let step = 0; step < this.n; step++) {
        const i = (start + step) % this.n;
        if (!panic && !this.available(i)) continue;
        const score = (this.inFlight[i]! + 1) / this.weights[i]!;
        if (score < bestScore) {
          best = i;
          bestScore = score;
        }
      }
      return best < 0 ? start : best;
    }
    const a = this.randomPick(panic);
    const b = this.randomPick(panic);
    return (this.inFlight[a]! + 1) / this.weights[a]! <= (this.inFlight[b]! + 1) / this.weights[b]!
      ? a
      : b;
  }

  /** The first point at or after the key's hash whose upstream is available. */
  private ringPick(h: number, panic: boolean): number {
    const { points, owners } = this.ring!;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    const first = owners[lo % points.length]!;
    if (panic) return first;
    for (let step = 0; step < points.length; step++) {
      const i = owners[(lo + step) % points.length]!;
      if (this.available(i)) return i;
    }
    return first;
  }

  /** Rebuilt over the available upstreams after a health change (as Envoy does). */
  private maglevTable(panic: boolean): Uint16Array {
    if (this.maglev === null || this.maglevVersion !== this.version) {
      const use: number[] = [];
      for (let i = 0; i < this.n; i++) if (panic || this.available(i)) use.push(i);
      this.maglev = buildMaglev(this.route.to, this.weights, use.length ? use : [0]);
      this.maglevVersion = this.version;
    }
    return this.maglev;
  }
}

/**
 * The hash key of RING_HASH / MAGLEV, the same for requests and tunnels: the session, else the
 * user (a bearer token), else the client address (public routes). Null for other policies.
 */
export function affinityKey(
  route: Route,
  sessionId: string | undefined,
  userSub: string | undefined,
  clientIp: string,
): string | null {
  if (route.to.length < 2 || (route.lbPolicy !== 'RING_HASH' && route.lbPolicy !== 'MAGLEV'))
    return null;
  if (sessionId) return `s:${sessionId}`;
  if (userSub !== undefined) return `u:${userSub}`;
  return `a:${clientIp}`;
}

/** Smooth weighted round robin (nginx's), unrolled once into a schedule: O(1) per request. */
function roundRobinSchedule(weights: number[]): Uint16Array {
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  let g = 0;
  for (const w of weights) g = gcd(g, w);
  let w = weights.map((x) => x / g);
  let total = w.reduce((a, b) => a + b, 0);
  if (total > MAX_SCHEDULE) {
    w = w.map((x) => Math.max(1, Math.round((x * MAX_SCHEDULE) / total)));
    total = w.reduce((a, b) => a + b, 0);
  }
  const current = new Array<number>(w.length).fill(0);
  const out = new Uint16Array(total);
  for (let k = 0; k < total; k++) {
    let best = 0;
    for (let i = 0; i < w.length; i++) {
      current[i]! += w[i]!;
      if (current[i]! > current[best]!) best = i;
    }
    current[best]! -= total;
    out[k] = best;
  }
  return out;
}

function buildRing(to: URL[], weights: number[]): { points: Uint32Array; owners: Uint16Array } {
  const total = weights.reduce((a, b) => a + b, 0);
  const entries: Array<[number, number]> = [];
  to.forEach((u, i) => {
    const replicas = Math.max(1, Math.ceil((RING_SIZE * weights[i]!) / total));
    for (let k = 0; k < replicas; k++) entries.push([hash32(`${u.host}_${k}`), i]);
  });
  entries.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return {
    points: Uint32Array.from(entries, (e) => e[0]),
    owners: Uint16Array.from(entries, (e) => e[1]),
  };
}

/** Maglev's lookup table (Eisenbud et al. 2016), each upstream filling in proportion to its weight. */
function buildMaglev(to: URL[], weights: number[], use: number[]): Uint16Array {
  const table = new Int32Array(MAGLEV_SIZE).fill(-1);
  const offset = use.map((i) => hash32(`${to[i]!.host}#o`) % MAGLEV_SIZE);
  const skip = use.map((i) => (hash32(`${to[i]!.host}#s`) % (MAGLEV_SIZE - 1)) + 1);
  const next = use.map(() => 0);
  const maxWeight = Math.max(...use.map((i) => weights[i]!));
  const claimed = use.map(() => 0);
  let filled = 0;
  for (let iteration = 1; filled < MAGLEV_SIZE; iteration++) {
    for (let k = 0; k < use.length && filled < MAGLEV_SIZE; k++) {
      if ((iteration * weights[use[k]!]!) / maxWeight < claimed[k]! + 1) continue;
      let slot: number;
      do {
        slot = (offset[k]! + next[k]! * skip[k]!) % MAGLEV_SIZE;
        next[k]!++;
      } while (table[slot] !== -1);
      table[slot] = use[k]!;
      claimed[k]!++;
      filled++;
    }
  }
  return Uint16Array.from(table);
}

/** FNV-1a with murmur3's finalizer: spreads similar keys (session ids, addresses) over 32 bits. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
