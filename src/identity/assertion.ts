import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import {
  calculateJwkThumbprint,
  exportJWK,
  importPKCS8,
  SignJWT,
  type CryptoKey,
  type JWK,
} from 'jose';
import { isClusterWorker } from '../cluster.js';
import { prependBounded } from './short-list.js';
import type { Identity } from '../decide/types.js';

// X-Portcullis-Jwt-Assertion: a short-lived JWT that says who the user is, signed with
// signing_key, so an upstream can check the identity itself instead of trusting whatever
// reached it over the network. Public keys are served at /.well-known/portcullis/jwks.json.

export const ASSERTION_HEADER = 'x-portcullis-jwt-assertion';
/** Short, so a leaked assertion is worth little; long enough to be cached across requests. */
export const ASSERTION_TTL_SECONDS = 300;
/** A cached assertion is replaced this long before it expires, so an upstream never receives one about to lapse. */
const REFRESH_MARGIN_SECONDS = 60;
/** Audiences kept per identity; wildcard routes could otherwise grow one identity's cache without limit. */
const MAX_AUDIENCES_PER_IDENTITY = 32;

/** Claims Portcullis always sets itself; jwt_claims may not override them. */
export const REGISTERED_ASSERTION_CLAIMS: ReadonlySet<string> = new Set([
  'iss',
  'aud',
  'sub',
  'iat',
  'exp',
  'nbf',
  'jti',
  'email',
  'name',
  'groups',
  'user',
]);

export type SigningAlg = 'ES256' | 'ES384' | 'ES512' | 'RS256' | 'EdDSA';

export interface SigningKeyInput {
  key: KeyObject;
  alg: SigningAlg;
}

/**
 * The private keys in a PEM text (several blocks allowed: the first signs, all are published).
 * Also accepts the PEM base64-encoded, as Pomerium's signing_key is. Returns an error message
 * an operator can act on instead of throwing.
 */
export function parseSigningKeys(text: string): { keys: SigningKeyInput[] } | { error: string } {
  let pem = text.trim();
  if (!pem.includes('-----BEGIN')) {
    const decoded = Buffer.from(pem.replace(/\s+/g, ''), 'base64').toString('utf8');
    if (!decoded.includes('-----BEGIN'))
      return {
        error: 'expected a PEM private key (-----BEGIN PRIVATE KEY-----), or one base64-encoded',
      };
    pem = decoded;
  }
  const blocks = pem.match(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g) ?? [];
  const keys: SigningKeyInput[] = [];
  for (const [i, block] of blocks.entries()) {
    // An EC key from `openssl ecparam -genkey` comes with its parameters block first.
    if (/^-----BEGIN EC PARAMETERS-----/.test(block)) continue;
    if (/PUBLIC KEY|CERTIFICATE/.test(block.slice(0, 40)))
      return {
        error: `PEM block ${i + 1} is a public key or certificate; signing_key needs private keys`,
      };
    let key: KeyObject;
    try {
      key = createPrivateKey(block);
    } catch (e) {
      return {
        error: `PEM block ${i + 1} is not a readable private key (${(e as Error).message})`,
      };
    }
    const alg = algorithmOf(key);
    if (typeof alg !== 'string') return { error: `PEM block ${i + 1}: ${alg.error}` };
    keys.push({ key, alg });
  }
  if (!keys.length) return { error: 'no private key found in the PEM text' };
  return { keys };
}

function algorithmOf(key: KeyObject): SigningAlg | { error: string } {
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (d.namedCurve === 'prime256v1') return 'ES256';
      if (d.namedCurve === 'secp384r1') return 'ES384';
      if (d.namedCurve === 'secp521r1') return 'ES512';
      return { error: `EC curve ${d.namedCurve} is not usable for JWTs; use P-256 (prime256v1)` };
    case 'rsa':
      if ((d.modulusLength ?? 0) < 2048)
        return { error: `an RSA key of ${d.modulusLength} bits is too weak; use at least 2048` };
      return 'RS256';
    case 'ed25519':
      return 'EdDSA';
    default:
      return {
        error: `${key.asymmetricKeyType} keys are not supported; use an EC P-256 key (ES256)`,
      };
  }
}

let generated: SigningKeyInput | undefined;
let inherited = false;

/**
 * With `workers > 1` and no signing_key, the primary generates the key once and hands it to
 * its workers in this environment variable (PKCS#8 PEM), so every worker signs with the same
 * key. Read only inside a cluster worker, and removed from the environment once read.
 */
export const CLUSTER_SIGNING_KEY_ENV = 'PORTCULLIS_CLUSTER_SIGNING_KEY';

/**
 * The key used when no signing_key is configured: one per process, so a config reload keeps
 * the key upstreams have already fetched (in a cluster worker: the primary's key, shared by
 * all workers). A restart or another replica has a different one.
 */
export function generatedSigningKey(): SigningKeyInput {
  if (!generated) {
    const pem = isClusterWorker() ? process.env[CLUSTER_SIGNING_KEY_ENV] : undefined;
    if (pem) {
      delete process.env[CLUSTER_SIGNING_KEY_ENV];
      try {
        generated = { key: createPrivateKey(pem), alg: 'ES256' };
        inherited = true;
      } catch {
        // Not ours to trust: fall back to a key of this process.
      }
    }
    generated ??= {
      key: generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey,
      alg: 'ES256',
    };
  }
  return generated;
}

/** True in a cluster worker whose generated key came from the primary (which has warned about it). */
export function generatedSigningKeyInherited(): boolean {
  return inherited;
}

/** The generated key as PKCS#8 PEM, for the primary to hand to its workers. */
export function generatedSigningKeyPem(): string {
  return generatedSigningKey().key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

interface Prepared {
  signKey: CryptoKey;
  alg: SigningAlg;
  kid: string;
  jwks: string;
}

export interface AssertionInput {
  /** The authenticate service URL, or the route's origin. */
  issuer: string;
  /** The host the client asked for (with :port when not the scheme's default). */
  audience: string;
  now: number;
  /** ms; the assertion never outlives the session or token it stands for. */
  notAfter?: number | undefined;
  /** jwt_groups_filter: only these of the user's groups go in; null or absent = all. */
  groupsFilter?: ReadonlySet<string> | null | undefined;
}

/** The user's groups that a jwt_groups_filter lets through, in the user's order. */
export function filteredGroups(
  groups: readonly string[],
  filter: ReadonlySet<string> | null | undefined,
): readonly string[] {
  return filter ? groups.filter((g) => filter.has(g)) : groups;
}

interface Signed {
  issuer: string;
  audience: string;
  filter: ReadonlySet<string> | null;
  jwt: string;
  /** Seconds: after this a new assertion is signed. */
  renewAt: number;
  next: Signed | null;
}

export class AssertionSigner {
  private prepared: Promise<Prepared> | null = null;
  // Keyed by the Identity object: session lookups and bearer verification cache one object per
  // session/token, so a hit here means "same session, same claims". When that object is dropped
  // from their bounded caches, its assertions go with it.
  // Newest first, see prependBounded.
  private readonly cache = new WeakMap<Identity, Signed>();
  /** Signatures made (not served from cache): for the benchmark and tests. */
  signed = 0;

  constructor(
    private readonly keys: readonly SigningKeyInput[],
    private readonly extraClaims: readonly string[],
    /**
     * Several IdPs (`idps:`): the assertion names the user's IdP (`idp`), since the same `sub`
     * at two IdPs is two different people.
     */
    private readonly withIdp = false,
  ) {
    if (!keys.length) throw new Error('AssertionSigner needs at least one key');
  }

  private prepare(): Promise<Prepared> {
    this.prepared ??= (async () => {
      const published: JWK[] = [];
      let first: { kid: string; alg: SigningAlg } | null = null;
      for (const k of this.keys) {
        const jwk = await exportJWK(createPublicKey(k.key));
        const kid = await calculateJwkThumbprint(jwk);
        published.push({ ...jwk, kid, alg: k.alg, use: 'sig' });
        first ??= { kid, alg: k.alg };
      }
      const signKey = await importPKCS8(
        this.keys[0]!.key.export({ type: 'pkcs8', format: 'pem' }) as string,
        this.keys[0]!.alg,
      );
      return {
        signKey,
        alg: first!.alg,
        kid: first!.kid,
        jwks: JSON.stringify({ keys: published }),
      };
    })();
    return this.prepared;
  }

  /** The JSON Web Key Set of every configured key (public parts only). */
  async jwksJson(): Promise<string> {
    return (await this.prepare()).jwks;
  }

  async kid(): Promise<string> {
    return (await this.prepare()).kid;
  }

  async assertion(identity: Identity, o: AssertionInput): Promise<string> {
    const nowS = Math.floor(o.now / 1000);
    const filter = o.groupsFilter ?? null;
    for (let e = this.cache.get(identity) ?? null; e !== null; e = e.next) {
      if (
        e.audience === o.audience &&
        e.issuer === o.issuer &&
        e.filter === filter &&
        e.renewAt > nowS
      )
        return e.jwt;
    }

    const p = await this.prepare();
    let exp = nowS + ASSERTION_TTL_SECONDS;
    if (o.notAfter !== undefined)
      exp = Math.max(nowS + 1, Math.min(exp, Math.floor(o.notAfter / 1000)));
    const claims: Record<string, unknown> = {};
    for (const c of this.extraClaims)
      if (identity.claims[c] !== undefined) claims[c] = identity.claims[c];
    const jwt = await new SignJWT({
      ...claims,
      email: identity.email,
      name: identity.name,
      groups: filteredGroups(identity.groups, filter),
      user: identity.user,
      ...(this.withIdp && identity.idp !== undefined ? { idp: identity.idp } : {}),
    })
      .setProtectedHeader({ alg: p.alg, kid: p.kid, typ: 'JWT' })
      .setIssuer(o.issuer)
      .setAudience(o.audience)
      .setSubject(identity.sub)
      .setIssuedAt(nowS)
      .setExpirationTime(exp)
      .setJti(randomBytes(16).toString('base64url'))
      .sign(p.signKey);
    this.signed++;

    const entry: Signed = {
      issuer: o.issuer,
      audience: o.audience,
      filter,
      jwt,
      renewAt: exp - Math.min(REFRESH_MARGIN_SECONDS, Math.floor((exp - nowS) / 2)),
      next: null,
    };
    prependBounded(
      this.cache.get(identity) ?? null,
      entry,
      (e) => e.audience === o.audience && e.issuer === o.issuer && e.filter === filter,
      MAX_AUDIENCES_PER_IDENTITY,
    );
    this.cache.set(identity, entry);
    return jwt;
  }
}
