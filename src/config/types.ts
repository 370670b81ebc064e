import type { CompiledPolicy } from '../decide/types.js';
import type { SigningKeyInput } from '../identity/assertion.js';
import type { GroupSeparator } from '../identity/claim-path.js';
import type { IdentityPreset } from '../identity/presets.js';
import type { ServiceAccount } from '../identity/directory/google.js';
import type { IdpProvider } from '../identity/providers.js';
import type { SessionStorage } from '../session/storage-url.js';
import type { ConfigIssue } from './errors.js';
import type { RawPolicyTest } from './schema.js';

export interface RouteFrom {
  /** `tcp` for Pomerium's `tcp+https://host:port` routes (config/tcp-route.ts): CONNECT only. */
  scheme: 'http' | 'https' | 'tcp';
  /** Lower-case host; for a wildcard route, the suffix including the dot (".example.com"). */
  host: string;
  port: number;
  wildcard: boolean;
  /** As written, for messages. */
  raw: string;
}

export type PathMatch =
  | { kind: 'any' }
  | { kind: 'prefix'; value: string }
  | { kind: 'path'; value: string }
  | { kind: 'regex'; value: string; re: RegExp };

/** A compiled regex substitution: Envoy's RE2 `\\N` groups read once at load, not per request. */
export interface RegexRewrite {
  re: RegExp;
  /** Literal text and capture-group numbers, in order. */
  parts: Array<string | number>;
}

/** `redirect:` (Pomerium's redirect route): every field replaces that part of the request URL. */
export interface RedirectAction {
  scheme: 'http' | 'https' | null;
  host: string | null;
  port: number | null;
  /** path_redirect: the whole path (and, with a `?`, the query). */
  path: string | null;
  /** prefix_rewrite: the route's matched prefix (or path) is swapped with this. */
  prefixRewrite: string | null;
  status: 301 | 302 | 303 | 307 | 308;
  stripQuery: boolean;
}

/** How the upstream's Host header is chosen (Pomerium allows one of these per route). */
export type HostRewrite =
  | { kind: 'literal'; value: string }
  | { kind: 'header'; name: string }
  | { kind: 'path_regex'; rewrite: RegexRewrite };

export type LbPolicy = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RING_HASH' | 'RANDOM' | 'MAGLEV';

/** One of `health_checks` (Envoy's HealthCheck): an upstream is healthy while every check is. */
export interface HealthCheck {
  timeoutMs: number;
  intervalMs: number;
  unhealthyThreshold: number;
  healthyThreshold: number;
  /** An HTTP GET; null = a TCP check. */
  http: { host: string | null; path: string; expected: Array<[number, number]> } | null;
  /** Sent after connecting (null = connect only); every `receive` must then be seen. */
  tcp: { send: Buffer | null; receive: Buffer[] } | null;
}

/** outlier_detection (Envoy's OutlierDetection): passive ejection of a failing upstream. */
export interface OutlierDetection {
  consecutive5xx: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
  maxEjectionPercent: number;
}

export interface Route {
  index: number;
  /** `id`, `name`, or `routes[N]`. */
  id: string;
  from: RouteFrom;
  to: URL[];
  /** Load-balancing weight of each `to` (`http://a:8080,10`); 1 when not given. */
  weights: number[];
  /** load_balancing_policy (or Pomerium's older lb_policy); ROUND_ROBIN by default. */
  lbPolicy: LbPolicy;
  healthChecks: HealthCheck[];
  outlierDetection: OutlierDetection | null;
  match: PathMatch;
  policy: CompiledPolicy;
  /** allow_public_unauthenticated_access: no session is even loaded. */
  isPublic: boolean;
  preserveHost: boolean;
  passIdentityHeaders: boolean;
  setRequestHeaders: Array<[string, string]>;
  removeRequestHeaders: ReadonlySet<string>;
  setResponseHeaders: Array<[string, string]>;
  allowWebsockets: boolean;
  allowAmbiguousPaths: boolean;
  showErrorDetails: boolean;
  timeoutMs: number;
  idleTimeoutMs: number;
  tlsSkipVerify: boolean;
  tlsCa: string | undefined;
  /** identity_headers, or the global presets when pass_identity_headers is on; [] sends none. */
  identityHeaders: IdentityPreset[];
  /** pass_access_token / pass_id_token: lower-case header name ("authorization" means `Bearer <token>`), or null. */
  passAccessToken: string | null;
  passIdToken: string | null;
  /** allow_bearer_tokens (route, else global): IdP tokens in `Authorization: Bearer` are verified and used. */
  allowBearerTokens: boolean;
  /** bearer_audiences (route, else global, else the client id): a bearer token's `aud` must name one. */
  bearerAudiences: string[];
  /** No bearer_audiences set: a token's audience must name the client id of the IdP that issued it. */
  bearerAudiencesDefault: boolean;
  /** `idps`: the ids of the IdPs whose users this route accepts (every configured IdP by default). */
  idps: string[];
  /** redirect: answered with a redirect once the policy allows, never proxied. */
  redirect: RedirectAction | null;
  /** response: answered with this status and body once the policy allows, never proxied. */
  response: { status: number; body: string } | null;
  /** prefix_rewrite on a proxied route: the matched prefix (or path) swapped with this. */
  prefixRewrite: string | null;
  /** regex_rewrite_pattern + regex_rewrite_substitution on a proxied route. */
  regexRewrite: RegexRewrite | null;
  /** host_rewrite, host_rewrite_header or host_path_regex_rewrite_*; null = preserve_host_header or `to`'s host. */
  hostRewrite: HostRewrite | null;
  /** rewrite_response_headers, by lower-case header name, in file order; null when none. */
  responseHeaderRewrites: ReadonlyMap<string, ReadonlyArray<ResponseHeaderRewrite>> | null;
  /** cors_allow_preflight: a CORS preflight (src/decide/cors-preflight.ts) skips the policy. */
  corsAllowPreflight: boolean;
  /** tls_client_cert(_file) + tls_client_key(_file): PEM, presented to https upstreams. */
  tlsClientCert: { cert: string; key: string } | null;
  /** tls_upstream_server_name (or tls_server_name): SNI and the name the certificate must carry. */
  tlsServerName: string | null;
  /**
   * jwt_groups_filter (global, widened by the route's): the only groups the assertion, the
   * groups claim header and Impersonate-Group carry; null = all of the user's groups. One Set
   * object per route: the assertion cache tells filters apart by identity.
   */
  jwtGroupsFilter: ReadonlySet<string> | null;
  /** depends_on: origins (`scheme://host[:port]`) this route's login also signs in to, in order. */
  dependsOn: string[];
  /** regex_priority_order: among a host's `regex` routes, higher goes first (0 when unset). */
  regexPriority: number;
  /** kubernetes_service_account_token(_file): sent as Bearer, with Impersonate-User/-Group. */
  kubernetesToken: string | null;
}

export interface ResponseHeaderRewrite {
  prefix: string;
  value: string;
}

/** How an upstream is reached beyond its http(s) URL (`h2c://`, `http+unix://`, `https+unix://`). */
export interface UpstreamTransport {
  /** HTTP/2 with prior knowledge over cleartext. */
  h2c: boolean;
  /** A Unix domain socket instead of host:port. */
  socketPath: string | null;
}

export interface Config {
  file: string;
  listen: { host: string; port: number };
  /** clientCa: PEM of the CA whose client certificates the `client_certificate` criterion can see. */
  tls: { certs: Array<{ cert: Buffer; key: Buffer }>; clientCa?: Buffer | undefined } | null;
  /** Where logins start and the IdP sends the user back; null = every route host is its own. */
  authenticateUrl: URL | null;
  /** The OIDC redirect URI's path: /.portcullis/callback, or e.g. /oauth2/callback to keep an IdP registration. */
  callbackPath: string;
  /** The redirect URI's query as registered ('' or e.g. `?X-authentik-auth-callback=true`). */
  callbackQuery: string;
  /** allowed_redirect_domains: `rd` targets allowed beyond the route hosts (oauth2-proxy's --whitelist-domain). */
  allowedRedirects: { allowedHosts: string[]; allowedDomains: string[] };
  /** The default IdP: the top-level idp_* keys (id `default`), else the first of `idps`. */
  idp: {
    /** `idps[].id`, or `default` for the top-level keys: names the IdP in routes, policies, sessions. */
    id: string;
    /** What the sign-in chooser shows (`idps[].name`, else the id). */
    name: string;
    issuer: URL;
    clientId: string;
    clientSecret: string;
    /** idp_provider: which IdP's defaults and quirks apply (src/identity/providers.ts). */
    provider: IdpProvider;
    scopes: string[];
    /** The first of groupsClaims: what policies' `claim/<name>` treats as the groups claim. */
    groupsClaim: string;
    /** idp_groups_claim: claim paths whose values together are the user's groups. */
    groupsClaims: string[];
    /** idp_groups_separator: how a single string value is split into groups. */
    groupsSeparator: GroupSeparator;
    /** The provider sends groups without a `groups` scope (no lint warning). */
    groupsWithoutScope: boolean;
    userClaim: string;
    emailClaim: string;
    /** idp_allowed_tenants (azure): tenant ids whose users may sign in; `*` = any; [] = not checked. */
    allowedTenants: string[];
    /** idp_directory_url: the directory API (Graph) base; null = the provider's public one. */
    directoryUrl: URL | null;
    /** idp_directory_cache_ttl: a directory answer is reused this long (0 = asked every time). */
    directoryCacheTtlMs: number;
    /** idp_directory_outage_grace: last-known groups stay usable this long while the directory is down. */
    directoryOutageGraceMs: number;
    /** Users whose directory answers are kept (session_cache_size). */
    directoryCacheSize: number;
    /** idp_hosted_domains (google): the `hd` values whose users may sign in; [] = not checked. */
    hostedDomains: string[];
    /** idp_service_account_file + idp_admin_email (google): read Workspace groups. */
    googleDirectory: { account: ServiceAccount; admin: string } | null;
    /** idp_allow_unverified_email: an email with email_verified false may still sign in. */
    allowUnverifiedEmail: boolean;
    /** idp_email_verified_missing: what an email without any email_verified claim is worth. */
    emailVerifiedMissing: 'refuse' | 'trust';
    /** idp_id_token_algorithms: signature algorithms accepted on ID tokens (HS* = keyed with the client secret). */
    idTokenAlgorithms: string[];
  };
  /** Every IdP users may sign in with, the default first; one entry for a single-IdP config. */
  idps: Array<Config['idp']>;
  cookie: {
    secret: Buffer;
    name: string;
    domain: string | null;
    expireMs: number;
    secure: boolean;
    httpOnly: boolean;
    sameSite: 'Lax' | 'Strict' | 'None';
  };
  /** session_storage: where sessions live (cookie by default). */
  sessionStorage: SessionStorage;
  /** idp_refresh_directory_interval: tokens and groups are re-read from the IdP at least this often. */
  idpRefreshDirectoryIntervalMs: number;
  /** session_cache_size: decoded sessions kept per process (the hot path's cache). */
  sessionCacheSize: number;
  /** login_rate_limit / login_rate_limit_global: sign-in starts allowed; 0 = no limit. */
  loginRateLimit: { perAddressPerHour: number; globalPerSecond: number };
  trustedProxies: readonly string[];
  isTrustedProxy: (ip: string) => boolean;
  /** Drop-in endpoints answered besides /.portcullis/ (oauth2-proxy, Authentik outpost, Authelia). */
  compat: ReadonlyArray<'oauth2-proxy' | 'authentik' | 'authelia'>;
  logLevel: string;
  /**
   * admin_policy / admin_host: the admin console at /.portcullis/admin/; null = not served.
   * host: the one host[:port] (lower case) it answers on; null = the authenticate host, or
   * every route host when there is no authenticate service.
   */
  admin: { policy: CompiledPolicy; host: string | null } | null;
  /** `policy_tests`, run by `portcullis check` and before a reload takes effect. */
  policyTests: Array<RawPolicyTest & { key: string; line: number }>;
  /** metrics_address: where /metrics, /ping and /ready listen; null = not served. */
  metricsListen: { host: string; port: number } | null;
  /** audit_log_file: security events go here instead of the main log stream. */
  auditLogFile: string | null;
  /** watch_config: reload when the config file changes (SIGHUP always reloads). */
  watchConfig: boolean;
  /** shutdown_timeout: how long SIGTERM waits for in-flight requests. */
  shutdownTimeoutMs: number;
  /** workers: how many processes serve the listening port (auto = one per core); 1 = no cluster. */
  workers: number;
  assertion: {
    /** The first signs; all are published in the JWKS. */
    keys: SigningKeyInput[];
    /** No signing_key configured: a per-process key was generated. */
    generated: boolean;
    /** Extra claims copied from the identity into the assertion (jwt_claims + jwt_claims_headers). */
    claims: string[];
    /** jwt_claims_headers: [lower-case header, claim]. */
    claimHeaders: Array<[string, string]>;
  };
  bearer: {
    clockSkewMs: number;
    /** idp_introspection: opaque bearer tokens are checked at the IdP's introspection endpoint. */
    introspection: boolean;
    /** bearer_token_cache_size: verified, refused and opened tokens each kept per process (the hot path's cache). */
    cacheSize: number;
  };
  /** Configured header names Portcullis sets (claim headers, token headers): stripped from every client request. */
  extraIdentityHeaders: string[];
  routes: Route[];
  /** Every file a `*_file` key (or `certificates`) names: a reload follows them like the config. */
  filesRead: string[];
  /** Non-fatal findings, printed by `portcullis check` and logged at start. */
  warnings: ConfigIssue[];
}
