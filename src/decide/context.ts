import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import { normalizeIp } from '../security/cidr.js';
import { clientAddress } from '../security/forwarded.js';
import { normalizeRequestTarget } from '../security/path.js';
import { defaultPort } from './route-table.js';
import type { RequestContext } from './types.js';

export type ContextResult =
  | {
      ok: true;
      ctx: RequestContext;
      pathError: string | undefined;
      /** The socket peer, and whether it is a trusted proxy. */ peerIp: string;
      trustedPeer: boolean;
    }
  | { ok: false; status: 400; reason: string };

const HOST_RE =
  /^(?:\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?)*\.?)(?::(\d{1,5}))?$/;

/** host[:port] from a Host-like header; null when malformed (no userinfo, no paths, one value). */
export function parseHostHeader(
  value: string | undefined,
  scheme: 'http' | 'https',
): { host: string; port: number } | null {
  if (!value) return null;
  const v = value.trim().toLowerCase();
  const m = HOST_RE.exec(v);
  if (!m) return null;
  const port = m[1] ? Number(m[1]) : defaultPort(scheme);
  if (port < 1 || port > 65535) return null;
  let host = m[1] ? v.slice(0, v.length - m[1].length - 1) : v;
  if (host.endsWith('.')) host = host.slice(0, -1);
  return { host, port };
}

/** True for a client that can follow a login redirect; API clients get 401 JSON instead. */
export function isBrowser(headers: IncomingMessage['headers']): boolean {
  if (headers['x-requested-with']) return false;
  const auth = headers.authorization;
  if (auth && /^(bearer|portcullis|pomerium)\s/i.test(auth)) return false;
  const accept = headers.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}

/**
 * The reverse-proxy view of a request: host from Host, path from the request-target, client
 * address from the socket (X-Forwarded-For only through trusted proxies).
 */
export function contextFromRequest(
  req: IncomingMessage,
  isTrusted: (ip: string) => boolean,
  now = Date.now(),
): ContextResult {
  const peer = normalizeIp(req.socket.remoteAddress ?? '');
  const trustedPeer = isTrusted(peer);
  let scheme: 'http' | 'https' = req.socket instanceof TLSSocket ? 'https' : 'http';
  if (trustedPeer) {
    const xfp = req.headers['x-forwarded-proto'];
    if (xfp === 'https' || xfp === 'http') scheme = xfp;
  }
  // Two Host headers are a smuggling attempt: which one would the upstream believe?
  let hostCount = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2)
    if (req.rawHeaders[i]!.length === 4 && req.rawHeaders[i]!.toLowerCase() === 'host') hostCount++;
  if (hostCount !== 1)
    return {
      ok: false,
      status: 400,
      reason: hostCount ? 'more than one Host header' : 'missing Host header',
    };
  const hp = parseHostHeader(req.headers.host, scheme);
  if (!hp) return { ok: false, status: 400, reason: 'malformed Host header' };

  const target = req.url ?? '/';
  let norm = normalizeRequestTarget(target);
  let pathError: string | undefined;
  if (!norm.ok) {
    pathError = norm.reason;
    norm = normalizeRequestTarget(target, { allowAmbiguous: true });
    if (!norm.ok) return { ok: false, status: 400, reason: pathError };
  }
  return {
    ok: true,
    pathError,
    peerIp: peer,
    trustedPeer,
    ctx: {
      method: req.method ?? 'GET',
      scheme,
      host: hp.host,
      port: hp.port,
      path: norm.path,
      query: norm.query,
      clientIp: clientAddress(peer, req.headers['x-forwarded-for'], isTrusted),
      headers: req.headers,
      browser: isBrowser(req.headers),
      now,
      clientCert: req.socket instanceof TLSSocket ? clientCertOf(req.socket) : undefined,
    },
  };
}

const certs = new WeakMap<TLSSocket, RequestContext['clientCert'] | null>();

/** The verified client certificate of a TLS connection, read once per connection. */
export function clientCertOf(socket: TLSSocket): RequestContext['clientCert'] {
  let c = certs.get(socket);
  if (c === undefined) {
    c = null;
    if (socket.authorized) {
      const peer = socket.getPeerCertificate();
      if (peer && peer.fingerprint256) {
        const subject: Record<string, string> = {};
        for (const [k, v] of Object.entries(peer.subject ?? {}))
          subject[k] = Array.isArray(v) ? v.join(',') : String(v);
        c = {
          fingerprint256: peer.fingerprint256,
          subject,
          san: peer.subjectaltname ? peer.subjectaltname.split(', ') : [],
        };
      }
    }
    certs.set(socket, c);
  }
  return c ?? undefined;
}
