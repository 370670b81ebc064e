import { Pool } from './undici.js';
import type { Route } from '../config/types.js';

/**
 * Keep-alive connection pools, one per upstream origin and TLS setting, shared by every route
 * that points there. A route with several `to` URLs round-robins over them.
 */
export class Upstreams {
  private readonly pools = new Map<string, Pool>();
  private readonly cursor = new WeakMap<Route, number>();

  pick(route: Route): { url: URL; pool: Pool } | null {
    if (!route.to.length) return null;
    const i = (this.cursor.get(route) ?? 0) % route.to.length;
    this.cursor.set(route, i + 1);
    const url = route.to[i]!;
    const key = `${url.origin}|${route.tlsSkipVerify ? 1 : 0}|${route.tlsCa ? route.tlsCa.length : 0}|${route.timeoutMs}|${route.idleTimeoutMs}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new Pool(url.origin, {
        connections: 256,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        headersTimeout: route.timeoutMs,
        bodyTimeout: route.idleTimeoutMs,
        connect: { timeout: 10_000, rejectUnauthorized: !route.tlsSkipVerify, ...(route.tlsCa ? { ca: route.tlsCa } : {}) },
      });
      this.pools.set(key, pool);
    }
    return { url, pool };
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.pools.values()].map((p) => p.close()));
    this.pools.clear();
  }
}
