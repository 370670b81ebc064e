import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { formatDuration } from '../../config/duration.js';
import { isSecretName } from './cfg-parser.js';
import type { ImportNotes } from './emit.js';
import { parseGoDuration } from './go-duration.js';
import type { Setting, Settings } from './oauth2-proxy-options.js';

// oauth2-proxy's alpha configuration (--alpha-config, YAML), merged with its legacy settings as
// oauth2-proxy does (main.go loadConfiguration, AlphaOptions.MergeInto): the alpha file holds
// providers, upstreamConfig, injectRequestHeaders, injectResponseHeaders, server and
// metricsServer; everything else (cookie secret, email domains, sessions) stays in the legacy
// file, variables and flags. oauth2-proxy reads the file with yaml.UnmarshalStrict and
// DisallowUnknownFields (pkg/apis/options/load.go), through encoding/json, whose field names
// match without regard to case; an unknown key stops it, and so it stops the import here.
// Field names and types: pkg/apis/options/{alpha_options,providers,upstreams,header,
// secret_source,server}.go and the "Alpha Configuration" page.

export class AlphaSyntaxError extends Error {}

type Kind =
  | 'string'
  | 'bool'
  | 'int'
  | 'duration'
  | 'strings'
  | 'any'
  | { fields: Record<string, Kind> }
  | { list: Kind };

const SECRET: Kind = { fields: { value: 'string', fromEnv: 'string', fromFile: 'string' } };
const CLAIM: Kind = { fields: { claim: 'string', prefix: 'string', basicAuthPassword: SECRET } };
const HEADER: Kind = {
  fields: {
    name: 'string',
    preserveRequestValue: 'bool',
    values: {
      list: {
        fields: {
          // Squashed (up to v7.13) and nested (v7.14 on) forms of the same sources.
          value: 'string',
          fromEnv: 'string',
          fromFile: 'string',
          claim: 'string',
          prefix: 'string',
          basicAuthPassword: SECRET,
          claimSource: CLAIM,
          secretSource: SECRET,
        },
      },
    },
  },
};
const SERVER: Kind = {
  fields: {
    BindAddress: 'string',
    SecureBindAddress: 'string',
    TLS: {
      fields: { Key: SECRET, Cert: SECRET, MinVersion: 'string', CipherSuites: 'strings' },
    },
    ShutdownDuration: 'duration',
  },
};
const PROVIDER: Kind = {
  fields: {
    id: 'string',
    provider: 'string',
    name: 'string',
    clientID: 'string',
    clientSecret: 'string',
    clientSecretFile: 'string',
    keycloakConfig: { fields: { groups: 'strings', roles: 'strings' } },
    azureConfig: { fields: { tenant: 'string', graphGroupField: 'string' } },
    microsoftEntraIDConfig: { fields: { allowedTenants: 'strings', federatedTokenAuth: 'bool' } },
    ADFSConfig: { fields: { skipScope: 'bool' } },
    bitbucketConfig: { fields: { team: 'string', repository: 'string' } },
    githubConfig: {
      fields: { org: 'string', team: 'string', repo: 'string', token: 'string', users: 'strings' },
    },
    gitlabConfig: { fields: { group: 'strings', projects: 'strings' } },
    googleConfig: {
      fields: {
        group: 'strings',
        adminEmail: 'string',
        serviceAccountJson: 'string',
        useApplicationDefaultCredentials: 'bool',
        targetPrincipal: 'string',
      },
    },
    oidcConfig: {
      fields: {
        issuerURL: 'string',
        insecureAllowUnverifiedEmail: 'bool',
        insecureSkipIssuerVerification: 'bool',
        insecureSkipNonce: 'bool',
        skipDiscovery: 'bool',
        jwksURL: 'string',
        publicKeys: 'strings',
        emailClaim: 'string',
        groupsClaim: 'string',
        userIDClaim: 'string',
        audienceClaims: 'strings',
        extraAudiences: 'strings',
      },
    },
    loginGovConfig: { fields: { jwtKey: 'string', jwtKeyFile: 'string', pubjwkURL: 'string' } },
    caFiles: 'strings',
    useSystemTrustStore: 'bool',
    loginURL: 'string',
    loginURLParameters: { list: 'any' },
    redeemURL: 'string',
    profileURL: 'string',
    skipClaimsFromProfileURL: 'bool',
    resource: 'string',
    validateURL: 'string',
    scope: 'string',
    allowedGroups: 'strings',
    code_challenge_method: 'string',
    backendLogoutURL: 'string',
  },
};
const ROOT: Kind = {
  fields: {
    upstreamConfig: {
      fields: {
        proxyRawPath: 'bool',
        upstreams: {
          list: {
            fields: {
              id: 'string',
              path: 'string',
              rewriteTarget: 'string',
              uri: 'string',
              insecureSkipTLSVerify: 'bool',
              static: 'bool',
              staticCode: 'int',
              flushInterval: 'duration',
              passHostHeader: 'bool',
              proxyWebSockets: 'bool',
              timeout: 'duration',
            },
          },
        },
      },
    },
    injectRequestHeaders: { list: HEADER },
    injectResponseHeaders: { list: HEADER },
    server: SERVER,
    metricsServer: SERVER,
    providers: { list: PROVIDER },
  },
};

type Obj = Record<string, unknown>;

/** The alpha file as plain values, with the line of every path (`providers[0].clientID`). */
export interface AlphaFile {
  file: string;
  root: Obj;
  lines: Map<string, number>;
}

/** Reads and checks the file against oauth2-proxy's alpha structure; errors name key and line. */
export function parseAlpha(text: string, file: string): { alpha: AlphaFile; errors: string[] } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    const pos = lc.linePos(Math.min(e.pos[0], Math.max(0, text.trimEnd().length)));
    throw new AlphaSyntaxError(`${file}:${pos.line}: ${e.message.split('\n')[0]}`);
  }
  const lines = new Map<string, number>();
  const errors: string[] = [];
  const lineOf = (n: Node | null | undefined): number =>
    n?.range ? lc.linePos(n.range[0]).line : 1;

  const walk = (node: unknown, kind: Kind, path: string): unknown => {
    const n = node as Node | null;
    const line = lineOf(n);
    if (path) lines.set(path, line);
    const where = `${file}:${line}: ${path}`;
    if (kind === 'any') return (n as { toJSON?: () => unknown })?.toJSON?.() ?? null;
    if (typeof kind === 'object' && 'fields' in kind) {
      if (n === null || (isScalar(n) && n.value === null)) return {};
      if (!isMap(n)) {
        errors.push(`${where}: expected a map of settings`);
        return {};
      }
      const out: Obj = {};
      const byLower = new Map(Object.keys(kind.fields).map((k) => [k.toLowerCase(), k]));
      for (const pair of n.items) {
        const rawKey = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        const key = byLower.get(rawKey.toLowerCase());
        const childPath = path ? `${path}.${rawKey}` : rawKey;
        if (!key) {
          errors.push(
            `${file}:${lineOf(pair.key as Node)}: ${childPath} is not an oauth2-proxy alpha setting${hint(rawKey, Object.keys(kind.fields))}`,
          );
          continue;
        }
        out[key] = walk(pair.value, kind.fields[key]!, path ? `${path}.${key}` : key);
      }
      return out;
    }
    if (typeof kind === 'object' && 'list' in kind) {
      if (n === null || (isScalar(n) && n.value === null)) return [];
      if (!isSeq(n)) {
        errors.push(`${where}: expected a list`);
        return [];
      }
      return n.items.map((item, i) => walk(item, kind.list, `${path}[${i}]`));
    }
    const v = isScalar(n) ? n.value : undefined;
    const show = isSecretName(path) ? 'a value (not shown: a secret)' : JSON.stringify(v ?? null);
    switch (kind) {
      case 'string':
        if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')
          return String(v);
        errors.push(`${where}: expected a string, got ${show}`);
        return undefined;
      case 'bool':
        if (typeof v === 'boolean') return v;
        errors.push(`${where}: expected true or false, got ${show}`);
        return undefined;
      case 'int':
        if (typeof v === 'number' && Number.isInteger(v)) return v;
        errors.push(`${where}: expected a whole number, got ${show}`);
        return undefined;
      case 'duration': {
        const ms = typeof v === 'string' ? parseGoDuration(v) : null;
        if (ms !== null) return ms;
        errors.push(`${where}: expected a duration like "30s" or "1m30s", got ${show}`);
        return undefined;
      }
      case 'strings':
        if (isSeq(n)) return n.items.map((item, i) => walk(item, 'string', `${path}[${i}]`) ?? '');
        errors.push(`${where}: expected a list of strings`);
        return [];
    }
  };
  const contents = doc.contents as Node | null;
  const root = walk(contents, ROOT, '') as Obj;
  return { alpha: { file, root, lines }, errors };
}

function hint(key: string, known: string[]): string {
  const k = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = 3;
  for (const name of known) {
    const d = distance(k, name.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best ? ` (did you mean ${best}?)` : '';
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(
        prev[j]! + 1,
        row[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    prev = row;
  }
  return prev[b.length]!;
}

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

const get = (o: unknown, path: string): unknown =>
  path
    .split('.')
    .reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Obj)[k] : undefined), o);

export interface AlphaProvider {
  id: string;
  name?: string;
  settings: Settings;
  /** A legacy key in a note, as the alpha field the user wrote (`providers[1].clientID (file:9)`). */
  rename: (key: string) => string;
}

export interface AlphaUpstream {
  prefix: string;
  exact: boolean;
  to?: string;
  regex?: string;
  extra: Record<string, unknown>;
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

const STANDARD: Record<string, string> = {
  'x-forwarded-user': 'user',
  'x-forwarded-email': 'email',
  'x-forwarded-groups': 'groups',
  'x-forwarded-preferred-username': 'preferred_username',
};
const XAUTH: Record<string, string> = {
  'x-auth-request-user': 'user',
  'x-auth-request-email': 'email',
  'x-auth-request-groups': 'groups',
  'x-auth-request-preferred-username': 'preferred_username',
};

interface Source {
  claim?: string;
  prefix?: string;
  basicAuth?: boolean;
  secret?: { value?: string; fromEnv?: string; fromFile?: string; nested: boolean };
}

function sourceOf(v: Obj): Source {
  const nestedClaim = v.claimSource as Obj | undefined;
  const nestedSecret = v.secretSource as Obj | undefined;
  const c = nestedClaim ?? v;
  const s = nestedSecret ?? v;
  const out: Source = {};
  if (typeof c.claim === 'string') out.claim = c.claim;
  if (typeof c.prefix === 'string') out.prefix = c.prefix;
  if (c.basicAuthPassword) out.basicAuth = true;
  if (s.value !== undefined || s.fromEnv !== undefined || s.fromFile !== undefined)
    out.secret = {
      ...(typeof s.value === 'string' ? { value: s.value } : {}),
      ...(typeof s.fromEnv === 'string' ? { fromEnv: s.fromEnv } : {}),
      ...(typeof s.fromFile === 'string' ? { fromFile: s.fromFile } : {}),
      nested: Boolean(nestedSecret),
    };
  return out;
}

/** injectRequestHeaders / injectResponseHeaders as the nearest Portcullis route and global keys. */
function headerKeys(
  a: AlphaFile,
  n: ImportNotes,
  label: (p: string) => string,
): { route: Record<string, unknown>; global: Record<string, unknown> } {
  const route: Record<string, unknown> = {};
  const claimsHeaders: Record<string, string> = {};
  const setHeaders: Record<string, string> = {};
  const reqs = (a.root.injectRequestHeaders as Obj[] | undefined) ?? [];
  let standard = false;
  reqs.forEach((h, i) => {
    const base = `injectRequestHeaders[${i}]`;
    const name = typeof h.name === 'string' ? h.name : '';
    const lower = name.toLowerCase();
    const values = ((h.values as Obj[] | undefined) ?? []).map(sourceOf);
    if (!name || values.length === 0) {
      n.refuse(label(base), 'a header needs a name and at least one value');
      return;
    }
    if (h.preserveRequestValue === true)
      n.skip(
        label(`${base}.preserveRequestValue`),
        `the client's own ${name} is not passed on: Portcullis replaces it (and always removes client-sent identity headers)`,
      );
    if (values.length > 1) {
      n.skip(label(`${base}.values`), `only the first value of ${name} is sent`);
    }
    const v = values[0]!;
    if (v.basicAuth) {
      n.skip(
        label(`${base}.values[0].basicAuthPassword`),
        `${name} is not sent: Portcullis never sends HTTP Basic credentials upstream; upstreams read X-Forwarded-User`,
      );
      return;
    }
    if (v.claim !== undefined) {
      const claim = v.claim;
      if (STANDARD[lower] === claim && !v.prefix) {
        standard = true;
        return;
      }
      if (claim === 'access_token' || claim === 'id_token') {
        const key = claim === 'access_token' ? 'pass_access_token' : 'pass_id_token';
        if (lower === 'authorization' && v.prefix === 'Bearer ') route[key] = true;
        else if (!v.prefix) route[key] = name;
        else
          n.skip(
            label(`${base}.values[0].prefix`),
            `${name} is not sent: a token goes upstream as Authorization: Bearer or raw in a header of its own`,
          );
        return;
      }
      if (v.prefix) {
        n.skip(
          label(`${base}.values[0].prefix`),
          `${name} is not sent: claim headers carry the claim alone, without a prefix`,
        );
        return;
      }
      if (['refresh_token', 'created_at', 'expires_on'].includes(claim)) {
        n.skip(
          label(`${base}.values[0].claim`),
          `${name} is not sent: Portcullis does not hand out "${claim}"`,
        );
        return;
      }
      // oauth2-proxy's session "user" is the user id (userIDClaim); Portcullis's is idp_user_claim.
      claimsHeaders[name] = claim === 'user' ? 'sub' : claim;
      if (claim === 'user')
        n.skip(
          label(`${base}.values[0].claim`),
          `${name} carries the sub claim (oauth2-proxy: the user id)`,
        );
      return;
    }
    const secret = v.secret;
    if (secret) {
      const value = secretValue(name, secret, `${base}.values[0]`, n, label);
      if (value !== undefined) setHeaders[name] = value;
    }
  });
  if (standard) {
    route.identity_headers = 'portcullis';
    const named = new Set(reqs.map((h) => String(h.name ?? '').toLowerCase()));
    const more = Object.keys(STANDARD).filter((k) => !named.has(k));
    if (more.length)
      n.skip(
        label('injectRequestHeaders'),
        `X-Forwarded-User/-Email/-Groups/-Preferred-Username go upstream together (identity_headers: portcullis), so ${more.join(', ')} is sent too`,
      );
  }
  if (Object.keys(setHeaders).length) route.set_request_headers = setHeaders;

  const resps = (a.root.injectResponseHeaders as Obj[] | undefined) ?? [];
  resps.forEach((h, i) => {
    const base = `injectResponseHeaders[${i}]`;
    const name = typeof h.name === 'string' ? h.name : '';
    const lower = name.toLowerCase();
    const v = sourceOf(((h.values as Obj[] | undefined) ?? [])[0] ?? {});
    // With compat: [oauth2-proxy], /oauth2/auth answers carry these four from the session.
    if (XAUTH[lower] && XAUTH[lower] === v.claim && !v.prefix) return;
    // As the legacy set_xauthrequest import: a route names one token header, so only an
    // auth-only setup (no upstreams, no token sent upstream) hands it out under this name.
    const upstreams = get(a.root, 'upstreamConfig.upstreams') as unknown[] | undefined;
    if (
      lower === 'x-auth-request-access-token' &&
      v.claim === 'access_token' &&
      !v.prefix &&
      !upstreams?.length &&
      route.pass_access_token === undefined
    ) {
      route.pass_access_token = 'X-Auth-Request-Access-Token';
      return;
    }
    n.skip(
      label(base),
      `${name || 'this header'} is not added to /oauth2/auth answers: they carry X-Auth-Request-User, -Email, -Groups, -Preferred-Username (and the access token where a route passes it as X-Auth-Request-Access-Token)`,
    );
  });
  return {
    route,
    global: Object.keys(claimsHeaders).length ? { jwt_claims_headers: claimsHeaders } : {},
  };
}

function secretValue(
  header: string,
  s: NonNullable<Source['secret']>,
  path: string,
  n: ImportNotes,
  label: (p: string) => string,
): string | undefined {
  if (s.value !== undefined) {
    if (s.nested) return s.value;
    // Up to v7.13 the squashed `value` is []byte through encoding/json: base64 text.
    const t = s.value.replace(/\s+/g, '');
    if (/^[A-Za-z0-9+/]*={0,2}$/.test(t) && t.length % 4 === 0)
      return Buffer.from(t, 'base64').toString('utf8');
    n.refuse(
      label(`${path}.value`),
      'expected base64 text (oauth2-proxy decodes `value` as base64)',
    );
    return undefined;
  }
  // Portcullis substitutes ${NAME} when it loads the config, as oauth2-proxy reads fromEnv.
  if (s.fromEnv) {
    n.skip(
      label(`${path}.fromEnv`),
      `${header} is read from the environment variable ${s.fromEnv} when Portcullis loads the config (\${${s.fromEnv}}): set it there`,
    );
    return `\${${s.fromEnv}}`;
  }
  if (s.fromFile) {
    try {
      return readFileSync(s.fromFile, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      n.refuse(
        label(`${path}.fromFile`),
        `cannot read ${s.fromFile} (${(e as NodeJS.ErrnoException).code ?? 'error'}); its value is written into the config, so it must be readable here`,
      );
    }
  }
  return undefined;
}

/** upstreamConfig.upstreams as the importer's upstreams, each with its own route keys. */
function alphaUpstreams(
  a: AlphaFile,
  n: ImportNotes,
  label: (p: string) => string,
): AlphaUpstream[] | undefined {
  const list = get(a.root, 'upstreamConfig.upstreams') as Obj[] | undefined;
  if (get(a.root, 'upstreamConfig.proxyRawPath') === true)
    n.skip(
      label('upstreamConfig.proxyRawPath'),
      'Portcullis refuses encoded "/" and similar in paths (allow_ambiguous_paths: true per route forwards them as they came)',
    );
  if (!list?.length) return undefined;
  const out: AlphaUpstream[] = [];
  list.forEach((u, i) => {
    const base = `upstreamConfig.upstreams[${i}]`;
    const path = typeof u.path === 'string' ? u.path : '';
    const extra: Record<string, unknown> = {};
    // Defaults: passHostHeader and proxyWebSockets true, timeout 30s (upstreams.go).
    if (u.passHostHeader !== false && u.static !== true) extra.preserve_host_header = true;
    if (u.proxyWebSockets !== false && u.static !== true) extra.allow_websockets = true;
    if (typeof u.timeout === 'number' && u.timeout > 0) extra.timeout = formatDuration(u.timeout);
    if (u.flushInterval !== undefined)
      n.skip(label(`${base}.flushInterval`), 'Portcullis streams responses as they arrive');
    if (!path) {
      n.refuse(label(`${base}.path`), 'oauth2-proxy requires a path for every upstream');
      return;
    }
    let to: string | undefined;
    let basePath = '';
    if (u.static === true) {
      // Static: body "Authenticated" with staticCode (default 200), as the Upstream docs say.
      extra.response = {
        status: typeof u.staticCode === 'number' ? u.staticCode : 200,
        body: 'Authenticated',
      };
    } else {
      const uri = typeof u.uri === 'string' ? u.uri : '';
      let url: URL;
      try {
        url = new URL(uri);
      } catch {
        n.refuse(label(`${base}.uri`), `${JSON.stringify(uri)} is not a URL`);
        return;
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        n.skip(
          label(`${base}.uri`),
          `${url.protocol.replace(':', '')}:// upstream: Portcullis proxies to http(s) upstreams only; requests under ${path} are not served`,
        );
        return;
      }
      to = url.origin;
      basePath = url.pathname.replace(/\/$/, '');
      if (u.insecureSkipTLSVerify === true) {
        extra.tls_skip_verify = true;
        n.skip(
          label(`${base}.insecureSkipTLSVerify`),
          'carried over as tls_skip_verify: true, which `portcullis check` warns about; prefer tls_custom_ca_file',
        );
      }
    }
    const rewrite = typeof u.rewriteTarget === 'string' ? u.rewriteTarget : '';
    if (rewrite || path.startsWith('^')) {
      // A regex path (Go's MatchString searches the path; a route regex matches it whole).
      try {
        new RegExp(path, 'u');
      } catch (e) {
        n.refuse(
          label(`${base}.path`),
          `not a regular expression Portcullis can run (${(e as Error).message})`,
        );
        return;
      }
      const regex = `.*(?:${path}).*`;
      if (rewrite) {
        extra.regex_rewrite_pattern = path;
        extra.regex_rewrite_substitution =
          basePath +
          rewrite.replace(/\$\{(\d)\}|\$(\d)/g, (_m, a1: string, a2: string) => `\\${a1 ?? a2}`);
      } else if (basePath) {
        extra.regex_rewrite_pattern = '^';
        extra.regex_rewrite_substitution = basePath;
      }
      out.push({ prefix: path, exact: false, regex, ...(to ? { to } : {}), extra });
      return;
    }
    const exact = !path.endsWith('/');
    // The uri's own path goes in front of the request path (Upstream.uri: "/base" + "/dir").
    if (basePath) extra.prefix_rewrite = basePath + path;
    out.push({ prefix: path, exact, ...(to ? { to } : {}), extra });
  });
  return out;
}
