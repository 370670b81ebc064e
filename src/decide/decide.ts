import type { Route } from '../config/types.js';
import type { TokenAuthenticator } from '../identity/bearer.js';
import type { SessionLookup, SessionManager } from '../session/manager.js';
import { StoreUnavailableError, type SessionView } from '../session/types.js';
import { isCorsPreflight, PREFLIGHT_ALLOWED } from './cors-preflight.js';
import type { RouteTable } from './route-table.js';
import type { Identity, PolicyResult, RequestContext, UnavailableCause } from './types.js';

// The one place a request is judged. The reverse proxy, every forward-auth endpoint and
// `portcullis explain` build a RequestContext, call decide(), and only render the outcome.
//
//   1. matchRoute       scheme + host + port of `from`, then prefix/path/regex; first match wins
//   2. checkPath        ambiguous encodings are refused unless the route opts in; forward-auth
//                       paths whose segments normalization changed must keep their route
//   3. publicRoute      allow_public_unauthenticated_access: no session is even read; a CORS
//                       preflight on a cors_allow_preflight route likewise (cors-preflight.ts)
//   4. loadIdentity     a token the route accepts (Authorization: Bearer / Portcullis), else the
//                       session cookie -> identity; a bad token -> login (401 invalid_token);
//                       store or IdP keys down -> unavailable
//   5. evaluatePolicy   the route's compiled policy, with its trace
//   6. outcome          allow | login (no identity and it would matter) | deny

export type Decision =
  | {
      kind: 'allow';
      route: Route;
      identity: Identity | null;
      session: SessionView | null;
      policy: PolicyResult | null;
      setCookies: string[];
    }
  | {
      kind: 'login';
      route: Route;
      reason: string;
      setCookies: string[];
      /** A presented token was refused: answer 401 invalid_token with this, never a redirect. */ tokenError?: string;
    }
  | {
      kind: 'deny';
      route: Route;
      identity: Identity | null;
      policy: PolicyResult;
      setCookies: string[];
    }
  | { kind: 'not_found'; reason: string; knownHost: boolean }
  | { kind: 'bad_request'; route: Route | null; reason: string }
  | { kind: 'unavailable'; route: Route | null; cause: UnavailableCause; reason: string };

export interface DecideDeps {
  routes: RouteTable;
  /** Where identities come from: the session layer, or a simulated identity for `explain` and policy tests. */
  sessions: Pick<SessionManager, 'lookup'>;
  /** Bearer and Portcullis tokens; absent where only cookies count. */
  tokens?: Pick<TokenAuthenticator, 'authenticate'>;
}

export interface PathCheck {
  /** Set when the strict normalization refused the request-target; ctx.path is then the lenient form. */
  pathError?: string | undefined;
  /**
   * Forward-auth only: the path as the proxy will forward it, when normalization changed its
   * segments (`/admin/../x`). Even on a route that allows ambiguous paths, both spellings must
   * select that route: an application routing on the raw path must not land elsewhere.
   */
  asSent?: string | undefined;
  /** Have the policy list each step it took (`portcullis explain`, policy_tests); requests skip it. */
  trace?: boolean | undefined;
}

export async function decide(
  ctx: RequestContext,
  deps: DecideDeps,
  check: PathCheck = {},
): Promise<Decision> {
  // 1. matchRoute (a CONNECT tunnel looks only at tcp routes, everything else never does)
  const scheme = ctx.tunnel ? 'tcp' : ctx.scheme;
  const route = deps.routes.match(scheme, ctx.host, ctx.port, ctx.path);
  if (!route) {
    const knownHost = deps.routes.knowsHost(scheme, ctx.host, ctx.port);
    return {
      kind: 'not_found',
      knownHost,
      reason: ctx.tunnel
        ? `no TCP route for ${ctx.host}:${ctx.port}`
        : knownHost
          ? `no route for path ${ctx.path}`
          : `no route for host ${ctx.host}`,
    };
  }

  // 2. checkPath
  if (check.pathError !== undefined && !route.allowAmbiguousPaths)
    return { kind: 'bad_request', route, reason: check.pathError };
  if (
    check.asSent !== undefined &&
    deps.routes.match(scheme, ctx.host, ctx.port, check.asSent) !== route
  ) {
    return {
      kind: 'bad_request',
      route,
      reason: `the path as sent (${check.asSent}) selects another route than its normalized form`,
    };
  }

  // 3. publicRoute
  if (route.isPublic)
    return { kind: 'allow', route, identity: null, session: null, policy: null, setCookies: [] };

  // 3b. corsPreflight: cors_allow_preflight lets a browser's preflight through unjudged
  if (route.corsAllowPreflight && isCorsPreflight(ctx))
    return {
      kind: 'allow',
      route,
      identity: null,
      session: null,
      policy: PREFLIGHT_ALLOWED,
      setCookies: [],
    };

  // 4. loadIdentity
  const found = await loadIdentity(ctx, route, deps);
  if ('kind' in found) return found;

  // 5. evaluatePolicy
  const policy = route.policy({ ctx, identity: found.identity, trace: check.trace });

  // 6. outcome
  if (policy.allow)
    return {
      kind: 'allow',
      route,
      identity: found.identity,
      session: found.session,
      policy,
      setCookies: found.setCookies,
    };
  if (!found.identity && policy.needsIdentity)
    return { kind: 'login', route, reason: 'no session', setCookies: found.setCookies };
  return { kind: 'deny', route, identity: found.identity, policy, setCookies: found.setCookies };
}

/** Step 4. A token the client chose to present is judged on its own: a bad one is refused, not swapped for the cookie. */
async function loadIdentity(
  ctx: RequestContext,
  route: Route,
  deps: DecideDeps,
): Promise<SessionLookup | Extract<Decision, { kind: 'login' | 'unavailable' }>> {
  const token = deps.tokens ? await deps.tokens.authenticate(ctx, route) : null;
  if (token?.kind === 'ok' && !accepts(route, token.identity))
    return {
      kind: 'login',
      route,
      reason: 'token refused: its identity provider is not accepted here',
      tokenError: `the session behind this token signed in with the identity provider ${token.identity.idp}, which this route does not accept`,
      setCookies: [],
    };
  if (token?.kind === 'ok')
    return { identity: token.identity, session: token.session, setCookies: [] };
  if (token?.kind === 'invalid')
    return {
      kind: 'login',
      route,
      reason: `token refused: ${token.description}`,
      tokenError: token.description,
      setCookies: [],
    };
  if (token?.kind === 'unavailable')
    return { kind: 'unavailable', route, cause: token.cause, reason: token.reason };
  try {
    const found = await deps.sessions.lookup(ctx);
    // A session from an IdP this route does not accept (`idps`) is no session here: the
    // browser is sent to sign in with one it accepts.
    if (found.identity && !accepts(route, found.identity))
      return { identity: null, session: null, setCookies: found.setCookies };
    return found;
  } catch (e) {
    if (e instanceof StoreUnavailableError) {
      const reason = e.source === 'session_store' ? 'the session store is unavailable' : e.message;
      return { kind: 'unavailable', route, cause: e.source, reason };
    }
    throw e;
  }
}

/** Whether the route (`idps`) accepts users of the IdP this identity came from. */
function accepts(route: Route, identity: Identity | null): boolean {
  return !identity || identity.idp === undefined || route.idps.includes(identity.idp);
}
