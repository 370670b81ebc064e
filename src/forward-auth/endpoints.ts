import type { IncomingMessage, ServerResponse } from 'node:http';
import { callback, signIn, signInUrl, signOut, type AuthRequest } from '../authenticate/flow.js';
import { decide, type Decision } from '../decide/decide.js';
import type { Identity, RequestContext } from '../decide/types.js';
import { sendJson, sendPage, sendRedirect } from '../http/pages.js';
import { renderRefusal } from '../proxy/handler.js';
import { audienceHost, identityResponseHeaders } from '../identity/upstream-headers.js';
import type { Runtime } from '../runtime.js';
import { normalizeIp } from '../security/cidr.js';
import { hostAllowed, hostBinding } from './binding.js';
import { originalContext, type OriginSource } from './context.js';

// Forward-auth: a proxy asks "may this request pass?" and renders our answer its own way. Every
// endpoint asks the same decide() as the reverse proxy; only the translation differs:
//
//   in   where the original request is described (OriginSource)
//   out  which status means allow, what "no session" looks like, which identity headers
//
// nginx cannot pass a redirect (any status but 2xx, 401 and 403 becomes a 500), so its family
// answers 401 and carries the sign-in URL in Location for `error_page 401`. Traefik, Caddy and
// Envoy hand our answer to the browser as is, so there a browser gets the 302 directly.
// See docs/recipes/contracts.md for the contracts and their sources.

type IdentityHeaders = (id: Identity | null) => Array<[string, string]>;

interface Contract {
  source: OriginSource;
  /** nginx family: 401 + Location; redirect family: 302 for a browser, 401 for an API client. */
  style: 'nginx' | 'redirect';
  allowStatus: 200 | 202;
  headers: IdentityHeaders;
  /** Authelia: 303 after a non-GET, like its own portal redirect. */
  seeOther?: boolean;
  /** Authelia auth-request: Location on every 401, since its nginx recipe redirects unconditionally. */
  alwaysLocation?: boolean;
}

const joined = (groups: string[], sep: string): string => groups.join(sep);

// Always every header, empty when unknown: Caddy 2.6 copies a missing header as the literal
// placeholder text, and an absent header would let a client's own copy through some proxies.
const portcullisHeaders: IdentityHeaders = (id) => [
  ['X-Forwarded-User', id?.user ?? ''],
  ['X-Forwarded-Email', id?.email ?? ''],
  ['X-Forwarded-Groups', joined(id?.groups ?? [], ',')],
  ['X-Forwarded-Preferred-Username', id?.preferredUsername ?? ''],
];
// oauth2-proxy --set-xauthrequest. The access token is deliberately not offered: tokens reach
// an upstream only where a route asks for them.
const oauth2Headers: IdentityHeaders = (id) => [
  ['X-Auth-Request-User', id?.user ?? ''],
  ['X-Auth-Request-Email', id?.email ?? ''],
  ['X-Auth-Request-Groups', joined(id?.groups ?? [], ',')],
  ['X-Auth-Request-Preferred-Username', id?.preferredUsername ?? ''],
];
// Authentik outpost addHeaders: groups are pipe-separated, uid is the subject.
const authentikHeaders: IdentityHeaders = (id) => [
  ['X-authentik-username', id ? id.preferredUsername || id.user : ''],
  ['X-authentik-groups', joined(id?.groups ?? [], '|')],
  ['X-authentik-email', id?.email ?? ''],
  ['X-authentik-name', id?.name ?? ''],
  ['X-authentik-uid', id?.sub ?? ''],
];
// Authelia: Remote-Groups comma-separated, Remote-User the login name.
const autheliaHeaders: IdentityHeaders = (id) => [
  ['Remote-User', id ? id.preferredUsername || id.user : ''],
  ['Remote-Groups', joined(id?.groups ?? [], ',')],
  ['Remote-Email', id?.email ?? ''],
  ['Remote-Name', id?.name ?? ''],
];

const NATIVE: Record<string, Contract> = {
  '/.portcullis/auth/nginx': { source: 'original-url', style: 'nginx', allowStatus: 200, headers: portcullisHeaders },
  '/.portcullis/auth/traefik': { source: 'forwarded', style: 'redirect', allowStatus: 200, headers: portcullisHeaders },
  '/.portcullis/auth/caddy': { source: 'forwarded', style: 'redirect', allowStatus: 200, headers: portcullisHeaders },
};
const NATIVE_ENVOY: Contract = { source: 'path', style: 'redirect', allowStatus: 200, headers: portcullisHeaders };

const OAUTH2_AUTH: Contract = { source: 'original-url', style: 'nginx', allowStatus: 202, headers: oauth2Headers };
const AUTHENTIK: Record<string, Contract> = {
  '/outpost.goauthentik.io/auth/nginx': { source: 'original-url', style: 'nginx', allowStatus: 200, headers: authentikHeaders },
  '/outpost.goauthentik.io/auth/traefik': { source: 'forwarded', style: 'redirect', allowStatus: 200, headers: authentikHeaders },
  '/outpost.goauthentik.io/auth/caddy': { source: 'forwarded', style: 'redirect', allowStatus: 200, headers: authentikHeaders },
};
const AUTHENTIK_ENVOY: Contract = { source: 'path', style: 'redirect', allowStatus: 200, headers: authentikHeaders };
const AUTHELIA: Record<string, Contract> = {
  '/api/authz/forward-auth': { source: 'forwarded', style: 'redirect', allowStatus: 200, headers: autheliaHeaders, seeOther: true },
  '/api/authz/auth-request': { source: 'original-url', style: 'nginx', allowStatus: 200, headers: autheliaHeaders, alwaysLocation: true },
  '/api/verify': { source: 'original-url', style: 'nginx', allowStatus: 200, headers: autheliaHeaders, alwaysLocation: true },
};
const AUTHELIA_ENVOY: Contract = { source: 'path', style: 'redirect', allowStatus: 200, headers: autheliaHeaders, seeOther: true };

/** Endpoints whose original path follows a prefix; matched on the raw request-target (see envoyTarget). */
const PATH_PREFIXES: Array<{ prefix: string; contract: Contract; compat: 'authentik' | 'authelia' | null }> = [
  { prefix: '/.portcullis/auth/envoy', contract: NATIVE_ENVOY, compat: null },
  { prefix: '/outpost.goauthentik.io/auth/envoy', contract: AUTHENTIK_ENVOY, compat: 'authentik' },
  { prefix: '/api/authz/ext-authz', contract: AUTHELIA_ENVOY, compat: 'authelia' },
];

const OAUTH2_BROWSER = new Set(['/oauth2/start', '/oauth2/sign_in', '/oauth2/callback', '/oauth2/sign_out', '/oauth2/userinfo']);
const AUTHENTIK_BROWSER = new Set(['/outpost.goauthentik.io/start', '/outpost.goauthentik.io/callback', '/outpost.goauthentik.io/sign_out']);
const HEALTH = new Set(['/.portcullis/ping', '/ping', '/ready']);
// Headers only a forward-auth request carries. oauth2-proxy once answered its health check to
// any request with the probe's User-Agent, and auth_request passes the client's User-Agent:
// a health answer must never be mistaken for "allowed".
const FORWARD_AUTH_MARKERS = ['x-original-url', 'x-original-uri', 'x-original-method', 'x-forwarded-uri', 'x-forwarded-method'];

function rawPrefixMatch(url: string, prefix: string): string | null {
  if (!url.startsWith(prefix)) return null;
  const rest = url.slice(prefix.length);
  return rest === '' || rest[0] === '/' || rest[0] === '?' ? rest : null;
}

function compatOn(rt: Runtime, name: 'oauth2-proxy' | 'authentik' | 'authelia'): boolean {
  return rt.cfg.compat.includes(name);
}

/** Cheap test run on every request: is this path answered by this module? */
export function isForwardAuthPath(rt: Runtime, ctx: RequestContext, req: IncomingMessage): boolean {
  const p = ctx.path;
  if (p.startsWith('/.portcullis/auth/') || p === '/.portcullis/auth') return true;
  if (p === '/.portcullis/ping') return FORWARD_AUTH_MARKERS.some((h) => req.headers[h] !== undefined);
  if (rt.cfg.compat.length === 0) return false;
  const url = req.url ?? '';
  if (compatOn(rt, 'oauth2-proxy') && (p === '/oauth2/auth' || OAUTH2_BROWSER.has(p) || p === '/ping' || p === '/ready')) return true;
  if (compatOn(rt, 'authentik') && (AUTHENTIK[p] !== undefined || AUTHENTIK_BROWSER.has(p) || rawPrefixMatch(url, '/outpost.goauthentik.io/auth/envoy') !== null)) return true;
  if (compatOn(rt, 'authelia') && (AUTHELIA[p] !== undefined || rawPrefixMatch(url, '/api/authz/ext-authz') !== null)) return true;
  return false;
}

export interface ForwardAuthOutcome {
  /** The request that was judged (the original one when the proxy described it). */
  ctx: RequestContext;
  decision: Decision | undefined;
  label: string;
  reason: string;
}

/** Answers a path isForwardAuthPath accepted. */
export async function answerForwardAuth(rt: Runtime, ctx: RequestContext, pathError: string | undefined, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<ForwardAuthOutcome> {
  const p = ctx.path;
  const url = req.url ?? '';

  if (HEALTH.has(p)) {
    if (FORWARD_AUTH_MARKERS.some((h) => req.headers[h] !== undefined)) {
      sendPage(res, true, { status: 400, code: 'not_a_forward_auth_endpoint', title: 'Bad request', message: `${p} is a health check, not a forward-auth endpoint: point the proxy at /.portcullis/auth/<proxy>.`, requestId });
      return { ctx, decision: undefined, label: 'health_refused', reason: 'forward-auth headers on a health endpoint' };
    }
    const body = 'OK\n';
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(body.length), 'cache-control': 'no-store' });
    res.end(body);
    return { ctx, decision: undefined, label: 'health', reason: p };
  }

  for (const e of PATH_PREFIXES) {
    if (e.compat !== null && !compatOn(rt, e.compat)) continue;
    const rest = rawPrefixMatch(url, e.prefix);
    if (rest !== null) return judge(rt, { ctx, pathError }, req, res, requestId, e.contract, rest);
  }
  // The normalized path named an Envoy prefix the raw target did not spell literally
  // (`/.portcullis/auth/%65nvoy/...`, `/x/../.portcullis/auth/envoy`): which part is the original path?
  if (PATH_PREFIXES.some((e) => p === e.prefix || p.startsWith(`${e.prefix}/`))) {
    sendPage(res, !ctx.browser, { status: 400, code: 'bad_request', title: 'Bad request', message: 'The forward-auth path must be spelled literally.', requestId });
    return { ctx, decision: undefined, label: 'forward_auth', reason: 'encoded forward-auth prefix' };
  }

  const native = NATIVE[p];
  if (native) return judge(rt, { ctx, pathError }, req, res, requestId, native);
  if (compatOn(rt, 'oauth2-proxy') && p === '/oauth2/auth') return judge(rt, { ctx, pathError }, req, res, requestId, OAUTH2_AUTH);
  if (compatOn(rt, 'authentik') && AUTHENTIK[p]) return judge(rt, { ctx, pathError }, req, res, requestId, AUTHENTIK[p]);
  if (compatOn(rt, 'authelia') && AUTHELIA[p]) {
    // Legacy /api/verify redirects only when told where the portal is (`rd`); we always know.
    const contract = p === '/api/verify' && new URLSearchParams(ctx.query.slice(1)).has('rd') ? { ...AUTHELIA['/api/authz/forward-auth']!, source: 'original-url' as const } : AUTHELIA[p];
    return judge(rt, { ctx, pathError }, req, res, requestId, contract);
  }
  if ((compatOn(rt, 'oauth2-proxy') && OAUTH2_BROWSER.has(p)) || (compatOn(rt, 'authentik') && AUTHENTIK_BROWSER.has(p))) {
    await browserEndpoint(rt, ctx, req, res, requestId);
    return { ctx, decision: undefined, label: 'portcullis', reason: p };
  }
  sendPage(res, !ctx.browser, { status: 404, code: 'not_found', title: 'Not found', message: `${p} is not a forward-auth endpoint. Use /.portcullis/auth/nginx, /traefik, /caddy or /envoy.`, requestId });
  return { ctx, decision: undefined, label: 'forward_auth', reason: 'unknown forward-auth endpoint' };
}

/** Header values as the proxies will copy them: UTF-8 bytes, no control characters. */
function headerValue(s: string): string {
  // eslint-disable-next-line no-control-regex
  return Buffer.from(s.replace(/[\u0000-\u001f\u007f]/g, ''), 'utf8').toString('latin1');
}

async function judge(rt: Runtime, arrival: { ctx: RequestContext; pathError: string | undefined }, req: IncomingMessage, res: ServerResponse, requestId: string, c: Contract, envoyTarget?: string): Promise<ForwardAuthOutcome> {
  const o = originalContext(req, arrival, c.source, rt.cfg.isTrustedProxy, envoyTarget);
  if (!o.ok) {
    if (o.status === 500) rt.log.warn({ requestId, event: 'forward_auth_misconfigured', detail: o.reason }, 'forward-auth request does not describe the original request');
    else rt.log.warn({ requestId, event: 'forward_auth_refused', detail: o.reason }, 'forward-auth request refused');
    // nginx would turn a 400 into a 500; for it a malformed description is simply not allowed.
    const status = o.status === 400 && c.style === 'nginx' ? 403 : o.status;
    sendPage(res, !arrival.ctx.browser, { status, code: o.status === 500 ? 'forward_auth_misconfigured' : 'bad_request', title: o.status === 500 ? 'Proxy misconfigured' : 'Bad request', message: o.status === 500 ? 'The proxy in front of this site is misconfigured; the operator can find the details in the log under this request id.' : `This request was refused: ${o.reason}.`, requestId });
    return { ctx: arrival.ctx, decision: undefined, label: 'forward_auth', reason: o.reason };
  }
  const ctx = o.ctx;
  // Envoy's check path carries the original query, so only the other contracts have a URL of their own.
  if (c.source !== 'path') {
    const bound = boundHost(rt, arrival.ctx, ctx, req, res, requestId, c);
    if (bound !== null) return { ctx, decision: undefined, label: 'forward_auth', reason: bound };
  }
  const d = await decide(ctx, rt, { pathError: o.pathError, asSent: o.asSent });
  const label = `forward_auth:${d.kind}`;
  const out = { ctx, decision: d, label };
  const setCookies = 'setCookies' in d ? d.setCookies : [];
  const a: AuthRequest = { rt, ctx, req, res, requestId, setCookies };

  if (d.kind === 'allow' && c === OAUTH2_AUTH) {
    const unmet = oauth2Constraints(arrival.ctx.query, d.identity);
    if (unmet !== null) {
      // oauth2-proxy's per-location restrictions (`/oauth2/auth?allowed_groups=admins`) still
      // restrict: an operator who migrates must not find a location silently opened up.
      const status = d.identity ? 403 : 401;
      sendPage(res, true, { status, code: status === 403 ? 'access_denied' : 'unauthenticated', title: status === 403 ? 'Access denied' : 'Sign-in required', message: unmet, requestId, setCookies });
      return { ...out, reason: unmet };
    }
  }

  if (d.kind === 'allow') {
    const headers: Record<string, string | string[]> = { 'cache-control': 'no-store', 'x-request-id': requestId, 'content-length': '0' };
    for (const [k, v] of c.headers(d.identity)) headers[k.toLowerCase()] = headerValue(v);
    // The signed assertion, the route's header presets and claim headers: the same set the
    // reverse proxy sends upstream (proxies copy them with authResponseHeaders/copy_headers).
    for (const [k, v] of await identityResponseHeaders(rt, d.route, d.identity, d.session, audienceHost(ctx))) headers[k] = v;
    if (setCookies.length) headers['set-cookie'] = setCookies;
    res.writeHead(c.allowStatus, headers);
    res.end();
    return { ...out, reason: d.policy ? d.policy.reason : 'public route' };
  }

  if (d.kind === 'login' && d.tokenError !== undefined) {
    // A refused bearer token is never a reason to show a login page.
    await renderRefusal(a, d);
    return { ...out, reason: d.reason };
  }
  if (d.kind === 'login') {
    const signin = signInUrl(rt, ctx, `${rt.origin(ctx)}${ctx.path}${ctx.query}`);
    if (c.style === 'redirect' && ctx.browser) {
      if (c.seeOther && ctx.method !== 'GET' && ctx.method !== 'HEAD' && ctx.method !== 'OPTIONS') {
        res.writeHead(303, { location: signin, 'cache-control': 'no-store', 'x-request-id': requestId, 'content-length': '0', ...(setCookies.length ? { 'set-cookie': setCookies } : {}) });
        res.end();
      } else sendRedirect(res, signin, setCookies, requestId);
    } else {
      sendPage(res, true, {
        status: 401, code: 'unauthenticated', title: 'Sign-in required', message: 'This resource needs a session or a bearer token.', requestId, setCookies,
        headers: { 'www-authenticate': 'Bearer realm="portcullis"', ...(ctx.browser || c.alwaysLocation ? { location: signin } : {}) },
      });
    }
    return { ...out, reason: d.reason };
  }

  const reason = d.kind === 'deny' ? d.policy.reason : d.reason;
  if (c.style === 'nginx') {
    if (d.kind === 'not_found' && !d.knownHost) rt.log.warn({ requestId, event: 'forward_auth_unknown_host', host: ctx.host, port: ctx.port, scheme: ctx.scheme, configuredHosts: rt.routes.hosts() }, 'forward-auth asked about a host no route serves');
    // 401 would start a login that cannot help, anything but 2xx/401/403 becomes nginx's 500:
    // everything that is not "allow" or "sign in" is a 403 for nginx. A store outage is not a
    // decision, and nginx's 500 is the truth there.
    const status = d.kind === 'unavailable' ? 503 : 403;
    sendPage(res, true, { status, code: d.kind === 'deny' ? 'access_denied' : d.kind, title: status === 403 ? 'Access denied' : 'Temporarily unavailable', message: status === 403 ? 'Access denied.' : 'Sessions cannot be checked right now.', requestId, setCookies });
    return { ...out, reason };
  }
  await renderRefusal(a, d);
  return { ...out, reason };
}

const unboundWarned = new WeakSet<object>();

/**
 * The host binding of the auth URL (binding.ts): null when the original host may be judged here,
 * else the reason, with the answer already sent.
 */
function boundHost(rt: Runtime, arrival: RequestContext, ctx: RequestContext, req: IncomingMessage, res: ServerResponse, requestId: string, c: Contract): string | null {
  const binding = hostBinding(arrival.query);
  if (!binding.ok) {
    rt.log.warn({ requestId, event: 'forward_auth_misconfigured', detail: binding.reason }, 'forward-auth URL has a malformed host binding');
    sendPage(res, true, { status: 500, code: 'forward_auth_misconfigured', title: 'Proxy misconfigured', message: 'The proxy in front of this site is misconfigured; the operator can find the details in the log under this request id.', requestId });
    return binding.reason;
  }
  if (binding.patterns === null) {
    // Safe only where the proxy itself sends nothing but its own hosts here (a Traefik router
    // with a Host rule, a Caddy site block); said once, so the operator can bind the location.
    if (!unboundWarned.has(rt.cfg) && rt.routes.hosts().length > 1 && isTrustedPeer(rt, req)) {
      unboundWarned.add(rt.cfg);
      rt.log.warn({ requestId, event: 'forward_auth_unbound', endpoint: arrival.path }, 'forward-auth URL names no host (?host=...): the client\'s Host chooses which route is judged; see docs/recipes');
    }
    return null;
  }
  if (hostAllowed(binding.patterns, ctx.host, ctx.port)) return null;
  const reason = `host ${ctx.host}:${ctx.port} is not one this auth location protects (${arrival.query.slice(1, 200)})`;
  rt.log.warn({ requestId, event: 'forward_auth_wrong_host', host: ctx.host, port: ctx.port, binding: arrival.query.slice(1, 200) }, 'forward-auth asked about a host its URL does not protect');
  // 403 for every proxy: nginx would turn a 400 or 421 into a 500, and no sign-in can help.
  sendPage(res, c.style === 'nginx' || !ctx.browser, { status: 403, code: 'wrong_host', title: 'Access denied', message: 'This site does not serve the host this request named.', requestId });
  return reason;
}

function isTrustedPeer(rt: Runtime, req: IncomingMessage): boolean {
  return rt.cfg.isTrustedProxy(normalizeIp(req.socket.remoteAddress ?? ''));
}

/** Browser-facing drop-in endpoints: the same sign-in, callback and sign-out as /.portcullis/. */
async function browserEndpoint(rt: Runtime, ctx: RequestContext, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
  const a: AuthRequest = { rt, ctx, req, res, requestId, setCookies: [] };
  // Like /.portcullis/: on route hosts and the authenticate host only (pitfall 13), never a default route.
  if (!rt.routes.knowsHost(ctx.scheme, ctx.host, ctx.port) && !(rt.cfg.authenticateUrl && rt.cfg.authenticateUrl.origin === rt.origin(ctx))) {
    await renderRefusal(a, { kind: 'not_found', knownHost: false, reason: `no route for host ${ctx.host}` });
    return;
  }
  const m = ctx.method;
  const get = m === 'GET' || m === 'HEAD';
  const action = ctx.path.slice(ctx.path.lastIndexOf('/') + 1);
  switch (action) {
    case 'start':
    case 'sign_in':
      if (get) return signIn(a);
      break;
    case 'callback':
      // The same callback: with `authenticate_callback_path: /oauth2/callback` the redirect URI
      // already registered at the IdP for oauth2-proxy keeps working unchanged.
      if (get) return callback(a);
      break;
    case 'sign_out':
      if (get || m === 'POST') return signOut(a);
      break;
    case 'userinfo':
      if (get) {
        const found = await rt.sessions.lookup(ctx);
        if (!found.identity) {
          sendJson(res, 401, { error: 'unauthenticated', message: 'no valid session', request_id: requestId }, { 'x-request-id': requestId, ...(found.setCookies.length ? { 'set-cookie': found.setCookies } : {}) });
          return;
        }
        const id = found.identity;
        // oauth2-proxy's shape: empty groups and preferredUsername are left out.
        sendJson(res, 200, { user: id.user, email: id.email, ...(id.groups.length ? { groups: id.groups } : {}), ...(id.preferredUsername ? { preferredUsername: id.preferredUsername } : {}) }, { 'x-request-id': requestId });
        return;
      }
      break;
  }
  sendPage(res, !ctx.browser, { status: 405, code: 'method_not_allowed', title: 'Method not allowed', message: `${m} is not allowed on ${ctx.path}.`, requestId, headers: { allow: action === 'sign_out' ? 'GET, HEAD, POST' : 'GET, HEAD' } });
}

/** oauth2-proxy /oauth2/auth query restrictions: each one given must hold (any value of its list). Null when met. */
function oauth2Constraints(query: string, id: Identity | null): string | null {
  const q = new URLSearchParams(query.startsWith('?') ? query.slice(1) : query);
  const list = (k: string): string[] | null => {
    const all = q.getAll(k).flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
    return all.length ? all : null;
  };
  const groups = list('allowed_groups');
  const emails = list('allowed_emails');
  const domains = list('allowed_email_domains');
  const users = list('allowed_users');
  if (!groups && !emails && !domains && !users) return null;
  if (!id) return 'this location requires a signed-in user';
  const email = id.email.toLowerCase();
  if (groups && !groups.some((g) => id.groups.includes(g))) return `needs one of the groups ${groups.join(', ')}`;
  if (emails && !emails.some((e) => e.toLowerCase() === email)) return 'email not allowed here';
  if (domains && !domains.some((d) => email.endsWith(`@${d.toLowerCase().replace(/^@/, '')}`))) return 'email domain not allowed here';
  if (users && !users.includes(id.user) && !users.includes(id.preferredUsername)) return 'user not allowed here';
  return null;
}
