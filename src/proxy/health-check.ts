import { request as httpRequest, type ClientRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, type Socket } from 'node:net';
import type { HealthCheck, Route } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { Balancer } from './balancer.js';
import { transportOf, upstreamLabel } from '../config/upstream-url.js';

// A route's `health_checks` (Envoy's HealthCheck as Pomerium passes it through,
// https://www.pomerium.com/docs/reference/routes/load-balancing#health-checks): every
// `interval`, each upstream is asked (an HTTP GET of `path`, or a TCP connect with optional
// send/receive payloads); `unhealthy_threshold` failures in a row take it out of rotation,
// `healthy_threshold` passes in a row bring it back. An HTTP check answered with a 503 takes it
// out at once, as in Envoy. Upstreams start healthy, so a fresh start does not refuse traffic
// before the first round of checks; a reload hands over what the previous config's checks
// learnt (restore(), from Upstreams.configure), so an upstream known to be down gets no traffic
// while the new checks start.

type Result = 'pass' | 'fail' | 'fail_now';

export interface CheckState {
  streaks: number[];
  downBy: number[];
}

/**
 * Two routes whose keys are equal ask their upstreams the same questions, in the same order
 * (Buffers compare by content). Timeouts, intervals and thresholds are left out: they change
 * how often and how strictly the answer is judged, not what a failed answer meant.
 */
export function healthChecksKey(route: Route): string {
  return JSON.stringify(route.healthChecks.map((c) => [c.http, c.tcp]));
}

/** The checks of one load-balanced route; stop() ends every timer and check in flight. */
export class ActiveHealthChecks {
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly probes = new Set<{ destroy(): void }>();
  /** Per check, per upstream: passes or failures in a row, and whether that check holds it down. */
  private readonly streak: Int32Array[];
  private readonly downBy: Uint8Array[];
  private stopped = false;

  constructor(
    private readonly route: Route,
    private readonly balancer: Balancer,
    private readonly log: Logger | null,
  ) {
    this.streak = route.healthChecks.map(() => new Int32Array(route.to.length));
    this.downBy = route.healthChecks.map(() => new Uint8Array(route.to.length));
  }

  /** Passes or failures in a row, per check, and whether the checks hold upstream i down. */
  state(i: number): CheckState {
    return { streaks: this.streak.map((s) => s[i]!), downBy: this.downBy.map((d) => d[i]!) };
  }

  /**
   * Takes over the previous config's state of upstream i, before start(). The caller passes
   * only state from the same checks (healthChecksKey): another check's verdict says nothing
   * about this one.
   */
  restore(i: number, from: CheckState): void {
    let anyDown = false;
    from.streaks.forEach((v, j) => {
      this.streak[j]![i] = v;
      this.downBy[j]![i] = from.downBy[j]!;
      if (from.downBy[j]) anyDown = true;
    });
    this.balancer.setDown(i, anyDown);
  }

  start(): void {
    this.route.healthChecks.forEach((_c, j) => {
      for (let i = 0; i < this.route.to.length; i++) this.schedule(j, i, 0);
    });
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const p of this.probes) p.destroy();
    this.probes.clear();
  }

  get running(): boolean {
    return !this.stopped && this.timers.size + this.probes.size > 0;
  }

  private schedule(j: number, i: number, delay: number): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      void this.run(j, i);
    }, delay);
    t.unref();
    this.timers.add(t);
  }

  private async run(j: number, i: number): Promise<void> {
    const check = this.route.healthChecks[j]!;
    const result = await probe(this.route, this.route.to[i]!, check, this.probes);
    if (this.stopped) return;
    this.record(j, i, check, result);
    this.schedule(j, i, check.intervalMs);
  }

  private record(j: number, i: number, check: HealthCheck, result: Result): void {
    const streak = this.streak[j]!;
    const down = this.downBy[j]!;
    // Positive: passes in a row; negative: failures in a row.
    if (result === 'pass') streak[i] = streak[i]! > 0 ? streak[i]! + 1 : 1;
    else streak[i] = streak[i]! < 0 ? streak[i]! - 1 : -1;
    const wasDown = down[i] === 1;
    if (!wasDown && (result === 'fail_now' || -streak[i]! >= check.unhealthyThreshold)) down[i] = 1;
    else if (wasDown && streak[i]! >= check.healthyThreshold) down[i] = 0;
    if ((down[i] === 1) === wasDown) return;
    let anyDown = false;
    for (const d of this.downBy) if (d[i] === 1) anyDown = true;
    const before = this.balancer.available(i);
    this.balancer.setDown(i, anyDown);
    if (before === this.balancer.available(i)) return;
    const upstream = upstreamLabel(this.route.to[i]!);
    if (anyDown)
      this.log?.warn(
        { event: 'upstream_unhealthy', route: this.route.id, upstream },
        `upstream ${upstream} of route ${this.route.id} failed its health check: taken out of rotation`,
      );
    else
      this.log?.info(
        { event: 'upstream_healthy', route: this.route.id, upstream },
        `upstream ${upstream} of route ${this.route.id} passed its health check: back in rotation`,
      );
  }
}

function probe(
  route: Route,
  url: URL,
  check: HealthCheck,
  probes: Set<{ destroy(): void }>,
): Promise<Result> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const https = url.protocol === 'https:';
  const port = Number(url.port) || (https ? 443 : 80);
  // The check connects as the proxy's pools do (src/proxy/dispatcher-options.ts): the same Unix
  // socket, client certificate and server name, so a passing check means requests can pass.
  const socketPath = transportOf(url)?.socketPath ?? null;
  const where = socketPath !== null ? { socketPath } : { host, port };
  const servername =
    route.tlsServerName ?? (/^[0-9.]+$|:/.test(host) || socketPath !== null ? null : host);
  return new Promise<Result>((resolve) => {
    let settled = false;
    let handle: ClientRequest | Socket | null = null;
    const entry = { destroy: () => finish('fail') };
    const timer = setTimeout(() => finish('fail'), check.timeoutMs);
    const finish = (r: Result): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      probes.delete(entry);
      handle?.destroy();
      resolve(r);
    };
    probes.add(entry);
    if (check.http) {
      const http = check.http;
      const req = (https ? httpsRequest : httpRequest)({
        ...where,
        method: 'GET',
        path: http.path,
        agent: false,
        headers: { host: http.host ?? url.host, 'user-agent': 'portcullis-health-check' },
        ...(https
          ? {
              rejectUnauthorized: !route.tlsSkipVerify,
              ...(route.tlsCa ? { ca: route.tlsCa } : {}),
              ...(route.tlsClientCert ?? {}),
              ...(servername !== null ? { servername } : {}),
            }
          : {}),
      });
      handle = req;
      req.on('response', (res) => {
        const s = res.statusCode ?? 0;
        res.resume();
        if (http.expected.some(([a, b]) => s >= a && s < b)) finish('pass');
        else finish(s === 503 ? 'fail_now' : 'fail');
      });
      req.on('error', () => finish('fail'));
      req.end();
      return;
    }
    const tcp = check.tcp!;
    const socket = socketPath !== null ? connect({ path: socketPath }) : connect({ host, port });
    handle = socket;
    let seen = Buffer.alloc(0);
    socket.on('error', () => finish('fail'));
    socket.on('close', () => finish('fail'));
    socket.on('connect', () => {
      if (tcp.send) socket.write(tcp.send);
      if (tcp.receive.length === 0) finish('pass');
    });
    // Envoy's "fuzzy" match: every block must be found, in order, not necessarily adjacent.
    socket.on('data', (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      let at = 0;
      for (const block of tcp.receive) {
        const found = seen.indexOf(block, at);
        if (found < 0) return;
        at = found + block.length;
      }
      finish('pass');
    });
  });
}
