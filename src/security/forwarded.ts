import { normalizeIp } from './cidr.js';

// Who is the client? Every X-Forwarded-For entry except the ones appended by proxies we trust
// is written by the client, so only a right-to-left walk over trusted hops means anything:
// the left-most entry is whatever the client chose to send.

const IPV4_WITH_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/;
const BRACKETED_WITH_PORT = /^\[([^\]]+)\](?::\d{1,5})?$/;

/** One X-Forwarded-For entry as a normalized IP, or '' if it is not one. Tolerates the
 * `ip:port` / `[v6]:port` forms some load balancers (Azure Application Gateway) append. */
function parseHop(raw: string): string {
  const s = raw.trim();
  if (s === '') return '';
  let ip = normalizeIp(s);
  if (ip) return ip;
  const m = IPV4_WITH_PORT.exec(s) ?? BRACKETED_WITH_PORT.exec(s);
  if (m) ip = normalizeIp(m[1]!);
  return ip;
}

/**
 * The client's address. An untrusted peer's X-Forwarded-For is ignored entirely. Behind trusted
 * proxies, the header (all instances, in order) is walked from the right, skipping trusted hops;
 * the first untrusted address is the client. If every hop is trusted, the left-most one is
 * (an internal client). An entry that is not an IP address stops the walk and the last good hop
 * (the trusted one just to its right, or the peer) is returned: past garbage we can no longer
 * tell who wrote what, and the trusted hop is the nearest address we know to be real.
 */
export function clientAddress(
  peer: string,
  xForwardedFor: string | string[] | undefined,
  isTrusted: (ip: string) => boolean,
): string {
  const peerIp = normalizeIp(peer);
  if (!peerIp || !isTrusted(peerIp) || xForwardedFor === undefined) return peerIp;
  const xff = typeof xForwardedFor === 'string' ? xForwardedFor : xForwardedFor.join(',');
  let last = peerIp;
  let end = xff.length;
  while (end >= 0) {
    const comma = xff.lastIndexOf(',', end - 1);
    const hop = parseHop(xff.slice(comma + 1, end));
    if (!hop) return last;
    if (!isTrusted(hop)) return hop;
    last = hop;
    if (comma === -1) break;
    end = comma;
  }
  return last;
}
