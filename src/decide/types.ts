// The contract between the parts of the decision core. Everything that turns a request
// into an answer (reverse proxy, every forward-auth endpoint, `portcullis explain`) builds a
// RequestContext, asks decide(), and renders the Decision its own way.

/** The original request, normalized once. Every check reads only this. */
export interface RequestContext {
  /** Upper-case method, e.g. "GET". */
  method: string;
  scheme: 'http' | 'https';
  /** Lower-case host name without port; IPv6 literals keep their brackets. */
  host: string;
  /** Effective port (default port filled in). */
  port: number;
  /** Normalized path: the exact path the upstream will receive and the policy sees. */
  path: string;
  /** Query string including the leading "?", or "". Never takes part in path matching. */
  query: string;
  /** Client address as derived by the trusted-proxy walk (IPv4-mapped IPv6 unwrapped). */
  clientIp: string;
  /** Lower-case header names; values as received. Used for cookie, authorization, accept, origin. */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  /** True when the client is a browser that can follow a login redirect. */
  browser: boolean;
  /** Milliseconds since the epoch; fixed per request so every criterion sees the same time. */
  now: number;
  /**
   * An HTTP CONNECT asking for a TCP tunnel to host:port (proxy/tunnel.ts): only `tcp+https`
   * routes match it, and it never matches an HTTP route.
   */
  tunnel?: boolean | undefined;
  /** Verified TLS client certificate, when the listener asks for one. */
  clientCert?:
    { fingerprint256: string; subject: Record<string, string>; san: string[] } | undefined;
}

/** Who is asking, from a validated session or a verified bearer token. Never from client headers. */
export interface Identity {
  /** Stable subject from the IdP. */
  sub: string;
  /** The value PPL's `user` criterion sees (configurable claim, default `sub`). */
  user: string;
  email: string;
  emailVerified: boolean;
  name: string;
  preferredUsername: string;
  groups: string[];
  /** All claims of the ID token and userinfo, merged (userinfo wins). */
  claims: Record<string, unknown>;
  /** How the identity was proven. */
  via: 'session' | 'bearer';
  /** The id of the IdP that vouched for it (`idps[].id`, `default` for the top-level keys). */
  idp?: string | undefined;
}

/** One step of a policy evaluation, for the 403 page, the log and `portcullis explain`. */
export interface TraceStep {
  /** e.g. "policy[0].allow.or[1]" */
  at: string;
  /** e.g. "groups has admins" */
  criterion: string;
  result: boolean;
  /** Human-readable, e.g. "needs group admins; you have eng" */
  detail?: string | undefined;
}

export interface PolicyResult {
  allow: boolean;
  /** Short reason, shown to the user on a 403 page. */
  reason: string;
  /** Each step that settled the outcome, only when the input asked for it (`trace: true`). */
  trace: readonly TraceStep[];
  /** True when the outcome could change if the user logged in (a criterion needed an identity). */
  needsIdentity: boolean;
}

export interface PolicyInput {
  ctx: RequestContext;
  identity: Identity | null;
  /** Build PolicyResult.trace (explain, policy tests); the request path leaves it off. */
  trace?: boolean | undefined;
}

export type CompiledPolicy = (input: PolicyInput) => PolicyResult;

/**
 * Why a request could not be judged right now (a 503, never an allow): which dependency was
 * down decides the page, the metric and what the operator should look at.
 */
export type UnavailableCause =
  /** The Redis/PostgreSQL session store did not answer. */
  | 'session_store'
  /** A session was due for its refresh and the IdP could not be reached past the grace period. */
  | 'idp_refresh'
  /** A session's groups could not be re-read from the IdP's directory past idp_directory_outage_grace. */
  | 'directory'
  /** A bearer JWT could not be checked: the IdP's JWKS could not be fetched. */
  | 'idp_keys'
  /** An opaque bearer token could not be introspected at the IdP. */
  | 'idp_introspection';
