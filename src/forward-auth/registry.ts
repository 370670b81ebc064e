import * as C from './contracts.js';
import type { Contract } from './contracts.js';

// Every forward-auth and drop-in path Portcullis answers, in one table read by both the cheap
// per-request test (isForwardAuthPath) and the dispatcher (answerForwardAuth): a new contract
// or compat endpoint is one new entry here.

export type Compat = 'oauth2-proxy' | 'authentik' | 'authelia';

export type Handling =
  /** Judge the original request the proxy describes, answer by the contract. */
  | { kind: 'judge'; contract: Contract; variant?: (query: string) => Contract }
  /** Sign-in, callback, sign-out and userinfo under a peer's names. */
  | { kind: 'browser' }
  /** Liveness under a peer's names: never an answer to a forward-auth question. */
  | { kind: 'health' };

export interface Entry {
  path: string;
  /**
   * The original path follows `path` (Envoy's ext_authz `path_prefix`). Matched on the raw
   * request-target, since the rest is the client's own path, judged separately.
   */
  prefix: boolean;
  compat: Compat | null;
  handling: Handling;
}

const judge = (contract: Contract, variant?: (query: string) => Contract): Handling =>
  variant ? { kind: 'judge', contract, variant } : { kind: 'judge', contract };
const BROWSER: Handling = { kind: 'browser' };
const HEALTH: Handling = { kind: 'health' };

const hasRd = (query: string): boolean => new URLSearchParams(query.slice(1)).has('rd');

export const ENTRIES: readonly Entry[] = [
  { path: '/.portcullis/auth/nginx', prefix: false, compat: null, handling: judge(C.NGINX) },
  { path: '/.portcullis/auth/traefik', prefix: false, compat: null, handling: judge(C.FORWARDED) },
  { path: '/.portcullis/auth/caddy', prefix: false, compat: null, handling: judge(C.FORWARDED) },
  { path: '/.portcullis/auth/envoy', prefix: true, compat: null, handling: judge(C.ENVOY) },

  { path: '/oauth2/auth', prefix: false, compat: 'oauth2-proxy', handling: judge(C.OAUTH2_AUTH) },
  ...[
    '/oauth2/start',
    '/oauth2/sign_in',
    '/oauth2/callback',
    '/oauth2/sign_out',
    '/oauth2/userinfo',
  ].map((path): Entry => ({ path, prefix: false, compat: 'oauth2-proxy', handling: BROWSER })),
  { path: '/ping', prefix: false, compat: 'oauth2-proxy', handling: HEALTH },
  { path: '/ready', prefix: false, compat: 'oauth2-proxy', handling: HEALTH },

  {
    path: '/outpost.goauthentik.io/auth/nginx',
    prefix: false,
    compat: 'authentik',
    handling: judge(C.AUTHENTIK_NGINX),
  },
  {
    path: '/outpost.goauthentik.io/auth/traefik',
    prefix: false,
    compat: 'authentik',
    handling: judge(C.AUTHENTIK_FORWARDED),
  },
  {
    path: '/outpost.goauthentik.io/auth/caddy',
    prefix: false,
    compat: 'authentik',
    handling: judge(C.AUTHENTIK_FORWARDED),
  },
  {
    path: '/outpost.goauthentik.io/auth/envoy',
    prefix: true,
    compat: 'authentik',
    handling: judge(C.AUTHENTIK_ENVOY),
  },
  ...[
    '/outpost.goauthentik.io/start',
    '/outpost.goauthentik.io/callback',
    '/outpost.goauthentik.io/sign_out',
  ].map((path): Entry => ({ path, prefix: false, compat: 'authentik', handling: BROWSER })),

  {
    path: '/api/authz/forward-auth',
    prefix: false,
    compat: 'authelia',
    handling: judge(C.AUTHELIA_FORWARD_AUTH),
  },
  {
    path: '/api/authz/auth-request',
    prefix: false,
    compat: 'authelia',
    handling: judge(C.AUTHELIA_AUTH_REQUEST),
  },
  {
    path: '/api/verify',
    prefix: false,
    compat: 'authelia',
    handling: judge(C.AUTHELIA_AUTH_REQUEST, (query) =>
      hasRd(query) ? C.AUTHELIA_VERIFY_RD : C.AUTHELIA_AUTH_REQUEST,
    ),
  },
  {
    path: '/api/authz/ext-authz',
    prefix: true,
    compat: 'authelia',
    handling: judge(C.AUTHELIA_ENVOY),
  },
];

/** The reserved prefix of Portcullis's own endpoints: any other path under it is a 404 from here. */
export const NATIVE_PREFIX = '/.portcullis/auth/';

const EXACT = new Map<string, Entry>();
for (const e of ENTRIES) if (!e.prefix) EXACT.set(e.path, e);
const PREFIXED = ENTRIES.filter((e) => e.prefix);

export type Lookup =
  | { found: 'exact'; entry: Entry }
  /** `rest` is the raw request-target after the prefix: the original path and query. */
  | { found: 'prefix'; entry: Entry; rest: string }
  /** The normalized path names a prefixed endpoint that the raw target does not spell literally. */
  | { found: 'encoded_prefix' }
  | { found: 'none' };

function rawPrefixMatch(url: string, prefix: string): string | null {
  if (!url.startsWith(prefix)) return null;
  const rest = url.slice(prefix.length);
  return rest === '' || rest[0] === '/' || rest[0] === '?' ? rest : null;
}

/**
 * The endpoint a request is for, among those the config enables.
 * @param path the normalized path; @param rawUrl the request-target as it arrived
 */
export function lookupEndpoint(path: string, rawUrl: string, enabled: readonly Compat[]): Lookup {
  for (const e of PREFIXED) {
    if (e.compat !== null && !enabled.includes(e.compat)) continue;
    const rest = rawPrefixMatch(rawUrl, e.path);
    if (rest !== null) return { found: 'prefix', entry: e, rest };
  }
  // `/.portcullis/auth/%65nvoy/...`, `/x/../.portcullis/auth/envoy`: which part is the original path?
  for (const e of PREFIXED) {
    if (e.compat !== null && !enabled.includes(e.compat)) continue;
    if (path === e.path || path.startsWith(`${e.path}/`)) return { found: 'encoded_prefix' };
  }
  const entry = EXACT.get(path);
  if (entry && (entry.compat === null || enabled.includes(entry.compat)))
    return { found: 'exact', entry };
  return { found: 'none' };
}
