import { LineCounter, parseDocument } from 'yaml';
import { KNOWN_GLOBAL_KEYS, KNOWN_ROUTE_KEYS } from '../../config/schema.js';
import { ImportNotes, type ImportResult } from './emit.js';

// A Pomerium config.yaml -> a Portcullis config. Portcullis took Pomerium's key names and
// semantics where it has the concept, so most keys are copied; this file handles the ones that
// are named or shaped differently, and says why each of the rest is not carried over.

export class PomeriumSyntaxError extends Error {}

type Obj = Record<string, unknown>;

// Global keys Portcullis does not have, and why (Pomerium reference, "Settings" pages).
const GLOBAL_WHY: Record<string, string> = {
  shared_secret:
    'Portcullis runs as one process: there are no services to authenticate to each other',
  shared_secret_file:
    'Portcullis runs as one process: there are no services to authenticate to each other',
  services: 'Portcullis is always all of them (authenticate, authorize, proxy)',
  authorize_service_url: 'Portcullis decides in the same process',
  authorize_internal_service_url: 'Portcullis decides in the same process',
  authenticate_internal_service_url: 'Portcullis signs in in the same process',
  databroker_service_url: 'sessions live in session_storage (cookie, redis://, postgres://)',
  databroker_service_urls: 'sessions live in session_storage (cookie, redis://, postgres://)',
  databroker_internal_service_url:
    'sessions live in session_storage (cookie, redis://, postgres://)',
  grpc_address: 'Portcullis has no gRPC services',
  grpc_insecure: 'Portcullis has no gRPC services',
  grpc_client_timeout: 'Portcullis has no gRPC services',
  http_redirect_addr: 'no HTTP-to-HTTPS redirect listener; let the load balancer redirect',
  autocert: 'no ACME: give certificate_file and certificate_key_file',
  autocert_dir: 'no ACME: give certificate_file and certificate_key_file',
  autocert_must_staple: 'no ACME: give certificate_file and certificate_key_file',
  autocert_use_staging: 'no ACME: give certificate_file and certificate_key_file',
  autocert_ca: 'no ACME: give certificate_file and certificate_key_file',
  autocert_email: 'no ACME: give certificate_file and certificate_key_file',
  autocert_eab_key_id: 'no ACME: give certificate_file and certificate_key_file',
  autocert_eab_mac_key: 'no ACME: give certificate_file and certificate_key_file',
  certificate_authority: 'upstream CAs are per route (tls_custom_ca_file) or NODE_EXTRA_CA_CERTS',
  certificate_authority_file:
    'upstream CAs are per route (tls_custom_ca_file) or NODE_EXTRA_CA_CERTS',
  idp_service_account:
    'no directory sync: groups come from the ID token or userinfo (idp_groups_claim)',
  idp_refresh_directory_timeout: 'no directory sync: groups come from the ID token or userinfo',
  idp_request_params: 'Portcullis sends no extra authorization parameters',
  pomerium_debug: 'use log_level: debug',
  proxy_log_level: 'one log stream: log_level',
  access_log_fields: 'the access log line has a fixed set of fields',
  authorize_log_fields: 'denials go to the audit log (audit_log_file) with their reason',
  tracing_provider: 'no tracing exporter; metrics are on metrics_address',
  tracing_sample_rate: 'no tracing exporter; metrics are on metrics_address',
  metrics_basic_auth: 'keep metrics_address on a private address instead',
  metrics_certificate: 'the metrics listener is plain HTTP; keep it private',
  metrics_certificate_key: 'the metrics listener is plain HTTP; keep it private',
  metrics_client_ca: 'the metrics listener is plain HTTP; keep it private',
  timeout_read: 'Node defaults; per-route timeout and idle_timeout are carried',
  timeout_write: 'Node defaults; per-route timeout and idle_timeout are carried',
  timeout_idle: 'Node defaults; per-route timeout and idle_timeout are carried',
  codec_type: 'Portcullis speaks HTTP/1.1 to clients',
  use_proxy_protocol: 'the PROXY protocol is not read; list the proxy in trusted_proxies',
  xff_num_trusted_hops: "list the proxies' addresses in trusted_proxies instead of a hop count",
  skip_xff_append: 'X-Forwarded-For is always appended',
  dns_lookup_family: 'Node resolves names itself',
  set_response_headers:
    'set per route (set_response_headers); Portcullis always sets its own security headers',
  headers: 'set per route (set_response_headers)',
  downstream_mtls: 'client certificates: client_ca_file (all routes)',
  client_ca: 'write the CA to a file and set client_ca_file',
  signout_redirect_url: 'after sign-out the user sees /.portcullis/signed_out',
  programmatic_redirect_domain_whitelist:
    'programmatic logins redirect to loopback addresses only (command-line tools)',
  bearer_token_format: 'bearer tokens are IdP access tokens or ID tokens (allow_bearer_tokens)',
  idp_access_token_allowed_audiences: 'use bearer_audiences',
  runtime_flags: 'Portcullis has no runtime flags',
  envoy_admin_address: 'there is no Envoy',
  envoy_admin_access_log_path: 'there is no Envoy',
  envoy_admin_profile_path: 'there is no Envoy',
  envoy_bind_config_freebind: 'there is no Envoy',
  envoy_bind_config_source_address: 'there is no Envoy',
  google_cloud_serverless_authentication_service_account:
    'no Google Cloud serverless authentication',
  directory_sync_interval: 'no directory sync: groups come from the ID token or userinfo',
  directory_sync_timeout: 'no directory sync: groups come from the ID token or userinfo',
  cache_service_url: 'sessions live in session_storage',
};

// Route keys Portcullis does not have, and why.
const ROUTE_WHY: Record<string, string> = {
  load_balancing_weights: 'write each weight after its `to` URL: http://app:8080,10',
  lb_config: "Envoy's per-policy settings are not configurable (Envoy's defaults apply)",
  tls_downstream_server_name: 'the certificate is chosen by the requested name',
  tls_upstream_allow_renegotiation: 'TLS renegotiation is never allowed',
  tls_downstream_client_ca: 'client certificates: client_ca_file (all routes)',
  tls_downstream_client_ca_file: 'client certificates: client_ca_file (all routes)',
  allow_spdy: 'SPDY upgrades are not proxied',
  enable_google_cloud_serverless_authentication: 'no Google Cloud serverless authentication',
  description: 'kept nowhere (use name)',
  logo: 'no route portal',
  show_error_details: 'carried',
  idp_access_token_allowed_audiences: 'use bearer_audiences',
  jwt_issuer_format: 'the assertion issuer is always the route host',
  mcp: 'no MCP support',
};

const POMERIUM_IDPS: Record<string, string | null> = {
  oidc: 'oidc',
  okta: 'okta',
  google: 'google',
  azure: 'azure',
  auth0: 'auth0',
  gitlab: 'gitlab',
  ping: 'ping',
  onelogin: 'onelogin',
  cognito: 'cognito',
  keycloak: 'keycloak',
  authentik: 'authentik',
  github: null,
  apple: null,
};
const DEFAULT_ISSUERS: Record<string, string> = {
  google: 'https://accounts.google.com',
  onelogin: 'https://openid-connect.onelogin.com/oidc',
  gitlab: 'https://gitlab.com',
};

export function importPomerium(text: string, file: string): ImportResult {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    const pos = lc.linePos(Math.min(e.pos[0], text.trimEnd().length));
    throw new PomeriumSyntaxError(`${file}:${pos.line}: invalid YAML: ${e.message.split('\n')[0]}`);
  }
  const raw = doc.toJS({ maxAliasCount: 100 }) as unknown;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    throw new PomeriumSyntaxError(`${file}: expected a mapping of Pomerium settings`);
  const src = raw as Obj;
  const n = new ImportNotes();
  const cfg: Obj = {};
  const known = new Set(KNOWN_GLOBAL_KEYS);

  for (const [key, value] of Object.entries(src)) {
    if (key === 'routes' || key === 'policy') continue;
    if (key in GLOBAL_WHY) n.skip(key, GLOBAL_WHY[key]!);
    else if (key === 'databroker_storage_type' || key === 'databroker_storage_connection_string')
      continue;
    else if (key === 'default_upstream_timeout' || key === 'pass_identity_headers') continue;
    else if (key === 'certificate' || key === 'certificate_key')
      n.skip(
        key,
        'inline certificates are not read: write the PEM to a file and set certificate_file / certificate_key_file',
      );
    else if (key === 'certificates' && Array.isArray(value)) {
      // Pomerium: [{cert, key}] as base64 or files ({cert_file, key_file}); Portcullis: files.
      const files = value.filter((c): c is Obj => !!c && typeof c === 'object');
      const asFiles = files.filter(
        (c) => typeof c.cert_file === 'string' && typeof c.key_file === 'string',
      );
      if (asFiles.length)
        cfg.certificates = asFiles.map((c) => ({ cert: c.cert_file, key: c.key_file }));
      if (asFiles.length < value.length)
        n.skip('certificates', 'inline (base64) certificates are not read: write them to files');
    } else if (key === 'signing_key' && typeof value === 'string') cfg.signing_key = value;
    else if (key === 'idp_provider') {
      const p = String(value);
      const mapped = POMERIUM_IDPS[p];
      if (mapped === null)
        n.refuse(
          'idp_provider',
          `"${p}": Portcullis signs users in with OpenID Connect and a client secret only${p === 'github' ? ' (GitHub is plain OAuth 2.0)' : ''}`,
        );
      else if (mapped === undefined) n.refuse('idp_provider', `unknown identity provider "${p}"`);
      else cfg.idp_provider = mapped;
    } else if (known.has(key)) cfg[key] = value;
    else
      n.skip(key, 'not a setting Portcullis knows (is it a Pomerium Enterprise or newer setting?)');
  }

  if (cfg.idp_provider_url === undefined && typeof cfg.idp_provider === 'string') {
    const issuer = DEFAULT_ISSUERS[cfg.idp_provider];
    if (issuer) cfg.idp_provider_url = issuer;
  }

  if (cfg.idp_provider_url === undefined && cfg.idp_provider === undefined)
    n.refuse(
      'idp_provider',
      'none set: Pomerium then signs users in through its hosted authenticate service (authenticate.pomerium.app); Portcullis needs your own OpenID provider: set idp_provider_url, idp_client_id and idp_client_secret',
    );
  // Pomerium's default redirect URI path; kept so the IdP registration stays as it is.
  if (cfg.authenticate_callback_path === undefined)
    cfg.authenticate_callback_path = '/oauth2/callback';

  const storageType = src.databroker_storage_type;
  const conn = src.databroker_storage_connection_string;
  if (storageType === 'postgres' || storageType === 'redis') {
    if (typeof conn === 'string' && conn) cfg.session_storage = conn;
    else
      n.skip(
        'databroker_storage_connection_string',
        'not given inline (a _file?): sessions are kept in cookies; set session_storage to a postgres:// or redis:// URL',
      );
  } else if (storageType !== undefined && storageType !== 'memory')
    n.skip('databroker_storage_type', `"${String(storageType)}" has no Portcullis equivalent`);
  else if (storageType === 'memory')
    n.skip(
      'databroker_storage_type',
      "memory: Portcullis's default session_storage is cookie (sessions survive restarts)",
    );

  const routeList = src.routes ?? src.policy;
  if (src.routes !== undefined && src.policy !== undefined)
    n.skip('policy', 'both routes and the older policy list are set; routes is carried over');
  const routes: Obj[] = [];
  if (Array.isArray(routeList)) {
    routeList.forEach((r, i) => {
      const carried = importRoute(r, `routes[${i}]`, src, n);
      if (carried) routes.push(carried);
    });
  } else if (routeList !== undefined) n.refuse('routes', 'expected a list of routes');
  cfg.routes = routes;
  if (routes.some((r) => r.pass_identity_headers === true) || src.pass_identity_headers === true)
    n.skip(
      'pass_identity_headers',
      "carried, under Portcullis's names: upstreams that read X-Pomerium-Jwt-Assertion read X-Portcullis-Jwt-Assertion (docs/upstream-verification.md)",
    );
  if (Array.isArray(src.jwt_claims_headers) || typeof src.jwt_claims_headers === 'string')
    n.skip(
      'jwt_claims_headers',
      'carried; the list form names its headers X-Portcullis-Claim-<claim> instead of X-Pomerium-Claim-<claim>',
    );
  if (!routes.length) n.refuse('routes', 'no route could be carried over');
  return { config: cfg, notes: n.notes, errors: n.errors, source: file };
}

function importRoute(r: unknown, at: string, global: Obj, n: ImportNotes): Obj | null {
  if (!r || typeof r !== 'object' || Array.isArray(r)) {
    n.skip(at, 'not a mapping; dropped');
    return null;
  }
  const src = r as Obj;
  const from = typeof src.from === 'string' ? src.from : '';
  // TCP routes (tcp+https) carry over as written; UDP tunnels (CONNECT-UDP) are not served.
  if (/^udp\+/i.test(from)) {
    n.skip(at, `${from}: UDP routes are not implemented; the route is dropped`);
    return null;
  }
  if (src.idp_client_id !== undefined || src.idp_client_secret !== undefined) {
    n.skip(
      at,
      `${from}: a route with its own identity provider client cannot be carried over (one IdP client for all routes); the route is dropped, so its host is not served`,
    );
    return null;
  }
  const out: Obj = {};
  const knownRoute = new Set(KNOWN_ROUTE_KEYS);
  const extraAllow: Obj[] = [];
  for (const [key, value] of Object.entries(src)) {
    if (key === 'cors_allow_preflight') {
      if (value === true || value === 'true') extraAllow.push({ cors_preflight: true });
    } else if (key === 'allowed_domains') {
      out.allowed_email_domains = value;
    } else if (key === 'allowed_users') {
      // Pomerium matched a user id or an email address.
      const users = Array.isArray(value) ? value : [value];
      for (const u of users)
        extraAllow.push({ email: { is: String(u) } }, { user: { is: String(u) } });
    } else if (key === 'allowed_idp_claims' && value && typeof value === 'object') {
      for (const [claim, vals] of Object.entries(value as Obj))
        for (const v of Array.isArray(vals) ? vals : [vals])
          extraAllow.push({ [`claim/${claim}`]: { has: v } });
    } else if (key === 'set_authorization_header') {
      if (value === 'access_token') out.pass_access_token = true;
      else if (value === 'id_token') out.pass_id_token = true;
      else if (value !== 'pass_through')
        n.skip(`${at}.set_authorization_header`, `unknown value ${JSON.stringify(value)}`);
    } else if (key === 'set_request_headers' && value && typeof value === 'object') {
      const kept: Obj = {};
      for (const [h, v] of Object.entries(value as Obj)) {
        if (typeof v === 'string' && /\$\{?pomerium\./.test(v))
          n.skip(
            `${at}.set_request_headers.${h}`,
            "Pomerium's ${pomerium.…} values are not expanded; use pass_access_token / pass_id_token or jwt_claims_headers",
          );
        else kept[h] = v;
      }
      if (Object.keys(kept).length) out.set_request_headers = kept;
    } else if (key in ROUTE_WHY && key !== 'show_error_details')
      n.skip(`${at}.${key}`, ROUTE_WHY[key]!);
    else if (knownRoute.has(key)) out[key] = value;
    else n.skip(`${at}.${key}`, 'not a route setting Portcullis knows');
  }
  if (extraAllow.length) {
    const rules =
      out.policy === undefined ? [] : Array.isArray(out.policy) ? out.policy : [out.policy];
    out.policy = [...rules, { allow: { or: extraAllow } }];
  }
  if (out.timeout === undefined && global.default_upstream_timeout !== undefined)
    out.timeout = global.default_upstream_timeout;
  if (out.pass_identity_headers === undefined && global.pass_identity_headers !== undefined)
    out.pass_identity_headers = global.pass_identity_headers;
  return out;
}
