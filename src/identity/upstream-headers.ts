import type { Route } from '../config/types.js';
import type { Identity, RequestContext } from '../decide/types.js';
import type { Runtime } from '../runtime.js';
import type { SessionView } from '../session/types.js';
import { ASSERTION_HEADER, filteredGroups } from './assertion.js';
import { bearerTokenOf } from './bearer.js';
import { prependBounded } from './short-list.js';
import { claimHeaderValue, headerValue, presetHeaders } from './presets.js';

// Everything Portcullis tells an upstream about the user, in one place, for the reverse proxy
// and for forward-auth 2xx answers alike: the signed assertion, the preset headers, the
// jwt_claims_headers, and the tokens a route asked for.

/** host[:port] as the client addressed it: the assertion's `aud`. */
export function audienceHost(ctx: Pick<RequestContext, 'scheme' | 'host' | 'port'>): string {
  return ctx.port === (ctx.scheme === 'https' ? 443 : 80) ? ctx.host : `${ctx.host}:${ctx.port}`;
}

function claimOf(identity: Identity, claim: string, route: Route): unknown {
  switch (claim) {
    case 'user':
      return identity.user;
    case 'email':
      return identity.email;
    case 'groups':
      return filteredGroups(identity.groups, route.jwtGroupsFilter);
    case 'name':
      return identity.name;
    case 'sub':
      return identity.sub;
    default:
      return identity.claims[claim];
  }
}

/**
 * The identity headers for a request allowed on `route` with Host `audienceHost` (host[:port]
 * as the client sent it; it becomes the assertion's `aud`). Names are lower-case. Without an
 * identity (public route) there are none: an upstream must treat a missing assertion as
 * "anonymous", never as an error to work around.
 */
export async function identityResponseHeaders(
  rt: Runtime,
  route: Route,
  identity: Identity | null,
  session: SessionView | null,
  audienceHost: string,
  /**
   * 'forward-auth' answers go back to whoever asked, which can be the user: they never carry
   * the route's Kubernetes service account token (it may impersonate anyone).
   */
  to: 'upstream' | 'forward-auth' = 'upstream',
): Promise<ReadonlyArray<[string, string]>> {
  if (!identity) return NONE;
  const issuer = rt.cfg.authenticateUrl
    ? rt.cfg.authenticateUrl.origin
    : `${route.from.scheme}://${audienceHost}`;
  const assertion = await rt.assertions.assertion(identity, {
    issuer,
    audience: audienceHost,
    now: Date.now(),
    notAfter: session?.exp,
    groupsFilter: route.jwtGroupsFilter,
  });
  // Everything but the assertion depends only on the identity, the session's tokens and the
  // route: built once per (identity, route, audience) and reused while the signer hands out
  // the same assertion. A new identity object (login, refresh) or assertion rebuilds it.
  const first = built.get(identity) ?? null;
  for (let e = first; e !== null; e = e.next) {
    if (
      e.route === route &&
      e.audience === audienceHost &&
      e.assertion === assertion &&
      e.session === session
    )
      return to === 'upstream' ? e.upstream : e.headers;
  }
  const headers = buildHeaders(rt, route, identity, session, assertion);
  const upstream =
    route.kubernetesToken === null
      ? headers
      : withKubernetes(
          headers,
          route.kubernetesToken,
          identity,
          filteredGroups(identity.groups, route.jwtGroupsFilter),
        );
  const entry: Built = {
    route,
    audience: audienceHost,
    assertion,
    session,
    headers,
    upstream,
    next: null,
  };
  prependBounded(first, entry, (e) => e.route === route && e.audience === audienceHost, MAX_BUILT);
  built.set(identity, entry);
  return to === 'upstream' ? upstream : headers;
}

const NONE: ReadonlyArray<[string, string]> = Object.freeze([]);
/** A client choosing Host values cannot grow one identity's list without bound. */
const MAX_BUILT = 8;
interface Built {
  route: Route;
  audience: string;
  assertion: string;
  session: SessionView | null;
  headers: ReadonlyArray<[string, string]>;
  /** `headers` plus what only the upstream may see (the Kubernetes service account's). */
  upstream: ReadonlyArray<[string, string]>;
  next: Built | null;
}
const built = new WeakMap<Identity, Built>();

function buildHeaders(
  rt: Runtime,
  route: Route,
  identity: Identity,
  session: SessionView | null,
  assertion: string,
): ReadonlyArray<[string, string]> {
  const out: Array<[string, string]> = [[ASSERTION_HEADER, assertion]];
  for (const [k, v] of presetHeaders(route.identityHeaders, identity)) {
    const safe = headerValue(v);
    if (safe !== null) out.push([k, safe]);
  }
  for (const [header, claim] of rt.cfg.assertion.claimHeaders) {
    const v = claimHeaderValue(claimOf(identity, claim, route));
    if (v !== null) out.push([header, v]);
  }
  if (route.passAccessToken) {
    const token = session?.accessToken ?? bearerTokenOf(identity);
    if (token)
      out.push([
        route.passAccessToken,
        route.passAccessToken === 'authorization' ? `Bearer ${token}` : token,
      ]);
  }
  if (route.passIdToken && session?.idToken && !out.some(([k]) => k === route.passIdToken)) {
    out.push([
      route.passIdToken,
      route.passIdToken === 'authorization' ? `Bearer ${session.idToken}` : session.idToken,
    ]);
  }
  return Object.freeze(out);
}

/**
 * kubernetes_service_account_token: Portcullis calls the API server as its service account
 * and impersonates the user (https://www.pomerium.com/docs/reference/routes/kubernetes-service-account-token,
 * https://kubernetes.io/docs/reference/access-authn-authz/user-impersonation/): the user's
 * email (their id when the IdP gave none), and one Impersonate-Group per group, since the API
 * server reads every occurrence and would take a comma-joined list for one group's name.
 * Replaces any token header the route passes: the API server accepts one Authorization.
 */
function withKubernetes(
  headers: ReadonlyArray<[string, string]>,
  token: string,
  identity: Identity,
  groups: readonly string[],
): ReadonlyArray<[string, string]> {
  const user = headerValue(identity.email || identity.user);
  // Without someone to impersonate the token would act as the service account itself.
  if (user === null || user === '') return headers;
  const out = headers.filter(([k]) => k !== 'authorization');
  out.push(['authorization', `Bearer ${token}`], ['impersonate-user', user]);
  for (const group of groups) {
    const safe = headerValue(group);
    if (safe !== null && safe !== '') out.push(['impersonate-group', safe]);
  }
  return Object.freeze(out);
}
