import { z } from 'zod';
import { GROUP_SEPARATORS } from '../identity/claim-path.js';
import { IDENTITY_PRESETS } from '../identity/presets.js';
import { IDP_PROVIDERS } from '../identity/providers.js';
import { parseDuration } from './duration.js';

// The YAML file's shape. Key names follow Pomerium's where Pomerium has the concept, so an
// existing Pomerium config that uses only these keys loads unchanged. Every message here is
// shown to an operator next to the key path and line, so it says what was expected.

const duration = (what: string) =>
  z
    .union([z.string(), z.number()], {
      error: `expected a duration for ${what} like 30s, 15m, 12h or 14d`,
    })
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === null) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a duration for ${what} like 30s, 15m, 12h or 14d, got ${JSON.stringify(v)}`,
        });
        return z.NEVER;
      }
      return ms;
    });

const httpUrl = (what: string) =>
  z.string({ error: `expected ${what} as a URL string` }).refine(
    (v) => {
      try {
        const u = new URL(v);
        return (
          (u.protocol === 'http:' || u.protocol === 'https:') &&
          !u.username &&
          !u.password &&
          !!u.hostname
        );
      } catch {
        return false;
      }
    },
    {
      message: `expected ${what} as an absolute http(s) URL without credentials, e.g. https://app.example.com`,
    },
  );

const stringList = (what: string) =>
  z
    .union([z.string(), z.array(z.string())], {
      error: `expected ${what} as a string or a list of strings`,
    })
    .transform((v) =>
      Array.isArray(v)
        ? v
        : v
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
    );

// A limit: 0 turns it off, so a typo like -1 or 2.5 must not silently mean "off" or "unlimited".
const wholeNumber = (what: string, max: number) => {
  const expected = `expected a whole number of ${what}, from 0 (no limit) to ${max}`;
  return z
    .number({ error: expected })
    .int({ error: expected })
    .min(0, { message: expected })
    .max(max, { message: expected });
};

// Pomerium's own docs write `allow_any_authenticated_user: 'true'`; such configs must paste in unchanged.
const boolish = z
  .union([z.boolean(), z.enum(['true', 'false'])], { error: 'expected true or false' })
  .transform((v) => v === true || v === 'true');

const claimPath = z
  .string({ error: 'expected a claim name or a dotted path like realm_access.roles' })
  .min(1, { message: 'expected a claim name or a dotted path like realm_access.roles' })
  .max(200, { message: 'expected a claim path of at most 200 characters' })
  .refine((v) => ![...v].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f), {
    message: 'expected a claim path without control characters',
  });

const policyTestSchema = z.strictObject({
  name: z.string({ error: 'expected a name for the policy test' }),
  request: z.strictObject({
    url: z.string({ error: 'expected request.url as an absolute URL' }),
    method: z.string().optional(),
    user: z.string().optional(),
    email: z.string().optional(),
    groups: z.array(z.string()).optional(),
    claims: z.record(z.string(), z.unknown()).optional(),
    ip: z.string().optional(),
    time: z.string().optional(),
    headers: z.record(z.string(), z.string()).optional(),
    /** The IdP the simulated user signed in with (`idps[].id`). */
    idp: z.string().optional(),
  }),
  expect: z.enum(['allow', 'deny', 'login'], {
    error: 'expected `expect` to be allow, deny or login',
  }),
});

const presetList = z
  .union([z.enum(IDENTITY_PRESETS), z.array(z.enum(IDENTITY_PRESETS))], {
    error: `expected identity_headers as one of ${IDENTITY_PRESETS.join(', ')}, or a list of them`,
  })
  .transform((v) => (Array.isArray(v) ? v : [v]));

// true: `Authorization: Bearer <token>`; a string: that header carries the raw token.
const tokenPass = (what: string) =>
  z.union([z.boolean(), z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/)], {
    error: `expected ${what} as true/false or a header name like X-Access-Token`,
  });

const headerMap = z.record(z.string(), z.string(), {
  error: 'expected a map of header names to string values',
});

// Pomerium's redirect route (https://www.pomerium.com/docs/reference/routes/redirect): the
// fields of Envoy's RedirectAction; build.ts checks the combinations.
const redirectSchema = z.strictObject(
  {
    https_redirect: boolish.optional(),
    scheme_redirect: z.enum(['http', 'https'], { error: 'expected http or https' }).optional(),
    host_redirect: z.string({ error: 'expected a host name like example.com' }).optional(),
    port_redirect: z
      .number({ error: 'expected a port number from 1 to 65535' })
      .int({ error: 'expected a port number from 1 to 65535' })
      .min(1, { message: 'expected a port number from 1 to 65535' })
      .max(65535, { message: 'expected a port number from 1 to 65535' })
      .optional(),
    path_redirect: z.string({ error: 'expected a path like /new' }).optional(),
    prefix_rewrite: z.string({ error: 'expected a path prefix like /new/' }).optional(),
    response_code: z
      .union([z.literal(301), z.literal(302), z.literal(303), z.literal(307), z.literal(308)], {
        error: 'expected a redirect status: 301, 302, 303, 307 or 308',
      })
      .optional(),
    strip_query: boolish.optional(),
  },
  { error: 'expected `redirect` as a map like {host_redirect: example.com}' },
);

// Pomerium's direct response (https://www.pomerium.com/docs/reference/routes/direct-response).
const responseSchema = z.strictObject(
  {
    status: z
      .number({ error: 'expected an HTTP status from 200 to 599' })
      .int({ error: 'expected an HTTP status from 200 to 599' })
      .min(200, { message: 'expected an HTTP status from 200 to 599' })
      .max(599, { message: 'expected an HTTP status from 200 to 599' })
      .optional(),
    body: z
      .string({ error: 'expected the response body as a string' })
      .max(65536, { message: 'expected a body of at most 64 KiB' })
      .optional(),
  },
  { error: 'expected `response` as a map like {status: 200, body: ok}' },
);

const pathString = (what: string) =>
  z.string({ error: `expected ${what} as a path like /app/` }).startsWith('/', {
    error: `expected ${what} to start with /`,
  });

// Every key that describes one identity provider: at the top level for the single (default)
// IdP, and in each entry of `idps:` (docs/identity-providers.md, "Several IdPs").
const IDP_KEYS = {
  idp_provider: z
    .enum(IDP_PROVIDERS, {
      error: `expected idp_provider as one of ${IDP_PROVIDERS.join(', ')}`,
    })
    .optional(),
  idp_provider_url: httpUrl('idp_provider_url (the issuer)'),
  idp_client_id: z.string().min(1),
  idp_client_secret: z.string().min(1).optional(),
  idp_client_secret_file: z.string().optional(),
  idp_scopes: stringList('idp_scopes').optional(),
  // Claim paths (src/identity/claim-path.ts): a claim name, or a dotted path into nested claims.
  idp_groups_claim: z
    .union([claimPath, z.array(claimPath).min(1)], {
      error:
        'expected idp_groups_claim as a claim name or dotted path (realm_access.roles), or a list of them',
    })
    .transform((v) => (Array.isArray(v) ? v : [v]))
    .optional(),
  idp_groups_separator: z
    .enum(GROUP_SEPARATORS, {
      error: `expected idp_groups_separator as one of ${GROUP_SEPARATORS.join(', ')}`,
    })
    .optional(),
  // Entra ID (src/identity/directory/): the tenants whose users may sign in, and Graph's URL.
  idp_allowed_tenants: stringList('idp_allowed_tenants').optional(),
  idp_directory_url: httpUrl('idp_directory_url').optional(),
  // Google Workspace (src/identity/directory/google.ts).
  idp_hosted_domains: stringList('idp_hosted_domains').optional(),
  idp_service_account_file: z.string().min(1).optional(),
  idp_admin_email: z
    .string()
    .regex(/^[^@\s]+@[^@\s]+$/, {
      message: 'expected idp_admin_email as an address like admin@example.com',
    })
    .optional(),
  idp_user_claim: claimPath.optional(),
  idp_email_claim: claimPath.optional(),
  // Email verification (src/identity/email-verified.ts) and ID token signatures (src/identity/id-token.ts).
  idp_allow_unverified_email: z.boolean().optional(),
  idp_email_verified_missing: z
    .enum(['refuse', 'trust'], { error: 'expected idp_email_verified_missing as refuse or trust' })
    .optional(),
  idp_id_token_algorithms: stringList('idp_id_token_algorithms').optional(),
};

// An IdP's id names it in routes (`idps: [corp]`), policies (`idp: {is: corp}`) and sessions:
// short, stable, safe in a URL and a log line.
export const IDP_ID_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;

const idpEntrySchema = z.strictObject(
  {
    id: z
      .string({ error: 'expected the IdP `id` as a short name like corp or github' })
      .regex(IDP_ID_RE, {
        message:
          'expected the IdP `id` as 1-32 lower-case letters, digits, - or _, starting with a letter or digit (e.g. corp)',
      }),
    name: z
      .string({ error: 'expected `name` as the text on the sign-in button, e.g. Corporate SSO' })
      .min(1, { message: 'expected `name` as the text on the sign-in button' })
      .max(100, { message: 'expected a `name` of at most 100 characters' })
      .optional(),
    ...IDP_KEYS,
  },
  { error: 'expected each entry of `idps` as a map like {id: corp, idp_provider_url: …}' },
);

// Load balancing (https://www.pomerium.com/docs/reference/routes/load-balancing): Envoy's
// policy names, its HealthCheck and OutlierDetection shapes, as Pomerium passes them through.
export const LB_POLICIES = [
  'ROUND_ROBIN',
  'LEAST_REQUEST',
  'RING_HASH',
  'RANDOM',
  'MAGLEV',
] as const;
const lbPolicy = (key: string) =>
  z.enum(LB_POLICIES, { error: `expected ${key} as one of ${LB_POLICIES.join(', ')}` });

const count = (what: string, min: number, max: number) => {
  const expected = `expected ${what} as a whole number from ${min} to ${max}`;
  return z
    .number({ error: expected })
    .int({ error: expected })
    .min(min, { message: expected })
    .max(max, { message: expected });
};

// Envoy's Payload: hex text (the only form YAML can carry without ambiguity).
const payload = z.strictObject(
  {
    text: z
      .string({ error: "expected text as hex bytes in quotes, like '50494e47'" })
      .regex(/^(?:[0-9a-fA-F]{2})+$/, {
        message: "expected text as hex bytes in quotes, like '50494e47'",
      }),
  },
  { error: "expected a payload like {text: '50494e47'} (hex bytes)" },
);

const statusRange = z.strictObject(
  {
    start: count('start (the first status accepted)', 100, 599),
    end: count('end (the first status no longer accepted)', 101, 600),
  },
  { error: 'expected a status range like {start: 200, end: 300} (end excluded)' },
);

const healthCheckSchema = z.strictObject(
  {
    timeout: duration('timeout'),
    interval: duration('interval'),
    unhealthy_threshold: count('unhealthy_threshold (failed checks in a row)', 1, 1000),
    healthy_threshold: count('healthy_threshold (passed checks in a row)', 1, 1000),
    http_health_check: z
      .strictObject(
        {
          host: z.string({ error: 'expected host as a host name like app.internal' }).optional(),
          path: z
            .string({ error: 'expected path as a path like /healthz' })
            .startsWith('/', { error: 'expected path to start with /' }),
          expected_statuses: z
            .array(statusRange, { error: 'expected a list of status ranges' })
            .min(1, { message: 'expected at least one status range' })
            .optional(),
          codec_client_type: z
            .enum(['HTTP1'], { error: 'expected HTTP1 (health checks speak HTTP/1.1)' })
            .optional(),
        },
        { error: 'expected http_health_check as a map like {path: /healthz}' },
      )
      .optional(),
    tcp_health_check: z
      .strictObject(
        {
          send: payload.optional(),
          receive: z.array(payload, { error: 'expected a list of payloads' }).optional(),
        },
        { error: 'expected tcp_health_check as a map ({} only connects)' },
      )
      .optional(),
  },
  {
    error:
      'expected a health check like {timeout: 1s, interval: 10s, unhealthy_threshold: 2, healthy_threshold: 1, http_health_check: {path: /healthz}}',
  },
);

const outlierDetectionSchema = z.strictObject(
  {
    consecutive_5xx: count('consecutive_5xx', 1, 1000).optional(),
    interval: duration('interval').optional(),
    base_ejection_time: duration('base_ejection_time').optional(),
    max_ejection_time: duration('max_ejection_time').optional(),
    max_ejection_percent: count('max_ejection_percent', 0, 100).optional(),
  },
  { error: 'expected outlier_detection as a map like {consecutive_5xx: 5} ({} for the defaults)' },
);
// Pomerium's rewrite_response_headers (https://www.pomerium.com/docs/reference/routes/headers).
const rewriteResponseHeader = z.strictObject(
  {
    header: z
      .string({ error: 'expected a header name like Location' })
      .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, { message: 'expected a header name like Location' }),
    prefix: z.string({ error: 'expected the prefix to replace, as a string' }).optional(),
    value: z.string({ error: 'expected the replacement value as a string' }),
  },
  { error: 'expected an entry like {header: Location, prefix: http://internal/, value: /}' },
);

// A DNS name for SNI and certificate verification: no scheme, port, path or spaces.
const serverName = (what: string) =>
  z
    .string({ error: `expected ${what} as a host name like app.internal` })
    .regex(
      /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/,
      {
        message: `expected ${what} as a host name like app.internal (no scheme, port or path)`,
      },
    );

export const routeSchema = z.strictObject({
  id: z.string().optional(),
  name: z.string().optional(),
  from: z.string({
    error: 'expected `from` as a URL like https://app.example.com (the host this route answers)',
  }),
  to: z
    .union([z.string(), z.array(z.string()).min(1)], {
      error: 'expected `to` as a URL or a list of URLs',
    })
    .optional(),
  prefix: z.string().startsWith('/', { error: 'expected `prefix` to start with /' }).optional(),
  path: z.string().startsWith('/', { error: 'expected `path` to start with /' }).optional(),
  regex: z.string().optional(),
  allow_public_unauthenticated_access: boolish.optional(),
  allow_any_authenticated_user: boolish.optional(),
  policy: z.unknown().optional(),
  allowed_groups: stringList('allowed_groups').optional(),
  allowed_emails: stringList('allowed_emails').optional(),
  allowed_email_domains: stringList('allowed_email_domains').optional(),
  preserve_host_header: z.boolean().optional(),
  pass_identity_headers: z.boolean().optional(),
  set_request_headers: headerMap.optional(),
  remove_request_headers: z.array(z.string()).optional(),
  set_response_headers: headerMap.optional(),
  allow_websockets: z.boolean().optional(),
  allow_ambiguous_paths: z.boolean().optional(),
  show_error_details: z.boolean().optional(),
  timeout: duration('timeout').optional(),
  idle_timeout: duration('idle_timeout').optional(),
  tls_skip_verify: z.boolean().optional(),
  tls_custom_ca: z.string().optional(),
  tls_custom_ca_file: z.string().optional(),
  identity_headers: presetList.optional(),
  pass_access_token: tokenPass('pass_access_token').optional(),
  pass_id_token: tokenPass('pass_id_token').optional(),
  allow_bearer_tokens: z.boolean().optional(),
  bearer_audiences: stringList('bearer_audiences').optional(),
  // The IdPs whose users this route accepts (ids from `idps`); default: all of them.
  idps: stringList('idps (IdP ids)').optional(),
  redirect: redirectSchema.optional(),
  response: responseSchema.optional(),
  prefix_rewrite: pathString('prefix_rewrite').optional(),
  regex_rewrite_pattern: z.string({ error: 'expected a regular expression' }).optional(),
  regex_rewrite_substitution: z.string({ error: 'expected a substitution string' }).optional(),
  host_rewrite: z.string({ error: 'expected a host name like app.internal' }).optional(),
  host_rewrite_header: z
    .string()
    .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, { message: 'expected a header name like X-My-Host' })
    .optional(),
  host_path_regex_rewrite_pattern: z.string({ error: 'expected a regular expression' }).optional(),
  host_path_regex_rewrite_substitution: z
    .string({ error: 'expected a substitution string' })
    .optional(),
  load_balancing_policy: lbPolicy('load_balancing_policy').optional(),
  lb_policy: lbPolicy('lb_policy').optional(),
  health_checks: z
    .array(healthCheckSchema, { error: 'expected health_checks as a list of health checks' })
    .optional(),
  outlier_detection: outlierDetectionSchema.optional(),
  // Upstream connection and header keys (src/config/route-keys.ts checks the combinations).
  rewrite_response_headers: z
    .array(rewriteResponseHeader, {
      error: 'expected rewrite_response_headers as a list of {header, prefix, value}',
    })
    .optional(),
  cors_allow_preflight: boolish.optional(),
  tls_client_cert: z.string({ error: 'expected a base64-encoded PEM certificate' }).optional(),
  tls_client_key: z.string({ error: 'expected a base64-encoded PEM private key' }).optional(),
  tls_client_cert_file: z.string({ error: 'expected a path to a PEM certificate' }).optional(),
  tls_client_key_file: z.string({ error: 'expected a path to a PEM private key' }).optional(),
  tls_server_name: serverName('tls_server_name').optional(),
  tls_upstream_server_name: serverName('tls_upstream_server_name').optional(),
  kubernetes_service_account_token: z
    .string({ error: 'expected the service account token as a string' })
    .min(1, { message: 'expected a non-empty service account token' })
    .optional(),
  jwt_groups_filter: stringList('jwt_groups_filter').optional(),
  depends_on: stringList('depends_on').optional(),
  regex_priority_order: z
    .number({ error: 'expected a whole number from 0 to 4294967295' })
    .int({ error: 'expected a whole number from 0 to 4294967295' })
    .min(0, { message: 'expected a whole number from 0 to 4294967295' })
    .max(4294967295, { message: 'expected a whole number from 0 to 4294967295' })
    .optional(),
  kubernetes_service_account_token_file: z
    .string({ error: 'expected a path to a service account token file' })
    .optional(),
});

export const configSchema = z.strictObject({
  address: z.string().optional(),
  insecure_server: z.boolean().optional(),
  certificate_file: z.string().optional(),
  certificate_key_file: z.string().optional(),
  certificates: z.array(z.strictObject({ cert: z.string(), key: z.string() })).optional(),
  client_ca_file: z.string().optional(),
  authenticate_service_url: httpUrl('authenticate_service_url').optional(),
  authenticate_callback_path: z
    .string()
    // A query is kept as registered: Authentik's outposts registered
    // /outpost.goauthentik.io/callback?X-authentik-auth-callback=true.
    .regex(
      /^\/[A-Za-z0-9._~/-]*(?:\?[A-Za-z0-9._~-]+=[A-Za-z0-9._~-]*(?:&[A-Za-z0-9._~-]+=[A-Za-z0-9._~-]*)*)?$/,
      {
        message:
          'expected a path like /oauth2/callback, optionally with a query like ?X-authentik-auth-callback=true',
      },
    )
    .optional(),
  // The single IdP's keys; `idps:` lists several, each with these same keys (IDP_KEYS).
  ...IDP_KEYS,
  idp_provider_url: IDP_KEYS.idp_provider_url.optional(),
  idp_client_id: IDP_KEYS.idp_client_id.optional(),
  idps: z
    .array(idpEntrySchema, {
      error:
        'expected `idps` as a list of identity providers, each like {id: corp, idp_provider_url: …}',
    })
    .min(1, { message: 'expected at least one identity provider in `idps`' })
    .optional(),
  cookie_secret: z.string().optional(),
  cookie_secret_file: z.string().optional(),
  cookie_name: z
    .string()
    .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, {
      message: 'expected a cookie name made of token characters (letters, digits, - _ .)',
    })
    .optional(),
  cookie_domain: z.string().optional(),
  allowed_redirect_domains: stringList('allowed_redirect_domains').optional(),
  cookie_expire: duration('cookie_expire').optional(),
  cookie_secure: z.boolean().optional(),
  cookie_http_only: z.boolean().optional(),
  cookie_same_site: z.enum(['lax', 'strict', 'none', 'Lax', 'Strict', 'None']).optional(),
  trusted_proxies: stringList('trusted_proxies').optional(),
  session_storage: z
    .string({ error: 'expected session_storage as cookie, memory, redis://… or postgres://…' })
    .optional(),
  idp_refresh_directory_interval: duration('idp_refresh_directory_interval').optional(),
  idp_directory_cache_ttl: duration('idp_directory_cache_ttl').optional(),
  idp_directory_outage_grace: duration('idp_directory_outage_grace').optional(),
  session_cache_size: z
    .number({ error: 'expected a whole number of sessions, from 100 to 1000000' })
    .int({ error: 'expected a whole number of sessions, from 100 to 1000000' })
    .min(100, { message: 'expected at least 100 sessions' })
    .max(1_000_000, {
      message: 'expected at most 1000000 sessions (each takes about 2.5 KB of memory)',
    })
    .optional(),
  login_rate_limit: wholeNumber('sign-in starts per client address per hour', 1_000_000).optional(),
  login_rate_limit_global: wholeNumber(
    'sign-in starts per second from all clients together',
    100_000,
  ).optional(),
  // Drop-in endpoints of the tools Portcullis replaces (src/forward-auth/compat.ts).
  compat: z
    .array(
      z.enum(['oauth2-proxy', 'authentik', 'authelia'], {
        error: 'expected compat entries among oauth2-proxy, authentik, authelia',
      }),
      { error: 'expected `compat` as a list, e.g. [oauth2-proxy]' },
    )
    .optional(),
  signing_key: z.string().optional(),
  signing_key_file: z.string().optional(),
  jwt_claims_headers: z
    .union([z.record(z.string(), z.string()), z.array(z.string()), z.string()], {
      error:
        'expected jwt_claims_headers as a map of header names to claim names, or a list of claim names',
    })
    .optional(),
  jwt_claims: stringList('jwt_claims').optional(),
  // https://www.pomerium.com/docs/reference/jwt-groups-filter (routes may add to it).
  jwt_groups_filter: stringList('jwt_groups_filter').optional(),
  identity_headers: presetList.optional(),
  allow_bearer_tokens: z.boolean().optional(),
  bearer_audiences: stringList('bearer_audiences').optional(),
  bearer_clock_skew: duration('bearer_clock_skew').optional(),
  idp_introspection: z.boolean().optional(),
  bearer_token_cache_size: z
    .number({ error: 'expected a whole number of tokens, from 100 to 1000000' })
    .int({ error: 'expected a whole number of tokens, from 100 to 1000000' })
    .min(100, { message: 'expected at least 100 tokens' })
    .max(1_000_000, { message: 'expected at most 1000000 tokens' })
    .optional(),
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).optional(),
  // Operations (docs/operations.md): a private listener for /metrics, /ping and /ready; the audit log; reload and shutdown.
  metrics_address: z.string().optional(),
  audit_log_file: z.string().min(1).optional(),
  watch_config: z.boolean().optional(),
  shutdown_timeout: duration('shutdown_timeout').optional(),
  // One worker process per core behind one listening port (src/cluster.ts).
  workers: z
    .union([z.literal('auto'), z.number().int().min(1).max(256)], {
      error: 'expected `workers` as auto or a number of processes from 1 to 256',
    })
    .optional(),
  // The admin console (src/admin/, docs/admin.md): off unless admin_policy names who may use it.
  admin_policy: z.unknown().optional(),
  admin_host: z
    .string({ error: 'expected admin_host as a host name, e.g. auth.example.com' })
    .regex(/^[a-z0-9.-]+(:\d{1,5})?$/i, {
      message: 'expected admin_host as a host name with an optional :port, e.g. auth.example.com',
    })
    .optional(),
  policy_tests: z
    .array(policyTestSchema, { error: 'expected `policy_tests` as a list of tests' })
    .optional(),
  routes: z
    .array(routeSchema, { error: 'expected `routes` as a list of routes' })
    .min(1, { message: 'expected at least one route' }),
});

export type RawConfig = z.infer<typeof configSchema>;
export type RawRoute = z.infer<typeof routeSchema>;
export type RawPolicyTest = z.infer<typeof policyTestSchema>;
export type RawIdpEntry = z.infer<typeof idpEntrySchema>;

/** Every key the schema knows, for "did you mean". */
export const KNOWN_GLOBAL_KEYS = Object.keys(configSchema.shape);
export const KNOWN_ROUTE_KEYS = Object.keys(routeSchema.shape);
export const KNOWN_IDP_KEYS = Object.keys(idpEntrySchema.shape);
