import {
  compactVerify,
  decodeProtectedHeader,
  errors as joseErrors,
  type createRemoteJWKSet,
} from 'jose';

// openid-client checks an ID token's claims (iss, aud, exp, nonce) but, for one that comes
// straight from the token endpoint, not its signature: it trusts the TLS connection. A
// man in the middle, a token endpoint behind a compromised proxy, or an IdP misconfigured to
// sign with `none` would then choose the identity. The signature is checked here, against the
// same key set bearer tokens use, before any claim is believed.

/** Public-key algorithms: the only ones accepted unless idp_id_token_algorithms says otherwise. */
export const ASYMMETRIC_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;
/** HMAC keyed with the client secret (OIDC Core 10.1): only when listed, and only for ID tokens. */
export const HMAC_ALGORITHMS = { HS256: 32, HS384: 48, HS512: 64 } as const;

export type RemoteKeys = ReturnType<typeof createRemoteJWKSet>;

export type IdTokenVerdict =
  | { kind: 'ok' }
  /** The token is not the IdP's: refuse it. */
  | { kind: 'invalid'; reason: string }
  /** The IdP's keys could not be read: nothing is known about the token. */
  | { kind: 'unavailable'; reason: string };

export interface IdTokenKeys {
  remote: RemoteKeys | null;
  algorithms: readonly string[];
  /** The client secret as bytes; used only for HS* algorithms that are in `algorithms`. */
  secret: Uint8Array;
}

/** Text from an attacker-controlled header, safe for a page or a log line. */
function safe(v: unknown): string {
  return String(v)
    .replace(/[^\x20-\x7e]/g, '?')
    .slice(0, 80);
}

export async function verifyIdTokenSignature(
  token: string,
  keys: IdTokenKeys,
): Promise<IdTokenVerdict> {
  let header: { alg?: unknown; kid?: unknown };
  try {
    header = decodeProtectedHeader(token);
  } catch {
    return { kind: 'invalid', reason: 'the ID token is malformed' };
  }
  const alg = safe(header.alg ?? '(none)');
  const kid = safe(header.kid ?? '(none)');
  // Checked before any key is looked up, so a made-up algorithm never costs a JWKS fetch.
  if (typeof header.alg !== 'string' || !keys.algorithms.includes(header.alg)) {
    return {
      kind: 'invalid',
      reason: `the ID token is signed with ${alg}, which is not accepted (idp_id_token_algorithms)`,
    };
  }
  const hmac = header.alg.startsWith('HS');
  if (!hmac && !keys.remote)
    return { kind: 'unavailable', reason: 'the identity provider publishes no jwks_uri' };
  try {
    await compactVerify(token, hmac ? keys.secret : keys.remote!, {
      algorithms: [...keys.algorithms],
    });
    return { kind: 'ok' };
  } catch (e) {
    if (e instanceof joseErrors.JWSSignatureVerificationFailed) {
      return {
        kind: 'invalid',
        reason: `the ID token's signature does not match the identity provider's key (kid ${kid})`,
      };
    }
    if (e instanceof joseErrors.JWKSNoMatchingKey) {
      return {
        kind: 'invalid',
        reason: `the ID token is signed with a key the identity provider does not publish (kid ${kid})`,
      };
    }
    if (e instanceof joseErrors.JWKSMultipleMatchingKeys) {
      return {
        kind: 'invalid',
        reason: 'the ID token names no key the identity provider publishes unambiguously',
      };
    }
    if (e instanceof joseErrors.JOSEAlgNotAllowed || e instanceof joseErrors.JOSENotSupported) {
      return {
        kind: 'invalid',
        reason: `the ID token is signed with ${alg}, which is not accepted (idp_id_token_algorithms)`,
      };
    }
    if (
      e instanceof joseErrors.JWKSTimeout ||
      e instanceof joseErrors.JWKSInvalid ||
      e instanceof TypeError
    ) {
      return {
        kind: 'unavailable',
        reason: `the identity provider's keys could not be fetched: ${(e as Error).message}`,
      };
    }
    return { kind: 'invalid', reason: 'the ID token signature could not be verified' };
  }
}
