import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { transportOf, upstreamLabel } from '../config/upstream-url.js';
import type { Logger } from '../observe/logger.js';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { errors as undiciErrors, upgrade, type Dispatcher } from './undici.js';
import type { ResponseHeaderRewrite, Route } from '../config/types.js';
import type { Identity, RequestContext } from '../decide/types.js';
import { codes, sendOutcome } from '../http/outcomes.js';
import { canonicalHeaderName, connectionTokens, forwardableName } from '../security/headers.js';
import { refuseUnsafeRewrite, rewrittenHost, upstreamTarget } from './rewrite.js';
import { affinityKey, type Balancer } from './balancer.js';
import type { Flight, Lane, Picked, Upstreams } from './upstreams.js';

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
  /** The session's id: what RING_HASH and MAGLEV routes keep a user on one upstream by. */
  sessionId?: string | undefined;
}

function affinityOf(input: Omit<ForwardInput, 'res'>): string | null {
  return affinityKey(input.route, input.sessionId, input.identity?.sub, input.ctx.clientIp);
}

/** Upstream bodies up to this size (with a Content-Length) are sent in one write; larger ones stream. */
const SMALL_BODY = 64 * 1024;

const RESPONSE_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]);

// What the proxy does with a client request header, by canonical name (lower-case, `_` read
// as `-`, so `X_Forwarded_For` cannot slip past as a different header to an upstream that
// folds them). Anything not listed is passed on, after filterRequestHeaders' rules.
const MANAGED = 1; // set by the proxy itself: the client's value is dropped
const XFF = 2; // extended when the peer is a trusted proxy, else replaced
const AUTHORIZATION = 3;
const COOKIE = 4;
const ROLES = new Map<string, number>([
  ['host', MANAGED],
  ['x-forwarded-proto', MANAGED],
  ['x-forwarded-host', MANAGED],
  ['x-forwarded-port', MANAGED],
  ['x-request-id', MANAGED],
  ['forwarded', MANAGED],
  ['x-real-ip', MANAGED],
  // Node's server has already answered `Expect: 100-continue` to the client, and undici
  // refuses the header outright (every curl upload over 1 MB would become a 502).
  ['expect', MANAGED],
  ['x-forwarded-for', XFF],
  ['authorization', AUTHORIZATION],
  ['cookie', COOKIE],
]);
const PORTCULLIS_SCHEME = /^portcullis\s/i;
const NO_HEADERS: ReadonlyArray<[string, string]> = [];

/** Per route, compiled once: the canonical names it removes from requests and sets on requests and responses. */
interface RouteHeaderNames {
  remove: ReadonlySet<string>;
  set: ReadonlySet<string>;
  response: ReadonlySet<string>;
}
const routeNames = new WeakMap<Route, RouteHeaderNames>();
function namesOf(route: Route): RouteHeaderNames {
  let names = routeNames.get(route);
  if (!names) {
    names = {
      remove: new Set([...route.removeRequestHeaders].map(canonicalHeaderName)),
      set: new Set(route.setRequestHeaders.map(([k]) => canonicalHeaderName(k))),
      response: new Set(route.setResponseHeaders.map(([k]) => k.toLowerCase())),
    };
    routeNames.set(route, names);
  }
  return names;
}

/**
 * The request headers the upstream gets, in one pass over the client's: identity, hop-by-hop
 * and Connection-named headers dropped (filterRequestHeaders' rules), the ones the proxy sets
 * itself replaced, Portcullis' own cookies and consumed credentials removed; then ours.
 */
export function upstreamHeaders(input: Omit<ForwardInput, 'res'>, upstream: URL): string[] {
  const { req, ctx, route, identity } = input;
  const raw = req.rawHeaders;
  const tokens = connectionTokens(raw);
  const extra = input.extraIdentityHeaders;
  const ids = input.identityHeaders ?? NO_HEADERS;
  const names = namesOf(route);
  const out: string[] = [];
  let xff = '';
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const canonical = forwardableName(name, value, tokens, extra);
    if (canonical === null) continue;
    if (names.remove.has(canonical) || names.set.has(canonical) || setBy(ids, canonical)) continue;
    const role = ROLES.get(canonical);
    if (role === undefined) {
      out.push(name, value);
    } else if (role === XFF) {
      // Only the exact spelling from a trusted proxy is believed; an underscore twin is dropped.
      if (input.trustedPeer && name.length === 15 && name.toLowerCase() === 'x-forwarded-for')
        xff = xff ? `${xff}, ${value}` : value;
    } else if (role === COOKIE) {
      const kept = stripOwnCookies(value, input.ownCookie);
      if (kept) out.push(name, kept);
    } else if (role === AUTHORIZATION) {
      // A credential Portcullis consumed is not the upstream's to see (a route that wants the
      // token asks with pass_access_token): the Portcullis token always, an IdP bearer token
      // when it is what proved the identity.
      if (identity?.via !== 'bearer' && !PORTCULLIS_SCHEME.test(value)) out.push(name, value);
    }
  }
  const clientHost =
    ctx.port === (ctx.scheme === 'https' ? 443 : 80) ? ctx.host : `${ctx.host}:${ctx.port}`;
  const own = (k: string, v: string): void => {
    if (!names.set.has(k) && !setBy(ids, k)) out.push(k, v);
  };
  const rewritten = rewrittenHost(route, req, ctx.path, clientHost);
  own('host', rewritten ?? (route.preserveHost ? clientHost : upstream.host));
  // The client's x-portcullis-* headers were dropped above, so this one is always ours.
  if (rewritten !== null) own('x-portcullis-original-host', clientHost);
  own('x-forwarded-for', xff ? `${xff}, ${input.peerIp}` : input.peerIp);
  own('x-forwarded-proto', ctx.scheme);
  own('x-forwarded-host', clientHost);
  own('x-request-id', input.requestId);
  for (const [k, v] of ids) if (!names.set.has(k)) out.push(k, v);
  for (const [k, v] of route.setRequestHeaders) out.push(k, v);
  return out;
}

function setBy(headers: ReadonlyArray<[string, string]>, canonical: string): boolean {
  for (let i = 0; i < headers.length; i++) if (headers[i]![0] === canonical) return true;
  return false;
}

/** The Cookie header without Portcullis' own cookies (the session, its chunks, the handoff nonce). */
export function stripOwnCookies(header: string, own: string): string {
  const chunkPrefix = `${own}_`;
  // The handoff nonce over https: the __Host- prefix forces Path=/ on it (authenticate/handoff.ts).
  const hostPrefix = `__Host-${own}_`;
  let out = '';
  let kept = false;
  let start = 0;
  while (start <= header.length) {
    let end = header.indexOf(';', start);
    if (end === -1) end = header.length;
    const part = header.slice(start, end);
    const eq = part.indexOf('=');
    const name = (eq === -1 ? part : part.slice(0, eq)).trim();
    if (name && name !== own && !name.startsWith(chunkPrefix) && !name.startsWith(hostPrefix)) {
      out = kept ? `${out};${part}` : part;
      kept = true;
    }
    start = end + 1;
  }
  return out.trim();
}

export interface ForwardResult {
  upstreamStatus: number;
  upstreamMs: number;
}

const NO_UPSTREAM: ForwardResult = { upstreamStatus: 0, upstreamMs: 0 };

/**
 * Sends the request to the route's upstream and its answer back. A raw undici dispatch, not
 * pool.request(): no body stream object, async iterator or header object per request, which
 * is most of what a small proxied request costs (docs/performance.md).
 */
export function forward(input: ForwardInput, upstreams: Upstreams): Promise<ForwardResult> {
  const { req, res, route } = input;
  const picked = upstreams.pick(route, affinityOf(input));
  if (!picked) {
    sendOutcome(res, !input.ctx.browser, codes.no_upstream, {
      message: `The route ${route.id} has no \`to\` upstream; it is only usable through forward-auth.`,
      requestId: input.requestId,
      setCookies: input.setCookies,
    });
    return Promise.resolve(NO_UPSTREAM);
  }
  const hasBody =
    (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') ||
    req.headers['transfer-encoding'] !== undefined;
  const target = upstreamTarget(route, picked.url, input.ctx);
  if (target === null) {
    refuseUnsafeRewrite(input);
    return Promise.resolve(NO_UPSTREAM);
  }
  const opts: Dispatcher.DispatchOptions = {
    path: target,
    method: req.method as Dispatcher.HttpMethod,
    headers: upstreamHeaders(input, picked.url),
    body: hasBody ? req : null,
  };
  return new Promise<ForwardResult>((resolve) =>
    new ProxyHandler(input, picked, resolve, opts, upstreams).start(),
  );
}

/**
 * How long a request may wait for one of the shared connections (src/proxy/upstreams.ts)
 * before it goes to a connection of its own: under load the wait is a few milliseconds; this
 * only fires when every shared connection is held by something slow that started together.
 */
const QUEUE_MS = 250;

type Controller = Dispatcher.DispatchController;

/** undici's handler interface for one proxied request: the upstream's answer, written to `res`. */
class ProxyHandler implements Dispatcher.DispatchHandler, Flight {
  lane: Lane | null = null;
  epoch = -1;
  streaming = false;
  /** undici's handle on the upstream request: pause/resume for backpressure, abort when the client leaves. */
  private controller: Controller | null = null;
  private clientGone = false;
  private status = 0;
  private upstreamMs = 0;
  /** Set while a small body is being collected, to go out with the head in one write. */
  private head: string[] | null = null;
  private chunks: Buffer[] | null = null;
  private settled = false;
  private readonly startedAt = performance.now();

  /** Set by Lane.choose while this request waits for a shared connection. */
  queued = false;
  private queueTimer: NodeJS.Timeout | null = null;

  private upstream: URL;
  private upstreamLane: Lane;
  /** Load-balanced routes only: which `to` this is, counted in flight until `finish`. */
  private readonly balancer: Balancer | null;
  private index: number;
  private counted = false;
  /** Upstreams whose connection failed (and why), for a retry on another. */
  private tried: number[] | null = null;
  private failures: string[] | null = null;

  constructor(
    private readonly input: ForwardInput,
    picked: Picked,
    private readonly done: (result: ForwardResult) => void,
    private opts: Dispatcher.DispatchOptions,
    private readonly upstreams: Upstreams,
  ) {
    this.upstream = picked.url;
    this.upstreamLane = picked.lane;
    this.balancer = picked.balancer;
    this.index = picked.index;
    input.res.once('close', this.onClientClose);
  }

  start(): void {
    if (this.balancer !== null) {
      this.balancer.started(this.index);
      this.counted = true;
    }
    // A body can be sent only once: such requests never wait in the queue (they could not be moved).
    const pool = this.upstreamLane.choose(this, Date.now(), this.opts.body === null);
    if (!this.queued) {
      pool.dispatch(this.opts, this);
      return;
    }
    this.queueTimer = setTimeout(this.onQueueTimeout, QUEUE_MS);
  }

  /** The lane has a shared connection for this waiting request. */
  go(): void {
    if (this.queueTimer !== null) {
      clearTimeout(this.queueTimer);
      this.queueTimer = null;
    }
    if (this.settled) {
      this.lane?.done(this);
      return;
    }
    this.upstreamLane.fast.dispatch(this.opts, this);
  }

  /** Still waiting, and the shared connections are stuck: leave the queue for a connection of its own. */
  private readonly onQueueTimeout = (): void => {
    this.queueTimer = null;
    if (!this.queued || this.settled || this.clientGone) return;
    // Connections turning over (a burst of short requests): keep the place in the queue.
    if (this.lane && !this.lane.stuck(Date.now())) {
      this.queueTimer = setTimeout(this.onQueueTimeout, QUEUE_MS);
      return;
    }
    this.lane?.done(this);
    this.upstreamLane.overflow().dispatch(this.opts, this);
  };

  private readonly onClientClose = (): void => {
    if (this.input.res.writableFinished) return;
    this.clientGone = true;
    // Still waiting: it leaves the queue and no upstream request is ever made.
    if (this.queued) this.onResponseError(undefined, new undiciErrors.RequestAbortedError());
    else this.controller?.abort(new undiciErrors.RequestAbortedError());
  };

  onRequestStart(controller: Controller, _context: unknown): void {
    this.lane?.connected(this, Date.now());
    if (this.queueTimer !== null) {
      clearTimeout(this.queueTimer);
      this.queueTimer = null;
    }
    this.controller = controller;
    if (this.clientGone) controller.abort(new undiciErrors.RequestAbortedError());
  }

  onResponseStart(
    controller: Controller,
    statusCode: number,
    _headers: IncomingHttpHeaders,
    _message?: string,
  ): void {
    if (statusCode < 200) return; // 103 Early Hints and the like: the final answer follows
    this.status = statusCode;
    this.upstreamMs = performance.now() - this.startedAt;
    // The raw list, not `headers`: that object has lost the upstream's spelling and order.
    // undici's HTTP/1.1 client (the only one these pools use) always fills it with Buffers.
    const { head, length } = responseHead(controller.rawHeaders as Buffer[], this.input);
    if (length >= 0 && length <= SMALL_BODY) {
      // A small body of known length goes out with the head in one write: streaming it costs
      // a second write per response.
      this.head = head;
      this.chunks = [];
      return;
    }
    const res = this.input.res;
    this.lane?.streamingStarted(this);
    if (!this.writeHead(head)) return;
    // Unknown length (server-sent events, chunked downloads): the client sees the response
    // start now, not with the first event.
    if (length < 0) res.flushHeaders();
    res.on('drain', () => controller.resume());
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.chunks !== null) {
      this.chunks.push(chunk);
      return;
    }
    // A full client buffer pauses the upstream socket until the client drains (backpressure both ways).
    if (!this.input.res.write(chunk)) controller.pause();
  }

  onResponseEnd(_controller: Controller, _trailers: IncomingHttpHeaders): void {
    const res = this.input.res;
    if (this.chunks !== null) {
      if (this.writeHead(this.head!)) {
        const chunks = this.chunks;
        res.end(
          chunks.length === 0 ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks),
        );
      }
    } else {
      res.end();
    }
    this.finish();
  }

  /** Also called before onRequestStart (a dispatch that fails at once), when there is no controller yet. */
  onResponseError(_controller: Controller | undefined, err: Error): void {
    const { res, route, requestId } = this.input;
    if (this.settled) return;
    if (this.balancer !== null && this.retryable(err)) {
      if (this.retry(err)) return;
      if (!this.upstreamMs) this.upstreamMs = performance.now() - this.startedAt;
      sendOutcome(res, !this.input.ctx.browser, codes.no_healthy_upstream, {
        message: `None of the ${route.to.length} upstreams of this route could be reached.`,
        details: route.showErrorDetails ? (this.failures ?? undefined) : undefined,
        requestId,
        setCookies: this.input.setCookies,
      });
      this.status = 0;
      this.finish();
      return;
    }
    if (!this.upstreamMs) this.upstreamMs = performance.now() - this.startedAt;
    if (res.headersSent) {
      // Mid-stream failure: all we can do is cut the connection so the client sees a truncated response.
      res.destroy();
    } else if (!this.clientGone) {
      const timeout =
        err instanceof undiciErrors.HeadersTimeoutError ||
        err instanceof undiciErrors.BodyTimeoutError ||
        err instanceof undiciErrors.ConnectTimeoutError;
      sendOutcome(
        res,
        !this.input.ctx.browser,
        timeout ? codes.upstream_timeout : codes.upstream_unavailable,
        {
          message: timeout
            ? `The upstream for this route did not answer within ${Math.round(route.timeoutMs / 1000)} s.`
            : 'The upstream for this route could not be reached.',
          details: route.showErrorDetails
            ? [
                `${upstreamLabel(this.upstream)}: ${(err as NodeJS.ErrnoException).code ?? err.message}`,
              ]
            : undefined,
          requestId,
          setCookies: this.input.setCookies,
        },
      );
    }
    this.status = 0;
    this.finish();
  }

  /**
   * A connection that failed before undici wrote anything (no onRequestStart yet, and the
   * body, if any, untouched) can go to another upstream whatever the method: the first
   * upstream never saw the request.
   */
  private retryable(err: Error): boolean {
    return (
      this.controller === null &&
      !this.clientGone &&
      !this.input.res.headersSent &&
      !(err instanceof undiciErrors.RequestAbortedError) &&
      (this.opts.body === null || !this.input.req.readableDidRead)
    );
  }

  /** Sends the request to the next untried upstream; false when every one has failed. */
  private retry(err: Error): boolean {
    const balancer = this.balancer!;
    const { route, ctx } = this.input;
    (this.failures ??= []).push(
      `${upstreamLabel(this.upstream)}: ${(err as NodeJS.ErrnoException).code ?? err.message}`,
    );
    (this.tried ??= []).push(this.index);
    this.uncount(true);
    if (this.queueTimer !== null) {
      clearTimeout(this.queueTimer);
      this.queueTimer = null;
    }
    this.lane?.done(this);
    for (let next = balancer.retry(this.tried); next >= 0; next = balancer.retry(this.tried)) {
      const picked = this.upstreams.at(route, balancer, next);
      const target = upstreamTarget(route, picked.url, ctx);
      if (target === null) {
        this.tried.push(next);
        continue;
      }
      this.upstream = picked.url;
      this.upstreamLane = picked.lane;
      this.index = next;
      this.opts = { ...this.opts, path: target, headers: upstreamHeaders(this.input, picked.url) };
      this.lane = null;
      this.epoch = -1;
      this.streaming = false;
      this.queued = false;
      this.start();
      return true;
    }
    return false;
  }

  private uncount(failed: boolean | null): void {
    if (!this.counted) return;
    this.counted = false;
    this.balancer!.ended(this.index, failed);
  }

  /** Node refuses some header values an upstream may send (control characters): a 502, not a crash. */
  private writeHead(head: string[]): boolean {
    try {
      this.input.res.writeHead(this.status, head);
      return true;
    } catch (error) {
      const { res, route, requestId } = this.input;
      this.chunks = null;
      sendOutcome(res, !this.input.ctx.browser, codes.upstream_bad_response, {
        message: 'The upstream for this route answered with a header that cannot be passed on.',
        details: route.showErrorDetails
          ? [
              `${upstreamLabel(this.upstream)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
            ]
          : undefined,
        requestId,
        setCookies: this.input.setCookies,
      });
      this.status = 0;
      this.controller?.abort(new undiciErrors.RequestAbortedError());
      this.finish();
      return false;
    }
  }

  private finish(): void {
    if (this.settled) return;
    this.settled = true;
    if (this.queueTimer !== null) clearTimeout(this.queueTimer);
    this.lane?.done(this);
    // Outlier detection counts what the upstream did: a 5xx, or no answer (status 0).
    if (this.counted)
      this.uncount(this.clientGone ? null : this.status === 0 || this.status >= 500);
    this.input.res.off('close', this.onClientClose);
    this.done({ upstreamStatus: this.status, upstreamMs: this.upstreamMs });
  }
}

/**
 * The response head for the client, as a flat [name, value, ...] list: the upstream's headers
 * without hop-by-hop ones (and those its Connection header names), the route's
 * set_response_headers, Portcullis' cookies after the upstream's, and the request id.
 */
function responseHead(raw: Buffer[], input: ForwardInput): { head: string[]; length: number } {
  const strings: string[] = new Array(raw.length);
  let connection: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1');
    const value = raw[i + 1]!.toString('latin1');
    strings[i] = name;
    strings[i + 1] = value;
    if (name.length === 10 && name.toLowerCase() === 'connection')
      connection = connection === null ? value : `${connection},${value}`;
  }
  let named: Set<string> | null = null;
  if (connection !== null) {
    for (const listed of connection.split(',')) {
      const token = listed.trim().toLowerCase();
      if (token && token !== 'keep-alive' && token !== 'close') (named ??= new Set()).add(token);
    }
  }
  const response = namesOf(input.route).response;
  const rewrites = input.route.responseHeaderRewrites;
  const head: string[] = [];
  let length = -1;
  let requestId = false;
  for (let i = 0; i < strings.length; i += 2) {
    const name = strings[i]!;
    const lower = name.toLowerCase();
    if (RESPONSE_HOP.has(lower) || (named !== null && named.has(lower)) || response.has(lower))
      continue;
    if (lower === 'content-length') length = Number(strings[i + 1]);
    else if (lower === 'x-request-id') requestId = true;
    const rules = rewrites === null ? undefined : rewrites.get(lower);
    head.push(name, rules === undefined ? strings[i + 1]! : rewriteValue(strings[i + 1]!, rules));
  }
  for (const [k, v] of input.route.setResponseHeaders) {
    head.push(k, v);
    if (k === 'x-request-id') requestId = true;
  }
  for (const cookie of input.setCookies) head.push('set-cookie', cookie);
  if (!requestId) head.push('x-request-id', input.requestId);
  return { head, length: Number.isSafeInteger(length) ? length : -1 };
}

/**
 * rewrite_response_headers: each rule in file order swaps its prefix for its value when the
 * header starts with it, as Pomerium does (a later rule sees the earlier one's result).
 */
function rewriteValue(value: string, rules: ReadonlyArray<ResponseHeaderRewrite>): string {
  for (const { prefix, value: replacement } of rules)
    if (value.startsWith(prefix)) value = replacement + value.slice(prefix.length);
  return value;
}

/** WebSocket (and other Upgrade) requests: a 101 from the upstream, then bytes both ways. */
export async function forwardUpgrade(
  input: Omit<ForwardInput, 'res'>,
  socket: Duplex,
  head: Buffer,
  upstreams: Upstreams,
  log: Logger | null = null,
): Promise<void> {
  const picked = upstreams.pick(input.route, affinityOf(input));
  const answer = (status: string, text = ''): void => {
    const body = text ? `${text}\n` : '';
    socket.end(
      `HTTP/1.1 ${status}\r\nconnection: close\r\n` +
        (body ? `content-type: text/plain\r\nx-request-id: ${input.requestId}\r\n` : '') +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  };
  if (!picked) return answer('502 Bad Gateway');
  // allow_websockets means WebSockets. Any other protocol (h2c above all) would hand the
  // client a raw tunnel to the upstream on which every later request skips the path rules.
  const protocol = String(input.req.headers.upgrade ?? '').trim();
  if (protocol.toLowerCase() !== 'websocket')
    return answer('400 Bad Request', 'Only WebSocket upgrades are proxied');
  const target = upstreamTarget(input.route, picked.url, input.ctx);
  if (target === null) return answer('400 Bad Request');
  // An h2c:// upstream speaks HTTP/2, where a WebSocket is no Upgrade but an extended CONNECT
  // stream (RFC 8441 section 5, which undici sends for an upgrade over HTTP/2): Portcullis
  // answers the client's HTTP/1.1 handshake itself, as Envoy does between the two.
  const h2 = transportOf(picked.url)?.h2c === true;
  const key = String(input.req.headers['sec-websocket-key'] ?? '');
  if (h2 && !WEBSOCKET_KEY.test(key))
    return answer('400 Bad Request', 'A WebSocket handshake needs a Sec-WebSocket-Key');
  let headers = upstreamHeaders(input, picked.url);
  // RFC 8441 section 5: "the Sec-WebSocket-Key and Sec-WebSocket-Accept header fields are not used".
  if (h2) headers = withoutHeader(headers, 'sec-websocket-key');
  try {
    const upgraded = await upgrade.call(picked.lane.overflow(), {
      path: target,
      method: 'GET',
      protocol: h2 ? 'websocket' : protocol,
      headers,
    });
    let head101 = 'HTTP/1.1 101 Switching Protocols\r\n';
    if (h2)
      head101 +=
        'upgrade: websocket\r\nconnection: Upgrade\r\n' +
        `sec-websocket-accept: ${websocketAccept(key)}\r\n`;
    for (const [k, v] of Object.entries(upgraded.headers)) {
      if (v === undefined || (h2 && H2_NOT_RELAYED.has(k))) continue;
      for (const one of Array.isArray(v) ? v : [v]) head101 += `${k}: ${one}\r\n`;
    }
    socket.write(`${head101}\r\n`);
    // undici armed the HTTP/2 stream's timer for the handshake (the route's `timeout`); the
    // stream is a tunnel now, whose only limit is idle_timeout, on the client socket below.
    if (h2) (upgraded.socket as Duplex & { setTimeout?: (ms: number) => unknown }).setTimeout?.(0);
    if (head.length) upgraded.socket.write(head);
    upgraded.socket.pipe(socket);
    socket.pipe(upgraded.socket);
    const close = (): void => {
      upgraded.socket.destroy();
      socket.destroy();
    };
    upgraded.socket.on('error', close).on('close', close);
    socket.on('error', close).on('close', close);
    // idle_timeout is Envoy's stream idle timeout: the tunnel closes after that long without a
    // byte either way. The client socket sees both directions (upstream bytes are written to
    // it), so its own inactivity timer is the tunnel's. 0 (the WebSocket default) = no limit.
    if (input.route.idleTimeoutMs > 0 && socket instanceof Socket)
      socket.setTimeout(input.route.idleTimeoutMs, close);
  } catch (e) {
    const detail = (e as Error)?.message ?? String(e);
    const noExtendedConnect = h2 && /Extended CONNECT/i.test(detail);
    log?.warn(
      {
        event: 'websocket_upstream_failed',
        requestId: input.requestId,
        route: input.route.id,
        upstream: upstreamLabel(picked.url),
        detail,
      },
      noExtendedConnect
        ? `upstream ${upstreamLabel(picked.url)} does not take WebSockets over HTTP/2 (it does not announce RFC 8441 extended CONNECT)`
        : 'WebSocket handshake with the upstream failed',
    );
    answer(
      '502 Bad Gateway',
      noExtendedConnect
        ? 'The upstream does not accept WebSockets over HTTP/2 (RFC 8441 extended CONNECT)'
        : '',
    );
  }
}

/** RFC 6455 section 4.1: the base64 of 16 random bytes. */
const WEBSOCKET_KEY = /^[A-Za-z0-9+/]{22}==$/;

/** RFC 6455 section 4.2.2: SHA-1 of the key and this GUID, in base64. */
function websocketAccept(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

/** An HTTP/2 answer's fields that mean nothing on the client's HTTP/1.1 101, or that Portcullis sets. */
const H2_NOT_RELAYED = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'sec-websocket-accept',
]);

function withoutHeader(flat: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2)
    if (flat[i]!.toLowerCase() !== name) out.push(flat[i]!, flat[i + 1]!);
  return out;
}
