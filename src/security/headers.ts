// Request-header hygiene before anything is forwarded upstream: the client must never be able to
// supply an identity header the application trusts, in any spelling, and hop-by-hop headers
// belong to this connection only.
//
// Header names are compared in canonical form: lower-case with `_` and `.` read as `-`. Node
// keeps `X_Forwarded_Email` and `X.Forwarded.Email` as distinct headers, but nginx
// (underscores_in_headers on), CGI/WSGI (HTTP_X_FORWARDED_EMAIL), PHP, Rails and Django fold
// `-` and `_` together, and some frameworks fold `.` the same way: a spelling that slipped past
// us would reach the application as the real thing.

const FOLDED = /[_.]/g;

/** Lower-case, with `_` and `.` folded to `-`. */
export function canonicalHeaderName(name: string): string {
  const lower = name.toLowerCase();
  return lower.includes('_') || lower.includes('.') ? lower.replace(FOLDED, '-') : lower;
}

/**
 * Canonical names of every identity header a supported preset can set (oauth2-proxy, nginx
 * auth_request / Traefik forward-auth conventions, Authelia/Remote-*, Authentik outpost,
 * Pomerium, Portcullis' own). Whole families are covered by IDENTITY_HEADER_PREFIXES.
 */
export const IDENTITY_HEADER_NAMES: ReadonlySet<string> = new Set([
  // oauth2-proxy --pass-user-headers / --set-xauthrequest
  'x-forwarded-user',
  'x-forwarded-email',
  'x-forwarded-groups',
  'x-forwarded-preferred-username',
  'x-forwarded-access-token',
  'x-auth-request-user',
  'x-auth-request-email',
  'x-auth-request-groups',
  'x-auth-request-preferred-username',
  'x-auth-request-access-token',
  // X-Auth-Request-Redirect is deliberately absent: it is an input (where to go after login).
  // Authelia / Caddy forward_auth conventions
  'remote-user',
  'remote-groups',
  'remote-email',
  'remote-name',
  // Authentik outpost before 2021.x
  'x-auth-username',
  'x-auth-groups',
  // Authentik outpost (the x-authentik- family below covers -meta-*, -entitlements, ...)
  'x-authentik-username',
  'x-authentik-groups',
  'x-authentik-email',
  'x-authentik-name',
  'x-authentik-uid',
  'x-authentik-jwt',
  'x-portcullis-jwt-assertion',
  'x-pomerium-jwt-assertion',
]);

// Families stripped whole. Authentik sets x-authentik-meta-{jwks,outpost,provider,app,version}
// and x-authentik-entitlements besides the list above; Pomerium sets x-pomerium-claim-* and
// reads x-pomerium-jwt-assertion-for; anything under our own prefix is ours to set. The
// Kubernetes API server acts as whoever Impersonate-User/-Group/-Uid/-Extra-* name when the
// caller (the proxy's service account) may impersonate: from a client, that is a takeover.
const IDENTITY_HEADER_PREFIXES: readonly string[] = [
  'x-portcullis-',
  'x-pomerium-',
  'x-authentik-',
  'impersonate-',
];

/** Builds the `extra` set for isIdentityHeader / filterRequestHeaders from configured names. */
export function identityHeaderSet(names: Iterable<string>): ReadonlySet<string> {
  const set = new Set<string>();
  for (const n of names) set.add(canonicalHeaderName(n.trim()));
  return set;
}

function isCanonicalIdentity(canonical: string, extra: ReadonlySet<string> | undefined): boolean {
  if (IDENTITY_HEADER_NAMES.has(canonical)) return true;
  for (const p of IDENTITY_HEADER_PREFIXES) if (canonical.startsWith(p)) return true;
  return extra !== undefined && extra.has(canonical);
}

/**
 * True if `name`, in any spelling, is an identity header. `extra` holds configured names
 * (jwt_claims_headers targets and the like) in canonical form; see identityHeaderSet.
 */
export function isIdentityHeader(name: string, extra?: ReadonlySet<string>): boolean {
  return isCanonicalIdentity(canonicalHeaderName(name), extra);
}

// RFC 9110 7.6.1 plus the non-standard names proxies still see in the wild; Proxy-Authorization
// and Proxy-Authenticate are credentials for this hop (RFC 9110 11.7.1-2), not for the upstream.
// WebSocket forwarding re-adds Connection/Upgrade itself after filtering.
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);

/** Canonical tokens of every Connection header instance, or null when there are none. */
export function connectionTokens(rawHeaders: readonly string[]): Set<string> | null {
  let tokens: Set<string> | null = null;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length !== 10 || name.toLowerCase() !== 'connection') continue;
    for (const t of rawHeaders[i + 1]!.split(',')) {
      const token = t.trim();
      if (token === '') continue;
      (tokens ??= new Set()).add(canonicalHeaderName(token));
    }
  }
  return tokens;
}

/** The hop-by-hop header names (canonical) of a request: the fixed set plus Connection tokens. */
export function hopByHop(rawHeaders: string[]): Set<string> {
  const set = new Set(HOP_BY_HOP);
  const tokens = connectionTokens(rawHeaders);
  if (tokens) for (const t of tokens) set.add(t);
  return set;
}

export interface NameInfo {
  canonical: string;
  /** Identity (built-in list or family) or fixed hop-by-hop: dropped whatever the request says. */
  drop: boolean;
}

// Header names repeat across requests in the spelling each client uses, so canonicalizing and
// classifying each spelling once saves a lower-casing allocation and several set/prefix probes
// per header per request. Bounded: a client sending random names only stops filling it.
const NAME_CACHE = new Map<string, NameInfo>();
const NAME_CACHE_MAX = 4096;

/** The canonical form of a header name and whether it is always dropped, cached per spelling. */
export function headerNameInfo(name: string): NameInfo {
  let info = NAME_CACHE.get(name);
  if (info === undefined) {
    const canonical = canonicalHeaderName(name);
    info = {
      canonical,
      drop: HOP_BY_HOP.has(canonical) || isCanonicalIdentity(canonical, undefined),
    };
    if (NAME_CACHE.size < NAME_CACHE_MAX) NAME_CACHE.set(name, info);
  }
  return info;
}

const BAD_VALUE_CHAR = /[\r\n\0]/;

/** CR, LF or NUL: a value that could split or truncate a header line somewhere downstream. */
export function hasBadValueChar(v: string): boolean {
  return BAD_VALUE_CHAR.test(v);
}

/**
 * The canonical name of a client header that may go upstream, or null when it must not: an
 * identity header (every spelling), a hop-by-hop one, one its Connection header names
 * (`tokens`, from connectionTokens), a configured one (`extra`), or a value with CR, LF or NUL.
 * The one rule behind filterRequestHeaders and the proxy's own header pass.
 */
export function forwardableName(
  name: string,
  value: string,
  tokens: ReadonlySet<string> | null,
  extra: ReadonlySet<string> | undefined,
): string | null {
  const info = headerNameInfo(name);
  if (info.drop) return null;
  if (tokens !== null && tokens.has(info.canonical)) return null;
  if (extra !== undefined && extra.has(info.canonical)) return null;
  if (hasBadValueChar(value)) return null;
  return info.canonical;
}

/**
 * A new flat [name, value, ...] array without identity headers (every spelling, every
 * instance), hop-by-hop headers, and values containing CR, LF or NUL. Order is preserved.
 *
 * Run it on the client's headers BEFORE adding the proxy's own (X-Forwarded-For, identity):
 * a client can name any header in Connection, and that must only ever remove its own.
 */
export function filterRequestHeaders(rawHeaders: string[], extra?: ReadonlySet<string>): string[] {
  const tokens = connectionTokens(rawHeaders);
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1]!;
    if (forwardableName(name, value, tokens, extra) !== null) out.push(name, value);
  }
  return out;
}
