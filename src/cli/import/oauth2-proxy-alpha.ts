import type { ImportNotes } from './emit.js';
import type { AlphaFile, Obj } from './oauth2-proxy-alpha-file.js';
import {
  alphaUpstreams,
  get,
  headerKeys,
  type AlphaUpstream,
} from './oauth2-proxy-alpha-routes.js';
import type { Setting, Settings } from './oauth2-proxy-options.js';

// oauth2-proxy's alpha configuration (--alpha-config, YAML), merged with its legacy settings as
// oauth2-proxy does (main.go loadConfiguration, AlphaOptions.MergeInto): the alpha file holds
// providers, upstreamConfig, injectRequestHeaders, injectResponseHeaders, server and
// metricsServer; everything else (cookie secret, email domains, sessions) stays in the legacy
// file, variables and flags. The file's reader: oauth2-proxy-alpha-file.ts; its upstreams and
// headers: oauth2-proxy-alpha-routes.ts.

/** Legacy settings oauth2-proxy refuses next to --alpha-config (alpha config page, "Removed options"). */
const REMOVED = new Set([
  'flush_interval',
  'pass_host_header',
  'proxy_websockets',
  'ssl_upstream_insecure_skip_verify',
  'upstreams',
  'upstream_timeout',
  'pass_basic_auth',
  'pass_access_token',
  'pass_user_headers',
  'pass_authorization_header',
  'set_basic_auth',
  'set_xauthrequest',
  'set_authorization_header',
  'prefer_email_to_user',
  'basic_auth_password',
  'skip_auth_strip_headers',
  'client_id',
  'client_secret',
  'client_secret_file',
  'provider',
  'provider_display_name',
  'provider_ca_files',
  'use_system_trust_store',
  'login_url',
  'redeem_url',
  'profile_url',
  'resource',
  'validate_url',
  'scope',
  'prompt',
  'approval_prompt',
  'acr_values',
  'user_id_claim',
  'allowed_groups',
  'allowed_roles',
  'jwt_key',
  'jwt_key_file',
  'pubjwk_url',
  'code_challenge_method',
  'force_code_challenge_method',
  'backend_logout_url',
  'skip_claims_from_profile_url',
  'entra_id_allowed_tenants',
  'entra_id_federated_token_auth',
]);
const isRemoved = (k: string): boolean =>
  REMOVED.has(k) || /oidc|azure|bitbucket|github|gitlab|google|keycloak/.test(k);

/** Where each alpha field goes among the legacy settings the importer already maps. */
const PROVIDER_KEYS: Array<[string, string]> = [
  ['provider', 'provider'],
  ['clientID', 'client_id'],
  ['clientSecret', 'client_secret'],
  ['clientSecretFile', 'client_secret_file'],
  ['oidcConfig.issuerURL', 'oidc_issuer_url'],
  ['oidcConfig.insecureAllowUnverifiedEmail', 'insecure_oidc_allow_unverified_email'],
  ['oidcConfig.insecureSkipIssuerVerification', 'insecure_oidc_skip_issuer_verification'],
  ['oidcConfig.insecureSkipNonce', 'insecure_oidc_skip_nonce'],
  ['oidcConfig.skipDiscovery', 'skip_oidc_discovery'],
  ['oidcConfig.jwksURL', 'oidc_jwks_url'],
  ['oidcConfig.emailClaim', 'oidc_email_claim'],
  ['oidcConfig.groupsClaim', 'oidc_groups_claim'],
  ['oidcConfig.userIDClaim', 'user_id_claim'],
  ['oidcConfig.audienceClaims', 'oidc_audience_claims'],
  ['oidcConfig.extraAudiences', 'oidc_extra_audiences'],
  ['scope', 'scope'],
  ['allowedGroups', 'allowed_groups'],
  ['azureConfig.tenant', 'azure_tenant'],
  ['azureConfig.graphGroupField', 'azure_graph_group_field'],
  ['microsoftEntraIDConfig.allowedTenants', 'entra_id_allowed_tenants'],
  ['microsoftEntraIDConfig.federatedTokenAuth', 'entra_id_federated_token_auth'],
  ['githubConfig.org', 'github_org'],
  ['githubConfig.team', 'github_team'],
  ['githubConfig.repo', 'github_repo'],
  ['githubConfig.token', 'github_token'],
  ['githubConfig.users', 'github_users'],
  ['gitlabConfig.group', 'gitlab_groups'],
  ['gitlabConfig.projects', 'gitlab_projects'],
  ['googleConfig.group', 'google_groups'],
  ['googleConfig.adminEmail', 'google_admin_email'],
  ['googleConfig.serviceAccountJson', 'google_service_account_json'],
  ['googleConfig.useApplicationDefaultCredentials', 'google_use_application_default_credentials'],
  ['googleConfig.targetPrincipal', 'google_target_principal'],
  ['keycloakConfig.groups', 'keycloak_groups'],
  ['keycloakConfig.roles', 'allowed_roles'],
  ['bitbucketConfig.team', 'bitbucket_team'],
  ['bitbucketConfig.repository', 'bitbucket_repository'],
  ['loginGovConfig.jwtKey', 'jwt_key'],
  ['loginGovConfig.jwtKeyFile', 'jwt_key_file'],
  ['loginGovConfig.pubjwkURL', 'pubjwk_url'],
  ['caFiles', 'provider_ca_files'],
  ['useSystemTrustStore', 'use_system_trust_store'],
  ['loginURL', 'login_url'],
  ['redeemURL', 'redeem_url'],
  ['profileURL', 'profile_url'],
  ['validateURL', 'validate_url'],
  ['resource', 'resource'],
  ['skipClaimsFromProfileURL', 'skip_claims_from_profile_url'],
  ['code_challenge_method', 'code_challenge_method'],
  ['backendLogoutURL', 'backend_logout_url'],
];

export interface AlphaProvider {
  id: string;
  name?: string;
  settings: Settings;
  /** A legacy key in a note, as the alpha field the user wrote (`providers[1].clientID (file:9)`). */
  rename: (key: string) => string;
}

export interface AlphaImport {
  /** Set when the file lists more than one provider: they become `idps`. */
  providers?: AlphaProvider[];
  /** Set when upstreamConfig lists upstreams: they replace the legacy `upstreams`. */
  upstreams?: AlphaUpstream[];
  /** Route keys from injectRequestHeaders / injectResponseHeaders. */
  route: Record<string, unknown>;
  /** Global keys from the same (jwt_claims_headers). */
  global: Record<string, unknown>;
  rename: (key: string) => string;
}

/**
 * The legacy settings merged with the alpha file, and what only the alpha file can say. Legacy
 * settings that oauth2-proxy refuses beside --alpha-config, and values set in both places that
 * differ, are errors naming both places.
 */
export function mergeAlpha(
  legacy: Settings,
  a: AlphaFile,
  n: ImportNotes,
): { settings: Settings; alpha: AlphaImport; errors: string[] } {
  const errors: string[] = [];
  const settings: Settings = new Map(legacy);
  const renames = new Map<string, string>();
  const at = (path: string): string => `${a.file}:${a.lines.get(path) ?? 1}`;
  const label = (path: string): string => `${path} (${at(path)})`;
  const rename = (key: string): string => renames.get(key) ?? key;

  for (const [key, s] of legacy)
    if (isRemoved(key))
      errors.push(
        `${s.from}: ${key} — oauth2-proxy refuses it beside --alpha-config (alpha config page, "Removed options"): move it into ${a.file} (${section(key)}) or drop it`,
      );

  // --- providers
  const providers = (a.root.providers as Obj[] | undefined) ?? [];
  if (!providers.length)
    errors.push(
      `${a.file}: providers — the alpha config must list at least one provider (oauth2-proxy: "at least one provider has to be defined")`,
    );
  const ids = new Map<string, string>();
  const views: AlphaProvider[] = [];
  providers.forEach((p, i) => {
    const base = `providers[${i}]`;
    const id = typeof p.id === 'string' ? p.id : '';
    if (!id)
      errors.push(`${at(base)}: ${base}.id — oauth2-proxy requires an id for every provider`);
    else if (ids.has(id))
      errors.push(
        `${at(`${base}.id`)}: ${base}.id "${id}" is also the id of ${ids.get(id)}; oauth2-proxy requires unique ids`,
      );
    else ids.set(id, base);
    const s: Settings = new Map(providers.length === 1 ? settings : []);
    const own = new Map<string, string>();
    for (const [field, key] of PROVIDER_KEYS) {
      const v = get(p, field);
      if (v === undefined) continue;
      s.set(key, { value: v as Setting['value'], from: at(`${base}.${field}`) });
      own.set(key, label(`${base}.${field}`));
    }
    for (const [field, why] of [
      ['loginURLParameters', 'Portcullis passes no parameters from the start URL to the IdP'],
      ['ADFSConfig', 'the adfs provider is imported as plain OpenID Connect'],
      ['oidcConfig.publicKeys', "Portcullis verifies ID tokens with the issuer's jwks_uri"],
    ] as const) {
      const v = get(p, field);
      if (v !== undefined && !(Array.isArray(v) && !v.length))
        n.skip(label(`${base}.${field}`), why);
    }
    views.push({
      id: portcullisId(id, base, n, label),
      ...(typeof p.name === 'string' && p.name ? { name: p.name } : {}),
      settings: s,
      rename: (k) => own.get(k) ?? k,
    });
    if (providers.length === 1) {
      for (const [k, v] of s) settings.set(k, v);
      for (const [k, v] of own) renames.set(k, v);
      if (typeof p.name === 'string' && p.name) {
        settings.set('provider_display_name', { value: p.name, from: at(`${base}.name`) });
        renames.set('provider_display_name', label(`${base}.name`));
      }
    }
  });
  // oauth2-proxy's default provider type is google (Provider.Type: "otherwise 'Google' is set").
  for (const v of views)
    if (!v.settings.has('provider'))
      v.settings.set('provider', { value: 'google', from: 'default' });
  if (providers.length > 1 && legacy.get('skip_provider_button')?.value === true)
    errors.push(
      `${legacy.get('skip_provider_button')!.from}: skip_provider_button — oauth2-proxy refuses it with several providers ("SkipProviderButton and multiple providers are mutually exclusive")`,
    );

  // --- servers: the alpha section, where given, replaces the legacy address settings.
  serverSettings(a, 'server', legacy, settings, renames, errors, {
    BindAddress: 'http_address',
    SecureBindAddress: 'https_address',
    'TLS.Cert': 'tls_cert_file',
    'TLS.Key': 'tls_key_file',
    'TLS.MinVersion': 'tls_min_version',
    'TLS.CipherSuites': 'tls_cipher_suites',
  });
  serverSettings(a, 'metricsServer', legacy, settings, renames, errors, {
    BindAddress: 'metrics_address',
    SecureBindAddress: 'metrics_secure_address',
    'TLS.Cert': 'metrics_tls_cert_file',
    'TLS.Key': 'metrics_tls_key_file',
  });
  for (const s of ['server', 'metricsServer'])
    if (get(a.root, `${s}.ShutdownDuration`) !== undefined)
      n.skip(label(`${s}.ShutdownDuration`), 'Portcullis closes its listener at once on SIGTERM');

  const headers = headerKeys(a, n, label);
  const upstreams = alphaUpstreams(a, n, label);
  return {
    settings,
    errors,
    alpha: {
      ...(providers.length > 1 ? { providers: views } : {}),
      ...(upstreams ? { upstreams } : {}),
      route: headers.route,
      global: headers.global,
      rename,
    },
  };
}

function section(key: string): string {
  if (/upstream|flush|pass_host|websockets/.test(key)) return 'upstreamConfig';
  if (/^(pass_|set_|prefer_|basic_auth|skip_auth_strip)/.test(key)) return 'injectRequestHeaders';
  return 'providers';
}

/** Portcullis ids are 1-32 of a-z 0-9 - _, and `default` is the top-level IdP's. */
function portcullisId(
  id: string,
  base: string,
  n: ImportNotes,
  label: (p: string) => string,
): string {
  let out = id
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 32);
  if (!out || out === 'default') out = `idp-${base.replace(/\D/g, '')}`;
  if (out !== id)
    n.skip(
      label(`${base}.id`),
      `"${id}" is written as the IdP id "${out}" (Portcullis ids are 1-32 of a-z 0-9 - _)`,
    );
  return out;
}

function serverSettings(
  a: AlphaFile,
  name: string,
  legacy: Settings,
  settings: Settings,
  renames: Map<string, string>,
  errors: string[],
  map: Record<string, string>,
): void {
  for (const [field, key] of Object.entries(map)) {
    const path = `${name}.${field}`;
    let v = get(a.root, path);
    if (v === undefined) continue;
    const where = `${a.file}:${a.lines.get(path) ?? 1}`;
    if (field.startsWith('TLS.') && (field.endsWith('Cert') || field.endsWith('Key'))) {
      const src = v as Obj;
      if (typeof src.fromFile !== 'string' || !src.fromFile) {
        errors.push(
          `${where}: ${path} — Portcullis reads certificates and keys from files: give ${path}.fromFile (a PEM file)`,
        );
        continue;
      }
      v = src.fromFile;
    }
    // "-" or blank switches that listener off (Server.BindAddress: 'Leave blank or set to "-"').
    if (v === '-' || v === '') continue;
    const old = legacy.get(key);
    if (old && JSON.stringify(old.value) !== JSON.stringify(v))
      errors.push(
        `${key} is set twice, differently: ${old.from} and ${path} (${where}); keep one of them`,
      );
    settings.set(key, { value: v as Setting['value'], from: where });
    renames.set(key, `${path} (${where})`);
  }
}
