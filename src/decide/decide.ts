import type { Route } from '../config/types.js';
import type { SessionManager } from '../session/manager.js';
import { StoreUnavailableError, type SessionData } from '../session/types.js';
import type { RouteTable } from './route-table.js';
import type { Identity, PolicyResult, RequestContext } from './types.js';

// The one place a request is judged. The reverse proxy, every forward-auth endpoint and
// `portcullis explain` build a RequestContext, call decide(), and only render the outcome.
//
//   1. matchRoute       scheme + host + port of `from`, then prefix/path/regex; first match wins
//   2. checkPath        ambiguous encodings are refused unless the route opts in
//   3. publicRoute      allow_public_unauthenticated_access: no session is even read
//   4. loadIdentity     session cookie (or bearer token) -> identity; store down -> unavailable
//   5. evaluatePolicy   the route's compiled policy, with its trace
//   6. outcome          allow | login (no identity and it would matter) | deny

export type Decision =
  | { kind: 'allow'; route: Route; identity: Identity | null; session: SessionData | null; policy: PolicyResult | null; setCookies: string[] }
  | { kind: 'login'; route: Route; reason: string; setCookies: string[] }
  | { kind: 'deny'; route: Route; identity: Identity | null; policy: PolicyResult; setCookies: string[] }
  | { kind: 'not_found'; reason: string; knownHost: boolean }
  | { kind: 'bad_request'; route: Route | null; reason: string }
  | { kind: 'unavailable'; route: Route; reason: string };

export interface DecideDeps {
  routes: RouteTable;
  /** Where identities come from: the session layer, or a simulated identity for `explain` and policy tests. */
  sessions: Pick<SessionManager, 'lookup'>;
}

export interface PathCheck {
  /** Set when the strict normalization refused the request-target; ctx.path is then the lenient form. */
  pathError?: string | undefined;
}

export async function decide(ctx: RequestContext, deps: DecideDeps, check: PathCheck = {}): Promise<Decision> {
  // 1. matchRoute
  const route = deps.routes.match(ctx.scheme, ctx.host, ctx.port, ctx.path);
  if (!route) {
    const knownHost = deps.routes.knowsHost(ctx.scheme, ctx.host, ctx.port);
    return { kind: 'not_found', knownHost, reason: knownHost ? `no route for path ${ctx.path}` : `no route for host ${ctx.host}` };
  }

  // 2. checkPath
  if (check.pathError !== undefined && !route.allowAmbiguousPaths) return { kind: 'bad_request', route, reason: check.pathError };

  // 3. publicRoute
  if (route.isPublic) return { kind: 'allow', route, identity: null, session: null, policy: null, setCookies: [] };

  // 4. loadIdentity
  let found;
  try {
    found = await deps.sessions.lookup(ctx);
  } catch (e) {
    if (e instanceof StoreUnavailableError) return { kind: 'unavailable', route, reason: 'the session store is unavailable' };
    throw e;
  }

  // 5. evaluatePolicy
  const policy = route.policy({ ctx, identity: found.identity });

  // 6. outcome
  if (policy.allow) return { kind: 'allow', route, identity: found.identity, session: found.session, policy, setCookies: found.setCookies };
  if (!found.identity && policy.needsIdentity) return { kind: 'login', route, reason: 'no session', setCookies: found.setCookies };
  return { kind: 'deny', route, identity: found.identity, policy, setCookies: found.setCookies };
}
