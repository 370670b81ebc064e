import type { IncomingMessage, ServerResponse } from 'node:http';
import { callback, signIn, signInUrl, signOut, type AuthRequest } from '../authenticate/flow.js';
import { sealReturn } from '../authenticate/return-state.js';
import { decide, type Decision } from '../decide/decide.js';
import type { RequestContext } from '../decide/types.js';
import { codes, sendOutcome } from '../http/outcomes.js';
import { sendJson, sendRedirect } from '../http/pages.js';
import { renderRefusal, unavailableCode } from '../http/refusal.js';
import { audienceHost, identityResponseHeaders } from '../identity/upstream-headers.js';
import type { Runtime } from '../runtime.js';
import { normalizeIp } from '../security/cidr.js';
import { redirectParam } from '../security/redirect.js';
import { hostAllowed, hostBinding } from './binding.js';
import type { Contract } from './contracts.js';
import { originalContext } from './context.js';
import { lookupEndpoint, NATIVE_PREFIX } from './registry.js';

// Forward-auth: a proxy asks "may this request pass?" and renders our answer its own way. Every
// endpoint asks the same decide() as the reverse proxy; only the translation differs, as the
// contract of the endpoint says (contracts.ts). Which path is which endpoint: registry.ts.
// See docs/recipes/contracts.md for the contracts and their sources.

const PORTCULLIS_PING = '/.portcullis/ping';
// Headers only a forward-auth request carries. oauth2-proxy once answered its health check to
// any request with the probe's User-Agent, and auth_request passes the client's User-Agent:
// a health answer must never be mistaken for "allowed".
const FORWARD_AUTH_MARKERS = [
  'x-original-url',
  'x-original-uri',
  'x-original-method',
  'x-forwarded-uri',
  'x-forwarded-method',
];

const hasMarkers = (req: IncomingMessage): boolean =>
  FORWARD_AUTH_MARKERS.some((h) => req.headers[h] !== undefined);

/** Cheap test run on every request: is this path answered by this module? */
export function isForwardAuthPath(rt: Runtime, ctx: RequestContext, req: IncomingMessage): boolean {
  const path = ctx.path;
  if (path.startsWith(NATIVE_PREFIX) || path === '/.portcullis/auth') return true;
  if (path === PORTCULLIS_PING) return hasMarkers(req);
  if (rt.cfg.compat.length === 0) return false;
  if ((path === '/' || path === '/logout') && isAutheliaPortal(rt, ctx)) return true;
  return lookupEndpoint(path, req.url ?? '', rt.cfg.compat).found !== 'none';
}

/**
 * Authelia's portal on the authenticate host, where no route serves the host (which would
 * otherwise own these paths): its root with `rd`, where the nginx snippets' legacy method sends
 * every 401 (`https://auth.example.com/?rd=<original URL>`, Authelia docs,
 * integration/proxies/nginx, v4.37 and the "Legacy Method" of v4.38+), is a sign-in; `/logout`
 * (optionally `?rd=`, the sign-out link Authelia's users give their applications) is a sign-out.
 */
function isAutheliaPortal(rt: Runtime, ctx: RequestContext): boolean {
  return (
    rt.cfg.compat.includes('authelia') &&
    rt.cfg.authenticateUrl !== null &&
    rt.cfg.authenticateUrl.origin === rt.origin(ctx) &&
    !rt.routes.knowsHost(ctx.scheme, ctx.host, ctx.port) &&
    (ctx.path === '/logout' || redirectParam(ctx.query, 'rd') !== undefined)
  );
}

export interface ForwardAuthOutcome {
  /** The request that was judged (the original one when the proxy described it). */
  ctx: RequestContext;
  decision: Decision | undefined;
  label: string;
  reason: string;
}

/** Answers a path isForwardAuthPath accepted. */
export async function answerForwardAuth(
  rt: Runtime,
  ctx: RequestContext,
  pathError: string | undefined,
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
): Promise<ForwardAuthOutcome> {
  const path = ctx.path;
  if ((path === '/' || path === '/logout') && isAutheliaPortal(rt, ctx)) {
    await browserEndpoint(rt, ctx, req, res, requestId, path === '/' ? 'start' : 'sign_out');
    return { ctx, decision: undefined, label: 'portcullis', reason: `authelia portal ${path}` };
  }
  const found =
    path === PORTCULLIS_PING ? null : lookupEndpoint(path, req.url ?? '', rt.cfg.compat);
  if (found === null || (found.found === 'exact' && found.entry.handling.kind === 'health')) {
    if (hasMarkers(req)) {
      sendOutcome(res, true, codes.not_a_forward_auth_endpoint, {
        message: `${path} is a health check, not a forward-auth endpoint: point the proxy at /.portcullis/auth/<proxy>.`,
        requestId,
      });
      return {
        ctx,
        decision: undefined,
        label: 'health_refused',
        reason: 'forward-auth headers on a health endpoint',
      };
    }
    const body = 'OK\n';
    res.writeHead(200, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': String(body.length),
      'cache-control': 'no-store',
    });
    res.end(body);
    return { ctx, decision: undefined, label: 'health', reason: path };
  }
  const arrival = { ctx, pathError };
  switch (found.found) {
    case 'prefix':
      if (found.entry.handling.kind === 'judge')
        return judge(rt, arrival, req, res, requestId, found.entry.handling.contract, found.rest);
      break;
    case 'encoded_prefix':
      sendOutcome(res, !ctx.browser, codes.bad_request, {
        message: 'The forward-auth path must be spelled literally.',
        requestId,
      });
      return {
        ctx,
        decision: undefined,
        label: 'forward_auth',
        reason: 'encoded forward-auth prefix',
      };
    case 'exact': {
      const handling = found.entry.handling;
      if (handling.kind === 'judge')
        return judge(
          rt,
          arrival,
          req,
          res,
          requestId,
          handling.variant ? handling.variant(ctx.query) : handling.contract,
        );
      if (handling.kind === 'browser') {
        await browserEndpoint(rt, ctx, req, res, requestId);
        return { ctx, decision: undefined, label: 'portcullis', reason: path };
      }
      break;
    }
    case 'none':
      break;
  }
  sendOutcome(res, !ctx.browser, codes.not_found, {
    message: `${path} is not a forward-auth endpoint. Use /.portcullis/auth/nginx, /traefik, /caddy or /envoy.`,
    requestId,
  });
  return {
    ctx,
    decision: undefined,
    label: 'forward_auth',
    reason: 'unknown forward-auth endpoint',
  };
}

/** Header values as the proxies will copy them: UTF-8 bytes, no control characters. */
function headerValue(s: string): string {
  // eslint-disable-next-line no-control-regex
  return Buffer.from(s.replace(/[\u0000-\u001f\u007f]/g, ''), 'utf8').toString('latin1');
}

async function judge(
  rt: Runtime,
  arrival: { ctx: RequestContext; pathError: string | undefined },
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
  contract: Contract,
  envoyTarget?: string,
): Promise<ForwardAuthOutcome> {
  const original = originalContext(
    req,
    arrival,
    contract.source,
    rt.cfg.isTrustedProxy,
    envoyTarget,
    rt.routes,
  );
  if (!original.ok) {
    if (original.misconfigured) {
      if (misconfigurationNews(rt, original.reason))
        rt.log.warn(
          { requestId, event: 'forward_auth_misconfigured', detail: original.reason },
          'forward-auth request does not describe the original request',
        );
    } else
      rt.log.warn(
        { requestId, event: 'forward_auth_refused', detail: original.reason },
        'forward-auth request refused',
      );
    // nginx would turn a 400 into a 500; for it a malformed description is simply not allowed.
    const status = contract.style === 'nginx' ? 403 : original.status;
    sendOutcome(
      res,
      !arrival.ctx.browser,
      original.misconfigured ? codes.forward_auth_misconfigured : codes.bad_request,
      {
        status,
        message: original.misconfigured
          ? 'The proxy in front of this site is misconfigured; the operator can find the details in the log under this request id.'
          : `This request was refused: ${original.reason}.`,
        requestId,
      },
    );
    return {
      ctx: arrival.ctx,
      decision: undefined,
      label: 'forward_auth',
      reason: original.reason,
    };
  }
  const ctx = original.ctx;
  // Envoy's check path carries the original query, so only the other contracts have a URL of their own.
  if (contract.source !== 'path') {
    const bound = boundHost(rt, arrival.ctx, ctx, req, res, requestId, contract);
    if (bound !== null) return { ctx, decision: undefined, label: 'forward_auth', reason: bound };
  }
  const decision = await decide(ctx, rt, {
    pathError: original.pathError,
    asSent: original.asSent,
  });
  const label = `forward_auth:${decision.kind}`;
  const out = { ctx, decision: decision, label };
  const setCookies = 'setCookies' in decision ? decision.setCookies : [];
  const authRequest: AuthRequest = { rt, ctx, req, res, requestId, setCookies };

  if (decision.kind === 'allow' && contract.constraints) {
    const unmet = contract.constraints(arrival.ctx.query, decision.identity);
    if (unmet !== null) {
      sendOutcome(res, true, decision.identity ? codes.access_denied : codes.unauthenticated, {
        message: unmet,
        requestId,
        setCookies,
      });
      return { ...out, reason: unmet };
    }
  }

  if (decision.kind === 'allow') {
    const headers: Record<string, string | string[]> = {
      'cache-control': 'no-store',
      'x-request-id': requestId,
      'content-length': '0',
    };
    for (const [k, v] of contract.headers(decision.identity))
      headers[k.toLowerCase()] = headerValue(v);
    // The signed assertion, the route's header presets and claim headers: the same set the
    // reverse proxy sends upstream (proxies copy them with authResponseHeaders/copy_headers).
    for (const [k, v] of await identityResponseHeaders(
      rt,
      decision.route,
      decision.identity,
      decision.session,
      audienceHost(ctx),
      'forward-auth',
    ))
      headers[k] = v;
    if (setCookies.length) headers['set-cookie'] = setCookies;
    res.writeHead(contract.allowStatus, headers);
    res.end();
    return { ...out, reason: decision.policy ? decision.policy.reason : 'public route' };
  }

  if (decision.kind === 'login' && decision.tokenError !== undefined) {
    // A refused bearer token is never a reason to show a login page.
    await renderRefusal(authRequest, decision);
    return { ...out, reason: decision.reason };
  }
  if (decision.kind === 'login') {
    const returnTo = `${rt.origin(ctx)}${ctx.path}${ctx.query}`;
    const signin = contract.signInPath
      ? `${rt.origin(ctx)}${contract.signInPath}?return=${sealReturn(rt, ctx.now, returnTo)}`
      : signInUrl(rt, ctx, returnTo);
    if (contract.style === 'redirect' && ctx.browser) {
      if (
        contract.seeOther &&
        ctx.method !== 'GET' &&
        ctx.method !== 'HEAD' &&
        ctx.method !== 'OPTIONS'
      ) {
        res.writeHead(303, {
          location: signin,
          'cache-control': 'no-store',
          'x-request-id': requestId,
          'content-length': '0',
          ...(setCookies.length ? { 'set-cookie': setCookies } : {}),
        });
        res.end();
      } else sendRedirect(res, signin, setCookies, requestId);
    } else {
      sendOutcome(res, true, codes.unauthenticated, {
        message: 'This resource needs a session or a bearer token.',
        requestId,
        setCookies,
        headers: {
          'www-authenticate': 'Bearer realm="portcullis"',
          ...(ctx.browser || contract.alwaysLocation ? { location: signin } : {}),
        },
      });
    }
    return { ...out, reason: decision.reason };
  }

  const reason = decision.kind === 'deny' ? decision.policy.reason : decision.reason;
  if (contract.style === 'nginx') {
    if (decision.kind === 'not_found' && !decision.knownHost)
      rt.log.warn(
        {
          requestId,
          event: 'forward_auth_unknown_host',
          host: ctx.host,
          port: ctx.port,
          scheme: ctx.scheme,
          configuredHosts: rt.routes.hosts(),
        },
        'forward-auth asked about a host no route serves',
      );
    // 401 would start a login that cannot help, anything but 2xx/401/403 becomes nginx's 500:
    // everything that is not "allow" or "sign in" is a 403 for nginx. A store outage is not a
    // decision, and nginx's 500 is the truth there.
    if (decision.kind === 'unavailable')
      sendOutcome(res, true, unavailableCode(decision.cause), {
        message: 'This request cannot be checked right now.',
        requestId,
        setCookies,
      });
    else
      sendOutcome(
        res,
        true,
        decision.kind === 'deny'
          ? codes.access_denied
          : decision.kind === 'not_found'
            ? codes.not_found
            : codes.bad_request,
        { status: 403, message: 'Access denied.', requestId, setCookies },
      );
    return { ...out, reason };
  }
  await renderRefusal(authRequest, decision);
  return { ...out, reason };
}

const unboundWarned = new WeakSet<object>();
const MISCONFIGURED_EVERY_MS = 60_000;
const misconfiguredAt = new WeakMap<object, Map<string, number>>();

/**
 * A misconfigured proxy fails every request it sends, and one line says what to fix: once a
 * minute per reason and config, so a busy site does not bury its other log lines.
 */
function misconfigurationNews(rt: Runtime, reason: string): boolean {
  let seen = misconfiguredAt.get(rt.cfg);
  if (!seen) misconfiguredAt.set(rt.cfg, (seen = new Map()));
  const now = Date.now();
  const last = seen.get(reason);
  if (last !== undefined && now - last < MISCONFIGURED_EVERY_MS) return false;
  // The reasons are a handful of fixed sentences, but bound the map all the same.
  if (seen.size >= 64) seen.clear();
  seen.set(reason, now);
  return true;
}

/**
 * The host binding of the auth URL (binding.ts): null when the original host may be judged here,
 * else the reason, with the answer already sent.
 */
function boundHost(
  rt: Runtime,
  arrival: RequestContext,
  ctx: RequestContext,
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
  contract: Contract,
): string | null {
  const binding = hostBinding(arrival.query);
  if (!binding.ok) {
    rt.log.warn(
      { requestId, event: 'forward_auth_misconfigured', detail: binding.reason },
      'forward-auth URL has a malformed host binding',
    );
    sendOutcome(res, true, codes.forward_auth_misconfigured, {
      message:
        'The proxy in front of this site is misconfigured; the operator can find the details in the log under this request id.',
      requestId,
    });
    return binding.reason;
  }
  if (binding.patterns === null) {
    // Safe only where the proxy itself sends nothing but its own hosts here (a Traefik router
    // with a Host rule, a Caddy site block); said once, so the operator can bind the location.
    // Decided once per config: listing the hosts allocates, and this runs on every request.
    if (!unboundWarned.has(rt.cfg) && isTrustedPeer(rt, req)) {
      unboundWarned.add(rt.cfg);
      if (rt.routes.hosts().length > 1)
        rt.log.warn(
          { requestId, event: 'forward_auth_unbound', endpoint: arrival.path },
          "forward-auth URL names no host (?host=...): the client's Host chooses which route is judged; see docs/recipes",
        );
    }
    return null;
  }
  if (hostAllowed(binding.patterns, ctx.host, ctx.port)) return null;
  const reason = `host ${ctx.host}:${ctx.port} is not one this auth location protects (${arrival.query.slice(1, 200)})`;
  rt.log.warn(
    {
      requestId,
      event: 'forward_auth_wrong_host',
      host: ctx.host,
      port: ctx.port,
      binding: arrival.query.slice(1, 200),
    },
    'forward-auth asked about a host its URL does not protect',
  );
  // 403 for every proxy: nginx would turn a 400 or 421 into a 500, and no sign-in can help.
  sendOutcome(res, contract.style === 'nginx' || !ctx.browser, codes.wrong_host, {
    message: 'This site does not serve the host this request named.',
    requestId,
  });
  return reason;
}

function isTrustedPeer(rt: Runtime, req: IncomingMessage): boolean {
  return rt.cfg.isTrustedProxy(normalizeIp(req.socket.remoteAddress ?? ''));
}

/** Browser-facing drop-in endpoints: the same sign-in, callback and sign-out as /.portcullis/. */
async function browserEndpoint(
  rt: Runtime,
  ctx: RequestContext,
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
  named?: 'start' | 'sign_out',
): Promise<void> {
  const authRequest: AuthRequest = { rt, ctx, req, res, requestId, setCookies: [] };
  // Like /.portcullis/: on route hosts and the authenticate host only, never a default route.
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
  const method = ctx.method;
  const get = method === 'GET' || method === 'HEAD';
  const action = named ?? ctx.path.slice(ctx.path.lastIndexOf('/') + 1);
  switch (action) {
    case 'start':
    case 'sign_in':
      if (get) return signIn(authRequest);
      break;
    case 'callback':
      // The same callback: with `authenticate_callback_path: /oauth2/callback` the redirect URI
      // already registered at the IdP for oauth2-proxy keeps working unchanged.
      if (get) return callback(authRequest);
      break;
    case 'sign_out':
      // On the authenticate host (every host is, without authenticate_service_url) oauth2-proxy's
      // sign-out is local, as its users know it; elsewhere the authenticate host's session must end too.
      if (get || method === 'POST')
        return signOut(authRequest, {
          atIdp: !ctx.path.startsWith('/oauth2/') || !rt.isAuthHost(ctx),
        });
      break;
    case 'userinfo':
      if (get) {
        const found = await rt.sessions.lookup(ctx);
        if (!found.identity) {
          sendJson(
            res,
            401,
            { error: 'unauthenticated', message: 'no valid session', request_id: requestId },
            {
              'x-request-id': requestId,
              ...(found.setCookies.length ? { 'set-cookie': found.setCookies } : {}),
            },
          );
          return;
        }
        const id = found.identity;
        // oauth2-proxy's shape: empty groups and preferredUsername are left out.
        sendJson(
          res,
          200,
          {
            user: id.user,
            email: id.email,
            ...(id.groups.length ? { groups: id.groups } : {}),
            ...(id.preferredUsername ? { preferredUsername: id.preferredUsername } : {}),
          },
          { 'x-request-id': requestId },
        );
        return;
      }
      break;
  }
  sendOutcome(res, !ctx.browser, codes.method_not_allowed, {
    message: `${method} is not allowed on ${ctx.path}.`,
    requestId,
    headers: { allow: action === 'sign_out' ? 'GET, HEAD, POST' : 'GET, HEAD' },
  });
}
