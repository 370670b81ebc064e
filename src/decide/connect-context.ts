import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import { normalizeIp } from '../security/cidr.js';
import { clientAddress } from '../security/forwarded.js';
import { clientCertOf, parseHostHeader } from './context.js';
import type { RequestContext } from './types.js';

// The RequestContext of an HTTP CONNECT (a TCP tunnel, Pomerium's tcp+https routes): the same
// shape decide() judges for every HTTP request, with `tunnel` set so that only TCP routes match.
// The request-target must be exactly host:port (RFC 9110 §9.3.6, authority-form): anything else
// (userinfo, a path, an absolute URL, a missing port) could name one thing to us and another to
// whoever reads the target next, so it is refused rather than interpreted.

export type ConnectContext =
  { ok: true; ctx: RequestContext; target: string } | { ok: false; reason: string };

/** host:port only, with a port (a Host-like header's grammar otherwise). */
function authority(value: string): { host: string; port: number } | string {
  if (/[@]/.test(value)) return 'the CONNECT target must not carry a user (no "@")';
  if (/[/?#\\]/.test(value) || /^[a-z][a-z0-9+.-]*:\/\//i.test(value))
    return 'the CONNECT target must be host:port (authority-form), not a URL or a path';
  if (!/:\d{1,5}$/.test(value)) return 'the CONNECT target must name a port (host:port)';
  const hp = parseHostHeader(value, 'https');
  if (!hp) return 'the CONNECT target is not a valid host:port';
  return hp;
}

export function contextFromConnect(
  req: IncomingMessage,
  isTrusted: (ip: string) => boolean,
  now = Date.now(),
): ConnectContext {
  const target = req.url ?? '';
  const t = authority(target);
  if (typeof t === 'string') return { ok: false, reason: t };
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2)
    if (req.rawHeaders[i]!.toLowerCase() === 'host') hosts++;
  if (hosts !== 1)
    return {
      ok: false,
      reason: hosts ? 'more than one Host header' : 'missing Host header (send Host: host:port)',
    };
  // A Host naming another place than the target is the confusion a smuggler needs: refuse it.
  const h = authority(String(req.headers.host));
  if (typeof h === 'string' || h.host !== t.host || h.port !== t.port)
    return { ok: false, reason: 'the Host header must be the CONNECT target (host:port)' };

  // A CLI token may come as a proxy credential (the natural place on a CONNECT) or as
  // Authorization; two different ones are refused rather than choosing between them.
  const headers: Record<string, string | string[] | undefined> = { ...req.headers };
  const proxyAuth = req.headers['proxy-authorization'];
  if (proxyAuth !== undefined) {
    if (headers.authorization !== undefined && headers.authorization !== proxyAuth)
      return { ok: false, reason: 'Authorization and Proxy-Authorization disagree' };
    headers.authorization = proxyAuth;
  }
  const peer = normalizeIp(req.socket.remoteAddress ?? '');
  const tls = req.socket instanceof TLSSocket;
  return {
    ok: true,
    target: `${t.host}:${t.port}`,
    ctx: {
      method: 'CONNECT',
      scheme: tls ? 'https' : 'http',
      host: t.host,
      port: t.port,
      path: '/',
      query: '',
      clientIp: clientAddress(peer, req.headers['x-forwarded-for'], isTrusted),
      headers,
      browser: false,
      now,
      tunnel: true,
      clientCert: tls ? clientCertOf(req.socket as TLSSocket) : undefined,
    },
  };
}
