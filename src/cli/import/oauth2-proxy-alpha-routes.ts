import { readFileSync } from 'node:fs';
import { formatDuration } from '../../config/duration.js';
import type { ImportNotes } from './emit.js';
import type { AlphaFile, Obj } from './oauth2-proxy-alpha-file.js';

// The alpha config's upstreamConfig and inject*Headers as Portcullis route and global keys.
// Facts: pkg/apis/options/{upstreams,header,secret_source}.go and the "Alpha Configuration" page.

export const get = (o: unknown, path: string): unknown =>
  path
    .split('.')
    .reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Obj)[k] : undefined), o);

export interface AlphaUpstream {
  prefix: string;
  exact: boolean;
  to?: string;
  regex?: string;
  extra: Record<string, unknown>;
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
export function headerKeys(
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
export function alphaUpstreams(
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
