import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { EventEmitter } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { errors as undiciErrors } from 'undici';
import type { Route } from '../config/types.js';
import type { Identity, RequestContext } from '../decide/types.js';
import { sendPage } from '../http/pages.js';
import { filterRequestHeaders, hopByHop } from '../security/headers.js';
import type { Upstreams } from './upstreams.js';

// Streams a request to the route's upstream and the answer back. Nothing large is buffered: a
// 1 GB upload and a server-sent-events response go through chunk by chunk (only a response
// with a Content-Length up to SMALL_BODY is read whole, to send it in one write).

export interface ForwardInput {
  req: IncomingMessage;
  res: ServerResponse;
  ctx: RequestContext;
  route: Route;
  identity: Identity | null;
  requestId: string;
  /** Cookie names Portcullis owns: never forwarded, an upstream has no use for the session. */
  ownCookie: string;
  /** Whether the socket peer is a trusted proxy (its X-Forwarded-For is then extended, not replaced). */
  trustedPeer: boolean;
  peerIp: string;
  setCookies: string[];
  extraIdentityHeaders?: ReadonlySet<string> | undefined;
  /** From identityResponseHeaders(): the signed assertion, preset and claim headers, passed tokens. */
  identityHeaders?: ReadonlyArray<[string, string]> | undefined;
}

/** Upstream bodies up to this size (with a Content-Length) are sent in one write; larger ones stream. */
const SMALL_BODY = 64 * 1024;

const RESPONSE_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

/** The request headers the upstream gets: client headers minus identity/hop-by-hop, plus ours. */
export function upstreamHeaders(f: Omit<ForwardInput, 'res'>, upstream: URL): string[] {
  const { req, ctx, route, identity } = f;
  const raw = filterRequestHeaders(req.rawHeaders, f.extraIdentityHeaders);
  const out: string[] = [];
  let xff = '';
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (lower === 'host' || lower === 'x-forwarded-proto' || lower === 'x-forwarded-host' || lower === 'x-forwarded-port' || lower === 'x-request-id' || lower === 'forwarded' || lower === 'x-real-ip') continue;
    // Node's server has already answered `Expect: 100-continue` to the client, and undici
    // refuses the header outright (every curl upload over 1 MB would become a 502).
    if (lower === 'expect') continue;
    if (lower === 'x-forwarded-for') {
      if (f.trustedPeer) xff = xff ? `${xff}, ${raw[i + 1]}` : raw[i + 1]!;
      continue;
    }
    if (route.removeRequestHeaders.has(lower)) continue;
    // A credential Portcullis consumed is not the upstream's to see (a route that wants the
    // token asks with pass_access_token): the Portcullis token always, an IdP bearer token
    // when it is what proved the identity.
    if (lower === 'authorization' && (identity?.via === 'bearer' || /^portcullis\s/i.test(raw[i + 1]!))) continue;
    if (lower === 'cookie') {
      const kept = stripOwnCookies(raw[i + 1]!, f.ownCookie);
      if (kept) out.push(name, kept);
      continue;
    }
    out.push(name, raw[i + 1]!);
  }
  const host = route.preserveHost ? (ctx.port === (ctx.scheme === 'https' ? 443 : 80) ? ctx.host : `${ctx.host}:${ctx.port}`) : upstream.host;
  out.push('host', host);
  out.push('x-forwarded-for', xff ? `${xff}, ${f.peerIp}` : f.peerIp);
  out.push('x-forwarded-proto', ctx.scheme);
  out.push('x-forwarded-host', ctx.port === (ctx.scheme === 'https' ? 443 : 80) ? ctx.host : `${ctx.host}:${ctx.port}`);
  out.push('x-request-id', f.requestId);
  for (const [k, v] of f.identityHeaders ?? []) {
    for (let i = out.length - 2; i >= 0; i -= 2) if (out[i]!.toLowerCase() === k) out.splice(i, 2);
    out.push(k, v);
  }
  for (const [k, v] of route.setRequestHeaders) {
    for (let i = out.length - 2; i >= 0; i -= 2) if (out[i]!.toLowerCase() === k) out.splice(i, 2);
    out.push(k, v);
  }
  return out;
}

function stripOwnCookies(header: string, own: string): string {
  return header.split(';').filter((p) => {
    const name = p.slice(0, p.indexOf('=') === -1 ? undefined : p.indexOf('=')).trim();
    return name && name !== own && !name.startsWith(`${own}_`);
  }).join(';').trim();
}

export async function forward(f: ForwardInput, upstreams: Upstreams): Promise<{ upstreamStatus: number; upstreamMs: number }> {
  const { req, res, ctx, route } = f;
  const wantsJson = !ctx.browser;
  const picked = upstreams.pick(route);
  if (!picked) {
    sendPage(res, wantsJson, { status: 502, code: 'no_upstream', title: 'No upstream', message: `The route ${route.id} has no \`to\` upstream; it is only usable through forward-auth.`, requestId: f.requestId, setCookies: f.setCookies });
    return { upstreamStatus: 0, upstreamMs: 0 };
  }
  const started = performance.now();
  const hasBody = req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0' || req.headers['transfer-encoding'] !== undefined;
  const basePath = picked.url.pathname === '/' ? '' : picked.url.pathname.replace(/\/$/, '');
  // undici also takes an EventEmitter as `signal`: far cheaper per request than an
  // AbortController, whose signal Node 20 makes transferable (a measurable share of the CPU).
  const abort = new EventEmitter() as EventEmitter & { aborted?: boolean };
  const onClose = (): void => {
    if (!res.writableFinished) {
      abort.aborted = true;
      abort.emit('abort');
    }
  };
  res.once('close', onClose);
  try {
    const up = await picked.pool.request({
      path: `${basePath}${ctx.path}${ctx.query}`,
      method: req.method as 'GET',
      headers: upstreamHeaders(f, picked.url),
      body: hasBody ? req : null,
      signal: abort,
    });
    const headers: Record<string, string | string[]> = {};
    const drop = hopByHop([]);
    const connection = up.headers.connection;
    if (connection) for (const t of String(connection).split(',')) drop.add(t.trim().toLowerCase());
    for (const [k, v] of Object.entries(up.headers)) {
      if (v === undefined || RESPONSE_HOP.has(k) || drop.has(k)) continue;
      headers[k] = v;
    }
    for (const [k, v] of route.setResponseHeaders) headers[k] = v;
    if (f.setCookies.length) {
      const existing = headers['set-cookie'];
      headers['set-cookie'] = [...(existing === undefined ? [] : Array.isArray(existing) ? existing : [existing]), ...f.setCookies];
    }
    headers['x-request-id'] ??= f.requestId;
    res.writeHead(up.statusCode, headers);
    const upstreamMs = performance.now() - started;
    const length = Number(up.headers['content-length'] ?? -1);
    if (length >= 0 && length <= SMALL_BODY) {
      // A small body of known length is read whole and sent with the headers in one write:
      // streaming it costs a second write (and the pipeline's own bookkeeping) per response.
      const chunks: Buffer[] = [];
      for await (const chunk of up.body) chunks.push(chunk as Buffer);
      res.end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
    } else {
      await pipeline(up.body, res);
    }
    return { upstreamStatus: up.statusCode, upstreamMs };
  } catch (e) {
    const upstreamMs = performance.now() - started;
    if (res.headersSent) {
      // Mid-stream failure: all we can do is cut the connection so the client sees a truncated response.
      res.destroy();
      return { upstreamStatus: 0, upstreamMs };
    }
    if (abort.aborted) return { upstreamStatus: 0, upstreamMs };
    const timeout = e instanceof undiciErrors.HeadersTimeoutError || e instanceof undiciErrors.BodyTimeoutError || e instanceof undiciErrors.ConnectTimeoutError;
    sendPage(res, wantsJson, {
      status: timeout ? 504 : 502,
      code: timeout ? 'upstream_timeout' : 'upstream_unavailable',
      title: timeout ? 'The application did not answer in time' : 'The application is unavailable',
      message: timeout ? `The upstream for this route did not answer within ${Math.round(route.timeoutMs / 1000)} s.` : 'The upstream for this route could not be reached.',
      details: route.showErrorDetails ? [`${picked.url.origin}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`] : undefined,
      requestId: f.requestId,
      setCookies: f.setCookies,
    });
    return { upstreamStatus: 0, upstreamMs };
  } finally {
    res.off('close', onClose);
  }
}

/** WebSocket (and other Upgrade) requests: a 101 from the upstream, then bytes both ways. */
export async function forwardUpgrade(f: Omit<ForwardInput, 'res'>, socket: Duplex, head: Buffer, upstreams: Upstreams): Promise<void> {
  const picked = upstreams.pick(f.route);
  if (!picked) {
    socket.end('HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  // allow_websockets means WebSockets. Any other protocol (h2c above all) would hand the
  // client a raw tunnel to the upstream on which every later request skips the path rules.
  const protocol = String(f.req.headers.upgrade ?? '').trim();
  if (protocol.toLowerCase() !== 'websocket') {
    const text = 'Only WebSocket upgrades are proxied';
    socket.end(`HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-type: text/plain\r\nx-request-id: ${f.requestId}\r\ncontent-length: ${text.length + 1}\r\n\r\n${text}\n`);
    return;
  }
  const basePath = picked.url.pathname === '/' ? '' : picked.url.pathname.replace(/\/$/, '');
  try {
    const up = await picked.pool.upgrade({ path: `${basePath}${f.ctx.path}${f.ctx.query}`, method: 'GET', protocol, headers: upstreamHeaders(f, picked.url) });
    let head101 = 'HTTP/1.1 101 Switching Protocols\r\n';
    for (const [k, v] of Object.entries(up.headers)) {
      if (v === undefined) continue;
      for (const one of Array.isArray(v) ? v : [v]) head101 += `${k}: ${one}\r\n`;
    }
    socket.write(`${head101}\r\n`);
    if (head.length) up.socket.write(head);
    up.socket.pipe(socket);
    socket.pipe(up.socket);
    const close = (): void => {
      up.socket.destroy();
      socket.destroy();
    };
    up.socket.on('error', close).on('close', close);
    socket.on('error', close).on('close', close);
  } catch {
    socket.end('HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
  }
}
