import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  callback,
  handoff,
  signedOut,
  signIn,
  signOut,
  type AuthRequest,
} from '../authenticate/flow.js';
import { answerAdmin, isAdminPath } from '../admin/console.js';
import { cliLoginComplete, cliLoginStart } from '../authenticate/cli-login.js';
import { backchannelLogout, frontchannelLogout } from '../authenticate/idp-logout.js';
import { mePage, userinfo } from '../authenticate/me.js';
import { contextFromRequest } from '../decide/context.js';
import { decide, type Decision } from '../decide/decide.js';
import type { RequestContext } from '../decide/types.js';
import { codes, outcomeOf, sendOutcome } from '../http/outcomes.js';
import { renderRefusal } from '../http/refusal.js';
import { audienceHost, identityResponseHeaders } from '../identity/upstream-headers.js';
import { answerForwardAuth, isForwardAuthPath } from '../forward-auth/endpoints.js';
import { writeAccessLine } from '../observe/access-log.js';
import { requestIdFor } from '../observe/logger.js';
import type { Runtime } from '../runtime.js';
import { StoreUnavailableError } from '../session/types.js';
import { forward, forwardUpgrade } from './forward.js';
import { answerRedirect, answerResponse } from './rewrite.js';
import type { Upstreams } from './upstreams.js';

export interface ProxyState {
  /** Swapped on reload; each request reads it once at its start. */
  runtime: Runtime;
  upstreams: Upstreams;
}

const RESERVED = '/.portcullis/';
/** Where upstreams fetch the keys of X-Portcullis-Jwt-Assertion (also at /.portcullis/jwks.json). */
export const WELL_KNOWN_JWKS = '/.well-known/portcullis/jwks.json';

export function createRequestHandler(state: ProxyState) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const started = performance.now();
    const rt = state.runtime;
    const requestId = requestIdFor(req, rt.cfg.isTrustedProxy);
    handle(rt, state, req, res, requestId, started).catch((e: unknown) => {
      rt.log.error(
        { requestId, err: { message: (e as Error)?.message, stack: (e as Error)?.stack } },
        'unexpected error while handling a request',
      );
      sendOutcome(
        res,
        !String(req.headers.accept ?? '').includes('text/html'),
        codes.internal_error,
        {
          message: 'Portcullis could not handle this request. The error has been logged.',
          requestId,
        },
      );
    });
  };
}

async function handle(
  rt: Runtime,
  state: ProxyState,
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
  started: number,
): Promise<void> {
  const parsed = contextFromRequest(req, rt.cfg.isTrustedProxy);
  if (!parsed.ok) {
    sendOutcome(res, !String(req.headers.accept ?? '').includes('text/html'), codes.bad_request, {
      message: `This request was refused: ${parsed.reason}.`,
      requestId,
    });
    access(rt, req, res, null, 400, requestId, started, 'bad_request', parsed.reason);
    return;
  }
  const ctx = parsed.ctx;
  if (isForwardAuthPath(rt, ctx, req)) {
    const fa = await answerForwardAuth(rt, ctx, parsed.pathError, req, res, requestId);
    access(
      rt,
      req,
      res,
      fa.ctx,
      res.statusCode,
      requestId,
      started,
      fa.label,
      fa.reason,
      fa.decision,
    );
    return;
  }
  if (
    ctx.path === '/.portcullis' ||
    ctx.path.startsWith(RESERVED) ||
    ctx.path === WELL_KNOWN_JWKS ||
    ctx.path === rt.cfg.callbackPath
  ) {
    try {
      await portcullisEndpoint(rt, ctx, req, res, requestId);
    } catch (e) {
      // Sign-in, userinfo and the session page read the store too: an outage is a 503 there as well.
      if (!(e instanceof StoreUnavailableError)) throw e;
      await renderRefusal(
        { rt, ctx, req, res, requestId, setCookies: [] },
        { kind: 'unavailable', route: null, cause: e.source, reason: e.message },
      );
    }
    access(rt, req, res, ctx, res.statusCode, requestId, started, 'portcullis', ctx.path);
    return;
  }
  const decision = await decide(ctx, rt, { pathError: parsed.pathError });
  const authRequest: AuthRequest = {
    rt,
    ctx,
    req,
    res,
    requestId,
    setCookies: 'setCookies' in decision ? decision.setCookies : [],
  };
  let upstream: { upstreamStatus: number; upstreamMs: number } | null = null;
  switch (decision.kind) {
    case 'allow': {
      if (isUpgrade(req)) {
        // An Upgrade request arriving as a normal request means the client spoke HTTP/2 or the
        // upgrade event was not used: refuse rather than proxying half a handshake.
        sendOutcome(res, true, codes.bad_upgrade, {
          message: 'Upgrade requests are not supported here.',
          requestId,
        });
        break;
      }
      // Pomerium answers redirect and response routes itself, after the policy (a redirect
      // meant for everyone needs allow_public_unauthenticated_access, as in Pomerium).
      if (decision.route.redirect !== null || decision.route.response !== null) {
        const answer = {
          res,
          ctx,
          route: decision.route,
          requestId,
          setCookies: decision.setCookies,
        };
        if (decision.route.redirect !== null) answerRedirect(answer);
        else answerResponse(answer);
        break;
      }
      const identityHeaders = await identityResponseHeaders(
        rt,
        decision.route,
        decision.identity,
        decision.session,
        audienceHost(ctx),
      );
      upstream = await forward(
        {
          req,
          res,
          ctx,
          route: decision.route,
          identity: decision.identity,
          requestId,
          ownCookie: rt.cfg.cookie.name,
          trustedPeer: parsed.trustedPeer,
          peerIp: parsed.peerIp,
          setCookies: decision.setCookies,
          identityHeaders,
          extraIdentityHeaders: rt.extraIdentityHeaders,
          sessionId: decision.session?.sid,
        },
        state.upstreams,
      );
      break;
    }
    default:
      await renderRefusal(authRequest, decision);
  }
  access(
    rt,
    req,
    res,
    ctx,
    res.statusCode,
    requestId,
    started,
    decision.kind,
    reasonOf(decision),
    decision,
    upstream,
  );
}

function isUpgrade(req: IncomingMessage): boolean {
  return (
    req.headers.upgrade !== undefined && /\bupgrade\b/i.test(String(req.headers.connection ?? ''))
  );
}

function reasonOf(decision: Decision): string {
  switch (decision.kind) {
    case 'allow':
      return decision.policy ? decision.policy.reason : 'public route';
    case 'deny':
      return decision.policy.reason;
    default:
      return decision.reason;
  }
}

async function portcullisEndpoint(
  rt: Runtime,
  ctx: RequestContext,
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
): Promise<void> {
  const authRequest: AuthRequest = { rt, ctx, req, res, requestId, setCookies: [] };
  const sub =
    ctx.path === WELL_KNOWN_JWKS
      ? 'jwks.json'
      : ctx.path === rt.cfg.callbackPath
        ? 'callback'
        : ctx.path === '/.portcullis'
          ? ''
          : ctx.path.slice(RESERVED.length);
  if (sub === 'ping') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '3' });
    res.end('OK\n');
    return;
  }
  // The reserved prefix answers on every route host and the authenticate host, nowhere else.
  if (
    !rt.routes.knowsHost(ctx.scheme, ctx.host, ctx.port) &&
    !(rt.cfg.authenticateUrl && rt.cfg.authenticateUrl.origin === rt.origin(ctx))
  ) {
    await renderRefusal(authRequest, {
      kind: 'not_found',
      knownHost: false,
      reason: `no route for host ${ctx.host}`,
    });
    return;
  }
  if (isAdminPath(sub)) return answerAdmin(authRequest);
  const endpoint = Object.hasOwn(ENDPOINTS, sub) ? ENDPOINTS[sub]! : null;
  if (!endpoint) {
    sendOutcome(res, !ctx.browser, codes.not_found, {
      message: `${ctx.path} is not a Portcullis endpoint.`,
      requestId,
    });
    return;
  }
  if (!endpoint.methods.includes(ctx.method)) {
    sendOutcome(res, !ctx.browser, codes.method_not_allowed, {
      message: `${ctx.method} is not allowed on ${ctx.path}.`,
      requestId,
      headers: { allow: endpoint.methods.join(', ') },
    });
    return;
  }
  await endpoint.run(authRequest);
}

const READ = ['GET', 'HEAD'] as const;

/** Everything under /.portcullis/, on every route host and the authenticate host. */
const ENDPOINTS: Record<
  string,
  { methods: readonly string[]; run: (authRequest: AuthRequest) => Promise<void> | void }
> = {
  '': { methods: READ, run: mePage },
  userinfo: { methods: READ, run: userinfo },
  sign_in: { methods: READ, run: signIn },
  callback: { methods: READ, run: callback },
  handoff: { methods: READ, run: handoff },
  sign_out: { methods: [...READ, 'POST'], run: signOut },
  signed_out: { methods: READ, run: signedOut },
  'backchannel-logout': { methods: ['POST'], run: backchannelLogout },
  'frontchannel-logout': { methods: READ, run: frontchannelLogout },
  'jwks.json': { methods: READ, run: jwks },
  'api/v1/login': { methods: READ, run: cliLoginStart },
  'api/v1/login/complete': { methods: READ, run: cliLoginComplete },
};

async function jwks(authRequest: AuthRequest): Promise<void> {
  const body = await authRequest.rt.assertions.jwksJson();
  authRequest.res.writeHead(200, {
    'content-type': 'application/jwk-set+json',
    'cache-control': 'public, max-age=300',
    'content-length': String(Buffer.byteLength(body)),
    'x-request-id': authRequest.requestId,
  });
  authRequest.res.end(authRequest.ctx.method === 'HEAD' ? undefined : body);
}

export function createUpgradeHandler(state: ProxyState) {
  return (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const rt = state.runtime;
    const requestId = requestIdFor(req, rt.cfg.isTrustedProxy);
    const started = performance.now();
    const refuse = (status: number, text: string): void => {
      socket.end(
        `HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-type: text/plain\r\nx-request-id: ${requestId}\r\ncontent-length: ${text.length + 1}\r\n\r\n${text}\n`,
      );
    };
    socket.on('error', () => socket.destroy());
    void (async () => {
      const parsed = contextFromRequest(req, rt.cfg.isTrustedProxy);
      if (!parsed.ok) return refuse(400, 'Bad Request');
      const decision = await decide(parsed.ctx, rt, { pathError: parsed.pathError });
      access(
        rt,
        req,
        null,
        parsed.ctx,
        decision.kind === 'allow' ? 101 : 0,
        requestId,
        started,
        decision.kind,
        reasonOf(decision),
      );
      if (decision.kind === 'allow') {
        if (!decision.route.allowWebsockets) return refuse(403, 'Forbidden');
        const identityHeaders = await identityResponseHeaders(
          rt,
          decision.route,
          decision.identity,
          decision.session,
          audienceHost(parsed.ctx),
        );
        return forwardUpgrade(
          {
            req,
            ctx: parsed.ctx,
            route: decision.route,
            identity: decision.identity,
            requestId,
            ownCookie: rt.cfg.cookie.name,
            trustedPeer: parsed.trustedPeer,
            peerIp: parsed.peerIp,
            setCookies: [],
            identityHeaders,
            extraIdentityHeaders: rt.extraIdentityHeaders,
            sessionId: decision.session?.sid,
          },
          socket,
          head,
          state.upstreams,
          rt.log,
        );
      }
      if (decision.kind === 'login') return refuse(401, 'Unauthorized');
      if (decision.kind === 'deny') return refuse(403, 'Forbidden');
      if (decision.kind === 'not_found') return refuse(404, 'Not Found');
      if (decision.kind === 'unavailable') return refuse(503, 'Service Unavailable');
      return refuse(400, 'Bad Request');
    })().catch((e: unknown) => {
      rt.log.error(
        { requestId, err: { message: (e as Error)?.message } },
        'unexpected error during an upgrade',
      );
      socket.destroy();
    });
  };
}

function access(
  rt: Runtime,
  req: IncomingMessage,
  res: ServerResponse | null,
  ctx: RequestContext | null,
  status: number,
  requestId: string,
  started: number,
  decision: string,
  reason: string,
  d?: Decision,
  upstream?: { upstreamStatus: number; upstreamMs: number } | null,
): void {
  // A lookup, not an allocation: a proxied answer has no outcome, and its line no such field.
  const outcome = res === null ? undefined : outcomeOf(res);
  // Only an error status can have an error page to list: a proxied 200 allocates nothing here.
  const more =
    ctx === null
      ? {
          raw: {
            method: req.method ?? '',
            host: String(req.headers.host ?? ''),
            target: req.url ?? '',
            clientIp: req.socket.remoteAddress ?? '',
          },
        }
      : res !== null && status >= 400
        ? { outcome }
        : undefined;
  rt.observer.request(ctx, status, requestId, started, decision, reason, d, upstream, more);
  if (!rt.log.isLevelEnabled('info')) return;
  const route = d && 'route' in d && d.route ? d.route.id : undefined;
  const identity = d && 'identity' in d ? d.identity : null;
  writeAccessLine(rt.log, {
    requestId,
    route,
    method: req.method,
    host: ctx?.host ?? req.headers.host,
    path: ctx?.path ?? '(unparsed)',
    status,
    upstreamStatus: upstream?.upstreamStatus,
    upstreamMs: upstream ? Math.round(upstream.upstreamMs * 100) / 100 : undefined,
    ms: Math.round((performance.now() - started) * 100) / 100,
    user: identity?.email || identity?.user,
    decision,
    reason,
    outcome,
    configuredHosts: d?.kind === 'not_found' && !d.knownHost ? rt.routes.hosts() : undefined,
  });
}
