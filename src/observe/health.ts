import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Metrics } from './metrics.js';

export interface ReadyCheck {
  name: string;
  ok: boolean;
  detail?: string;
}

/** One `to` of a load-balanced route, as /upstreams and the portcullis_upstream_* metrics show it. */
export interface UpstreamStatus {
  route: string;
  upstream: string;
  weight: number;
  /** Passing its active health checks (true when the route has none). */
  healthy: boolean;
  /** Ejected by outlier_detection for now. */
  ejected: boolean;
  inFlight: number;
}

export interface OpsServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** A store that can say whether it is reachable (server-side stores); the cookie store has nothing to reach. */
export interface Pingable {
  ping(): Promise<void>;
}

export function isPingable(x: unknown): x is Pingable {
  return typeof (x as { ping?: unknown } | null)?.ping === 'function';
}

/** Runs a probe with a deadline, so one hung dependency cannot hang /ready (and the kubelet) with it. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_r, reject) => {
        t = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(t);
  }
}

/**
 * The operator's listener (metrics_address), apart from user traffic so it can stay private:
 * /metrics (Prometheus), /ping (the process is alive) and /ready (it can serve logins).
 */
export async function startOpsServer(
  listen: { host: string; port: number },
  metrics: Metrics,
  ready: () => Promise<ReadyCheck[]>,
  upstreams: () => UpstreamStatus[] = () => [],
): Promise<OpsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-length': '0' }).end();
      return;
    }
    if (path === '/ping') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '3' }).end('OK\n');
      return;
    }
    if (path === '/ready') {
      ready().then(
        (checks) => {
          const ok = checks.every((c) => c.ok);
          const body = JSON.stringify({ ready: ok, checks }) + '\n';
          res
            .writeHead(ok ? 200 : 503, {
              'content-type': 'application/json',
              'cache-control': 'no-store',
              'content-length': Buffer.byteLength(body),
            })
            .end(body);
        },
        (e: unknown) => {
          res
            .writeHead(503, { 'content-type': 'text/plain' })
            .end(`not ready: ${(e as Error).message}\n`);
        },
      );
      return;
    }
    if (path === '/upstreams') {
      // Load-balanced routes' upstreams: whether each takes traffic, and why not.
      const body = JSON.stringify({ upstreams: upstreams() }) + '\n';
      res
        .writeHead(200, {
          'content-type': 'application/json',
          'cache-control': 'no-store',
          'content-length': Buffer.byteLength(body),
        })
        .end(body);
      return;
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => {
          res
            .writeHead(200, {
              'content-type': metrics.registry.contentType,
              'content-length': Buffer.byteLength(text),
            })
            .end(text);
        },
        (e: unknown) => {
          res
            .writeHead(500, { 'content-type': 'text/plain' })
            .end(`metrics collection failed: ${(e as Error).message}\n`);
        },
      );
      return;
    }
    res
      .writeHead(404, { 'content-type': 'text/plain' })
      .end('not found: try /metrics, /ping, /ready or /upstreams\n');
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
