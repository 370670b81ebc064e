import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';

export interface PortcullisUser {
  sub: string;
  user: string;
  email: string;
  name: string;
  groups: string[];
  claims: JWTPayload;
}

export function portcullisVerifier(o: { jwksUrl: string; issuer: string; audience: string }) {
  // jose caches the key set and refetches it when an assertion names a kid it has not seen,
  // which is exactly what happens after Portcullis starts signing with a rotated key.
  const jwks = createRemoteJWKSet(new URL(o.jwksUrl));
  return async (assertion: string | undefined): Promise<PortcullisUser> => {
    if (!assertion)
      throw new Error(
        'no X-Portcullis-Jwt-Assertion: this request did not come through Portcullis',
      );
    const { payload } = await jwtVerify(assertion, jwks, {
      issuer: o.issuer,
      audience: o.audience,
      // Asymmetric algorithms only: never accept "none" or HS256.
      algorithms: ['ES256', 'ES384', 'RS256', 'EdDSA'],
      requiredClaims: ['sub', 'exp', 'iat'],
    });
    return {
      sub: payload.sub!,
      user: String(payload.user ?? ''),
      email: String(payload.email ?? ''),
      name: String(payload.name ?? ''),
      groups: Array.isArray(payload.groups) ? payload.groups.map(String) : [],
      claims: payload,
    };
  };
}

// Usage in any Node HTTP server:
//
//   const verify = portcullisVerifier({
//     jwksUrl: 'https://app.example.com/.well-known/portcullis/jwks.json',
//     issuer: 'https://auth.example.com',
//     audience: 'app.example.com',
//   });
//   const user = await verify(req.headers['x-portcullis-jwt-assertion'] as string | undefined);
