import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { formatDuration } from '../../config/duration.js';
import { ImportNotes, type ImportResult } from './emit.js';
import type { AlphaImport } from './oauth2-proxy-alpha.js';
import type { Settings } from './oauth2-proxy-options.js';

// oauth2-proxy's settings -> a Portcullis config. Each fact about oauth2-proxy's behaviour is
// from its v7 source and docs (pkg/apis/options/legacy_options.go for headers and upstreams,
// pkg/validation and pkg/encryption for the cookie secret, pkg/authentication for email
// domains); test/cli-import.test.ts cites each one it relies on.

export interface OAuth2ProxyImportOptions {
  /** Public origins the routes answer, e.g. https://app.example.com (`--from`). */
  from: string[];
  source: string;
  /** What only oauth2-proxy's alpha config says (--alpha-config). */
  alpha?: AlphaImport;
}

type Rule = Record<string, unknown>;

const DEFAULT_PREFIX = '/oauth2';

/** Providers that speak OpenID Connect with discovery, and Portcullis's name for them. */
const OIDC_PROVIDERS: Record<string, string> = {
  oidc: 'oidc',
  'keycloak-oidc': 'keycloak',
  google: 'google',
  azure: 'azure',
  'entra-id': 'azure',
  gitlab: 'gitlab',
  adfs: 'oidc',
};
const NOT_OIDC: Record<string, string> = {
  keycloak:
    'the legacy keycloak provider does not use OpenID Connect discovery; use provider="keycloak-oidc" with oidc_issuer_url="https://<keycloak>/realms/<realm>"',
  facebook: 'Facebook login is not OpenID Connect with discovery',
  linkedin: 'LinkedIn login here is plain OAuth 2.0, not OpenID Connect with discovery',
  bitbucket: 'Bitbucket signs users in with plain OAuth 2.0, not OpenID Connect',
  digitalocean: 'DigitalOcean signs users in with plain OAuth 2.0, not OpenID Connect',
  'login.gov': 'login.gov needs private-key client authentication, which Portcullis does not do',
  nextcloud: 'Nextcloud signs users in with plain OAuth 2.0 here, not OpenID Connect',
};

/** Typed reads of oauth2-proxy settings; a value of another type reads as unset. */
function readers(s: Settings, n: ImportNotes) {
  const isSet = (k: string): boolean => s.has(k);
  return {
    str: (k: string): string | undefined => {
      const v = s.get(k)?.value;
      return typeof v === 'string' && v !== '' ? v : undefined;
    },
    bool: (k: string, def: boolean): boolean => {
      const v = s.get(k)?.value;
      return typeof v === 'boolean' ? v : def;
    },
    list: (k: string): string[] => {
      const v = s.get(k)?.value;
      return Array.isArray(v) ? v : [];
    },
    ms: (k: string): number | undefined => {
      const v = s.get(k)?.value;
      return typeof v === 'number' ? v : undefined;
    },
    isSet,
    /** Settings that configure something Portcullis does otherwise: reported when set at all. */
    reportIfSet: (keys: string[], why: string): void => {
      for (const k of keys) if (isSet(k)) n.skip(k, why);
    },
  };
}

export function importOAuth2Proxy(s: Settings, o: OAuth2ProxyImportOptions): ImportResult {
  const n = new ImportNotes();
  const cfg: Record<string, unknown> = {};
  const { str, bool, list, ms, isSet, reportIfSet } = readers(s, n);

  // --- listener
  const tlsCert = str('tls_cert_file');
  const tlsKey = str('tls_key_file');
  if (tlsCert || tlsKey) {
    // oauth2-proxy serves HTTPS only when a certificate is given (LegacyServer.convert).
    cfg.address = listenAddress(str('https_address') ?? ':443', 'https_address', n);
    if (tlsCert) cfg.certificate_file = tlsCert;
    if (tlsKey) cfg.certificate_key_file = tlsKey;
    if (isSet('http_address'))
      n.skip('http_address', 'with a certificate oauth2-proxy serves HTTPS only, and so does this');
  } else {
    cfg.address = listenAddress(str('http_address') ?? '127.0.0.1:4180', 'http_address', n);
    cfg.insecure_server = true;
    if (isSet('https_address'))
      n.skip('https_address', 'no tls_cert_file: oauth2-proxy does not serve HTTPS either');
  }
  reportIfSet(
    ['tls_min_version', 'tls_cipher_suites'],
    "Portcullis uses Node's TLS defaults (TLS 1.2 and newer, modern ciphers)",
  );
  const metrics = str('metrics_address');
  if (metrics) cfg.metrics_address = metrics.replace(/^https?:\/\//, '');
  reportIfSet(
    ['metrics_secure_address', 'metrics_tls_cert_file', 'metrics_tls_key_file'],
    'the metrics listener is plain HTTP (metrics_address); keep it on a private address',
  );

  // --- identity provider(s)
  const multi = o.alpha?.providers;
  let clientId: string | undefined;
  const providerRules: Rule[] = [];
  if (multi) {
    const idps: Record<string, unknown>[] = [];
    const anyOf: Rule[] = [];
    let restricted = false;
    for (const p of multi) {
      const sub = new ImportNotes();
      const r = identityProvider(p.settings, sub);
      const rules = providerAdmission(p.settings, r.provider, sub);
      for (const x of sub.notes) n.skip(p.rename(x.setting), x.why);
      for (const x of sub.errors) n.refuse(p.rename(x.setting), x.why);
      idps.push({ id: p.id, ...(p.name ? { name: p.name } : {}), ...r.keys });
      if (rules.length) restricted = true;
      anyOf.push(rules.length ? { and: [{ idp: { is: p.id } }, ...rules] } : { idp: { is: p.id } });
    }
    // Each provider's own restrictions hold for its own users only, as in oauth2-proxy.
    if (restricted) providerRules.push({ or: anyOf });
    cfg.idps = idps;
  } else {
    const r = identityProvider(s, n);
    Object.assign(cfg, r.keys);
    clientId = r.clientId;
    providerRules.push(...providerAdmission(s, r.provider, n));
  }
  reportIfSet(['provider_display_name'], 'Portcullis has no provider-button page');
  if (s.get('skip_provider_button')?.value === false)
    n.skip(
      'skip_provider_button',
      'Portcullis has no provider-button page: sign-in goes straight to the IdP, as with skip_provider_button = true',
    );

  // --- secrets and cookies
  cookieSecret(s, cfg, n);
  const name = str('cookie_name');
  if (name) cfg.cookie_name = name;
  const domains = list('cookie_domains').map((d) => d.replace(/^\./, '').toLowerCase());
  if (domains.length) cfg.cookie_domain = domains[0];
  if (domains.length > 1)
    n.skip(
      'cookie_domains',
      `Portcullis sets one cookie_domain (${domains[0]}); hosts under ${domains.slice(1).join(', ')} get their session by a one-time handoff from authenticate_service_url instead`,
    );
  // oauth2-proxy's default lifetime is 168h; Portcullis's is 14h, so it is always written.
  const expire = ms('cookie_expire') ?? 168 * 3_600_000;
  if (expire === 0)
    n.skip(
      'cookie_expire',
      "0 (a browser-session cookie) is not offered: sessions last 168h as oauth2-proxy's default",
    );
  cfg.cookie_expire = formatDuration(expire === 0 ? 168 * 3_600_000 : expire);
  const refresh = ms('cookie_refresh');
  if (refresh !== undefined && refresh > 0) {
    // Both re-ask the IdP this often whether the session still stands.
    cfg.idp_refresh_directory_interval = formatDuration(Math.max(refresh, 10_000));
    if (refresh < 10_000)
      n.skip('cookie_refresh', 'Portcullis re-checks sessions at most every 10s');
  }
  if (isSet('cookie_secure')) cfg.cookie_secure = bool('cookie_secure', true);
  if (isSet('cookie_httponly')) cfg.cookie_http_only = bool('cookie_httponly', true);
  const sameSite = str('cookie_samesite')?.toLowerCase();
  if (sameSite) {
    if (['lax', 'strict', 'none'].includes(sameSite)) cfg.cookie_same_site = sameSite;
    else
      n.refuse('cookie_samesite', `expected lax, strict or none, got ${JSON.stringify(sameSite)}`);
  }
  if (str('cookie_path') && str('cookie_path') !== '/')
    n.skip('cookie_path', 'the session cookie is always for path /');
  reportIfSet(
    ['cookie_csrf_expire', 'cookie_csrf_per_request'],
    "Portcullis's sign-in state cookie is its own (one per sign-in in flight, 10 minutes)",
  );

  // --- sessions
  sessionStorage(s, cfg, n);

  // --- who may sign in: oauth2-proxy requires the email check AND the group check.
  const policyRules = admission([...emailAdmission(s, n), ...providerRules]);
  const extraAllows: Rule[] = [];
  if (bool('skip_auth_preflight', false)) extraAllows.push({ http_method: { is: 'OPTIONS' } });
  const trusted = list('trusted_ips');
  if (trusted.length) extraAllows.push({ source_ip: trusted });
  const policy: Rule[] = [
    ...policyRules,
    ...(extraAllows.length ? [{ allow: { or: extraAllows } }] : []),
  ];
  if (trusted.length)
    n.skip(
      'trusted_ips',
      'carried over as a source_ip allow rule, but the client address comes from trusted_proxies (X-Forwarded-For), not real_client_ip_header',
    );

  // --- callback, hosts, trust
  const prefix = str('proxy_prefix') ?? DEFAULT_PREFIX;
  if (prefix !== DEFAULT_PREFIX)
    n.skip(
      'proxy_prefix',
      `the oauth2-proxy endpoints stay under /oauth2/ (compat: [oauth2-proxy]); only the callback keeps ${prefix}/callback`,
    );
  const redirect = str('redirect_url');
  let redirectUrl: URL | null = null;
  let callbackPath = `${prefix}/callback`;
  if (redirect) {
    try {
      redirectUrl = new URL(redirect);
      callbackPath = redirectUrl.pathname;
    } catch {
      if (redirect.startsWith('/')) callbackPath = redirect.split('?')[0]!;
      else
        n.refuse(
          'redirect_url',
          `expected an absolute URL or a path, got ${JSON.stringify(redirect)}`,
        );
    }
  }
  cfg.authenticate_callback_path = callbackPath;
  cfg.compat = ['oauth2-proxy'];
  if (bool('reverse_proxy', false))
    n.skip(
      'reverse_proxy',
      "oauth2-proxy then believes X-Forwarded-* and X-Real-IP from any client; Portcullis believes them only from trusted_proxies (loopback by default): list your proxy's address there",
    );
  reportIfSet(
    ['real_client_ip_header'],
    'Portcullis reads the client address from X-Forwarded-For sent by trusted_proxies',
  );

  const hasUpstreams = o.alpha ? Boolean(o.alpha.upstreams) : list('upstreams').length > 0;
  const hosts = routeHosts(s, o, redirectUrl, hasUpstreams, n);
  const wildcard = hosts.some((h) => h.includes('*.'));
  if (redirectUrl && (hosts.length > 1 || wildcard || hosts[0] !== redirectUrl.origin))
    cfg.authenticate_service_url = redirectUrl.origin;

  // Entries no route covers keep their meaning through allowed_redirect_domains, which reads
  // oauth2-proxy's --whitelist-domain forms (".domain", "*.domain", "host:port", "host:*").
  const whitelist = list('whitelist_domains');
  const uncovered = whitelist.filter((w) => !coveredByHosts(w, hosts));
  if (uncovered.length) cfg.allowed_redirect_domains = uncovered;

  // --- routes
  const routeCommon: Record<string, unknown> = {};
  if (o.alpha) {
    Object.assign(routeCommon, o.alpha.route);
    Object.assign(cfg, o.alpha.global);
  } else {
    const passUser = bool('pass_user_headers', true) || bool('pass_basic_auth', true);
    if (passUser) routeCommon.identity_headers = 'portcullis';
    if (bool('pass_access_token', false))
      routeCommon.pass_access_token = 'X-Forwarded-Access-Token';
    if (bool('pass_authorization_header', false)) routeCommon.pass_id_token = true;
    if (bool('prefer_email_to_user', false))
      n.skip('prefer_email_to_user', 'X-Forwarded-User is always the idp_user_claim (default sub)');
    if (str('basic_auth_password') || bool('set_basic_auth', false))
      n.skip(
        str('basic_auth_password') ? 'basic_auth_password' : 'set_basic_auth',
        'Portcullis never sends HTTP Basic credentials upstream; upstreams read X-Forwarded-User',
      );
    if (bool('set_authorization_header', false))
      n.skip(
        'set_authorization_header',
        'the forward-auth answer carries no token; a route can pass one upstream (pass_id_token)',
      );
    // oauth2-proxy answers /oauth2/auth with X-Auth-Request-Access-Token when both are set, and
    // auth_request snippets read it from there; a route names one header, so an auth-only
    // deployment (no upstreams) hands the token out under that name.
    if (bool('set_xauthrequest', false) && bool('pass_access_token', false)) {
      if (list('upstreams').length === 0)
        routeCommon.pass_access_token = 'X-Auth-Request-Access-Token';
      else
        n.skip(
          'set_xauthrequest',
          'with upstreams the token goes to them as X-Forwarded-Access-Token; /oauth2/auth answers carry no X-Auth-Request-Access-Token unless a route sets pass_access_token to that name',
        );
    }
    if (!bool('skip_auth_strip_headers', true))
      n.skip(
        'skip_auth_strip_headers',
        'Portcullis always removes client-sent copies of identity headers',
      );
  }
  if (bool('skip_jwt_bearer_tokens', false)) {
    cfg.allow_bearer_tokens = true;
    if (!multi)
      cfg.bearer_audiences = [clientId ?? '', ...list('oidc_extra_audiences')].filter(Boolean);
    if (list('extra_jwt_issuers').length)
      n.skip(
        'extra_jwt_issuers',
        "Portcullis accepts bearer tokens from idp_provider_url's issuer only",
      );
  } else reportIfSet(['oidc_extra_audiences'], 'only used with skip_jwt_bearer_tokens');
  if (!o.alpha) {
    const upstreamTimeout = ms('upstream_timeout');
    if (upstreamTimeout !== undefined && upstreamTimeout > 0)
      routeCommon.timeout = formatDuration(upstreamTimeout);
    if (bool('pass_host_header', true)) routeCommon.preserve_host_header = true;
    if (bool('proxy_websockets', true)) routeCommon.allow_websockets = true;
    if (bool('ssl_upstream_insecure_skip_verify', false)) {
      routeCommon.tls_skip_verify = true;
      n.skip(
        'ssl_upstream_insecure_skip_verify',
        'carried over as tls_skip_verify: true, which `portcullis check` warns about; prefer tls_custom_ca_file',
      );
    }
  }
  reportIfSet(['flush_interval'], 'Portcullis streams responses as they arrive');
  reportIfSet(
    ['api_routes', 'force_json_errors'],
    'Portcullis answers 401 (never a redirect) to every client that does not ask for HTML, on every path',
  );
  reportIfSet(
    ['signature_key'],
    'upstreams that checked GAP-Signature verify X-Portcullis-Jwt-Assertion instead (docs/upstream-verification.md)',
  );
  reportIfSet(['force_https'], "Portcullis answers on the scheme of each route's from");
  reportIfSet(
    ['encode_state', 'allow_query_semicolons', 'relative_redirect_url'],
    'no equivalent needed',
  );
  reportIfSet(
    ['ping_path', 'ready_path', 'ping_user_agent', 'gcp_healthchecks'],
    'Portcullis answers /ping and /ready (and /ping, /ready on metrics_address)',
  );
  reportIfSet(
    ['htpasswd_file', 'htpasswd_user_groups', 'display_htpasswd_form'],
    'users sign in at the IdP only; accounts in the htpasswd file cannot sign in',
  );
  reportIfSet(
    ['custom_templates_dir', 'custom_sign_in_logo', 'banner', 'footer', 'show_debug_on_error'],
    "Portcullis's pages are its own",
  );
  reportIfSet(
    [
      'logging_filename',
      'logging_max_size',
      'logging_max_age',
      'logging_max_backups',
      'logging_local_time',
      'logging_compress',
      'standard_logging',
      'standard_logging_format',
      'request_logging',
      'request_logging_format',
      'auth_logging',
      'auth_logging_format',
      'exclude_logging_paths',
      'silence_ping_logging',
      'errors_to_info_log',
      'request_id_header',
    ],
    'Portcullis logs JSON lines to stdout (log_level) and sign-ins, sign-outs and denials to audit_log_file',
  );

  const upstreams = o.alpha?.upstreams ?? legacyUpstreams(s, n);
  const routes = buildRoutes(s, hosts, upstreams, routeCommon, policy, n);
  // One object per route: shared ones would be written as YAML anchors and aliases.
  cfg.routes = JSON.parse(JSON.stringify(routes)) as unknown;
  return { config: cfg, notes: n.notes, errors: n.errors, source: o.source };
}

/** One provider's settings as Portcullis `idp_*` keys (top-level, or one entry of `idps`). */
function identityProvider(
  s: Settings,
  n: ImportNotes,
): { keys: Record<string, unknown>; provider: string; clientId: string | undefined } {
  const cfg: Record<string, unknown> = {};
  const { str, bool, list, reportIfSet } = readers(s, n);
  const provider = str('provider') ?? 'google';
  const issuerSetting = str('oidc_issuer_url');
  let issuer: string | undefined;
  if (provider === 'github') {
    // Portcullis's github provider reads the user, organizations and teams from the REST API;
    // a GitHub Enterprise Server's login_url names its base URL.
    cfg.idp_provider = 'github';
    const login = str('login_url');
    let base = 'https://github.com';
    if (login) {
      try {
        base = new URL(login).origin;
      } catch {
        n.refuse('login_url', `expected a URL, got ${JSON.stringify(login)}`);
      }
    }
    cfg.idp_provider_url = base;
  } else if (provider in NOT_OIDC) n.refuse('provider', `"${provider}": ${NOT_OIDC[provider]}`);
  else if (!(provider in OIDC_PROVIDERS))
    n.refuse(
      'provider',
      `"${provider}" is not an oauth2-proxy provider Portcullis knows (expected one of ${[...Object.keys(OIDC_PROVIDERS), ...Object.keys(NOT_OIDC)].join(', ')})`,
    );
  else {
    cfg.idp_provider = OIDC_PROVIDERS[provider];
    issuer = issuerSetting;
    if (!issuer && provider === 'google') issuer = 'https://accounts.google.com';
    if (!issuer && provider === 'gitlab') issuer = 'https://gitlab.com';
    if (!issuer && provider === 'azure') {
      const tenant = str('azure_tenant') ?? 'common';
      if (tenant === 'common' || tenant === 'organizations' || tenant === 'consumers')
        n.refuse(
          'azure_tenant',
          `"${tenant}" signs in users of any tenant, each with its own issuer, and Portcullis verifies one issuer: set azure_tenant (or oidc_issuer_url) to your tenant`,
        );
      else issuer = `https://login.microsoftonline.com/${tenant}/v2.0`;
    }
    if (!issuer && !n.errors.length)
      n.refuse('oidc_issuer_url', `provider "${provider}" needs oidc_issuer_url (the issuer URL)`);
  }
  if (issuer) cfg.idp_provider_url = issuer;
  const clientId = str('client_id');
  if (clientId) cfg.idp_client_id = clientId;
  else
    n.refuse('client_id', 'oauth2-proxy needs it too: the OAuth client id registered at the IdP');
  if (str('client_secret_file')) {
    cfg.idp_client_secret_file = str('client_secret_file');
    if (str('client_secret'))
      n.skip('client_secret', 'client_secret_file is also set and is the one carried over');
  } else if (str('client_secret')) cfg.idp_client_secret = str('client_secret');
  else n.refuse('client_secret', 'Portcullis authenticates to the IdP with a client secret');
  const scope = str('scope');
  const allowedGroups = list('allowed_groups');
  if (provider === 'github') {
    if (scope)
      n.skip('scope', "Portcullis's github provider asks for the scopes its API reads need");
    return { keys: cfg, provider, clientId };
  }
  // oauth2-proxy's OIDC default scope, plus `groups` when allowed_groups is set without a scope.
  const scopes = scope
    ? scope.split(/\s+/).filter(Boolean)
    : [
        'openid',
        'email',
        'profile',
        ...(allowedGroups.length && provider === 'oidc' ? ['groups'] : []),
      ];
  if (!scopes.includes('openid')) {
    scopes.unshift('openid');
    n.skip('scope', 'openid was added: Portcullis signs users in with OpenID Connect');
  }
  cfg.idp_scopes = scopes;
  if (str('oidc_groups_claim')) cfg.idp_groups_claim = str('oidc_groups_claim');
  if (str('oidc_email_claim')) cfg.idp_email_claim = str('oidc_email_claim');
  // user_id_claim is the deprecated name of oidc_email_claim (flag help: "DEPRECATED for
  // oidc-email-claim"); X-Forwarded-User stays the subject in both.
  if (str('user_id_claim') && !str('oidc_email_claim')) cfg.idp_email_claim = str('user_id_claim');
  if (bool('insecure_oidc_allow_unverified_email', false))
    n.skip(
      'insecure_oidc_allow_unverified_email',
      'refused: an unverified address proves nothing about who signs in; Portcullis refuses such sign-ins (if the IdP never sends email_verified, see idp_email_verified_missing)',
    );
  if (bool('insecure_oidc_skip_issuer_verification', false))
    n.skip(
      'insecure_oidc_skip_issuer_verification',
      'refused: Portcullis always checks that ID tokens come from idp_provider_url',
    );
  if (s.get('insecure_oidc_skip_nonce')?.value === true)
    n.skip(
      'insecure_oidc_skip_nonce',
      'refused: Portcullis always sends and checks a nonce (and PKCE)',
    );
  if (bool('ssl_insecure_skip_verify', false))
    n.skip(
      'ssl_insecure_skip_verify',
      "refused: Portcullis verifies the IdP's certificate; for a private CA start it with NODE_EXTRA_CA_CERTS=/path/ca.pem",
    );
  reportIfSet(
    ['provider_ca_files', 'use_system_trust_store'],
    'give a private CA to Portcullis with NODE_EXTRA_CA_CERTS=/path/ca.pem',
  );
  reportIfSet(
    [
      'skip_oidc_discovery',
      'login_url',
      'redeem_url',
      'profile_url',
      'validate_url',
      'oidc_jwks_url',
    ],
    "Portcullis reads every endpoint from the issuer's discovery document",
  );
  reportIfSet(
    ['code_challenge_method', 'force_code_challenge_method'],
    'Portcullis always uses PKCE with S256',
  );
  reportIfSet(
    ['prompt', 'approval_prompt', 'acr_values'],
    'Portcullis sends no prompt or acr_values to the IdP',
  );
  reportIfSet(
    ['jwt_key', 'jwt_key_file', 'pubjwk_url'],
    'Portcullis authenticates to the IdP with the client secret only',
  );
  reportIfSet(
    ['backend_logout_url'],
    "sign-out ends the IdP session through the discovery document's end_session_endpoint",
  );
  reportIfSet(
    ['oidc_audience_claims', 'skip_claims_from_profile_url', 'resource', 'azure_graph_group_field'],
    'not configurable in Portcullis: ID tokens must name idp_client_id in aud',
  );
  return { keys: cfg, provider, clientId };
}

/** oauth2-proxy's address forms ([http://]host:port, unix://) as a Portcullis address. */
function listenAddress(addr: string, key: string, n: ImportNotes): string {
  if (addr.startsWith('unix://')) {
    n.refuse(key, 'Portcullis listens on TCP only (host:port)');
    return '127.0.0.1:4180';
  }
  return addr.replace(/^https?:\/\//, '');
}

/**
 * oauth2-proxy keys AES with the secret's base64url decoding when that is 16, 24 or 32 bytes,
 * else with the raw text (pkg/encryption SecretBytes). Portcullis wants 32 random bytes as base64.
 */
function cookieSecret(s: Settings, cfg: Record<string, unknown>, n: ImportNotes): void {
  const file = s.get('cookie_secret_file')?.value;
  const inline = s.get('cookie_secret')?.value;
  let text: string | undefined = typeof inline === 'string' && inline ? inline : undefined;
  let key = 'cookie_secret';
  if (typeof file === 'string' && file) {
    key = 'cookie_secret_file';
    try {
      text = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      // Not readable here (another machine, a mounted secret): keep the reference, say so.
      cfg.cookie_secret_file = file;
      n.skip(
        'cookie_secret_file',
        `could not be read here (${(e as NodeJS.ErrnoException).code ?? 'error'}); kept as cookie_secret_file, which must hold 32 random bytes as base64 (\`portcullis gen-secret\`)`,
      );
      return;
    }
  }
  if (text === undefined) {
    n.refuse(
      'cookie_secret',
      'oauth2-proxy needs one too; Portcullis needs 32 random bytes as base64',
    );
    return;
  }
  const bytes = secretBytes(text);
  if (bytes.length === 32) {
    if (key === 'cookie_secret_file' && isPortcullisSecret(text)) cfg.cookie_secret_file = file;
    else cfg.cookie_secret = bytes.toString('base64');
    return;
  }
  cfg.cookie_secret = randomBytes(32).toString('base64');
  const what = [16, 24].includes(bytes.length)
    ? `it keys ${bytes.length * 8}-bit AES`
    : `it is ${bytes.length} bytes, which oauth2-proxy refuses too (it needs 16, 24 or 32, or their base64url)`;
  n.skip(
    key,
    `${what} and Portcullis needs 32 random bytes, so a fresh cookie_secret was written (sessions start over anyway); give every replica the same one`,
  );
}

function secretBytes(secret: string): Buffer {
  const trimmed = secret.replace(/=+$/, '');
  if (/^[A-Za-z0-9_-]*$/.test(trimmed)) {
    const b = Buffer.from(trimmed, 'base64url');
    if ([16, 24, 32].includes(b.length)) return b;
  }
  return Buffer.from(secret, 'utf8');
}

/** Whether Portcullis reads this text as 32 bytes (src/config/build.ts). */
function isPortcullisSecret(text: string): boolean {
  const t = text.trim();
  return /^[A-Za-z0-9+/_-]+={0,2}$/.test(t) && Buffer.from(t, 'base64').length === 32;
}

function sessionStorage(s: Settings, cfg: Record<string, unknown>, n: ImportNotes): void {
  const type = (s.get('session_store_type')?.value as string | undefined) || 'cookie';
  const redisKeys = [...s.keys()].filter((k) => k.startsWith('redis_'));
  if (type === 'cookie') {
    for (const k of redisKeys)
      n.skip(k, 'session_store_type is cookie, so oauth2-proxy ignores it too');
    if (s.has('session_cookie_minimal'))
      n.skip(
        'session_cookie_minimal',
        "Portcullis's session cookie never carries the IdP's tokens",
      );
    return;
  }
  if (type !== 'redis') {
    n.skip(
      'session_store_type',
      `"${type}" has no Portcullis equivalent; sessions are kept in cookies (redis:// and postgres:// are the server-side stores)`,
    );
    return;
  }
  const get = (k: string): string | undefined => {
    const v = s.get(k)?.value;
    return typeof v === 'string' && v ? v : Array.isArray(v) && v.length ? v.join(',') : undefined;
  };
  const password = get('redis_password');
  const username = get('redis_username');
  const hostsOf = (urls: string): string =>
    urls
      .split(',')
      .map((u) => {
        try {
          return new URL(u.trim()).host;
        } catch {
          return '';
        }
      })
      .filter(Boolean)
      .join(',');
  const scheme = (u: string | undefined): string =>
    u?.trim().toLowerCase().startsWith('rediss:') ? 'rediss' : 'redis';
  // Several hosts (sentinels, cluster seeds) are no WHATWG URL, so those are written by hand.
  const auth =
    password || username
      ? `${encodeURIComponent(username ?? '')}:${encodeURIComponent(password ?? '')}@`
      : '';
  if (s.get('redis_use_sentinel')?.value === true) {
    const master = get('redis_sentinel_master_name');
    const sentinels = get('redis_sentinel_connection_urls');
    if (!master || !sentinels) {
      n.refuse(
        'redis_use_sentinel',
        'needs redis_sentinel_master_name and redis_sentinel_connection_urls',
      );
      return;
    }
    let text = `${scheme(sentinels)}://${auth}${hostsOf(sentinels)}?sentinel=${encodeURIComponent(master)}`;
    const sp = get('redis_sentinel_password');
    if (sp) text += `&sentinel_password=${encodeURIComponent(sp)}`;
    cfg.session_storage = text;
  } else if (s.get('redis_use_cluster')?.value === true) {
    const nodes = get('redis_cluster_connection_urls');
    if (!nodes) {
      n.refuse('redis_use_cluster', 'needs redis_cluster_connection_urls');
      return;
    }
    cfg.session_storage = `${scheme(nodes)}://${auth}${hostsOf(nodes)}?cluster=true`;
  } else {
    const text = get('redis_connection_url');
    if (!text) {
      n.refuse('redis_connection_url', 'session_store_type is redis but no Redis URL is given');
      return;
    }
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      n.refuse('redis_connection_url', 'is not a URL like redis://host:6379');
      return;
    }
    if (password) url.password = encodeURIComponent(password);
    if (username) url.username = encodeURIComponent(username);
    cfg.session_storage = url.href;
  }
  for (const k of [
    'redis_ca_path',
    'redis_insecure_skip_tls_verify',
    'redis_connection_idle_timeout',
  ])
    if (s.has(k))
      n.skip(k, 'Redis TLS uses the system CAs (NODE_EXTRA_CA_CERTS) and default timeouts');
}

/** oauth2-proxy requires the email check AND the provider's checks: one allow rule. */
function admission(all: Rule[]): Rule[] {
  if (!all.length) return [{ allow: { and: [{ authenticated_user: true }] } }];
  return [{ allow: { and: all } }];
}

/** The email check (email_domains, authenticated_emails_file): the same for every provider. */
function emailAdmission(s: Settings, n: ImportNotes): Rule[] {
  const list = (k: string): string[] => {
    const v = s.get(k)?.value;
    return Array.isArray(v) ? v : [];
  };
  const emailDomains = list('email_domains');
  const emailsFile = s.get('authenticated_emails_file')?.value as string | undefined;
  let emails: string[] = [];
  if (emailsFile) {
    try {
      // CSV, first column, `#` comments (oauth2-proxy pkg/authentication UserMap).
      emails = readFileSync(emailsFile, 'utf8')
        .split(/\r?\n/)
        .filter((l) => l.trim() && !l.trim().startsWith('#'))
        .map((l) => l.split(',')[0]!.trim().toLowerCase())
        .filter(Boolean);
      n.skip(
        'authenticated_emails_file',
        `its ${emails.length} address${emails.length === 1 ? '' : 'es'} are written into the policy; later edits of the file are not read (edit the policy, Portcullis reloads it)`,
      );
    } catch (e) {
      n.refuse(
        'authenticated_emails_file',
        `cannot read ${emailsFile} (${(e as NodeJS.ErrnoException).code ?? 'error'}): without it the import would let in more people than oauth2-proxy does`,
      );
    }
  }
  if (!emailDomains.length && !emailsFile)
    n.refuse(
      'email_domains',
      'oauth2-proxy refuses to start without email_domains or authenticated_emails_file; set email_domains = ["*"] to admit every signed-in user',
    );
  const all: Rule[] = [];
  if (!emailDomains.includes('*')) {
    const anyOf: Rule[] = [];
    for (const d of emailDomains) {
      const dom = d.toLowerCase();
      if (dom.startsWith('*.') || dom.startsWith('.'))
        anyOf.push({ domain: { ends_with: dom.slice(dom.indexOf('.')) } });
      else anyOf.push({ domain: { is: dom } });
    }
    if (emails.length) anyOf.push({ email: { in: emails } });
    if (anyOf.length) all.push(anyOf.length === 1 ? anyOf[0]! : { or: anyOf });
    else all.push({ reject: true });
  }
  return all;
}

/** One provider's own checks: allowed groups and roles, and its provider-specific ones. */
function providerAdmission(s: Settings, provider: string, n: ImportNotes): Rule[] {
  const list = (k: string): string[] => {
    const v = s.get(k)?.value;
    return Array.isArray(v) ? v : [];
  };
  const all: Rule[] = [];
  const groups = list('allowed_groups');
  if (groups.length)
    all.push(
      groups.length === 1
        ? { groups: { has: groups[0] } }
        : { or: groups.map((g) => ({ groups: { has: g } })) },
    );
  const roles = list('allowed_roles');
  if (roles.length) {
    if (provider !== 'keycloak-oidc')
      n.refuse('allowed_roles', 'only the keycloak-oidc provider has roles');
    else {
      // keycloak-oidc: `role` is a realm role, `client:role` a role of that client.
      const any = roles.map((r) => {
        const i = r.indexOf(':');
        return i < 0
          ? { 'claim/realm_access/roles': { has: r } }
          : { [`claim/resource_access/${r.slice(0, i)}/roles`]: { has: r.slice(i + 1) } };
      });
      all.push(any.length === 1 ? any[0]! : { or: any });
      n.skip(
        'allowed_roles',
        'carried over as claim rules on realm_access / resource_access: have Keycloak add roles to the ID token or userinfo',
      );
    }
  }
  const gitlabGroups = list('gitlab_groups');
  if (gitlabGroups.length) all.push({ or: gitlabGroups.map((g) => ({ groups: { has: g } })) });
  const org = s.get('github_org')?.value;
  const teams = s.get('github_team')?.value;
  if (provider === 'github' && typeof org === 'string' && org) {
    // Portcullis's github groups: each organization `org` and each team `org:team-slug`;
    // github_team is a comma-separated list of slugs (--github-team).
    const slugs = typeof teams === 'string' ? teams.split(',').map((x) => x.trim()) : [];
    const wanted = slugs.filter(Boolean).map((x) => `${org}:${x}`);
    const rules = (wanted.length ? wanted : [org]).map((g) => ({ groups: { has: g } }));
    all.push(rules.length === 1 ? rules[0]! : { or: rules });
    if (Array.isArray(s.get('github_users')?.value))
      n.skip(
        'github_users',
        'these users get in only as members of github_org / github_team (Portcullis adds no exceptions)',
      );
  }
  // Restrictions Portcullis cannot express: dropping one would let in more people.
  for (const k of [
    ...(provider === 'github' && typeof org === 'string' && org
      ? []
      : ['github_org', 'github_team', 'github_users']),
    'github_repo',
    'github_token',
    'gitlab_projects',
    'google_groups',
    'google_admin_email',
    'google_service_account_json',
    'keycloak_groups',
    'bitbucket_team',
    'bitbucket_repository',
    'entra_id_allowed_tenants',
  ]) {
    const v = s.get(k)?.value;
    if ((Array.isArray(v) && v.length) || (typeof v === 'string' && v))
      n.refuse(
        k,
        'a provider-specific membership check Portcullis cannot make; without it more people would get in. Express it as groups in the ID token (allowed_groups) and import again',
      );
  }
  return all;
}

/** The public origins to serve: --from, else redirect_url's origin (with upstreams) or the cookie domains. */
function routeHosts(
  s: Settings,
  o: OAuth2ProxyImportOptions,
  redirectUrl: URL | null,
  hasUpstreams: boolean,
  n: ImportNotes,
): string[] {
  if (o.from.length) return o.from;
  if (hasUpstreams && redirectUrl) return [redirectUrl.origin];
  const scheme =
    redirectUrl?.protocol.replace(':', '') ??
    (s.get('cookie_secure')?.value === false ? 'http' : 'https');
  // A cookie domain covers its subdomains; a whitelist entry too when it starts with "." or
  // "*.", else it names one host (with its port, if given; `:*` means any, which a route cannot).
  const cookieDomains = (s.get('cookie_domains')?.value as string[] | undefined) ?? [];
  const whitelist = (s.get('whitelist_domains')?.value as string[] | undefined) ?? [];
  const hosts = [
    ...new Set(
      [...cookieDomains.map((d) => `.${d.replace(/^\*?\./, '')}`), ...whitelist]
        .map((d) => d.toLowerCase().replace(/:\*$/, ''))
        .filter((d) => d.replace(/^\*?\./, ''))
        .map((d) =>
          /^\*?\./.test(d) ? `${scheme}://*.${d.replace(/^\*?\./, '')}` : `${scheme}://${d}`,
        ),
    ),
  ];
  // Exact hosts first: after a wildcard that covers them they could never match.
  hosts.sort((a, b) => Number(a.includes('*.')) - Number(b.includes('*.')));
  if (!hasUpstreams && hosts.length) return hosts;
  n.refuse(
    'upstreams',
    'oauth2-proxy answers any Host; a Portcullis route names its host: give the public URL with --from https://app.example.com (repeatable)',
  );
  return [];
}

function coveredByHosts(entry: string, hosts: string[]): boolean {
  const domain = entry.toLowerCase().replace(/:.*$/, '');
  const bare = domain.replace(/^\*?\./, '');
  return hosts.some((h) => {
    const host = new URL(h.replace('*.', 'wildcard.')).hostname.replace(/^wildcard\./, '*.');
    if (host.startsWith('*.')) return bare === host.slice(2) || bare.endsWith(host.slice(1));
    return host === bare;
  });
}

interface Upstream {
  prefix: string;
  /** Only this path, not the paths under it. */
  exact: boolean;
  /** Absent for a static answer (`response` in extra). */
  to?: string;
  /** A regular-expression path (alpha upstreams with rewriteTarget or a `^` path). */
  regex?: string;
  /** Route keys of this upstream alone (alpha upstreams). */
  extra?: Record<string, unknown>;
}

/** The legacy `upstreams` setting as upstreams. */
function legacyUpstreams(s: Settings, n: ImportNotes): Upstream[] {
  const upstreams: Upstream[] = [];
  for (const raw of (s.get('upstreams')?.value as string[] | undefined) ?? []) {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      n.refuse('upstreams', `${JSON.stringify(raw)} is not a URL`);
      continue;
    }
    const shown = `${u.protocol}//${u.host}${u.pathname}`;
    if (u.protocol === 'http:' || u.protocol === 'https:') {
      // oauth2-proxy routes by the upstream's path and sends the original path (http.go: u.Path = "").
      // A path ending in "/" is a prefix, any other only itself (pkg/upstream/proxy.go).
      const path = u.pathname || '/';
      upstreams.push({ prefix: path, exact: !path.endsWith('/'), to: u.origin });
      if (u.username || u.password)
        n.skip(
          'upstreams',
          `${shown}: the user name and password in the URL are not sent upstream`,
        );
    } else
      n.skip(
        'upstreams',
        `${u.protocol.replace(':', '')}:// upstream ${JSON.stringify(shown)}: Portcullis proxies to http(s) upstreams only (file://, static:// and unix:// are not served)`,
      );
  }
  return upstreams;
}

function buildRoutes(
  s: Settings,
  hosts: string[],
  given: Upstream[],
  common: Record<string, unknown>,
  policy: Rule[],
  n: ImportNotes,
): Record<string, unknown>[] {
  // The longest path first: oauth2-proxy picks the closest match.
  const upstreams = [...given].sort((a, b) => b.prefix.length - a.prefix.length);
  const skip = [
    ...((s.get('skip_auth_routes')?.value as string[] | undefined) ?? []).map((r) => ({
      r,
      key: 'skip_auth_routes',
    })),
    ...((s.get('skip_auth_regex')?.value as string[] | undefined) ?? []).map((r) => ({
      r,
      key: 'skip_auth_regex',
    })),
  ];
  const routes: Record<string, unknown>[] = [];
  if (!upstreams.length) {
    if (skip.length)
      n.skip(
        skip[0]!.key,
        'oauth2-proxy applies it to its own upstreams, and there are none (forward-auth only)',
      );
    // Forward-auth only: the one thing a route adds to the /oauth2/auth answer is the token.
    const token =
      common.pass_access_token === 'X-Auth-Request-Access-Token'
        ? { pass_access_token: common.pass_access_token }
        : {};
    for (const from of hosts) routes.push({ from, policy, ...token });
    return routes;
  }
  for (const from of hosts) {
    for (const up of upstreams) {
      for (const { r, key } of skip) {
        if (up.regex) {
          n.skip(
            key,
            `${JSON.stringify(r)}: not applied under the regex upstream ${up.prefix}; requests there need a sign-in`,
          );
          continue;
        }
        const rule = skipRoute(r, up);
        if ('error' in rule) {
          n.skip(key, `${JSON.stringify(r)}: ${rule.error}; requests there need a sign-in`);
          continue;
        }
        const route: Record<string, unknown> = {
          from,
          ...(up.to ? { to: up.to } : {}),
          regex: rule.regex,
          ...common,
          ...up.extra,
        };
        if (rule.method) {
          // Other methods on these paths keep the normal policy, as in oauth2-proxy.
          const byMethod = { allow: { or: [{ http_method: { is: rule.method } }] } };
          route.policy = [...policy, byMethod];
        } else {
          // Nobody is signed in on a public route: there is no identity or token to pass.
          delete route.identity_headers;
          delete route.pass_access_token;
          delete route.pass_id_token;
          route.allow_public_unauthenticated_access = true;
        }
        routes.push(route);
      }
      const route: Record<string, unknown> = { from, ...(up.to ? { to: up.to } : {}) };
      if (up.regex) route.regex = up.regex;
      else if (up.exact) route.path = up.prefix;
      else if (up.prefix !== '/') route.prefix = up.prefix;
      Object.assign(route, common, up.extra, { policy });
      routes.push(route);
    }
  }
  return routes;
}

/**
 * A skip_auth_routes entry (`METHOD=regex`, `METHOD!=regex`, `regex`, `!=regex`) as a route
 * regex. oauth2-proxy searches the path for the (Go) regex; a Portcullis route regex must match
 * the whole path, so the search becomes `.*(?:re).*`, and only under the upstream's prefix.
 */
function skipRoute(
  entry: string,
  up: Upstream,
): { regex: string; method?: string } | { error: string } {
  let method: string | undefined;
  let negate = false;
  let re = entry;
  const m = /^([A-Za-z]+)?(!?=)(.*)$/s.exec(entry);
  if (m && (m[1] !== undefined || m[2] === '!=')) {
    method = m[1]?.toUpperCase();
    negate = m[2] === '!=';
    re = m[3]!;
  }
  if (/\(\?[a-zA-Z]/.test(re))
    return { error: "Go's inline flags like (?i) have no JavaScript equivalent here" };
  try {
    new RegExp(re, 'u');
  } catch (e) {
    return { error: `not a regular expression Portcullis can run (${(e as Error).message})` };
  }
  const escaped = up.prefix.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const under = up.exact ? `(?=${escaped}$)` : up.prefix === '/' ? '' : `(?=${escaped})`;
  const body = negate ? `(?!.*(?:${re})).*` : `.*(?:${re}).*`;
  return method ? { regex: `${under}${body}`, method } : { regex: `${under}${body}` };
}
