import type { Route } from '../config/types.js';
import { Pool } from './undici.js';

/**
 * Keep-alive connection pools, one lane per upstream origin and TLS setting, shared by every
 * route that points there. A route with several `to` URLs round-robins over them.
 */
export class Upstreams {
  private readonly lanes = new Map<string, Lane>();
  private readonly cursor = new WeakMap<Route, number>();

  pick(route: Route): { url: URL; lane: Lane } | null {
    if (!route.to.length) return null;
    const i = (this.cursor.get(route) ?? 0) % route.to.length;
    this.cursor.set(route, i + 1);
    const url = route.to[i]!;
    const key = `${url.origin}|${route.tlsSkipVerify ? 1 : 0}|${route.tlsCa ? route.tlsCa.length : 0}|${route.timeoutMs}|${route.idleTimeoutMs}`;
    let lane = this.lanes.get(key);
    if (!lane) {
      const make = (connections: number): Pool => new Pool(url.origin, {
        connections,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        headersTimeout: route.timeoutMs,
        bodyTimeout: route.idleTimeoutMs,
        connect: { timeout: 10_000, rejectUnauthorized: !route.tlsSkipVerify, ...(route.tlsCa ? { ca: route.tlsCa } : {}) },
      });
      lane = new Lane(make(FAST_CONNECTIONS), () => make(OVERFLOW_CONNECTIONS));
      this.lanes.set(key, lane);
    }
    return { url, lane };
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.lanes.values()].map((l) => l.close()));
    this.lanes.clear();
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
  /** In flight on the fast pool, oldest first (a Set keeps insertion order). */
  private readonly inFlight = new Set<Flight>();
  private streaming = 0;
  private overflowPool: Pool | null = null;

  constructor(readonly fast: Pool, private readonly makeOverflow: () => Pool) {}

  /**
   * Where a new request goes; `flight` is registered on the fast pool's books when it goes
   * there, with `queued` set when it will wait for a connection (the caller then moves it to
   * the overflow pool if the wait runs long). `canQueue` is false for requests with a body.
   */
  choose(flight: Flight, now: number, canQueue: boolean): Pool {
    const free = this.inFlight.size < FAST_CONNECTIONS;
    if (free || (canQueue && this.holders(now) < FAST_CONNECTIONS / 2)) {
      flight.lane = this;
      flight.started = now;
      flight.queued = !free;
      this.inFlight.add(flight);
      return this.fast;
    }
    flight.queued = false;
    return this.overflow();
  }

  /** The response started streaming (no length, or a large one): it may hold its connection long. */
  streamingStarted(flight: Flight): void {
    if (flight.lane === this && !flight.streaming) {
      flight.streaming = true;
      this.streaming++;
    }
  }

  done(flight: Flight): void {
    if (flight.lane !== this || !this.inFlight.delete(flight)) return;
    if (flight.streaming) this.streaming--;
    flight.lane = null;
  }

  /** Streaming responses, plus requests in flight for over HOLD_MS (counted from the oldest; stops at the first young one). */
  private holders(now: number): number {
    let held = this.streaming;
    for (const f of this.inFlight) {
      if (now - f.started < HOLD_MS) break;
      if (!f.streaming) held++;
      if (held >= FAST_CONNECTIONS / 2) break;
    }
    return held;
  }

  /** For WebSocket handshakes: they hand their connection over, and must never queue behind held ones. */
  overflow(): Pool {
    return (this.overflowPool ??= this.makeOverflow());
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.fast.close(), this.overflowPool?.close()]);
  }
}

/** What a Lane keeps per request; ProxyHandler is one. */
export interface Flight {
  lane: Lane | null;
  started: number;
  streaming: boolean;
  queued: boolean;
}

const FAST_CONNECTIONS = 32;
/** A plain proxy's behaviour, bounded so a flood cannot open unlimited sockets to one upstream. */
const OVERFLOW_CONNECTIONS = 1024;
const HOLD_MS = 1_000;
