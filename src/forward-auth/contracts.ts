import type { Identity } from '../decide/types.js';
import type { OriginSource } from './context.js';
import { oauth2Constraints } from './oauth2-constraints.js';

// What each proxy family expects of a forward-auth answer (docs/recipes/contracts.md):
//
//   in   where the original request is described (OriginSource)
//   out  which status means allow, what "no session" looks like, which identity headers
//
// nginx cannot pass a redirect (any status but 2xx, 401 and 403 becomes a 500), so its family
// answers 401 and carries the sign-in URL in Location for `error_page 401`. Traefik, Caddy and
// Envoy hand our answer to the browser as is, so there a browser gets the 302 directly.

export type IdentityHeaders = (id: Identity | null) => Array<[string, string]>;

export interface Contract {
  source: OriginSource;
  /** nginx family: 401 + Location; redirect family: 302 for a browser, 401 for an API client. */
  style: 'nginx' | 'redirect';
  allowStatus: 200 | 202;
  headers: IdentityHeaders;
  /** Authelia: 303 after a non-GET, like its own portal redirect. */
  seeOther?: boolean;
  /** Authelia auth-request: Location on every 401, since its nginx recipe redirects unconditionally. */
  alwaysLocation?: boolean;
  /**
   * Where the sign-in starts on the original host, when the peer's documented proxy setups route
   * only the peer's own prefix to it (Authentik's `/outpost.goauthentik.io/*`, oauth2-proxy's
   * `/oauth2/*`): a sign-in URL under /.portcullis/ would go through forward-auth again, and
   * round. Without it, the sign-in is Portcullis's own on the authenticate host.
   */
  signInPath?: string;
  /** Restrictions the auth URL's query adds on top of the route's policy; null when met. */
  constraints?: (query: string, identity: Identity | null) => string | null;
}

const joined = (groups: string[], sep: string): string => groups.join(sep);

// Always every header, empty when unknown: Caddy 2.6 copies a missing header as the literal
// placeholder text, and an absent header would let a client's own copy through some proxies.
const portcullisHeaders: IdentityHeaders = (id) => [
  ['X-Forwarded-User', id?.user ?? ''],
  ['X-Forwarded-Email', id?.email ?? ''],
  ['X-Forwarded-Groups', joined(id?.groups ?? [], ',')],
  ['X-Forwarded-Preferred-Username', id?.preferredUsername ?? ''],
];
// oauth2-proxy --set-xauthrequest. The access token is deliberately not offered: tokens reach
// an upstream only where a route asks for them.
const oauth2Headers: IdentityHeaders = (id) => [
  ['X-Auth-Request-User', id?.user ?? ''],
  ['X-Auth-Request-Email', id?.email ?? ''],
  ['X-Auth-Request-Groups', joined(id?.groups ?? [], ',')],
  ['X-Auth-Request-Preferred-Username', id?.preferredUsername ?? ''],
];
// Authentik outpost addHeaders: groups are pipe-separated, uid is the subject. The names
// Authentik's Caddy and Traefik setups also copy (copy_headers / authResponseHeaders: the JWT,
// entitlements, meta-*) are sent empty: Portcullis has no such values, and Caddy 2.6 would copy
// its placeholder text for a missing one.
const AUTHENTIK_UNKNOWN = [
  'X-authentik-entitlements',
  'X-authentik-jwt',
  'X-authentik-meta-jwks',
  'X-authentik-meta-outpost',
  'X-authentik-meta-provider',
  'X-authentik-meta-app',
  'X-authentik-meta-version',
].map((name): [string, string] => [name, '']);
const authentikHeaders: IdentityHeaders = (id) => [
  ['X-authentik-username', id ? id.preferredUsername || id.user : ''],
  ['X-authentik-groups', joined(id?.groups ?? [], '|')],
  ['X-authentik-email', id?.email ?? ''],
  ['X-authentik-name', id?.name ?? ''],
  ['X-authentik-uid', id?.sub ?? ''],
  ...AUTHENTIK_UNKNOWN,
];
// Authelia: Remote-Groups comma-separated, Remote-User the login name.
const autheliaHeaders: IdentityHeaders = (id) => [
  ['Remote-User', id ? id.preferredUsername || id.user : ''],
  ['Remote-Groups', joined(id?.groups ?? [], ',')],
  ['Remote-Email', id?.email ?? ''],
  ['Remote-Name', id?.name ?? ''],
];

export const NGINX: Contract = {
  source: 'original-url',
  style: 'nginx',
  allowStatus: 200,
  headers: portcullisHeaders,
};
export const FORWARDED: Contract = {
  source: 'forwarded',
  style: 'redirect',
  allowStatus: 200,
  headers: portcullisHeaders,
};
export const ENVOY: Contract = {
  source: 'path',
  style: 'redirect',
  allowStatus: 200,
  headers: portcullisHeaders,
};

export const OAUTH2_AUTH: Contract = {
  source: 'original-url',
  style: 'nginx',
  allowStatus: 202,
  headers: oauth2Headers,
  signInPath: '/oauth2/start',
  constraints: oauth2Constraints,
};

const AUTHENTIK_START = '/outpost.goauthentik.io/start';
export const AUTHENTIK_NGINX: Contract = {
  ...NGINX,
  headers: authentikHeaders,
  signInPath: AUTHENTIK_START,
};
export const AUTHENTIK_FORWARDED: Contract = {
  ...FORWARDED,
  headers: authentikHeaders,
  signInPath: AUTHENTIK_START,
};
export const AUTHENTIK_ENVOY: Contract = {
  ...ENVOY,
  headers: authentikHeaders,
  signInPath: AUTHENTIK_START,
};

export const AUTHELIA_FORWARD_AUTH: Contract = {
  ...FORWARDED,
  headers: autheliaHeaders,
  seeOther: true,
};
export const AUTHELIA_AUTH_REQUEST: Contract = {
  ...NGINX,
  headers: autheliaHeaders,
  alwaysLocation: true,
};
/** Legacy /api/verify with `rd`: Authelia redirects when told where its portal is (we always know). */
export const AUTHELIA_VERIFY_RD: Contract = { ...AUTHELIA_FORWARD_AUTH, source: 'original-url' };
export const AUTHELIA_ENVOY: Contract = { ...ENVOY, headers: autheliaHeaders, seeOther: true };
