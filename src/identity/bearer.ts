import { createHash } from 'node:crypto';
import {
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
} from 'jose';
import * as client from 'openid-client';
import type { Config, Route } from '../config/types.js';
import type { Identity, RequestContext, UnavailableCause } from '../decide/types.js';
import { StoreUnavailableError, type SessionView } from '../session/types.js';
import type { SessionManager } from '../session/manager.js';
import { CliTokens } from '../session/cli-tokens.js';
import { addressBucket, RateLimiter } from '../security/rate-limit.js';
import { identityFromClaims } from './claims.js';
import { emailRefusal } from './email-verified.js';
import { isTenantTemplate, tenantNotAllowed } from './entra-tenant.js';
import { describe as describeIdpError, IdpUnavailableError, type Idp } from './oidc.js';
import type { IdentityProviders } from './registry.js';

/** The IdP a token is checked against: its discovery and keys, and its claim settings. */
interface Issuer {
  id: string;
  idp: Idp;
  settings: Config['idp'];
}

// Identity for clients that cannot follow a login redirect: API clients and CLIs.
//   Authorization: Bearer <IdP token>    only where allow_bearer_tokens is on. A JWT is verified
//                                        against the IdP's JWKS; an opaque token goes to the
//                                        IdP's introspection endpoint (idp_introspection).
//   Authorization: Portcullis <token>    from the programmatic login; names a Portcullis session.
// A token that is presented and fails is refused with the reason, never silently ignored in
// favour of a cookie: the client asked to be judged by that token.

export type TokenResult =
  | { kind: 'ok'; identity: Identity; session: SessionView | null }
  | { kind: 'invalid'; description: string }
  | { kind: 'unavailable'; cause: UnavailableCause; reason: string };

/**
 * Signature algorithms accepted on IdP tokens. Never `none`, never HS*: a symmetric algorithm
 * would let anyone holding the IdP's *public* key mint tokens.
 */
export const BEARER_ALGORITHMS = [
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
];

/** Introspection answers are reused this long: a token revoked at the IdP stops working within it. */
const SHORT_CACHE_MS = 30_000;
/**
 * A token the IdP called inactive is refused without asking again for this long, so a client
 * replaying one bad token costs one introspection call per window, not one per request.
 */
const REFUSED_MS = 5_000;
/**
 * Introspection calls a client address may cause: a burst, then a steady rate. An honest client
 * presents a handful of distinct tokens, each checked once per SHORT_CACHE_MS; a flood of made-up
 * tokens is what spends this, and it must not become a flood at the IdP.
 */
const INTROSPECTION_BURST = 20;
const INTROSPECTION_PER_SECOND = 2;
const LIMITED: TokenResult = {
  kind: 'invalid',
  description: 'too many unknown tokens were checked from your address; try again in a few seconds',
};
/** GitHub has no JWKS and no introspection: nothing its tokens could be verified with. */
const GITHUB_TOKENS: TokenResult = {
  kind: 'invalid',
  description:
    'tokens of a GitHub identity provider cannot be verified (no JWKS, no introspection)',
};
/** A verified JWT is re-checked at least this often, so a JWKS rotation that drops its key is noticed. */
const JWT_CACHE_MS = 5 * 60_000;

// The raw bearer token behind an identity, for pass_access_token. Kept beside the identity,
// not in it, so nothing that serializes an Identity (logs, explain) can leak it.
const rawTokens = new WeakMap<Identity, string>();

/** The IdP access token an identity was proven with, when it came from `Authorization: Bearer`. */
export function bearerTokenOf(identity: Identity): string | undefined {
  return rawTokens.get(identity);
}

/** Text that is safe inside a quoted-string of WWW-Authenticate, whatever an attacker put in the token. */
function safe(v: unknown): string {
  return String(v)
    .replace(/[^\x20-\x7e]|["\\]/g, '?')
    .slice(0, 80);
}

function audienceList(aud: unknown): string[] {
  if (typeof aud === 'string') return [aud];
  if (Array.isArray(aud)) return aud.filter((a): a is string => typeof a === 'string');
  return [];
}

export class TokenAuthenticator {
  readonly cli: CliTokens;
  private readonly cache = new Map<
    string,
    { result: Extract<TokenResult, { kind: 'ok' }>; until: number }
  >();
  // Apart from `cache`, so a flood of bad tokens evicts only other bad tokens, never a good one.
  private readonly refused = new Map<string, { result: TokenResult; until: number }>();
  /** One IdP round trip per token however many requests present it at once. */
  private readonly inflight = new Map<string, Promise<TokenResult>>();
  private readonly introspections = new RateLimiter(INTROSPECTION_BURST, INTROSPECTION_PER_SECOND);
  /** Opened CLI tokens (a pure function of the token), so the hot path skips the decryption. */
  private readonly opened = new Map<string, { session: string; exp: number }>();

  constructor(
    private readonly cfg: Config,
    private readonly idp: Idp,
    private readonly sessions: () => Pick<SessionManager, 'resolve'>,
    /** Several IdPs (`idps:`): a JWT is checked by the one its `iss` names, and only if the route accepts it. */
    private readonly identities?: IdentityProviders,
  ) {
    this.cli = new CliTokens(cfg.cookie.secret);
  }

  private get several(): boolean {
    return (this.identities?.all().length ?? 1) > 1;
  }

  /**
   * Which IdP checks this JWT. With one IdP, that one (jose then holds the issuer to it). With
   * several, the one whose issuer the token names, read before any verification only to choose
   * the keys: a token is never tried against another IdP's keys, nor accepted from an IdP the
   * route does not accept.
   */
  private jwtIssuer(token: string, route: Route): Issuer | TokenResult {
    if (!this.identities || !this.several)
      return { id: this.cfg.idp.id, idp: this.idp, settings: this.cfg.idp };
    let iss: unknown;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      return { kind: 'invalid', description: 'the token is malformed' };
    }
    const p = this.identities.forIssuer(iss);
    if (!p)
      return {
        kind: 'invalid',
        description: `the token was issued by ${safe(iss ?? 'nobody')}, not by a configured identity provider`,
      };
    if (p.settings.provider === 'github') return GITHUB_TOKENS;
    if (!route.idps.includes(p.id))
      return {
        kind: 'invalid',
        description: `the token was issued by the identity provider ${safe(p.id)}, which this route does not accept (it accepts ${safe(route.idps.join(', '))})`,
      };
    return p;
  }

  /** Opaque tokens name no issuer: only a route that accepts a single IdP can have one introspected. */
  private introspectionIssuer(route: Route): Issuer | TokenResult {
    if (!this.identities || !this.several)
      return { id: this.cfg.idp.id, idp: this.idp, settings: this.cfg.idp };
    const only = route.idps.length === 1 ? this.identities.get(route.idps[0]!) : undefined;
    if (!only)
      return {
        kind: 'invalid',
        description:
          'the token is not a JWT, so it names no issuer, and this route accepts several identity providers',
      };
    if (only.settings.provider === 'github') return GITHUB_TOKENS;
    return only;
  }

  private audiences(route: Route, from: Issuer): string[] {
    return route.bearerAudiencesDefault ? [from.settings.clientId] : route.bearerAudiences;
  }

  /** null when the request carries no token this route considers: the session cookie decides. */
  async authenticate(ctx: RequestContext, route: Route): Promise<TokenResult | null> {
    const header = ctx.headers.authorization;
    if (typeof header !== 'string') return null;
    const m = /^([A-Za-z]+) +([A-Za-z0-9\-._~+/]+=*) *$/.exec(header);
    const scheme = (m?.[1] ?? header.split(' ')[0] ?? '').toLowerCase();
    if (scheme === 'portcullis')
      return m
        ? this.portcullisToken(m[2]!, ctx.now)
        : { kind: 'invalid', description: 'the Portcullis token is malformed' };
    if (scheme !== 'bearer' || !route.allowBearerTokens) return null;
    if (!m) return { kind: 'invalid', description: 'the bearer token is malformed' };
    const token = m[2]!;
    // The route's accepted IdPs and audiences are part of what was judged.
    const key = `b ${route.bearerAudiencesDefault ? '' : route.bearerAudiences.join(' ')} ${this.several ? route.idps.join(',') : ''} ${token}`;
    if (token.split('.').length === 3)
      return this.cached(key, ctx.now, () => this.verifyJwt(token, route, ctx.now));
    // Only a call that would reach the IdP spends the client's allowance: cached answers and
    // joining a lookup already in flight are free.
    const limit = this.cfg.bearer.introspection ? ctx.clientIp : undefined;
    return this.cached(key, ctx.now, () => this.introspect(token, route, ctx.now), limit);
  }

  /** `limitClient`: the address whose allowance a call to the IdP spends (introspection only). */
  private async cached(
    key: string,
    now: number,
    compute: () => Promise<{ result: TokenResult; until?: number }>,
    limitClient?: string,
  ): Promise<TokenResult> {
    const k = createHash('sha256').update(key).digest('base64url');
    const hit = this.cache.get(k);
    if (hit) {
      if (hit.until > now) return hit.result;
      this.cache.delete(k);
    }
    const no = this.refused.get(k);
    if (no) {
      if (no.until > now) return no.result;
      this.refused.delete(k);
    }
    let pending = this.inflight.get(k);
    if (!pending) {
      if (limitClient !== undefined && !this.introspections.take(addressBucket(limitClient), now))
        return LIMITED;
      pending = compute()
        .then(({ result, until }) => this.keep(k, result, until, now))
        .finally(() => this.inflight.delete(k));
      this.inflight.set(k, pending);
    }
    return pending;
  }

  private keep(
    k: string,
    result: TokenResult,
    until: number | undefined,
    now: number,
  ): TokenResult {
    if (until === undefined || until <= now || result.kind === 'unavailable') return result;
    const map: Map<string, { result: TokenResult; until: number }> =
      result.kind === 'ok' ? this.cache : this.refused;
    if (map.size >= this.cfg.bearer.cacheSize) map.delete(map.keys().next().value!);
    map.set(k, { result, until });
    return result;
  }

  private ok(
    sub: string,
    claims: Record<string, unknown>,
    token: string,
    until: number,
    settings: Config['idp'],
  ): { result: TokenResult; until?: number } {
    // The login's rule, for tokens too: an API client must not be someone's email by typing it.
    const refusal = emailRefusal(claims, settings);
    if (refusal) {
      const why =
        refusal.code === 'email_unverified' ? 'is not verified' : 'is not said to be verified';
      return {
        result: {
          kind: 'invalid',
          description: `the token's email address ${safe(refusal.email)} ${why} by the identity provider`,
        },
      };
    }
    const identity = identityFromClaims(sub, claims, settings, 'bearer');
    rawTokens.set(identity, token);
    return { result: { kind: 'ok', identity, session: null }, until };
  }

  private async verifyJwt(
    token: string,
    route: Route,
    now: number,
  ): Promise<{ result: TokenResult; until?: number }> {
    const from = this.jwtIssuer(token, route);
    if ('kind' in from) return { result: from };
    let config: client.Configuration;
    try {
      config = from.idp.get();
    } catch (e) {
      if (e instanceof IdpUnavailableError)
        return {
          result: {
            kind: 'unavailable',
            cause: 'idp_keys',
            reason: `the identity provider is unavailable: ${e.message}`,
          },
        };
      throw e;
    }
    const jwks = from.idp.keys();
    if (!jwks)
      return {
        result: {
          kind: 'unavailable',
          cause: 'idp_keys',
          reason: 'the identity provider publishes no jwks_uri',
        },
      };
    const issuer = config.serverMetadata().issuer;
    // A tenant template is no issuer any token carries: checked below, with the token's tid.
    const template = isTenantTemplate(issuer);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, jwks, {
        ...(template ? {} : { issuer }),
        audience: this.audiences(route, from),
        algorithms: BEARER_ALGORITHMS,
        clockTolerance: Math.round(this.cfg.bearer.clockSkewMs / 1000),
        currentDate: new Date(now),
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (e) {
      return { result: this.jwtError(e, token) };
    }
    const refusal =
      from.idp.issuerRefusal(payload) ??
      (from.settings.provider === 'azure'
        ? tenantNotAllowed(from.settings.allowedTenants, payload.tid)
        : null);
    if (refusal) return { result: { kind: 'invalid', description: refusal } };
    const until = Math.min(now + JWT_CACHE_MS, payload.exp! * 1000);
    return this.ok(payload.sub!, payload as Record<string, unknown>, token, until, from.settings);
  }

  private jwtError(e: unknown, token: string): TokenResult {
    let header: { alg?: unknown; kid?: unknown } = {};
    try {
      header = decodeProtectedHeader(token);
    } catch {
      // Malformed header: the error below says so.
    }
    if (e instanceof joseErrors.JWTExpired)
      return {
        kind: 'invalid',
        description: `the token expired at ${new Date(Number(e.payload.exp) * 1000).toISOString()}`,
      };
    if (e instanceof joseErrors.JWTClaimValidationFailed) {
      if (e.claim === 'aud')
        return {
          kind: 'invalid',
          description: `the token's audience (${safe(audienceList(e.payload.aud).join(', ') || 'none')}) is not accepted here`,
        };
      if (e.claim === 'iss')
        return {
          kind: 'invalid',
          description: `the token was issued by ${safe(e.payload.iss ?? 'nobody')}, not by the configured identity provider`,
        };
      if (e.claim === 'nbf') return { kind: 'invalid', description: 'the token is not valid yet' };
      return {
        kind: 'invalid',
        description: `the token's ${safe(e.claim)} claim is invalid (${safe(e.reason)})`,
      };
    }
    if (e instanceof joseErrors.JOSEAlgNotAllowed || e instanceof joseErrors.JOSENotSupported)
      return {
        kind: 'invalid',
        description: `the token's signing algorithm ${safe(header.alg ?? '(none)')} is not accepted`,
      };
    if (e instanceof joseErrors.JWKSNoMatchingKey)
      return {
        kind: 'invalid',
        description: `the token is signed with an unknown key (kid ${safe(header.kid ?? '(none)')})`,
      };
    if (e instanceof joseErrors.JWKSMultipleMatchingKeys)
      return {
        kind: 'invalid',
        description: 'the token names no key the identity provider publishes unambiguously',
      };
    if (e instanceof joseErrors.JWSSignatureVerificationFailed)
      return { kind: 'invalid', description: 'the token signature is invalid' };
    if (e instanceof joseErrors.JWTInvalid || e instanceof joseErrors.JWSInvalid)
      return { kind: 'invalid', description: 'the token is malformed' };
    if (
      e instanceof joseErrors.JWKSTimeout ||
      e instanceof joseErrors.JWKSInvalid ||
      e instanceof TypeError
    )
      return {
        kind: 'unavailable',
        cause: 'idp_keys',
        reason: `the identity provider's keys could not be fetched: ${(e as Error).message}`,
      };
    return { kind: 'invalid', description: 'the token could not be verified' };
  }

  private async introspect(
    token: string,
    route: Route,
    now: number,
  ): Promise<{ result: TokenResult; until?: number }> {
    if (!this.cfg.bearer.introspection)
      return {
        result: {
          kind: 'invalid',
          description: 'the token is not a JWT, and token introspection is not enabled',
        },
      };
    const from = this.introspectionIssuer(route);
    if ('kind' in from) return { result: from };
    let config: client.Configuration;
    let r: client.IntrospectionResponse;
    try {
      config = from.idp.get();
      if (!config.serverMetadata().introspection_endpoint)
        return {
          result: {
            kind: 'unavailable',
            cause: 'idp_introspection',
            reason: 'the identity provider has no introspection endpoint',
          },
        };
      r = await client.tokenIntrospection(config, token);
    } catch (e) {
      return {
        result: {
          kind: 'unavailable',
          cause: 'idp_introspection',
          reason: `token introspection failed: ${describeIdpError(e)}`,
        },
      };
    }
    const skew = this.cfg.bearer.clockSkewMs;
    const refused = (description: string): { result: TokenResult; until: number } => ({
      result: { kind: 'invalid', description },
      until: now + REFUSED_MS,
    });
    if (r.active !== true)
      return refused(
        'the token is not active (expired, revoked or unknown to the identity provider)',
      );
    if (typeof r.token_type === 'string' && !/^(bearer|access_token|dpop)$/i.test(r.token_type))
      return refused(`the token is a ${safe(r.token_type)}, not an access token`);
    if (typeof r.exp === 'number' && r.exp * 1000 + skew <= now)
      return refused(`the token expired at ${new Date(r.exp * 1000).toISOString()}`);
    if (typeof r.nbf === 'number' && r.nbf * 1000 - skew > now)
      return { result: { kind: 'invalid', description: 'the token is not valid yet' } };
    if (r.iss !== undefined && r.iss !== config.serverMetadata().issuer)
      return refused(
        `the token was issued by ${safe(r.iss)}, not by the configured identity provider`,
      );
    // An opaque token without an audience is judged by the client it was issued to: a token
    // minted for some unrelated application must not open this one.
    const aud = audienceList(r.aud);
    const named = aud.length ? aud : typeof r.client_id === 'string' ? [r.client_id] : [];
    if (!named.some((a) => this.audiences(route, from).includes(a)))
      return refused(
        `the token's audience (${safe(named.join(', ') || 'none')}) is not accepted here`,
      );
    const sub =
      typeof r.sub === 'string' && r.sub
        ? r.sub
        : typeof r.client_id === 'string'
          ? r.client_id
          : '';
    if (!sub) return refused('the token names no subject');
    const claims: Record<string, unknown> = { ...r };
    delete claims.active;
    const until = Math.min(
      now + SHORT_CACHE_MS,
      typeof r.exp === 'number' ? r.exp * 1000 : Infinity,
    );
    return this.ok(sub, claims, token, until, from.settings);
  }

  /**
   * The token names a session by its cookie value, so it is resolved exactly like that cookie:
   * nothing about the session is cached here, or a sign-out, a revocation or a user disabled at
   * the IdP would go unnoticed for longer on the token than on the cookie.
   */
  private async portcullisToken(token: string, now: number): Promise<TokenResult> {
    const t = this.openCli(token, now);
    if (!t)
      return {
        kind: 'invalid',
        description: 'the Portcullis token is invalid or has expired; log in again',
      };
    let found: Awaited<ReturnType<SessionManager['resolve']>>;
    try {
      found = await this.sessions().resolve(t.session, now);
    } catch (e) {
      // Also the IdP being unreachable past the refresh grace period: the cookie path's 503 too.
      if (e instanceof StoreUnavailableError)
        return {
          kind: 'unavailable',
          cause: e.source,
          reason: e.source === 'session_store' ? 'the session store is unavailable' : e.message,
        };
      throw e;
    }
    if (!found)
      return {
        kind: 'invalid',
        description: 'the session behind this Portcullis token has ended; log in again',
      };
    return { kind: 'ok', identity: found.identity, session: found.session };
  }

  private openCli(token: string, now: number): { session: string; exp: number } | null {
    const k = createHash('sha256').update(token).digest('base64url');
    let t = this.opened.get(k) ?? null;
    if (!t) {
      t = this.cli.openToken(token, now);
      if (!t) return null;
      if (this.opened.size >= this.cfg.bearer.cacheSize)
        this.opened.delete(this.opened.keys().next().value!);
      this.opened.set(k, { session: t.session, exp: t.exp });
    }
    return t.exp > now ? t : null;
  }
}
