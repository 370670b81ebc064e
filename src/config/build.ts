import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import {
  generatedSigningKey,
  generatedSigningKeyInherited,
  parseSigningKeys,
  REGISTERED_ASSERTION_CLAIMS,
  type SigningKeyInput,
} from '../identity/assertion.js';
import { TENANT_ID, TENANT_PLACEHOLDER } from '../identity/entra-tenant.js';
import { ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS } from '../identity/id-token.js';
import type { IdentityPreset } from '../identity/presets.js';
import { parseServiceAccount } from '../identity/directory/google.js';
import { providerDefaults } from '../identity/providers.js';
import { compileRoutePolicy, PolicyError } from '../policy/index.js';
import { CidrError, compileCidrs } from '../security/cidr.js';
import { isLoopback } from '../security/loopback.js';
import { redirectAllowList } from '../security/redirect.js';
import { keyPath, type ConfigIssue } from './errors.js';
import { parseSessionStorage } from '../session/storage-url.js';
import { compileHostRewrite, compilePathRewrite, compileRedirect } from './rewrites.js';
import { compileUpstreamKeys } from './route-keys.js';
import { compileTcpTo, isTcpFrom, parseTcpFrom } from './tcp-route.js';
import { parseUpstreamUrl, splitWeight, transportOf } from './upstream-url.js';
import type { RawConfig, RawIdpEntry, RawRoute } from './schema.js';
import type { Config, HealthCheck, PathMatch, Route, RouteFrom } from './types.js';

// Turns a schema-valid raw config into the running Config: the semantic checks (secrets, TLS
// files, CIDRs, policies, routes) and the compiled parts. It imports neither yaml nor zod, so a
// server that validated its file in a worker thread (isolated.ts) never keeps them in memory.

const DEFAULT_TRUSTED = ['127.0.0.0/8', '::1/128'];
/** ~2.5 KB each with its identity headers and assertion: ~25 MB (docs/performance.md). */
const DEFAULT_SESSION_CACHE_SIZE = 10_000;
const DEFAULT_BEARER_TOKEN_CACHE_SIZE = 10_000;
// Sized for an office of 2,000 people behind one NAT address on a Monday morning, each with a
// few tabs of protected apps reopening at once (a browser keeps at most 4 sign-ins in flight).
const DEFAULT_LOGIN_RATE_LIMIT = 10_000;
// Every start can become one token request from us to the IdP, under our client's quota; a
// minute's worth (12,000) at once still covers the office above.
const DEFAULT_LOGIN_RATE_LIMIT_GLOBAL = 200;

/** Reports a problem at a key path; the caller decides how a path becomes a line number. */
export type At = (path: readonly PropertyKey[], message: string) => void;

function readSecretFile(
  path: string,
  key: string,
  at: (p: readonly PropertyKey[], m: string) => void,
): string | undefined {
  try {
    // Only the final newline that editors add is dropped: the rest of the file is the secret.
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    at([key], `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    return undefined;
  }
}

/** The line of a key path, for a message that names a second place in the file (0: unknown). */
export type LineOf = (path: readonly PropertyKey[]) => number;

/** Null only when nothing usable could be built; every problem has gone to `at` either way. */
export function buildConfig(
  raw: RawConfig,
  file: string,
  at: At,
  lineOf: LineOf = () => 0,
): Config | null {
  const warnings: ConfigIssue[] = [];

  // Secrets: inline or *_file, never both, so there is one source of truth.
  const secret = (key: 'cookie_secret'): string | undefined => {
    const inline = raw[key];
    const path = raw[`${key}_file`];
    if (inline !== undefined && path !== undefined)
      at([key], `set either ${key} or ${key}_file, not both`);
    return path !== undefined ? readSecretFile(path, `${key}_file`, at) : inline;
  };
  // An unreadable *_file is already reported; "is required" on top would send the operator looking for a missing key.
  const isSet = (key: 'cookie_secret'): boolean =>
    raw[key] !== undefined || raw[`${key}_file`] !== undefined;
  const idpSettings = { cacheSize: raw.session_cache_size ?? DEFAULT_SESSION_CACHE_SIZE, raw };
  const idps = identityProviders(raw, at, idpSettings, lineOf);
  const cookieSecretText = secret('cookie_secret');
  let cookieSecret = Buffer.alloc(0);
  if (cookieSecretText === undefined) {
    if (!isSet('cookie_secret'))
      at(
        ['cookie_secret'],
        'is required: 32 random bytes, base64-encoded (generate one with `portcullis gen-secret`), or cookie_secret_file',
      );
  } else {
    cookieSecret = Buffer.from(cookieSecretText.trim(), 'base64');
    const isBase64 = /^[A-Za-z0-9+/_-]+={0,2}$/.test(cookieSecretText.trim());
    if (!isBase64 || cookieSecret.length !== 32) {
      at(
        [raw.cookie_secret_file !== undefined ? 'cookie_secret_file' : 'cookie_secret'],
        `expected 32 bytes encoded as base64 (44 characters; \`portcullis gen-secret\` prints one), got ${isBase64 ? `${cookieSecret.length} bytes` : 'text that is not base64'}`,
      );
    }
  }

  const insecure = raw.insecure_server === true;
  let tls: Config['tls'] = null;
  if (!insecure) {
    const certs: Array<{ cert: Buffer; key: Buffer }> = [];
    const readPem = (p: string, path: readonly PropertyKey[]): Buffer => {
      try {
        return readFileSync(p);
      } catch (e) {
        at(path, `cannot read ${p}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
        return Buffer.alloc(0);
      }
    };
    if (raw.certificate_file || raw.certificate_key_file) {
      if (!raw.certificate_file || !raw.certificate_key_file)
        at(
          [raw.certificate_file ? 'certificate_key_file' : 'certificate_file'],
          'certificate_file and certificate_key_file go together',
        );
      else
        certs.push({
          cert: readPem(raw.certificate_file, ['certificate_file']),
          key: readPem(raw.certificate_key_file, ['certificate_key_file']),
        });
    }
    raw.certificates?.forEach((c, i) =>
      certs.push({
        cert: readPem(c.cert, ['certificates', i, 'cert']),
        key: readPem(c.key, ['certificates', i, 'key']),
      }),
    );
    if (!certs.length)
      at(
        ['insecure_server'],
        'no TLS certificate: set certificate_file and certificate_key_file (or certificates), or insecure_server: true to serve plain HTTP behind a TLS-terminating proxy',
      );
    tls = { certs };
    if (raw.client_ca_file !== undefined)
      tls.clientCa = readPem(raw.client_ca_file, ['client_ca_file']);
  } else if (raw.client_ca_file !== undefined) {
    at(
      ['client_ca_file'],
      'client certificates need Portcullis to terminate TLS: remove insecure_server and set certificate_file/certificate_key_file',
    );
  }

  const listen = parseAddress(raw.address ?? (insecure ? ':80' : ':443'));
  if (!listen)
    at(
      ['address'],
      `expected host:port, e.g. :443 or 127.0.0.1:8080, got ${JSON.stringify(raw.address)}`,
    );

  let isTrustedProxy: (ip: string) => boolean = () => false;
  const trustedProxies = raw.trusted_proxies ?? DEFAULT_TRUSTED;
  try {
    isTrustedProxy = compileCidrs(trustedProxies);
  } catch (e) {
    if (e instanceof CidrError) at(['trusted_proxies'], e.message);
    else throw e;
  }

  let cookieDomain = raw.cookie_domain?.trim().toLowerCase().replace(/^\./, '') || null;
  if (cookieDomain && !/^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(cookieDomain)) {
    at(
      ['cookie_domain'],
      `expected a domain like example.com, got ${JSON.stringify(raw.cookie_domain)}`,
    );
    cookieDomain = null;
  }
  const callbackRaw = raw.authenticate_callback_path ?? '/.portcullis/callback';
  const queryAt = callbackRaw.indexOf('?');
  const callback =
    queryAt === -1
      ? { path: callbackRaw, query: '' }
      : { path: callbackRaw.slice(0, queryAt), query: callbackRaw.slice(queryAt) };
  const allowedRedirects: Config['allowedRedirects'] = { allowedHosts: [], allowedDomains: [] };
  (raw.allowed_redirect_domains ?? []).forEach((entry, i) => {
    try {
      const one = redirectAllowList([entry]);
      allowedRedirects.allowedHosts.push(...one.allowedHosts);
      allowedRedirects.allowedDomains.push(...one.allowedDomains);
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
      at(
        ['allowed_redirect_domains', i],
        `${e.message}; expected a host (app.example.com), a domain with its subdomains (.example.com or *.example.com), optionally with :port or :*`,
      );
    }
  });
  const sameSite = (raw.cookie_same_site ?? 'lax').toLowerCase();
  const cookieSecure = raw.cookie_secure ?? true;
  if (sameSite === 'none' && !cookieSecure)
    at(
      ['cookie_same_site'],
      'SameSite=None requires cookie_secure: true (browsers drop such cookies otherwise)',
    );

  const defaultIdp = idps[0];
  const groupsClaim = defaultIdp?.groupsClaim ?? 'groups';
  // GitHub's tokens are opaque and there is no introspection: nothing to verify a bearer with.
  if (
    raw.idps === undefined &&
    defaultIdp?.provider === 'github' &&
    (raw.allow_bearer_tokens || raw.routes.some((r) => r.allow_bearer_tokens))
  )
    at(
      ['allow_bearer_tokens'],
      'GitHub issues no verifiable tokens (no ID token, no JWKS, no introspection): bearer tokens cannot be accepted with idp_provider: github',
    );
  const identity = identitySettings(raw, at, warnings);
  const defaults: RouteDefaults = {
    identityHeaders: raw.identity_headers ?? ['portcullis'],
    allowBearerTokens: raw.allow_bearer_tokens === true,
    bearerAudiences: raw.bearer_audiences ?? (defaultIdp ? [defaultIdp.clientId] : []),
    bearerAudiencesDefault: raw.bearer_audiences === undefined,
    idps: idps.map((idp) => idp.id),
    jwtGroupsFilter: raw.jwt_groups_filter ?? null,
  };
  const routes: Route[] = [];
  raw.routes.forEach((r, i) => {
    const route = compileRoute(r, i, groupsClaim, at, defaults);
    if (route) routes.push(route);
  });
  dependsOnHosts(raw, routes, at);
  const extraIdentityHeaders = new Set(identity.claimHeaders.map(([h]) => h));
  for (const r of routes)
    for (const h of [r.passAccessToken, r.passIdToken])
      if (h && h !== 'authorization') extraIdentityHeaders.add(h);

  const metricsListen =
    raw.metrics_address === undefined ? null : parseAddress(raw.metrics_address);
  if (raw.metrics_address !== undefined && !metricsListen)
    at(
      ['metrics_address'],
      `expected host:port, e.g. 127.0.0.1:9090 or :9090, got ${JSON.stringify(raw.metrics_address)}`,
    );

  const storage = parseSessionStorage(raw.session_storage ?? 'cookie');
  if (typeof storage === 'string') at(['session_storage'], storage);
  const refreshInterval = raw.idp_refresh_directory_interval ?? 5 * 60_000;
  if (refreshInterval < 10_000)
    at(
      ['idp_refresh_directory_interval'],
      'expected at least 10s: every session asks the identity provider this often',
    );

  for (const key of ['idp_directory_cache_ttl', 'idp_directory_outage_grace'] as const) {
    const v = raw[key];
    if (v !== undefined && v > 24 * 3_600_000)
      at(
        [key],
        'expected at most 24h: group memberships older than a day should not decide access',
      );
  }

  const authenticateUrl = raw.authenticate_service_url
    ? new URL(raw.authenticate_service_url)
    : null;
  if (authenticateUrl && (authenticateUrl.pathname !== '/' || authenticateUrl.search)) {
    at(
      ['authenticate_service_url'],
      'expected an origin only, e.g. https://auth.example.com (Portcullis serves its endpoints under /.portcullis/)',
    );
  }

  const workers = raw.workers === 'auto' ? availableParallelism() : (raw.workers ?? 1);
  // Each worker has its own memory: a login made through one would be unknown to the others.
  if (workers > 1 && typeof storage !== 'string' && storage.kind === 'memory')
    at(
      ['workers'],
      'session_storage: memory keeps sessions inside one process; with several workers use cookie, redis://… or postgres://…',
    );

  if (!listen || !defaultIdp) return null;
  return {
    file,
    listen,
    tls,
    authenticateUrl,
    callbackPath: callback.path,
    callbackQuery: callback.query,
    allowedRedirects,
    idp: defaultIdp,
    idps,
    cookie: {
      secret: cookieSecret,
      name: raw.cookie_name ?? '_portcullis',
      domain: cookieDomain,
      expireMs: raw.cookie_expire ?? 14 * 3_600_000,
      secure: cookieSecure,
      httpOnly: raw.cookie_http_only ?? true,
      sameSite: sameSite === 'strict' ? 'Strict' : sameSite === 'none' ? 'None' : 'Lax',
    },
    sessionStorage: typeof storage === 'string' ? { kind: 'cookie' } : storage,
    idpRefreshDirectoryIntervalMs: refreshInterval,
    sessionCacheSize: raw.session_cache_size ?? DEFAULT_SESSION_CACHE_SIZE,
    loginRateLimit: {
      perAddressPerHour: raw.login_rate_limit ?? DEFAULT_LOGIN_RATE_LIMIT,
      globalPerSecond: raw.login_rate_limit_global ?? DEFAULT_LOGIN_RATE_LIMIT_GLOBAL,
    },
    trustedProxies,
    isTrustedProxy,
    compat: [...new Set(raw.compat ?? [])],
    logLevel: raw.log_level ?? 'info',
    admin: adminSettings(raw, groupsClaim, at, routes, authenticateUrl),
    policyTests: [],
    metricsListen,
    auditLogFile: raw.audit_log_file ?? null,
    watchConfig: raw.watch_config ?? true,
    shutdownTimeoutMs: raw.shutdown_timeout ?? 30_000,
    workers,
    assertion: identity.assertion,
    bearer: {
      clockSkewMs: raw.bearer_clock_skew ?? 10_000,
      introspection: raw.idp_introspection === true,
      cacheSize: raw.bearer_token_cache_size ?? DEFAULT_BEARER_TOKEN_CACHE_SIZE,
    },
    extraIdentityHeaders: [...extraIdentityHeaders],
    routes,
    filesRead: filesRead(raw),
    warnings,
  };
}

/** admin_policy compiles as a route's `policy` does; without it there is no admin console. */
function adminSettings(
  raw: RawConfig,
  groupsClaim: string,
  at: At,
  routes: Route[],
  authenticateUrl: URL | null,
): Config['admin'] {
  if (raw.admin_policy === undefined) {
    if (raw.admin_host !== undefined)
      at(['admin_host'], 'needs admin_policy: nobody is an administrator until it names who is');
    return null;
  }
  if (raw.admin_policy === null) {
    at(['admin_policy'], 'expected a policy (PPL), e.g. allow: {and: [{groups: {has: admins}}]}');
    return null;
  }
  const host = raw.admin_host?.toLowerCase() ?? null;
  if (host !== null) {
    // The reserved prefix answers only on route hosts and the authenticate host.
    const [name = '', port] = host.split(':');
    const served = (scheme: string, h: string, p: number, wildcard = false): boolean =>
      (wildcard ? name.endsWith(h) : name === h) &&
      (port === undefined ? p === (scheme === 'https' ? 443 : 80) : Number(port) === p);
    const auth = authenticateUrl;
    const ok =
      routes.some((r) => served(r.from.scheme, r.from.host, r.from.port, r.from.wildcard)) ||
      (auth !== null &&
        served(
          auth.protocol.slice(0, -1),
          auth.hostname.toLowerCase(),
          Number(auth.port || (auth.protocol === 'https:' ? 443 : 80)),
        ));
    if (!ok)
      at(
        ['admin_host'],
        `expected the host of a route or of authenticate_service_url: Portcullis does not serve ${host}`,
      );
  }
  try {
    return {
      policy: compileRoutePolicy({ policy: raw.admin_policy }, { groupsClaim }),
      host,
    };
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    at(['admin_policy', ...e.path.slice(1)], e.message);
    return null;
  }
}

/** The files the config reads besides itself: secrets, keys, certificates, CAs. */
function filesRead(raw: RawConfig): string[] {
  const paths = [
    raw.idp_client_secret_file,
    raw.idp_service_account_file,
    ...(raw.idps ?? []).flatMap((e) => [e.idp_client_secret_file, e.idp_service_account_file]),
    raw.cookie_secret_file,
    raw.signing_key_file,
    raw.certificate_file,
    raw.certificate_key_file,
    raw.client_ca_file,
    ...(raw.certificates ?? []).flatMap((c) => [c.cert, c.key]),
    ...(raw.routes ?? []).flatMap((r) => [
      r.tls_custom_ca_file,
      r.tls_client_cert_file,
      r.tls_client_key_file,
      r.kubernetes_service_account_token_file,
    ]),
  ];
  return [...new Set(paths.filter((p): p is string => typeof p === 'string' && p.length > 0))];
}

// Entra's shared issuers: an app registered as multi-tenant accepts users of every tenant in
// the world unless told otherwise (learn.microsoft.com/en-us/entra/identity-platform/howto-convert-app-to-be-multi-tenant).
const ENTRA_SHARED = /^\/(common|organizations|consumers)\/v2\.0\/?$/i;
/** The authorities whose discovered issuer is a template, not one tenant's (consumers has one). */
const ENTRA_AUTHORITY = /^\/(?:common|organizations)\/v2\.0\/?$/i;
/** Microsoft's login hosts, public and national clouds: where the shared issuers live. */
const ENTRA_LOGIN_HOST = /(^|\.)microsoftonline\.(com|us|cn)$/i;

function tenantSettings(raw: RawIdpKeys, at: At): void {
  const tenants = raw.idp_allowed_tenants;
  if (tenants !== undefined && raw.idp_provider !== 'azure')
    at(['idp_allowed_tenants'], 'is an Entra ID setting: it needs idp_provider: azure');
  for (const t of tenants ?? [])
    if (t !== '*' && !TENANT_ID.test(t))
      at(
        ['idp_allowed_tenants'],
        `expected tenant ids (GUIDs such as 72f988bf-86f1-41af-91ab-2d7cd011db47) or *, got ${JSON.stringify(t)}`,
      );
  const url = URL.parse(raw.idp_provider_url ?? '');
  const path = url?.pathname ?? '';
  if (raw.idp_provider !== 'azure') {
    // Without azure there is no tenant check: every Entra tenant's users could sign in.
    if (ENTRA_SHARED.test(path) && ENTRA_LOGIN_HOST.test(url?.hostname ?? ''))
      at(
        ['idp_provider_url'],
        `${path} is Microsoft Entra's multi-tenant issuer: it needs idp_provider: azure, with idp_allowed_tenants listing the tenants whose users may sign in`,
      );
    return;
  }
  if (ENTRA_SHARED.test(path) && !tenants?.length)
    at(
      ['idp_provider_url'],
      `${path} is shared by every Entra tenant: list the tenant ids whose users may sign in with idp_allowed_tenants (or [*] to accept any organization's users)`,
    );
}

function googleSettings(raw: RawIdpKeys, at: At): Config['idp']['googleDirectory'] {
  for (const key of ['idp_hosted_domains', 'idp_service_account_file', 'idp_admin_email'] as const)
    if (raw[key] !== undefined && raw.idp_provider !== 'google')
      at([key], 'is a Google Workspace setting: it needs idp_provider: google');
  const file = raw.idp_service_account_file;
  const admin = raw.idp_admin_email;
  if (file === undefined && admin === undefined) return null;
  if (file === undefined || admin === undefined) {
    at(
      [file === undefined ? 'idp_admin_email' : 'idp_service_account_file'],
      'needs both idp_service_account_file (the service account key) and idp_admin_email (the Workspace admin it acts as) to read groups',
    );
    return null;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    at(
      ['idp_service_account_file'],
      `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
    );
    return null;
  }
  const account = parseServiceAccount(text);
  if (typeof account === 'string') {
    at(['idp_service_account_file'], `${file} ${account}`);
    return null;
  }
  return { account, admin };
}

/** The ID token allow-list: never `none`; HMAC only when listed, with a secret long enough for it. */
function idTokenAlgorithms(raw: RawIdpKeys, clientSecret: string | undefined, at: At): string[] {
  const list = raw.idp_id_token_algorithms ?? [...ASYMMETRIC_ALGORITHMS];
  const known: readonly string[] = [...ASYMMETRIC_ALGORITHMS, ...Object.keys(HMAC_ALGORITHMS)];
  for (const alg of list) {
    if (alg.toLowerCase() === 'none') {
      at(['idp_id_token_algorithms'], 'an unsigned ID token (none) proves nothing: remove it');
    } else if (!known.includes(alg)) {
      at(
        ['idp_id_token_algorithms'],
        `unknown algorithm ${JSON.stringify(alg)}: expected among ${known.join(', ')}`,
      );
    } else if (alg in HMAC_ALGORITHMS) {
      const need = HMAC_ALGORITHMS[alg as keyof typeof HMAC_ALGORITHMS];
      // RFC 7518 3.2: a shorter HMAC key can be guessed faster than the hash can be broken.
      if (clientSecret !== undefined && Buffer.byteLength(clientSecret) < need) {
        at(
          ['idp_id_token_algorithms'],
          `${alg} is keyed with idp_client_secret, which must then be at least ${need} bytes`,
        );
      }
    }
  }
  if (!list.length) at(['idp_id_token_algorithms'], 'expected at least one algorithm, e.g. RS256');
  return list;
}

// Headers whose meaning belongs to the connection or the request framing: a claim or a token
// written into one of them would break or smuggle the request.
const UNSETTABLE_HEADERS = new Set([
  'host',
  'cookie',
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'upgrade',
  'te',
  'trailer',
  'keep-alive',
  'proxy-connection',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-request-id',
  'forwarded',
]);

interface RouteDefaults {
  identityHeaders: IdentityPreset[];
  allowBearerTokens: boolean;
  bearerAudiences: string[];
  jwtGroupsFilter: string[] | null;
  bearerAudiencesDefault: boolean;
  /** Every IdP id, the default first. */
  idps: string[];
}

/** signing_key(_file), jwt_claims, jwt_claims_headers: what the signed identity assertion carries. */
function identitySettings(
  raw: RawConfig,
  at: (path: readonly PropertyKey[], msg: string) => void,
  warnings: ConfigIssue[],
): { assertion: Config['assertion']; claimHeaders: Array<[string, string]> } {
  let keys: SigningKeyInput[] = [];
  let generated = false;
  if (raw.signing_key !== undefined && raw.signing_key_file !== undefined)
    at(['signing_key'], 'set either signing_key or signing_key_file, not both');
  const keyText =
    raw.signing_key_file !== undefined
      ? readSecretFile(raw.signing_key_file, 'signing_key_file', at)
      : raw.signing_key;
  if (keyText !== undefined) {
    const parsed = parseSigningKeys(keyText);
    if ('error' in parsed)
      at([raw.signing_key_file !== undefined ? 'signing_key_file' : 'signing_key'], parsed.error);
    else keys = parsed.keys;
  } else if (raw.signing_key_file === undefined) {
    keys = [generatedSigningKey()];
    generated = true;
    // A cluster worker signs with the key its primary generated; the primary has warned once.
    if (!generatedSigningKeyInherited())
      warnings.push({
        key: 'signing_key',
        line: 0,
        column: 0,
        severity: 'warning',
        message:
          'no signing_key: X-Portcullis-Jwt-Assertion is signed with a key generated at start, so upstreams see a new key after every restart and replicas disagree; set signing_key_file to a PEM private key (e.g. `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)',
      });
  }

  const claimHeaders: Array<[string, string]> = [];
  const jch = raw.jwt_claims_headers;
  const entries: Array<[string, string, PropertyKey[]]> =
    jch === undefined
      ? []
      : typeof jch === 'string' || Array.isArray(jch)
        ? // Pomerium's list form: each claim gets X-Pomerium-Claim-<name>; ours is X-Portcullis-Claim-<name>.
          (typeof jch === 'string'
            ? jch
                .split(',')
                .map((c) => c.trim())
                .filter(Boolean)
            : jch
          ).map((c, j) => [
            `x-portcullis-claim-${c.toLowerCase().replaceAll('_', '-')}`,
            c,
            ['jwt_claims_headers', j],
          ])
        : Object.entries(jch).map(([h, c]) => [h.toLowerCase(), c, ['jwt_claims_headers', h]]);
  for (const [h, c, path] of entries) {
    if (
      !/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(h) ||
      UNSETTABLE_HEADERS.has(h) ||
      h === 'authorization'
    )
      at(
        path,
        `"${h}" cannot carry a claim: expected a header name like X-Email that is not part of the request framing`,
      );
    else if (!c) at(path, 'expected a claim name');
    else claimHeaders.push([h, c]);
  }
  const claims = new Set<string>();
  (raw.jwt_claims ?? []).forEach((c, j) => {
    if (REGISTERED_ASSERTION_CLAIMS.has(c))
      at(['jwt_claims', j], `"${c}" is always set by Portcullis and cannot be replaced`);
    else claims.add(c);
  });
  for (const [, c] of claimHeaders) if (!REGISTERED_ASSERTION_CLAIMS.has(c)) claims.add(c);
  return { assertion: { keys, generated, claims: [...claims], claimHeaders }, claimHeaders };
}

function compileRoute(
  r: RawRoute,
  i: number,
  groupsClaim: string,
  at: (path: readonly PropertyKey[], msg: string) => void,
  defaults: RouteDefaults,
): Route | null {
  const base = ['routes', i] as const;
  const from = isTcpFrom(r.from) ? parseTcpFrom(r.from) : parseFrom(r.from);
  if (typeof from === 'string') {
    at([...base, 'from'], from);
    return null;
  }
  const tcpTo = from.scheme === 'tcp' ? compileTcpTo(r, base, at) : null;
  const toList = tcpTo || r.to === undefined ? [] : Array.isArray(r.to) ? r.to : [r.to];
  const to: URL[] = [];
  const weights: number[] = [];
  toList.forEach((entry, j) => {
    const path = Array.isArray(r.to) ? [...base, 'to', j] : [...base, 'to'];
    const split = splitWeight(entry);
    if (typeof split === 'string') {
      at(path, split);
      return;
    }
    const { text: t, weight } = split;
    const u = parseUpstreamUrl(t);
    if (typeof u === 'string') at(path, u);
    else {
      to.push(u);
      weights.push(weight);
    }
  });

  if (tcpTo) {
    to.push(...tcpTo.to);
    weights.push(...tcpTo.weights);
  }
  const balancing = compileLoadBalancing(r, to.length, at, base);
  // Health checks speak HTTP/1.1 (codec_client_type HTTP1): an h2c upstream would not answer.
  if (to.some((u) => transportOf(u)?.h2c))
    (r.health_checks ?? []).forEach((h, j) => {
      if (h.http_health_check !== undefined)
        at(
          [...base, 'health_checks', j, 'http_health_check'],
          'an h2c:// upstream does not answer HTTP/1.1 health checks: use tcp_health_check',
        );
    });

  // A TCP route's upstream speaks its own protocol (PostgreSQL, SSH), not HTTP: an HTTP GET to
  // it fails whether or not it is up, and with every upstream "down" the balancer would ignore
  // the checks altogether (panic mode). tcp_health_check connects, and its send/receive can
  // speak the protocol.
  if (tcpTo)
    (r.health_checks ?? []).forEach((h, j) => {
      if (h.http_health_check !== undefined)
        at(
          [...base, 'health_checks', j, 'http_health_check'],
          'a TCP route (tcp+https://) carries bytes, not HTTP requests: its upstreams are checked with tcp_health_check (it connects; send/receive can speak their protocol)',
        );
    });

  const matchers = (['prefix', 'path', 'regex'] as const).filter((k) => r[k] !== undefined);
  if (matchers.length > 1)
    at(
      [...base, matchers[1]!],
      `use only one of prefix, path and regex on a route (found ${matchers.join(' and ')})`,
    );
  let match: PathMatch = { kind: 'any' };
  if (r.prefix !== undefined && r.prefix !== '/') match = { kind: 'prefix', value: r.prefix };
  else if (r.path !== undefined) match = { kind: 'path', value: r.path };
  else if (r.regex !== undefined) {
    try {
      // Envoy (and so Pomerium) matches the whole path, not a substring.
      match = { kind: 'regex', value: r.regex, re: new RegExp(`^(?:${r.regex})$`, 'u') };
    } catch (e) {
      at([...base, 'regex'], `invalid regular expression: ${(e as Error).message}`);
    }
  }

  let policy;
  try {
    policy = compileRoutePolicy(r, { groupsClaim, idps: defaults.idps });
  } catch (e) {
    if (e instanceof PolicyError) {
      at([...base, ...e.path], e.message);
      return null;
    }
    throw e;
  }

  const lowerNames = (m: Record<string, string> | undefined): Array<[string, string]> =>
    Object.entries(m ?? {}).map(([k, v]) => [k.toLowerCase(), v]);
  for (const [k, v] of [
    ...lowerNames(r.set_request_headers),
    ...lowerNames(r.set_response_headers),
  ]) {
    if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(k) || /[\r\n\0]/.test(v))
      at(
        [
          ...base,
          r.set_request_headers?.[k] !== undefined ? 'set_request_headers' : 'set_response_headers',
          k,
        ],
        'expected a valid header name and a value without CR, LF or NUL',
      );
  }
  let tlsCa = r.tls_custom_ca ? Buffer.from(r.tls_custom_ca, 'base64').toString('utf8') : undefined;
  if (r.tls_custom_ca_file) {
    try {
      tlsCa = readFileSync(r.tls_custom_ca_file, 'utf8');
    } catch (e) {
      at(
        [...base, 'tls_custom_ca_file'],
        `cannot read ${r.tls_custom_ca_file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      );
    }
  }

  // Pomerium: "Either redirect, to, or response must be set" (one answer per route). A route
  // without any stays usable through forward-auth, as before.
  const answers = (['to', 'redirect', 'response'] as const).filter((k) => r[k] !== undefined);
  if (answers.length > 1)
    at(
      [...base, answers[1]!],
      `use only one of to, redirect and response on a route (found ${answers.join(' and ')})`,
    );
  if ((r.redirect || r.response) && r.allow_websockets === true)
    at(
      [...base, 'allow_websockets'],
      'a redirect or response route answers by itself; WebSockets need a `to` upstream',
    );
  const redirect = r.redirect ? compileRedirect(r.redirect, match, at, base) : null;
  const { prefixRewrite, regexRewrite } = compilePathRewrite(r, match, at, base);
  const hostRewrite = compileHostRewrite(r, at, base);

  const tokenHeader = (key: 'pass_access_token' | 'pass_id_token'): string | null => {
    const v = r[key];
    if (v === undefined || v === false) return null;
    if (v === true) return 'authorization';
    const h = v.toLowerCase();
    if (UNSETTABLE_HEADERS.has(h))
      at(
        [...base, key],
        `"${v}" cannot carry a token: expected a header name like X-Access-Token, or true for Authorization: Bearer`,
      );
    return h;
  };

  return {
    index: i,
    id: r.id ?? r.name ?? `routes[${i}]`,
    from,
    to,
    weights,
    ...balancing,
    match,
    policy,
    isPublic: r.allow_public_unauthenticated_access === true,
    preserveHost: r.preserve_host_header === true,
    passIdentityHeaders: r.pass_identity_headers === true,
    setRequestHeaders: lowerNames(r.set_request_headers),
    removeRequestHeaders: new Set((r.remove_request_headers ?? []).map((h) => h.toLowerCase())),
    setResponseHeaders: lowerNames(r.set_response_headers),
    allowWebsockets: r.allow_websockets === true,
    allowAmbiguousPaths: r.allow_ambiguous_paths === true,
    showErrorDetails: r.show_error_details !== false,
    // Pomerium (https://www.pomerium.com/docs/reference/routes/timeouts): WebSocket routes are
    // long-lived, so both timeouts are off unless set; likewise TCP routes (an SSH session may
    // sit idle for hours) and Kubernetes routes, where `kubectl logs -f` and `exec` hold a
    // stream open.
    timeoutMs: r.timeout ?? (longLived(r) ? 0 : 30_000),
    idleTimeoutMs: r.idle_timeout ?? (longLived(r) ? 0 : 300_000),
    tlsSkipVerify: r.tls_skip_verify === true,
    tlsCa,
    identityHeaders:
      r.identity_headers ?? (r.pass_identity_headers === true ? defaults.identityHeaders : []),
    passAccessToken: tokenHeader('pass_access_token'),
    passIdToken: tokenHeader('pass_id_token'),
    allowBearerTokens: r.allow_bearer_tokens ?? defaults.allowBearerTokens,
    bearerAudiences: r.bearer_audiences ?? defaults.bearerAudiences,
    bearerAudiencesDefault: r.bearer_audiences === undefined && defaults.bearerAudiencesDefault,
    idps: routeIdps(r.idps, [...base, 'idps'], defaults.idps, at),
    redirect,
    response: r.response ? { status: r.response.status ?? 200, body: r.response.body ?? '' } : null,
    prefixRewrite,
    regexRewrite,
    hostRewrite,
    ...compileUpstreamKeys(r, at, base),
    dependsOn: [],
    // Pomerium: the route's filter widens the global one; either alone turns filtering on.
    jwtGroupsFilter:
      defaults.jwtGroupsFilter === null && r.jwt_groups_filter === undefined
        ? null
        : new Set([...(defaults.jwtGroupsFilter ?? []), ...(r.jwt_groups_filter ?? [])]),
  };
}

/** load_balancing_policy, health_checks and outlier_detection, with Envoy's defaults. */
function compileLoadBalancing(
  r: RawRoute,
  upstreams: number,
  at: (path: readonly PropertyKey[], msg: string) => void,
  base: readonly PropertyKey[],
): Pick<Route, 'lbPolicy' | 'healthChecks' | 'outlierDetection'> {
  if (r.load_balancing_policy !== undefined && r.lb_policy !== undefined)
    at(
      [...base, 'lb_policy'],
      'set either load_balancing_policy or lb_policy (its older name), not both',
    );
  const lbPolicy = r.load_balancing_policy ?? r.lb_policy ?? 'ROUND_ROBIN';
  for (const key of [
    'load_balancing_policy',
    'lb_policy',
    'health_checks',
    'outlier_detection',
  ] as const)
    if (r[key] !== undefined && upstreams === 0)
      at([...base, key], 'balances between `to` upstreams, and this route has none');
  const healthChecks: HealthCheck[] = (r.health_checks ?? []).map((h, j) => {
    const path = [...base, 'health_checks', j];
    if ((h.http_health_check === undefined) === (h.tcp_health_check === undefined))
      at(path, 'expected exactly one of http_health_check and tcp_health_check');
    if (h.timeout <= 0 || h.interval <= 0)
      at(path, 'expected a timeout and an interval above zero');
    const http = h.http_health_check;
    const tcp = h.tcp_health_check;
    (http?.expected_statuses ?? []).forEach((range, k) => {
      if (range.end <= range.start)
        at(
          [...path, 'http_health_check', 'expected_statuses', k],
          `expected end (excluded) above start, like {start: ${range.start}, end: ${range.start + 1}}`,
        );
    });
    if (http?.host !== undefined && !/^[a-z0-9.-]+(?::[0-9]{1,5})?$/i.test(http.host))
      at([...path, 'http_health_check', 'host'], 'expected a host name like app.internal');
    return {
      timeoutMs: h.timeout,
      intervalMs: h.interval,
      unhealthyThreshold: h.unhealthy_threshold,
      healthyThreshold: h.healthy_threshold,
      // Envoy's default expected_statuses is [200, 201): only a 200 passes.
      http: http
        ? {
            host: http.host ?? null,
            path: http.path,
            expected: (http.expected_statuses ?? [{ start: 200, end: 201 }]).map(
              (x): [number, number] => [x.start, x.end],
            ),
          }
        : null,
      tcp: tcp
        ? {
            send: tcp.send ? Buffer.from(tcp.send.text, 'hex') : null,
            receive: (tcp.receive ?? []).map((p) => Buffer.from(p.text, 'hex')),
          }
        : null,
    };
  });
  const o = r.outlier_detection;
  // Envoy's OutlierDetection defaults: 5 consecutive 5xx, 30 s base ejection, 300 s at most, 10 %.
  const outlierDetection = o
    ? {
        consecutive5xx: o.consecutive_5xx ?? 5,
        baseEjectionMs: o.base_ejection_time ?? 30_000,
        maxEjectionMs: Math.max(o.max_ejection_time ?? 300_000, o.base_ejection_time ?? 30_000),
        maxEjectionPercent: o.max_ejection_percent ?? 10,
      }
    : null;
  return { lbPolicy, healthChecks, outlierDetection };
}

/**
 * depends_on (https://www.pomerium.com/docs/reference/routes/additional-login-redirect-hosts):
 * "array of strings (host or host:port)", at most five, each served here; the route's scheme,
 * and its default port when none is given. Pomerium refuses it together with cookie_domain.
 */
function dependsOnHosts(raw: RawConfig, routes: Route[], at: At): void {
  for (const route of routes) {
    const list = raw.routes[route.index]!.depends_on;
    if (list === undefined) continue;
    const key = ['routes', route.index, 'depends_on'];
    if (raw.cookie_domain !== undefined) {
      at(
        key,
        'cannot be used with cookie_domain (as in Pomerium): hosts under cookie_domain already share the session',
      );
      continue;
    }
    if (list.length > 5) {
      at(
        key,
        `expected at most 5 hosts (browsers stop following longer redirect chains), got ${list.length}`,
      );
      continue;
    }
    const { scheme } = route.from;
    list.forEach((entry, j) => {
      const m = /^([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)(?::(\d{1,5}))?$/i.exec(entry.trim());
      const port = m?.[2] !== undefined ? Number(m[2]) : scheme === 'https' ? 443 : 80;
      if (!m || port < 1 || port > 65535) {
        at(
          [...key, j],
          `expected a host or host:port like api.example.com, got ${JSON.stringify(entry)}`,
        );
        return;
      }
      const host = m[1]!.toLowerCase();
      const served = routes.some(
        (r) =>
          r.from.scheme === scheme &&
          r.from.port === port &&
          (r.from.wildcard
            ? host.endsWith(r.from.host) && host.length > r.from.host.length
            : r.from.host === host),
      );
      const label = `${host}${m[2] !== undefined ? `:${port}` : ''}`;
      if (!served) {
        at(
          [...key, j],
          `no route serves ${scheme}://${label}: depends_on names hosts of this same Portcullis`,
        );
        return;
      }
      if (!route.from.wildcard && host === route.from.host && port === route.from.port) {
        at([...key, j], `${label} is this route's own host`);
        return;
      }
      const origin = `${scheme}://${host}${port === (scheme === 'https' ? 443 : 80) ? '' : `:${port}`}`;
      if (!route.dependsOn.includes(origin)) route.dependsOn.push(origin);
    });
  }
}

function longLived(r: RawRoute): boolean {
  return (
    r.allow_websockets === true ||
    isTcpFrom(r.from) ||
    r.kubernetes_service_account_token !== undefined ||
    r.kubernetes_service_account_token_file !== undefined
  );
}

/** `from` is scheme + host (+ port); a wildcard host `*.example.com` covers every subdomain. */
export function parseFrom(text: string): RouteFrom | string {
  const wildcard = /^(https?):\/\/\*\.([^/]+?)\/?$/i.exec(text.trim());
  let u: URL;
  try {
    u = new URL(wildcard ? `${wildcard[1]}://wildcard.${wildcard[2]}` : text.trim());
  } catch {
    return `expected a URL like https://app.example.com, got ${JSON.stringify(text)}`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    return `expected an http:// or https:// URL, got ${JSON.stringify(text)}`;
  // Pitfall 19: a trailing slash is harmless; any other path is a mistake that silently never matches.
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash || u.username) {
    return `expected only scheme, host and port in \`from\` (use prefix/path/regex for paths), got ${JSON.stringify(text)}`;
  }
  const scheme = u.protocol === 'https:' ? 'https' : 'http';
  const port = u.port ? Number(u.port) : scheme === 'https' ? 443 : 80;
  const host = u.hostname.toLowerCase();
  return {
    scheme,
    host: wildcard ? host.slice('wildcard'.length) : host,
    port,
    wildcard: !!wildcard,
    raw: text,
  };
}

function parseAddress(a: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(a.trim());
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  const host = m[1] ?? (m[2] || '0.0.0.0');
  return { host, port };
}

/** The idp_* keys of one IdP: the top level's (where the issuer and client id may be absent) or an entry of `idps`. */
type RawIdpKeys = Omit<RawIdpEntry, 'id' | 'name' | 'idp_provider_url' | 'idp_client_id'> & {
  idp_provider_url?: string | undefined;
  idp_client_id?: string | undefined;
};

/**
 * The IdPs users may sign in with: the top-level idp_* keys as the IdP `default`, then each
 * entry of `idps`; the first is the default one. Ids are unique, issuers too: a bearer token
 * or a logout token is matched to its IdP by its issuer alone.
 */
function identityProviders(
  raw: RawConfig,
  at: At,
  settings: { cacheSize: number; raw: RawConfig },
  lineOf: LineOf,
): Array<Config['idp']> {
  const out: Array<Config['idp']> = [];
  const topLevel =
    raw.idps === undefined || raw.idp_provider_url !== undefined || raw.idp_client_id !== undefined;
  if (topLevel) {
    const one = buildIdp(raw, 'default', 'default', at, settings);
    if (one) out.push(one);
  }
  const seen = new Map<string, number>();
  const issuers = new Map<string, string>();
  if (topLevel && raw.idp_provider_url) issuers.set(issuerKey(raw.idp_provider_url), 'default');
  // Entra IdPs on one shared authority: the same template issuer, so no token can name one.
  const templates = new Map<string, { id: string; path: PropertyKey[] }>();
  const template = topLevel ? sharedEntraTemplate(raw) : null;
  if (template) templates.set(template, { id: 'default', path: ['idp_provider_url'] });
  (raw.idps ?? []).forEach((e, i) => {
    const scoped: At = (path, message) => at(['idps', i, ...path], message);
    if (e.id === 'default' && topLevel)
      scoped(
        ['id'],
        'the id `default` names the IdP of the top-level idp_* keys: choose another id, or move those keys into this entry',
      );
    else if (seen.has(e.id))
      scoped(['id'], `duplicate IdP id "${e.id}": idps[${seen.get(e.id)}] has it already`);
    seen.set(e.id, i);
    const sameIssuer = issuers.get(issuerKey(e.idp_provider_url));
    if (sameIssuer !== undefined)
      scoped(
        ['idp_provider_url'],
        `the IdP "${sameIssuer}" has this issuer already: tokens are matched to their IdP by issuer, so each IdP needs its own`,
      );
    issuers.set(issuerKey(e.idp_provider_url), e.id);
    const shared = sameIssuer === undefined ? sharedEntraTemplate(e) : null;
    const first = shared === null ? undefined : templates.get(shared);
    if (shared !== null && first !== undefined) {
      const line = lineOf(first.path);
      scoped(
        ['idp_provider_url'],
        `the Entra IdPs "${first.id}" (${keyPath(first.path)}${line ? `, line ${line}` : ''}) and "${e.id}" both use a shared multi-tenant authority, whose tokens all carry the issuer ${shared}: a bearer or logout token names its IdP only by its issuer, so every token would go to "${first.id}". Use one IdP with idp_allowed_tenants listing every tenant, or give each its tenant's own authority (${new URL(e.idp_provider_url).origin}/<tenant id>/v2.0)`,
      );
    } else if (shared !== null)
      templates.set(shared, { id: e.id, path: ['idps', i, 'idp_provider_url'] });
    const one = buildIdp(e, e.id, e.name ?? e.id, scoped, settings);
    if (one) out.push(one);
  });
  return out;
}

/**
 * The issuer template of an azure IdP on a shared authority (/common/v2.0, /organizations/v2.0),
 * or null: Entra's discovery publishes https://<login host>/{tenantid}/v2.0 for both, whatever
 * tenant signs the user in (/consumers/v2.0 has one tenant's issuer, as a tenant's own has).
 */
function sharedEntraTemplate(raw: RawIdpKeys): string | null {
  if (raw.idp_provider !== 'azure' || !raw.idp_provider_url) return null;
  let url: URL;
  try {
    url = new URL(raw.idp_provider_url);
  } catch {
    return null;
  }
  return ENTRA_AUTHORITY.test(url.pathname) ? `${url.origin}/${TENANT_PLACEHOLDER}/v2.0` : null;
}

function issuerKey(url: string): string {
  return url.replace(/\/+$/, '');
}

function buildIdp(
  raw: RawIdpKeys,
  id: string,
  name: string,
  at: At,
  settings: { cacheSize: number; raw: RawConfig },
): Config['idp'] | null {
  const inline = raw.idp_client_secret;
  const file = raw.idp_client_secret_file;
  if (inline !== undefined && file !== undefined)
    at(['idp_client_secret'], 'set either idp_client_secret or idp_client_secret_file, not both');
  const clientSecret =
    file !== undefined ? readSecretFile(file, 'idp_client_secret_file', at) : inline;
  // An unreadable *_file is already reported; "is required" on top would send the operator looking for a missing key.
  if (clientSecret === undefined && file === undefined)
    at(
      ['idp_client_secret'],
      'is required: the OIDC client secret registered at the IdP (or idp_client_secret_file)',
    );
  if (raw.idp_provider_url === undefined)
    at(['idp_provider_url'], "is required: the IdP's issuer URL (or list IdPs under `idps`)");
  if (raw.idp_client_id === undefined)
    at(['idp_client_id'], 'is required: the client id registered at the IdP');
  if (raw.idp_provider_url === undefined || raw.idp_client_id === undefined) return null;
  const issuer = new URL(raw.idp_provider_url);
  if (issuer.protocol === 'http:' && !isLoopback(issuer.hostname)) {
    at(
      ['idp_provider_url'],
      'expected an https:// issuer (plain http is only accepted for an IdP on this machine, 127.0.0.1 or localhost)',
    );
  }
  // The directory API receives Portcullis's app tokens (Graph, Google) or the user's (GitHub).
  const directory = raw.idp_directory_url ? new URL(raw.idp_directory_url) : null;
  if (directory && directory.protocol === 'http:' && !isLoopback(directory.hostname))
    at(
      ['idp_directory_url'],
      'expected an https:// URL: tokens are sent there (plain http only for this machine, 127.0.0.1 or localhost)',
    );
  const provider = raw.idp_provider ?? 'oidc';
  const preset = providerDefaults(provider, raw.idp_client_id);
  const groupsClaims = raw.idp_groups_claim ?? preset.groupsClaims;
  tenantSettings(raw, at);
  const top = settings.raw;
  return {
    id,
    name,
    issuer,
    clientId: raw.idp_client_id,
    clientSecret: clientSecret ?? '',
    provider,
    scopes: raw.idp_scopes ?? preset.scopes,
    groupsClaim: groupsClaims[0] ?? 'groups',
    groupsClaims,
    groupsSeparator: raw.idp_groups_separator ?? preset.groupsSeparator,
    groupsWithoutScope: preset.groupsWithoutScope,
    userClaim: raw.idp_user_claim ?? preset.userClaim,
    emailClaim: raw.idp_email_claim ?? preset.emailClaim,
    allowedTenants: (raw.idp_allowed_tenants ?? []).map((t) => t.toLowerCase()),
    directoryUrl: directory,
    directoryCacheTtlMs: top.idp_directory_cache_ttl ?? 5 * 60_000,
    directoryOutageGraceMs: top.idp_directory_outage_grace ?? 15 * 60_000,
    directoryCacheSize: settings.cacheSize,
    hostedDomains: (raw.idp_hosted_domains ?? []).map((d) => d.toLowerCase()),
    googleDirectory: googleSettings(raw, at),
    allowUnverifiedEmail: raw.idp_allow_unverified_email === true,
    emailVerifiedMissing: raw.idp_email_verified_missing ?? 'refuse',
    idTokenAlgorithms: idTokenAlgorithms(raw, clientSecret, at),
  };
}

/** A route's `idps`: ids of configured IdPs, or every IdP when the key is absent. */
function routeIdps(
  list: string[] | undefined,
  path: readonly PropertyKey[],
  all: string[],
  at: At,
): string[] {
  if (list === undefined) return all;
  if (!list.length) at(path, `expected at least one IdP id, one of ${all.join(', ')}`);
  const out: string[] = [];
  list.forEach((id, j) => {
    if (!all.includes(id))
      at(
        [...path, j],
        `unknown IdP "${id}"; expected one of ${all.join(', ')} (the ids of \`idps\`${all.includes('default') ? ', and default for the top-level idp_* keys' : ''})`,
      );
    else if (!out.includes(id)) out.push(id);
  });
  return out;
}
