import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import {
  generatedSigningKey,
  generatedSigningKeyInherited,
  parseSigningKeys,
  REGISTERED_ASSERTION_CLAIMS,
  type SigningKeyInput,
} from '../identity/assertion.js';
import { ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS } from '../identity/id-token.js';
import type { IdentityPreset } from '../identity/presets.js';
import { parseServiceAccount } from '../identity/directory/google.js';
import { providerDefaults } from '../identity/providers.js';
import { compileRoutePolicy, PolicyError } from '../policy/index.js';
import { CidrError, compileCidrs } from '../security/cidr.js';
import { isLoopback } from '../security/loopback.js';
import { redirectAllowList } from '../security/redirect.js';
import type { ConfigIssue } from './errors.js';
import { parseSessionStorage } from '../session/storage-url.js';
import { compileHostRewrite, compilePathRewrite, compileRedirect } from './rewrites.js';
import { compileTcpTo, isTcpFrom, parseTcpFrom } from './tcp-route.js';
import type { RawConfig, RawRoute } from './schema.js';
import type { Config, PathMatch, Route, RouteFrom } from './types.js';

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

/** Null only when nothing usable could be built; every problem has gone to `at` either way. */
export function buildConfig(raw: RawConfig, file: string, at: At): Config | null {
  const warnings: ConfigIssue[] = [];

  // Secrets: inline or *_file, never both, so there is one source of truth.
  const secret = (key: 'idp_client_secret' | 'cookie_secret'): string | undefined => {
    const inline = raw[key];
    const path = raw[`${key}_file`];
    if (inline !== undefined && path !== undefined)
      at([key], `set either ${key} or ${key}_file, not both`);
    return path !== undefined ? readSecretFile(path, `${key}_file`, at) : inline;
  };
  // An unreadable *_file is already reported; "is required" on top would send the operator looking for a missing key.
  const isSet = (key: 'idp_client_secret' | 'cookie_secret'): boolean =>
    raw[key] !== undefined || raw[`${key}_file`] !== undefined;
  const clientSecret = secret('idp_client_secret');
  if (clientSecret === undefined && !isSet('idp_client_secret'))
    at(
      ['idp_client_secret'],
      'is required: the OIDC client secret registered at the IdP (or idp_client_secret_file)',
    );
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

  const provider = raw.idp_provider ?? 'oidc';
  const preset = providerDefaults(provider, raw.idp_client_id);
  const groupsClaims = raw.idp_groups_claim ?? preset.groupsClaims;
  const groupsClaim = groupsClaims[0] ?? 'groups';
  tenantSettings(raw, at);
  // GitHub's tokens are opaque and there is no introspection: nothing to verify a bearer with.
  if (
    provider === 'github' &&
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
    bearerAudiences: raw.bearer_audiences ?? [raw.idp_client_id],
  };
  const routes: Route[] = [];
  raw.routes.forEach((r, i) => {
    const route = compileRoute(r, i, groupsClaim, at, defaults);
    if (route) routes.push(route);
  });
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

  if (!listen) return null;
  return {
    file,
    listen,
    tls,
    authenticateUrl,
    callbackPath: callback.path,
    callbackQuery: callback.query,
    allowedRedirects,
    idp: {
      issuer,
      clientId: raw.idp_client_id,
      clientSecret: clientSecret ?? '',
      provider,
      scopes: raw.idp_scopes ?? preset.scopes,
      groupsClaim,
      groupsClaims,
      groupsSeparator: raw.idp_groups_separator ?? preset.groupsSeparator,
      groupsWithoutScope: preset.groupsWithoutScope,
      userClaim: raw.idp_user_claim ?? preset.userClaim,
      emailClaim: raw.idp_email_claim ?? preset.emailClaim,
      allowedTenants: (raw.idp_allowed_tenants ?? []).map((t) => t.toLowerCase()),
      directoryUrl: raw.idp_directory_url ? new URL(raw.idp_directory_url) : null,
      directoryCacheTtlMs: raw.idp_directory_cache_ttl ?? 5 * 60_000,
      directoryOutageGraceMs: raw.idp_directory_outage_grace ?? 15 * 60_000,
      directoryCacheSize: raw.session_cache_size ?? DEFAULT_SESSION_CACHE_SIZE,
      hostedDomains: (raw.idp_hosted_domains ?? []).map((d) => d.toLowerCase()),
      googleDirectory: googleSettings(raw, at),
      allowUnverifiedEmail: raw.idp_allow_unverified_email === true,
      emailVerifiedMissing: raw.idp_email_verified_missing ?? 'refuse',
      idTokenAlgorithms: idTokenAlgorithms(raw, clientSecret, at),
    },
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

/** The files the config reads besides itself: secrets, keys, certificates, CAs. */
function filesRead(raw: RawConfig): string[] {
  const paths = [
    raw.idp_client_secret_file,
    raw.idp_service_account_file,
    raw.cookie_secret_file,
    raw.signing_key_file,
    raw.certificate_file,
    raw.certificate_key_file,
    raw.client_ca_file,
    ...(raw.certificates ?? []).flatMap((c) => [c.cert, c.key]),
    ...(raw.routes ?? []).map((r) => r.tls_custom_ca_file),
  ];
  return [...new Set(paths.filter((p): p is string => typeof p === 'string' && p.length > 0))];
}

// Entra's shared issuers: an app registered as multi-tenant accepts users of every tenant in
// the world unless told otherwise (learn.microsoft.com/en-us/entra/identity-platform/howto-convert-app-to-be-multi-tenant).
const ENTRA_SHARED = /^\/(common|organizations|consumers)\/v2\.0\/?$/i;
const TENANT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function tenantSettings(raw: RawConfig, at: At): void {
  const tenants = raw.idp_allowed_tenants;
  if (tenants !== undefined && raw.idp_provider !== 'azure')
    at(['idp_allowed_tenants'], 'is an Entra ID setting: it needs idp_provider: azure');
  for (const t of tenants ?? [])
    if (t !== '*' && !TENANT_ID.test(t))
      at(
        ['idp_allowed_tenants'],
        `expected tenant ids (GUIDs such as 72f988bf-86f1-41af-91ab-2d7cd011db47) or *, got ${JSON.stringify(t)}`,
      );
  if (raw.idp_provider !== 'azure') return;
  const path = URL.parse(raw.idp_provider_url)?.pathname ?? '';
  if (ENTRA_SHARED.test(path) && !tenants?.length)
    at(
      ['idp_provider_url'],
      `${path} is shared by every Entra tenant: list the tenant ids whose users may sign in with idp_allowed_tenants (or [*] to accept any organization's users)`,
    );
}

function googleSettings(raw: RawConfig, at: At): Config['idp']['googleDirectory'] {
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
function idTokenAlgorithms(raw: RawConfig, clientSecret: string | undefined, at: At): string[] {
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
  toList.forEach((t, j) => {
    const path = Array.isArray(r.to) ? [...base, 'to', j] : [...base, 'to'];
    try {
      const u = new URL(t);
      if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username || u.password)
        throw new Error();
      if (u.search || u.hash) at(path, 'expected an upstream URL without query or fragment');
      to.push(u);
    } catch {
      at(
        path,
        `expected an http(s) upstream URL like http://10.0.0.5:3000, got ${JSON.stringify(t)}`,
      );
    }
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
    policy = compileRoutePolicy(r, { groupsClaim });
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
    to: tcpTo ?? to,
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
    timeoutMs: r.timeout ?? 30_000,
    idleTimeoutMs: r.idle_timeout ?? 300_000,
    tlsSkipVerify: r.tls_skip_verify === true,
    tlsCa,
    identityHeaders:
      r.identity_headers ?? (r.pass_identity_headers === true ? defaults.identityHeaders : []),
    passAccessToken: tokenHeader('pass_access_token'),
    passIdToken: tokenHeader('pass_id_token'),
    allowBearerTokens: r.allow_bearer_tokens ?? defaults.allowBearerTokens,
    bearerAudiences: r.bearer_audiences ?? defaults.bearerAudiences,
    redirect,
    response: r.response ? { status: r.response.status ?? 200, body: r.response.body ?? '' } : null,
    prefixRewrite,
    regexRewrite,
    hostRewrite,
  };
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
