import type { UpstreamTransport } from './types.js';

// Pomerium's `to` schemes beyond http and https
// (https://www.pomerium.com/docs/reference/routes/to): `h2c://` is HTTP/2 with prior knowledge
// over cleartext, `http+unix://` and `https+unix://` reach a Unix domain socket. Each becomes
// an http(s) URL the rest of the proxy already understands, and the transport is remembered
// per URL object: whoever builds the upstream pools (src/proxy/dispatcher-options.ts) asks
// transportOf(url), so the way `to` lists are grouped into targets can change freely.

const transports = new WeakMap<URL, UpstreamTransport>();

/** The transport of an upstream URL made by parseUpstreamUrl; plain TCP when it has none. */
export function transportOf(url: URL): UpstreamTransport | undefined {
  return transports.get(url);
}

/** An upstream URL, or what is wrong with it (for the config error). */
export function parseUpstreamUrl(text: string): URL | string {
  const bad = `expected an http(s) upstream URL like http://10.0.0.5:3000, got ${JSON.stringify(text)} (h2c://app:8080, http+unix:///run/app.sock and https+unix:///run/app.sock work too)`;
  const m = /^(h2c|https?\+unix):/i.exec(text);
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return bad;
  }
  if (u.username || u.password) return bad;
  if (u.search || u.hash) return 'expected an upstream URL without query or fragment';
  if (!m) {
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return bad;
    return u;
  }
  const scheme = m[1]!.toLowerCase();
  if (scheme === 'h2c') {
    // The h2c authority and path read exactly as an http URL's would.
    const plain = new URL(`http:${text.slice(m[0].length)}`);
    transports.set(plain, { h2c: true, socketPath: null });
    return plain;
  }
  // http+unix:///run/app.sock: the authority is empty and the path is the socket's.
  if (u.host !== '')
    return `expected ${scheme}:// followed by an absolute socket path (three slashes, e.g. ${scheme}:///run/app.sock), got ${JSON.stringify(text)}`;
  let socketPath: string;
  try {
    socketPath = decodeURIComponent(u.pathname);
  } catch {
    return bad;
  }
  if (socketPath.length < 2 || socketPath.endsWith('/') || socketPath.includes('\0'))
    return `expected ${scheme}:// followed by the path of a socket file, got ${JSON.stringify(text)}`;
  // A socket has no host name: the upstream sees Host: localhost unless the route rewrites it.
  const plain = new URL(scheme === 'https+unix' ? 'https://localhost' : 'http://localhost');
  transports.set(plain, { h2c: false, socketPath });
  return plain;
}

/** How an upstream is named to operators (logs, /upstreams, the admin console): as configured. */
export function upstreamLabel(url: URL): string {
  // A tcp:// URL (a TCP route's upstream) is no web origin: its `origin` reads "null".
  if (url.protocol === 'tcp:') return `tcp://${url.host}`;
  const t = transports.get(url);
  if (t?.socketPath)
    return `${url.protocol === 'https:' ? 'https' : 'http'}+unix://${t.socketPath}`;
  const path = url.pathname === '/' ? '' : url.pathname;
  return t?.h2c ? `h2c://${url.host}${path}` : `${url.origin}${path}`;
}

/**
 * Pomerium: "A load balancing weight may be associated with a particular upstream by appending
 * ,[weight] to the URL" (https://www.pomerium.com/docs/reference/routes/to), for every scheme.
 * The URL text and its weight (1 without a comma), or the error for a bad weight.
 */
export function splitWeight(
  entry: string,
  example = 'http://10.0.0.5:3000,10',
): { text: string; weight: number } | string {
  const comma = entry.lastIndexOf(',');
  if (comma === -1) return { text: entry, weight: 1 };
  const w = entry.slice(comma + 1).trim();
  const weight = /^[0-9]{1,6}$/.test(w) ? Number(w) : NaN;
  if (!(weight >= 1 && weight <= 10_000))
    return `expected a load-balancing weight from 1 to 10000 after the comma, like ${example}; got ${JSON.stringify(entry)}`;
  return { text: entry.slice(0, comma).trim(), weight };
}
