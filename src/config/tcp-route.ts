import type { RawRoute } from './schema.js';
import type { RouteFrom } from './types.js';
import { splitWeight } from './upstream-url.js';

// Pomerium's TCP routes (https://www.pomerium.com/docs/capabilities/non-http/tcp):
//   from: tcp+https://db.corp.example.com:5432   the name and port a client CONNECTs to
//   to:   tcp://10.0.0.5:5432                     where the tunnel's bytes go
// The port is part of the name: a client asks for host:port, so both sides must say it. The
// `from` scheme `tcp` keys the route table apart from http/https, so an HTTP request never
// selects a TCP route and a CONNECT never selects an HTTP one.

type At = (path: readonly PropertyKey[], msg: string) => void;

export function isTcpFrom(text: string): boolean {
  return /^\s*tcp\+/i.test(text);
}

/** host and port of `host:port` or `[v6]:port`; no userinfo, path, query or fragment. */
const AUTHORITY =
  /^(\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?)*):(\d{1,5})$/i;

function authority(text: string): { host: string; port: number } | string {
  const m = AUTHORITY.exec(text);
  if (!m) {
    if (/[@/?#\\]/.test(text))
      return 'expected only a host and a port: no user, path, query or fragment';
    if (!/:\d+$/.test(text)) return 'expected a port: a TCP route names host:port';
    return 'expected host:port with a valid host name';
  }
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return 'expected a port from 1 to 65535';
  return { host: m[1]!.toLowerCase(), port };
}

/** `from: tcp+https://host:port` (an optional trailing slash is tolerated, as for HTTP routes). */
export function parseTcpFrom(text: string): RouteFrom | string {
  const t = text.trim();
  const m = /^tcp\+(https?):\/\/(.*)$/i.exec(t);
  if (!m || m[1]!.toLowerCase() !== 'https')
    return `expected a TCP route as tcp+https://host:port, got ${JSON.stringify(text)}`;
  const rest = m[2]!.endsWith('/') ? m[2]!.slice(0, -1) : m[2]!;
  if (rest.startsWith('*.'))
    return `a TCP route names one host (a client CONNECTs to host:port), got ${JSON.stringify(text)}`;
  const a = authority(rest);
  if (typeof a === 'string')
    return `${a}, e.g. tcp+https://db.corp.example.com:5432; got ${JSON.stringify(text)}`;
  return { scheme: 'tcp', host: a.host, port: a.port, wildcard: false, raw: text };
}

/** Keys that would change what an HTTP answer is: a TCP route has no path and no HTTP answer. */
const HTTP_ONLY = ['prefix', 'path', 'regex', 'redirect', 'response'] as const;

/**
 * The `to` of a TCP route, as `tcp://host:port` URLs with their load-balancing weights
 * (`tcp://10.0.0.5:5432,3`, as for HTTP upstreams), after reporting every key that cannot
 * apply to a tunnel. The route's Balancer spreads tunnels over them as it spreads requests.
 */
export function compileTcpTo(
  r: RawRoute,
  base: readonly PropertyKey[],
  at: At,
): { to: URL[]; weights: number[] } {
  for (const k of HTTP_ONLY)
    if (r[k] !== undefined)
      at(
        [...base, k],
        `a TCP route (${r.from.trim()}) carries bytes, not HTTP requests: \`${k}\` cannot apply; remove it`,
      );
  if (r.to === undefined) {
    at([...base, 'to'], 'a TCP route needs `to: tcp://host:port`, where the tunnel connects');
    return { to: [], weights: [] };
  }
  const list = Array.isArray(r.to) ? r.to : [r.to];
  const out: URL[] = [];
  const weights: number[] = [];
  list.forEach((entry, j) => {
    const path = Array.isArray(r.to) ? [...base, 'to', j] : [...base, 'to'];
    const split = splitWeight(entry, 'tcp://10.0.0.5:5432,10');
    if (typeof split === 'string') {
      at(path, split);
      return;
    }
    const t = split.text;
    const m = /^tcp:\/\/(.*?)\/?$/i.exec(t.trim());
    if (!m) {
      at(path, `expected a TCP upstream like tcp://10.0.0.5:5432, got ${JSON.stringify(t)}`);
      return;
    }
    const a = authority(m[1]!);
    if (typeof a === 'string') {
      at(path, `${a}, e.g. tcp://10.0.0.5:5432; got ${JSON.stringify(t)}`);
      return;
    }
    out.push(new URL(`tcp://${a.host}:${a.port}`));
    weights.push(split.weight);
  });
  return { to: out, weights };
}
