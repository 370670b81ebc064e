import type { Config } from '../config/types.js';
import type { Identity } from '../decide/types.js';
import { groupsAt, readClaim } from './claim-path.js';

// Identity comes only from validated tokens (ID token, userinfo, verified bearer token):
// never from anything the client sent.

export function identityFromClaims(
  sub: string,
  claims: Record<string, unknown>,
  idp: Config['idp'],
  via: Identity['via'],
): Identity {
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');
  const user = claimText(claims, idp.userClaim) || sub;
  return {
    sub,
    user,
    email: claimText(claims, idp.emailClaim),
    emailVerified: claims.email_verified === true || claims.email_verified === 'true',
    name: str(claims.name),
    preferredUsername: str(claims.preferred_username),
    groups: groupsAt(claims, idp.groupsClaims, idp.groupsSeparator),
    claims,
    via,
    idp: idp.id,
  };
}

/** The string at a claim path ('' when absent or not a string). */
export function claimText(claims: Record<string, unknown>, path: string): string {
  const v = readClaim(claims, path);
  return typeof v === 'string' ? v : '';
}

// ID-token plumbing that says nothing about the user and would only bloat the session.
const PLUMBING = new Set([
  'iss',
  'aud',
  'exp',
  'iat',
  'nbf',
  'nonce',
  'at_hash',
  'c_hash',
  's_hash',
  'azp',
  'auth_time',
  'jti',
  'sid',
  'acr',
  'amr',
]);

/** Copies the claims that describe the user (the login callback and refreshes keep the same set). */
export function keepUserClaims(
  from: Record<string, unknown>,
  into: Record<string, unknown>,
): Record<string, unknown> {
  for (const [k, v] of Object.entries(from)) if (!PLUMBING.has(k)) into[k] = v;
  return into;
}

/**
 * Adds userinfo to the ID token's claims. email_verified speaks of the address beside it: a
 * userinfo that names another address without vouching for it must not inherit the ID
 * token's verdict on the first one.
 */
export function mergeUserinfo(
  info: Record<string, unknown>,
  into: Record<string, unknown>,
): Record<string, unknown> {
  if (info.email !== undefined && info.email !== into.email && info.email_verified === undefined)
    delete into.email_verified;
  return keepUserClaims(info, into);
}
