import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PathMatch, RegexRewrite, Route } from '../config/types.js';
import { parseHostHeader } from '../decide/context.js';
import type { RequestContext } from '../decide/types.js';
import { codes, sendOutcome } from '../http/outcomes.js';
import { normalizeRequestTarget } from '../security/path.js';

// Pomerium's path and host rewrites, redirect routes and direct responses, applied per request
// from what src/config/rewrites.ts compiled. A rewrite never yields a path the request itself
// could not have had: the result must be a normalized path (no `..`, `//`, controls), or the
// request is refused rather than sent somewhere the policy did not look.

/** Every match of the pattern replaced (Envoy's GlobalReplace), groups filled from the match. */
export function applyRegexRewrite(rewrite: RegexRewrite, input: string): string {
  rewrite.re.lastIndex = 0;
  return input.replace(rewrite.re, (...args: unknown[]) => {
    let out = '';
    for (const part of rewrite.parts) {
      if (typeof part === 'string') out += part;
      else out += (args[part] as string | undefined) ?? '';
    }
    return out;
  });
}

/**
 * The matched prefix (or path) swapped with `rewrite`, as Envoy's prefix_rewrite does, except
 * that a rewrite ending in `/` and a rest starting with `/` share one slash (Envoy would send
 * `//x` for prefix /admin, prefix_rewrite /, path /admin/x).
 */
export function swapPrefix(match: PathMatch, path: string, rewrite: string): string {
  const matched = match.kind === 'prefix' || match.kind === 'path' ? match.value : '/';
  // `path` routes also match with the trailing slash added or removed: the whole path is swapped.
  const rest = path.startsWith(matched) ? path.slice(matched.length) : '';
  if (rewrite.endsWith('/') && rest.startsWith('/')) return rewrite + rest.slice(1);
  return rewrite + rest;
}

/** The path itself if it is one normalization leaves unchanged, else null. */
export function safePath(path: string, allowAmbiguous: boolean): string | null {
  if (path === '') return '/';
  const norm = normalizeRequestTarget(path, { allowAmbiguous });
  return norm.ok && norm.query === '' && norm.path === path ? path : null;
}

/** The route's path rewrite applied to a (normalized) request path; null when the result is unsafe. */
export function rewritePath(route: Route, path: string): string | null {
  if (route.prefixRewrite !== null)
    return safePath(swapPrefix(route.match, path, route.prefixRewrite), route.allowAmbiguousPaths);
  if (route.regexRewrite !== null)
    return safePath(applyRegexRewrite(route.regexRewrite, path), route.allowAmbiguousPaths);
  return path;
}

/** The request-target sent upstream: the `to` URL's path, then the (rewritten) path and query. */
export function upstreamTarget(route: Route, to: URL, ctx: RequestContext): string | null {
  const path = rewritePath(route, ctx.path);
  if (path === null) return null;
  const basePath = to.pathname === '/' ? '' : to.pathname.replace(/\/$/, '');
  return `${basePath}${path}${ctx.query}`;
}

function hostOrNull(value: string | undefined): string | null {
  if (value === undefined) return null;
  const v = value.trim().toLowerCase();
  return parseHostHeader(v, 'http') !== null ? v : null;
}

/**
 * The upstream's Host when the route rewrites it. A header or path value that is not a
 * host[:port] (absent, repeated, with a path, `@` or spaces) leaves the client's Host, which is
 * what Envoy does when host_rewrite_header's header is missing.
 */
export function rewrittenHost(
  route: Route,
  req: IncomingMessage,
  path: string,
  clientHost: string,
): string | null {
  const rewrite = route.hostRewrite;
  if (rewrite === null) return null;
  switch (rewrite.kind) {
    case 'literal':
      return rewrite.value;
    case 'header': {
      const v = req.headers[rewrite.name];
      return hostOrNull(typeof v === 'string' ? v : undefined) ?? clientHost;
    }
    case 'path_regex':
      return hostOrNull(applyRegexRewrite(rewrite.rewrite, path)) ?? clientHost;
  }
}

export interface DirectAnswer {
  res: ServerResponse;
  ctx: RequestContext;
  route: Route;
  requestId: string;
  setCookies: string[];
}

function defaultPort(scheme: string): number {
  return scheme === 'https' ? 443 : 80;
}

/** Where a redirect route sends the client; null when its prefix_rewrite yields an unsafe path. */
export function redirectLocation(route: Route, ctx: RequestContext): string | null {
  const action = route.redirect!;
  const scheme = action.scheme ?? ctx.scheme;
  let port: number;
  if (action.port !== null) port = action.port;
  else if (action.host !== null) port = defaultPort(scheme);
  else port = ctx.port === defaultPort(ctx.scheme) ? defaultPort(scheme) : ctx.port;
  const host = action.host ?? ctx.host;
  const authority = port === defaultPort(scheme) ? host : `${host}:${port}`;
  let path: string | null = ctx.path;
  let query = action.stripQuery ? '' : ctx.query;
  if (action.path !== null) {
    const q = action.path.indexOf('?');
    // A query written in path_redirect replaces the request's (Envoy's rule).
    if (q === -1) path = action.path;
    else {
      path = action.path.slice(0, q);
      query = action.path.slice(q);
    }
  } else if (action.prefixRewrite !== null) {
    path = safePath(
      swapPrefix(route.match, ctx.path, action.prefixRewrite),
      route.allowAmbiguousPaths,
    );
  }
  if (path === null) return null;
  return `${scheme}://${authority}${path}${query}`;
}

function refuseUnsafe(a: DirectAnswer): void {
  sendOutcome(a.res, !a.ctx.browser, codes.bad_request, {
    message: `The route ${a.route.id} rewrites this path into one that is not a plain path (.., // or an encoded delimiter); it was refused.`,
    requestId: a.requestId,
    setCookies: a.setCookies,
  });
}

export { refuseUnsafe as refuseUnsafeRewrite };

function commonHead(a: DirectAnswer): string[] {
  const head: string[] = [];
  for (const [k, v] of a.route.setResponseHeaders) head.push(k, v);
  for (const cookie of a.setCookies) head.push('set-cookie', cookie);
  head.push('x-request-id', a.requestId);
  return head;
}

/** A redirect route's answer, once the policy has allowed the request. */
export function answerRedirect(a: DirectAnswer): void {
  const location = redirectLocation(a.route, a.ctx);
  if (location === null) return refuseUnsafe(a);
  const head = commonHead(a);
  head.push('location', location, 'content-length', '0');
  a.res.writeHead(a.route.redirect!.status, head);
  a.res.end();
}

/** A direct-response route's answer, once the policy has allowed the request. */
export function answerResponse(a: DirectAnswer): void {
  const { status, body } = a.route.response!;
  const head = commonHead(a);
  const noBody = status === 204 || status === 304;
  const bytes = noBody ? Buffer.alloc(0) : Buffer.from(body, 'utf8');
  // Envoy sends a body as text/plain unless the route sets a Content-Type.
  if (bytes.length && !a.route.setResponseHeaders.some(([k]) => k === 'content-type'))
    head.push('content-type', 'text/plain; charset=utf-8');
  if (!noBody) head.push('content-length', String(bytes.length));
  a.res.writeHead(status, head);
  a.res.end(a.ctx.method === 'HEAD' || noBody ? undefined : bytes);
}
