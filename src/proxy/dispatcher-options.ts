import type { Route } from '../config/types.js';
import { transportOf, upstreamLabel } from '../config/upstream-url.js';
import type * as Undici from 'undici';
import { buildConnector } from './undici.js';

// How a pool connects to one upstream URL of a route: TLS (custom CA, client certificate,
// server name), Unix socket, HTTP/2 cleartext, timeouts. Worked out on first use for each
// (route, URL) object of a loaded config and kept: later requests only look it up (two
// WeakMap reads, where the pool key used to be a string built per request).

export interface DispatcherPlan {
  /** Pools are shared by routes whose plans have the same key. */
  key: string;
  origin: string;
  options: Undici.Pool.Options;
}

const plans = new WeakMap<URL, WeakMap<Route, DispatcherPlan>>();

export function dispatcherOptions(route: Route, url: URL): DispatcherPlan {
  let byRoute = plans.get(url);
  let plan = byRoute?.get(route);
  if (plan) return plan;
  plan = buildPlan(route, url);
  if (!byRoute) plans.set(url, (byRoute = new WeakMap()));
  byRoute.set(route, plan);
  return plan;
}

function buildPlan(route: Route, url: URL): DispatcherPlan {
  const transport = transportOf(url);
  const https = url.protocol === 'https:';
  const connect: Record<string, unknown> = {
    timeout: 10_000,
    rejectUnauthorized: !route.tlsSkipVerify,
  };
  if (https) {
    if (route.tlsCa) connect.ca = route.tlsCa;
    if (route.tlsClientCert) {
      connect.cert = route.tlsClientCert.cert;
      connect.key = route.tlsClientCert.key;
    }
    // Node checks the certificate against `servername` as well as sending it as SNI.
    if (route.tlsServerName) connect.servername = route.tlsServerName;
  }
  // undici's Pool hands `connect` to its connector, the only place useH2c is read.
  if (transport?.h2c) connect.useH2c = true;
  const options: Undici.Pool.Options = {
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: route.timeoutMs,
    bodyTimeout: route.idleTimeoutMs,
    connect: connect as Undici.Pool.Options['connect'],
    ...(transport?.h2c ? { allowH2: true } : {}),
    ...(transport?.socketPath ? { socketPath: transport.socketPath } : {}),
  };
  if (https && route.tlsServerName) {
    // undici sends the request's Host name as SNI and verifies the certificate against it,
    // ahead of the configured servername (only an IP-literal Host falls back to it): the
    // connector is wrapped so the configured name always wins.
    const name = route.tlsServerName;
    const base = buildConnector({
      ...(connect as Undici.buildConnector.BuildOptions),
      ...(transport?.socketPath ? { socketPath: transport.socketPath } : {}),
    });
    options.connect = (opts, callback) => base({ ...opts, servername: name }, callback);
  }
  const key = `${upstreamIdentity(route, url)}|${route.timeoutMs}|${route.idleTimeoutMs}`;
  return { key, origin: url.origin, options };
}

/**
 * What makes two upstreams of two configs the same place reached the same way: the origin, the
 * transport (h2c, the Unix socket) and, for https, every TLS setting. Timeouts are left out:
 * they change how long a request may take, not whether the upstream can be reached, so a
 * reload that changes only them keeps what the health checks and ejections learnt.
 */
export function upstreamIdentity(route: Route, url: URL): string {
  const transport = transportOf(url);
  const https = url.protocol === 'https:';
  return [
    // A tcp:// URL's origin is "null" for every host: the label keeps them apart.
    url.protocol === 'tcp:' ? upstreamLabel(url) : url.origin,
    transport?.h2c ? 'h2c' : '',
    transport?.socketPath ?? '',
    https && route.tlsSkipVerify ? 1 : 0,
    https ? (route.tlsCa ?? '') : '',
    https ? (route.tlsClientCert?.cert ?? '') : '',
    https ? (route.tlsClientCert?.key ?? '') : '',
    https ? (route.tlsServerName ?? '') : '',
  ].join('|');
}
