import type { Route } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { UpstreamStatus } from '../observe/health.js';
import { Balancer, type Ejection } from './balancer.js';
import { ActiveHealthChecks, healthChecksKey, type CheckState } from './health-check.js';
import { dispatcherOptions, upstreamIdentity } from './dispatcher-options.js';
import { Pool } from './undici.js';

/** Where one request goes: the upstream, its connections and, for a load-balanced route, which `to` it is. */
export interface Picked {
  url: URL;
  lane: Lane;
  /** Index into route.to; 0 for a single-upstream route. */
  index: number;
  /** Null for a route with one `to`: nothing to balance, count or retry. */
  balancer: Balancer | null;
}

/**
 * The keep-alive pool for one upstream target of a route. How it connects (TLS, client
 * certificate, server name, Unix socket, h2c, timeouts) is dispatcherOptions', and routes whose
 * plans share a key share the pools.
 */
function createPool(
  route: Route,
  url: URL,
  connections: number,
): { key: string; make: () => Pool } {
  const plan = dispatcherOptions(route, url);
  return { key: plan.key, make: () => new Pool(plan.origin, { ...plan.options, connections }) };
}

/** What one config learnt of one upstream, as one of its routes saw it. */
interface Known {
  routeId: string;
  checksKey: string;
  checks: CheckState | null;
  ejection: Ejection;
}

/** The previous config's knowledge, by upstream identity; the same route's first when looked up. */
function carried(
  live: ReadonlyArray<{ balancer: Balancer; checks: ActiveHealthChecks | null }>,
): Map<string, Known[]> {
  const out = new Map<string, Known[]>();
  for (const { balancer, checks } of live) {
    const route = balancer.route;
    const checksKey = checks ? healthChecksKey(route) : '';
    route.to.forEach((url, i) => {
      const id = upstreamIdentity(route, url);
      const list = out.get(id) ?? [];
      list.push({
        routeId: route.id,
        checksKey,
        checks: checks ? checks.state(i) : null,
        ejection: balancer.ejection(i),
      });
      out.set(id, list);
    });
  }
  return out;
}

/**
 * Keep-alive connection pools, one lane per upstream origin and TLS setting, shared by every
 * route that points there. A route with several `to` URLs has a Balancer (src/proxy/balancer.ts)
 * and, with health_checks, active checks, both made by configure() for each config.
 */
export class Upstreams {
  private readonly lanes = new Map<string, Lane>();
  private laneOf = new WeakMap<Route, Lane[]>();
  private balancers = new WeakMap<Route, Balancer>();
  private live: Array<{ balancer: Balancer; checks: ActiveHealthChecks | null }> = [];

  constructor(private readonly log: Logger | null = null) {}

  /**
   * The routes of the config now in force: their balancers are made and their health checks
   * started; the previous config's checks and ejection timers are stopped (requests still in
   * flight on an old route keep its balancer, without checks). An upstream that the previous
   * config reached the same way (upstreamIdentity) keeps what was learnt of it: its health
   * verdict, when the route runs the same checks, and its ejection, when the route still has
   * outlier_detection. Without this every reload put a known-dead upstream back in rotation
   * until its first failed check.
   */
  configure(routes: readonly Route[]): void {
    const previous = this.live;
    const known = carried(previous);
    this.balancers = new WeakMap();
    this.live = [];
    for (const route of routes) {
      if (route.to.length < 2) continue;
      const balancer = new Balancer(route, this.log);
      const checks = route.healthChecks.length
        ? new ActiveHealthChecks(route, balancer, this.log)
        : null;
      const checksKey = checks ? healthChecksKey(route) : '';
      route.to.forEach((url, i) => {
        const was = known.get(upstreamIdentity(route, url));
        if (!was) return;
        const same = was.find((w) => w.routeId === route.id) ?? was[0]!;
        balancer.restoreEjection(i, same.ejection);
        const sameChecks = was.filter((w) => w.checks !== null && w.checksKey === checksKey);
        const health = sameChecks.find((w) => w.routeId === route.id) ?? sameChecks[0];
        if (checks && health) checks.restore(i, health.checks!);
      });
      this.balancers.set(route, balancer);
      this.live.push({ balancer, checks });
      checks?.start();
    }
    for (const p of previous) {
      p.checks?.stop();
      p.balancer.stop();
    }
  }

  /** Active health checks still running (0 after close(); a reload replaces them). */
  checksRunning(): number {
    return this.live.filter((l) => l.checks?.running).length;
  }

  /** What /upstreams and the portcullis_upstream_* metrics show. */
  status(): UpstreamStatus[] {
    return this.live.flatMap((l) => l.balancer.status());
  }

  /** `key` (the session, else the client address) is read only by RING_HASH and MAGLEV routes. */
  pick(route: Route, key: string | null = null): Picked | null {
    const n = route.to.length;
    if (n === 0) return null;
    if (n === 1) return { url: route.to[0]!, lane: this.lane(route, 0), index: 0, balancer: null };
    const balancer = this.balancer(route);
    return this.at(route, balancer, balancer.pick(key));
  }

  /**
   * Which `to` a new tunnel of a TCP route connects to, by the same balancer and health state
   * as pick() (a tunnel opens its own socket: no pool, no lane). Null balancer for one `to`.
   */
  pickTunnel(route: Route, key: string | null): { index: number; balancer: Balancer | null } {
    if (route.to.length < 2) return { index: 0, balancer: null };
    const balancer = this.balancer(route);
    return { index: balancer.pick(key), balancer };
  }

  private balancer(route: Route): Balancer {
    let balancer = this.balancers.get(route);
    if (!balancer) {
      // A route not (or no longer) configured here: balanced, but without health checks.
      balancer = new Balancer(route, this.log);
      this.balancers.set(route, balancer);
    }
    return balancer;
  }

  /** Upstream `index` of a balanced route (a retry after a failed connection). */
  at(route: Route, balancer: Balancer, index: number): Picked {
    return { url: route.to[index]!, lane: this.lane(route, index), index, balancer };
  }

  /** The lane of route.to[index], remembered per route so a request builds no key string. */
  private lane(route: Route, index: number): Lane {
    let mine = this.laneOf.get(route);
    if (mine === undefined) this.laneOf.set(route, (mine = []));
    let lane = mine[index];
    if (lane === undefined) {
      const url = route.to[index]!;
      const fast = createPool(route, url, FAST_CONNECTIONS);
      const shared =
        this.lanes.get(fast.key) ??
        new Lane(fast.make(), () => createPool(route, url, OVERFLOW_CONNECTIONS).make());
      this.lanes.set(fast.key, shared);
      mine[index] = lane = shared;
    }
    return lane;
  }

  async close(): Promise<void> {
    this.configure([]);
    await Promise.allSettled([...this.lanes.values()].map((l) => l.close()));
    this.lanes.clear();
    this.laneOf = new WeakMap();
  }
}

/**
 * Connections to one upstream: a small pool that short requests queue for, and an overflow
 * pool for when that queue could get stuck.
 *
 * Why: measured with 256 concurrent clients (docs/performance.md), one connection per request
 * (a pool of 256) costs ~10 % more CPU per request and a p99 of 0.5-1.3 s, where 32
 * connections that requests queue for give a p99 of 30-60 ms. But a queue is only safe while
 * its connections keep freeing up: server-sent events, long polls and big transfers can hold
 * a connection for minutes, and requests queued behind them would hang. So a request joins
 * the small pool's queue only while fewer than half of its in-flight requests are such
 * holders (streaming a body, or in flight for over a second), and only for a short while
 * (QUEUE_MS in forward.ts) before it is moved to the overflow pool, which opens a connection
 * per request like a plain proxy. Requests with a body never queue: they could not be moved.
 */
export class Lane {
  // In-flight requests on the fast pool are counted, not kept in a collection: a Set of
  // handlers churned at full load made V8's heap peak ~120 MB higher in the 10,000-session
  // bench. Ages are kept per 250 ms bucket, which is all the "over a second" test needs.
  /** Requests dispatched on the fast pool and not done: at most FAST_CONNECTIONS. */
  private active = 0;
  private streaming = 0;
  /**
   * Requests waiting for one of the fast pool's connections, oldest first (from `head`). The
   * queue is ours, not undici's: a request whose client left, or that moved to the overflow
   * pool, simply leaves it. Taking one out of undici's queue means aborting it, and undici
   * aborts by destroying the connection it was about to use, so under a load that timed out
   * clients it kept reconnecting its 32 connections (the 1,000-connection cliff).
   */
  private waiting: Array<Flight | null> = [];
  private head = 0;
  /** In flight (not streaming) and older than the buckets still held. */
  private old = 0;
  private readonly counts = new Int32Array(BUCKETS);
  private readonly epochs = new Float64Array(BUCKETS).fill(-1);
  private overflowPool: Pool | null = null;

  constructor(
    readonly fast: Pool,
    private readonly makeOverflow: () => Pool,
  ) {}

  /**
   * Where a new request goes; `flight` is registered on the fast pool's books when it goes
   * there, with `queued` set when it will wait for a connection (the caller then moves it to
   * the overflow pool if the wait runs long). `canQueue` is false for requests with a body.
   */
  choose(flight: Flight, now: number, canQueue: boolean): Pool {
    flight.epoch = -1;
    if (this.active < FAST_CONNECTIONS && this.head === this.waiting.length) {
      this.active++;
      flight.lane = this;
      flight.queued = false;
      return this.fast;
    }
    if (canQueue && this.holders(now, HOLD_BUCKETS) < FAST_CONNECTIONS / 2) {
      flight.lane = this;
      flight.queued = true;
      this.waiting.push(flight);
      return this.fast;
    }
    flight.queued = false;
    return this.overflow();
  }

  /** Hands free fast connections to the oldest waiting requests (Flight.go dispatches). */
  private next(): void {
    while (this.active < FAST_CONNECTIONS && this.head < this.waiting.length) {
      const flight = this.waiting[this.head]!;
      this.waiting[this.head++] = null;
      if (!flight || !flight.queued || flight.lane !== this) continue;
      flight.queued = false;
      this.active++;
      flight.go();
    }
    if (this.head === this.waiting.length) {
      this.waiting.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
  }

  /**
   * The request got one of the shared connections: its age, which decides whether it holds
   * that connection, counts from now. Time spent in the queue does not count: under a load
   * of short requests every request waits, and counting the wait made them all look like
   * holders, which sent the whole load to one connection per request (the 1,000-connection
   * cliff in docs/performance.md).
   */
  connected(flight: Flight, now: number): void {
    if (flight.lane !== this || flight.streaming || flight.epoch >= 0) return;
    const epoch = Math.floor(now / BUCKET_MS);
    this.counts[this.slot(epoch)]!++;
    flight.epoch = epoch;
  }

  /**
   * For a request that has waited QUEUE_MS: true when half the shared connections are held by
   * requests connected for over QUEUE_MS (to bucket precision) or streaming, so the queue is
   * not moving and the request should take a connection of its own. While the connections
   * keep turning over, waiting is cheaper than opening one more.
   */
  stuck(now: number): boolean {
    return this.holders(now, STUCK_BUCKETS) >= FAST_CONNECTIONS / 2;
  }

  /** The response started streaming (no length, or a large one): it may hold its connection long. */
  streamingStarted(flight: Flight): void {
    if (flight.lane !== this || flight.streaming) return;
    if (flight.epoch >= 0) this.unage(flight);
    flight.streaming = true;
    this.streaming++;
  }

  /** The request is over, or leaves the queue (its client left, or it moves to the overflow pool). */
  done(flight: Flight): void {
    if (flight.lane !== this) return;
    flight.lane = null;
    if (flight.queued) {
      flight.queued = false; // next() skips it
      return;
    }
    if (flight.streaming) this.streaming--;
    else if (flight.epoch >= 0) this.unage(flight);
    this.active--;
    this.next();
  }

  /** For WebSocket handshakes: they hand their connection over, and must never queue behind held ones. */
  overflow(): Pool {
    return (this.overflowPool ??= this.makeOverflow());
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.fast.close(), this.overflowPool?.close()]);
  }

  /** Streaming responses, plus requests connected for `buckets` buckets or more. */
  private holders(now: number, buckets: number): number {
    const current = Math.floor(now / BUCKET_MS);
    let held = this.streaming + this.old;
    for (let i = 0; i < BUCKETS; i++)
      if (this.epochs[i]! >= 0 && current - this.epochs[i]! >= buckets) held += this.counts[i]!;
    return held;
  }

  /** The bucket for `epoch`; a bucket reused for a newer epoch hands its count to `old`. */
  private slot(epoch: number): number {
    const i = epoch % BUCKETS;
    if (this.epochs[i] !== epoch) {
      if (this.epochs[i]! >= 0) this.old += this.counts[i]!;
      this.epochs[i] = epoch;
      this.counts[i] = 0;
    }
    return i;
  }

  private unage(flight: Flight): void {
    const i = flight.epoch % BUCKETS;
    if (this.epochs[i] === flight.epoch) this.counts[i]!--;
    else this.old--;
  }
}

/** What a Lane keeps per request; ProxyHandler is one. */
export interface Flight {
  lane: Lane | null;
  /** When it got its connection, in BUCKET_MS units; -1 while it waits for one. */
  epoch: number;
  streaming: boolean;
  /** Waiting in the lane's queue; the lane calls go() when a connection is free. */
  queued: boolean;
  go(): void;
}

const FAST_CONNECTIONS = 32;
/** A plain proxy's behaviour, bounded so a flood cannot open unlimited sockets to one upstream. */
const OVERFLOW_CONNECTIONS = 1024;
const BUCKET_MS = 250;
/** A request in flight for this many buckets (1 s) holds its connection. */
const HOLD_BUCKETS = 4;
/**
 * Connected this many buckets ago (250-500 ms or more) counts as not turning over, for a
 * request deciding whether to stop waiting. Two, not one: a request connected 1 ms before a
 * bucket boundary is already one bucket old.
 */
const STUCK_BUCKETS = 2;
const BUCKETS = 8;
