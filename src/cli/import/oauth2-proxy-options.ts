import { isSecretName, type CfgEntry, type CfgValue } from './cfg-parser.js';
import { parseGoDuration } from './go-duration.js';

// oauth2-proxy's settings as its legacy config knows them, and how one value is chosen from its
// three sources. Facts (oauth2-proxy v7, pkg/apis/options/load.go and the "Configuration
// Overview" page): every flag `--foo-bar` is `foo_bar` in the config file and
// `OAUTH2_PROXY_FOO_BAR` in the environment; a flag that may repeat is singular on the command
// line and plural in the file and environment (`--email-domain` / `email_domains` /
// `OAUTH2_PROXY_EMAIL_DOMAINS`); command-line flags beat environment variables, which beat the
// file; an unknown key in the file stops oauth2-proxy from starting (viper UnmarshalExact), an
// unknown flag too (pflag); lists in the environment are comma-separated.

export type Kind = 'string' | 'bool' | 'list' | 'duration' | 'int';

export interface OptionSpec {
  cfg: string;
  flag: string;
  kind: Kind;
}

// `name:kind[:flag]`; kind s(tring) b(ool) l(ist) d(uration) i(nt). The flag is the name with
// `_` as `-` unless given (lists: the singular flag name).
const SPEC = `
acr_values:s allowed_groups:l:allowed-group allowed_roles:l:allowed-role approval_prompt:s
backend_logout_url:s client_id:s client_secret:s client_secret_file:s code_challenge_method:s
insecure_oidc_allow_unverified_email:b insecure_oidc_skip_issuer_verification:b
insecure_oidc_skip_nonce:b jwt_key:s jwt_key_file:s login_url:s oidc_audience_claims:l:oidc-audience-claim
oidc_email_claim:s oidc_extra_audiences:l:oidc-extra-audience oidc_groups_claim:s oidc_issuer_url:s
oidc_jwks_url:s profile_url:s prompt:s provider_ca_files:l:provider-ca-file provider_display_name:s
provider:s pubjwk_url:s redeem_url:s scope:s skip_claims_from_profile_url:b skip_oidc_discovery:b
use_system_trust_store:b validate_url:s user_id_claim:s resource:s force_code_challenge_method:s
azure_tenant:s azure_graph_group_field:s entra_id_allowed_tenants:l:entra-id-allowed-tenant
entra_id_federated_token_auth:b bitbucket_team:s bitbucket_repository:s github_org:s github_team:s
github_repo:s github_token:s github_users:l:github-user gitlab_groups:l:gitlab-group
gitlab_projects:l:gitlab-project google_admin_email:s google_groups:l:google-group
google_service_account_json:s google_target_principal:s google_use_application_default_credentials:b
keycloak_groups:l:keycloak-group
cookie_csrf_expire:d cookie_csrf_per_request:b cookie_domains:l:cookie-domain cookie_expire:d
cookie_httponly:b cookie_name:s cookie_path:s cookie_refresh:d cookie_samesite:s cookie_secret:s
cookie_secret_file:s cookie_secure:b
basic_auth_password:s set_xauthrequest:b set_authorization_header:b set_basic_auth:b
skip_auth_strip_headers:b pass_access_token:b pass_authorization_header:b pass_basic_auth:b
prefer_email_to_user:b pass_user_headers:b
auth_logging_format:s auth_logging:b errors_to_info_log:b exclude_logging_paths:l:exclude-logging-path
logging_compress:b logging_filename:s logging_local_time:b logging_max_age:i logging_max_backups:i
logging_max_size:i request_id_header:s request_logging_format:s request_logging:b
silence_ping_logging:b standard_logging_format:s standard_logging:b
banner:s custom_sign_in_logo:s custom_templates_dir:s display_htpasswd_form:b footer:s
show_debug_on_error:b
ping_path:s ping_user_agent:s ready_path:s gcp_healthchecks:b
allow_query_semicolons:b api_routes:l:api-route authenticated_emails_file:s email_domains:l:email-domain
encode_state:b extra_jwt_issuers:l force_https:b force_json_errors:b htpasswd_file:s
htpasswd_user_groups:l:htpasswd-user-group proxy_prefix:s real_client_ip_header:s redirect_url:s
relative_redirect_url:b reverse_proxy:b signature_key:s skip_auth_preflight:b
skip_auth_regex:l skip_auth_routes:l:skip-auth-route skip_jwt_bearer_tokens:b
skip_provider_button:b ssl_insecure_skip_verify:b trusted_ips:l:trusted-ip
whitelist_domains:l:whitelist-domain
http_address:s https_address:s metrics_address:s metrics_secure_address:s metrics_tls_cert_file:s
metrics_tls_key_file:s tls_cert_file:s tls_key_file:s tls_cipher_suites:l:tls-cipher-suite
tls_min_version:s
session_cookie_minimal:b session_store_type:s redis_cluster_connection_urls:l redis_connection_url:s
redis_ca_path:s redis_insecure_skip_tls_verify:b redis_password:s redis_username:s
redis_sentinel_password:s redis_sentinel_master_name:s redis_sentinel_connection_urls:l
redis_use_cluster:b redis_use_sentinel:b redis_connection_idle_timeout:i
flush_interval:d pass_host_header:b proxy_websockets:b ssl_upstream_insecure_skip_verify:b
upstream_timeout:d upstreams:l:upstream
`;

const KINDS: Record<string, Kind> = {
  s: 'string',
  b: 'bool',
  l: 'list',
  d: 'duration',
  i: 'int',
};

export const OPTIONS: OptionSpec[] = SPEC.trim()
  .split(/\s+/)
  .map((entry) => {
    const [cfg, kind, flag] = entry.split(':') as [string, string, string | undefined];
    return { cfg, kind: KINDS[kind]!, flag: flag ?? cfg.replaceAll('_', '-') };
  });

export const BY_CFG = new Map(OPTIONS.map((o) => [o.cfg, o]));
export const BY_FLAG = new Map(OPTIONS.map((o) => [o.flag, o]));

/** A setting's chosen value and where it came from (a flag, a variable, a line of the file). */
export interface Setting {
  value: string | boolean | string[] | number;
  from: string;
}

export type Settings = Map<string, Setting>;

export class SettingError extends Error {}

/** Converts one raw value to the option's kind, as viper/pflag would; throws SettingError. */
export function coerce(spec: OptionSpec, raw: CfgValue, from: string): Setting['value'] {
  const bad = (expected: string): never => {
    throw new SettingError(
      `${from}: ${spec.cfg} expects ${expected}, got ${describe(raw, spec.cfg)}`,
    );
  };
  switch (spec.kind) {
    case 'string':
      if (typeof raw === 'string') return raw;
      if (typeof raw === 'number' || typeof raw === 'boolean') return String(raw);
      return bad('a string');
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      // viper casts strings: oauth2-proxy's own examples write cookie_secure="false".
      if (typeof raw === 'string' && /^(true|false|1|0|t|f|TRUE|FALSE|True|False)$/.test(raw))
        return /^(true|1|t)$/i.test(raw);
      return bad('true or false');
    case 'list':
      if (Array.isArray(raw)) return raw.map((v) => String(v));
      if (typeof raw === 'string')
        return raw
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
      return bad('a string or a list of strings');
    case 'duration': {
      if (typeof raw === 'number') return raw / 1e6; // a bare number is nanoseconds in Go
      if (typeof raw !== 'string') return bad('a duration like "168h"');
      const ms = parseGoDuration(raw);
      if (ms === null) return bad('a duration like "168h", "1h30m" or "15m"');
      return ms;
    }
    case 'int':
      if (typeof raw === 'number') return raw;
      if (typeof raw === 'string' && /^-?\d+$/.test(raw)) return Number(raw);
      return bad('a whole number');
  }
}

/** A value for an error message; a secret's value is never shown, only its length. */
function describe(raw: CfgValue, name: string): string {
  if (isSecretName(name)) return `a ${Array.isArray(raw) ? 'list' : typeof raw} (value not shown)`;
  return JSON.stringify(raw);
}

export interface SourceInput {
  file?: { path: string; entries: Map<string, CfgEntry> };
  env: NodeJS.ProcessEnv;
  args: string[];
}

/**
 * The settings oauth2-proxy would run with: each from the command line, else the environment,
 * else the file. Unknown keys and flags are errors (oauth2-proxy refuses them too); unknown
 * OAUTH2_PROXY_* variables are returned as ignored, as oauth2-proxy ignores them.
 */
export function resolveSettings(input: SourceInput): {
  settings: Settings;
  ignoredEnv: string[];
  errors: string[];
} {
  const settings: Settings = new Map();
  const errors: string[] = [];
  const put = (spec: OptionSpec, raw: CfgValue, from: string): void => {
    try {
      settings.set(spec.cfg, { value: coerce(spec, raw, from), from });
    } catch (e) {
      if (e instanceof SettingError) errors.push(e.message);
      else throw e;
    }
  };

  if (input.file) {
    for (const [key, entry] of input.file.entries) {
      const spec = BY_CFG.get(key);
      const where = `${input.file.path}:${entry.line}`;
      if (!spec) {
        errors.push(`${where}: ${key} is not an oauth2-proxy setting${hint(key)}`);
        continue;
      }
      put(spec, entry.value, where);
    }
  }

  const ignoredEnv: string[] = [];
  for (const name of Object.keys(input.env).sort()) {
    if (!name.startsWith('OAUTH2_PROXY_')) continue;
    const spec = BY_CFG.get(name.slice('OAUTH2_PROXY_'.length).toLowerCase());
    if (!spec) {
      ignoredEnv.push(name);
      continue;
    }
    put(spec, input.env[name]!, `environment ${name}`);
  }

  // pflag: --name=value, --name value, --bool; a repeated list flag adds to the list and a
  // list flag's value is comma-separated. The first command-line value replaces the others.
  const fromFlags = new Map<string, { spec: OptionSpec; values: string[]; from: string }>();
  const args = input.args;
  for (let k = 0; k < args.length; k++) {
    const arg = args[k]!;
    const m = /^--([A-Za-z0-9][A-Za-z0-9_-]*)(?:=([\s\S]*))?$/.exec(arg);
    if (!m) {
      errors.push(
        arg.startsWith('-')
          ? `command line: ${JSON.stringify(arg)}: oauth2-proxy flags are written --name=value`
          : `command line: unexpected argument ${JSON.stringify(arg)} (oauth2-proxy takes only --flags)`,
      );
      continue;
    }
    const name = m[1]!;
    if (name === 'config') {
      errors.push(
        'command line: give the config file as `portcullis import oauth2-proxy --config FILE`, before `--`',
      );
      if (m[2] === undefined) k++;
      continue;
    }
    if (name === 'alpha-config') {
      errors.push(
        'command line: give the alpha config as `portcullis import oauth2-proxy --alpha-config FILE`, before `--`',
      );
      if (m[2] === undefined) k++;
      continue;
    }
    const spec = BY_FLAG.get(name);
    if (!spec) {
      errors.push(`command line: --${name} is not an oauth2-proxy flag${hint(name, true)}`);
      if (m[2] === undefined && args[k + 1] !== undefined && !args[k + 1]!.startsWith('--')) k++;
      continue;
    }
    let value = m[2];
    if (value === undefined) {
      if (spec.kind === 'bool') value = 'true';
      else if (k + 1 < args.length) value = args[++k]!;
      else {
        errors.push(`command line: --${name} needs a value`);
        continue;
      }
    }
    const seen = fromFlags.get(spec.cfg);
    if (seen && spec.kind === 'list') seen.values.push(value);
    else fromFlags.set(spec.cfg, { spec, values: [value], from: `command line --${name}` });
  }
  for (const { spec, values, from } of fromFlags.values())
    put(spec, spec.kind === 'list' ? values.join(',') : values.at(-1)!, from);

  return { settings, ignoredEnv, errors };
}

function hint(name: string, flag = false): string {
  const norm = name.replaceAll('-', '_').toLowerCase();
  const exact = BY_CFG.get(norm) ?? BY_CFG.get(`${norm}s`);
  if (exact) return ` (did you mean ${flag ? `--${exact.flag}` : exact.cfg}?)`;
  const singular = [...BY_FLAG.values()].find((o) => o.flag.replaceAll('-', '_') === norm);
  if (singular) return ` (did you mean ${flag ? `--${singular.flag}` : singular.cfg}?)`;
  return '';
}
