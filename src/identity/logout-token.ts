import { decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { IdTokenKeys } from './id-token.js';

// OpenID Connect Back-Channel Logout 1.0, §2.4 (the Logout Token) and §2.6 (its validation):
// https://openid.net/specs/openid-connect-backchannel-1_0.html
// A Logout Token is an ID-token-shaped JWT that the IdP posts to us without a browser. It is
// checked like an ID token (signature, iss, aud, iat, exp when present) and then for what makes
// it a logout and not a replayed ID token: the back-channel event, sid and/or sub, no nonce.

export const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
/**
 * How old a Logout Token may be (by iat) and still be acted on. The spec leaves it to the RP
 * (§2.6 step 3 "as in ID tokens"); IdPs post it at once, oidc-provider gives it 2 minutes.
 */
export const LOGOUT_TOKEN_MAX_AGE_S = 300;
/** Clock difference tolerated between the IdP and us. */
export const LOGOUT_TOKEN_SKEW_S = 60;

export interface LogoutClaims {
  iss: string;
  sub?: string | undefined;
  sid?: string | undefined;
  jti: string;
  /** Until when (ms) the token could be accepted: its jti is remembered that long. */
  acceptableUntil: number;
}

export type LogoutTokenVerdict =
  | { kind: 'ok'; claims: LogoutClaims }
  /** Not a Logout Token from this IdP for this client: 400 invalid_request. */
  | { kind: 'invalid'; reason: string }
  /** The IdP's keys could not be read: nothing is known about the token. */
  | { kind: 'unavailable'; reason: string };

// `typ` is RECOMMENDED to be logout+jwt (§2.4); absent is allowed, and "JWT" is what many IdPs
// put on every token. Any other explicit type is some other token (an access token: at+jwt).
const TYPES = new Set(['logout+jwt', 'application/logout+jwt', 'jwt', 'application/jwt']);
const MAX_TOKEN = 16 * 1024;
const MAX_CLAIM = 255;

export async function verifyLogoutToken(
  token: string,
  o: { keys: IdTokenKeys; issuer: string; clientId: string; now: number },
): Promise<LogoutTokenVerdict> {
  const invalid = (reason: string): LogoutTokenVerdict => ({ kind: 'invalid', reason });
  if (token.length > MAX_TOKEN) return invalid('the logout_token is too long');
  let header: { alg?: unknown; typ?: unknown };
  try {
    header = decodeProtectedHeader(token);
  } catch {
    return invalid('the logout_token is not a signed JWT');
  }
  if (token.split('.').length !== 3) return invalid('the logout_token is not a signed JWT');
  if (header.typ !== undefined && !TYPES.has(String(header.typ).toLowerCase()))
    return invalid(`the logout_token's typ is not logout+jwt`);
  // Checked before any key is looked up, so a made-up algorithm never costs a JWKS fetch.
  if (typeof header.alg !== 'string' || !o.keys.algorithms.includes(header.alg))
    return invalid(`the logout_token is signed with an algorithm that is not accepted`);
  const hmac = header.alg.startsWith('HS');
  if (!hmac && !o.keys.remote)
    return { kind: 'unavailable', reason: 'the identity provider publishes no jwks_uri' };
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, hmac ? o.keys.secret : o.keys.remote!, {
      algorithms: [...o.keys.algorithms],
      issuer: o.issuer,
      audience: o.clientId,
      currentDate: new Date(o.now),
      clockTolerance: LOGOUT_TOKEN_SKEW_S,
      maxTokenAge: LOGOUT_TOKEN_MAX_AGE_S,
      requiredClaims: ['iss', 'aud', 'iat', 'jti', 'events'],
    }));
  } catch (e) {
    return verifyError(e);
  }
  const events = payload.events;
  if (
    !events ||
    typeof events !== 'object' ||
    Array.isArray(events) ||
    !Object.hasOwn(events, BACKCHANNEL_EVENT)
  )
    return invalid(`the logout_token's events claim does not name ${BACKCHANNEL_EVENT}`);
  const event = (events as Record<string, unknown>)[BACKCHANNEL_EVENT];
  if (!event || typeof event !== 'object' || Array.isArray(event))
    return invalid('the back-channel logout event is not a JSON object');
  // §2.4: a Logout Token MUST NOT contain a nonce (so an ID token can never pass as one).
  if (Object.hasOwn(payload, 'nonce')) return invalid('the logout_token contains a nonce');
  const text = (v: unknown): v is string =>
    typeof v === 'string' && v.length > 0 && v.length <= MAX_CLAIM;
  if (payload.sub !== undefined && !text(payload.sub))
    return invalid('the logout_token has an unusable sub claim');
  if (payload.sid !== undefined && !text(payload.sid))
    return invalid('the logout_token has an unusable sid claim');
  if (payload.sub === undefined && payload.sid === undefined)
    return invalid('the logout_token names neither a sid nor a sub');
  if (!text(payload.jti)) return invalid('the logout_token has an unusable jti claim');
  const iat = payload.iat!;
  const byAge = (iat + LOGOUT_TOKEN_MAX_AGE_S + LOGOUT_TOKEN_SKEW_S) * 1000;
  const byExp =
    typeof payload.exp === 'number' ? (payload.exp + LOGOUT_TOKEN_SKEW_S) * 1000 : Infinity;
  return {
    kind: 'ok',
    claims: {
      iss: payload.iss!,
      sub: payload.sub,
      sid: payload.sid as string | undefined,
      jti: payload.jti,
      acceptableUntil: Math.min(byAge, byExp),
    },
  };
}

function verifyError(e: unknown): LogoutTokenVerdict {
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    const claim = e.claim;
    const why =
      e.reason === 'missing'
        ? `has no ${claim} claim`
        : claim === 'iat'
          ? 'was issued too long ago or in the future'
          : `has an unexpected ${claim} claim`;
    return { kind: 'invalid', reason: `the logout_token ${why}` };
  }
  if (e instanceof joseErrors.JWTExpired)
    return {
      kind: 'invalid',
      reason:
        e.claim === 'iat'
          ? `the logout_token was issued more than ${LOGOUT_TOKEN_MAX_AGE_S} s ago`
          : 'the logout_token has expired',
    };
  if (
    e instanceof joseErrors.JWKSTimeout ||
    e instanceof joseErrors.JWKSInvalid ||
    e instanceof TypeError
  )
    return {
      kind: 'unavailable',
      reason: `the identity provider's keys could not be fetched: ${(e as Error).message}`,
    };
  if (e instanceof joseErrors.JWTInvalid)
    return { kind: 'invalid', reason: 'the logout_token is not a valid JWT' };
  // A bad signature, a key the IdP does not publish, an algorithm not allowed: not the IdP's.
  return { kind: 'invalid', reason: `the logout_token's signature does not verify` };
}
