import { createRemoteJWKSet, customFetch, decodeJwt } from 'jose';
import * as client from 'openid-client';
import type { Config } from '../config/types.js';
import { isLoopback } from '../security/loopback.js';
import { createCompleter, type ClaimsCompleter } from './directory/complete.js';
import { isTenantTemplate, tenantIssuerRefusal } from './entra-tenant.js';
import { verifyIdTokenSignature, type IdTokenVerdict, type RemoteKeys } from './id-token.js';
import { verifyLogoutToken, type LogoutTokenVerdict } from './logout-token.js';

export class IdpUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IdpUnavailableError';
  }
}

export interface IdpStatus {
  ready: boolean;
  lastError: string | null;
  attempts: number;
  /** When discovery last succeeded (ms), for the admin console's health page. */
  readyAt?: number | undefined;
}

/**
 * The OpenID provider, discovered in the background. Portcullis starts and serves public
 * routes while the IdP is unreachable; discovery is retried with capped exponential backoff,
 * and logins meanwhile get a clear 503 instead of a hang or a 500.
 */
export class Idp {
  private config: client.Configuration | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private inflight: Promise<void> | null = null;
  private jwks: { uri: string; get: RemoteKeys } | null = null;
  private readonly secret: Uint8Array;
  readonly status: IdpStatus = { ready: false, lastError: null, attempts: 0 };

  /** How every request to the IdP and its directory API is made (StartOptions.fetch). */
  readonly fetch: typeof fetch;
  /** What the tokens leave to a directory: tenants allowed, overage groups (directory/complete.ts). */
  readonly completer: ClaimsCompleter;

  constructor(
    private readonly cfg: Config['idp'],
    private readonly onError: (msg: string, attempt: number) => void = () => {},
    fetchImpl?: typeof fetch,
  ) {
    this.secret = new TextEncoder().encode(cfg.clientSecret);
    this.fetch = fetchImpl ?? globalThis.fetch;
    this.completer = createCompleter(cfg, this.fetch);
  }

  start(): Promise<void> {
    this.inflight ??= this.attempt();
    return this.inflight;
  }

  private async attempt(): Promise<void> {
    this.status.attempts++;
    // GitHub has no discovery document: its endpoints are fixed (identity/github.ts).
    if (this.cfg.provider === 'github') {
      this.status.ready = true;
      return;
    }
    try {
      const options: client.DiscoveryRequestOptions = { timeout: 5 };
      // Without an injected fetch the global one is looked up per call, as openid-client does.
      options[client.customFetch] = tokenRequestFetch(
        this.fetch === globalThis.fetch ? undefined : this.fetch,
      );
      if (this.cfg.issuer.protocol === 'http:' && isLoopback(this.cfg.issuer.hostname))
        options.execute = [client.allowInsecureRequests];
      // openid-client's own alg check follows the IdP's metadata unless told; an IdP that MACs
      // ID tokens with the client secret may not advertise it, so the allow-list is said here.
      const hmac = this.cfg.idTokenAlgorithms.some((a) => a.startsWith('HS'));
      const metadata = hmac
        ? { id_token_signed_response_alg: this.cfg.idTokenAlgorithms as unknown as string }
        : undefined;
      this.config = await client.discovery(
        this.cfg.issuer,
        this.cfg.clientId,
        metadata,
        client.ClientSecretBasic(this.cfg.clientSecret),
        options,
      );
      this.status.ready = true;
      this.status.readyAt = Date.now();
      this.status.lastError = null;
    } catch (e) {
      this.status.lastError = describe(e);
      this.onError(this.status.lastError, this.status.attempts);
      if (!this.closed) {
        const delay = Math.min(30_000, 500 * 2 ** Math.min(this.status.attempts - 1, 6));
        this.timer = setTimeout(() => {
          this.inflight = this.attempt();
        }, delay);
        this.timer.unref();
      }
    }
  }

  /** The discovered configuration, or IdpUnavailableError while discovery has not succeeded. */
  get(): client.Configuration {
    if (!this.config)
      throw new IdpUnavailableError(
        this.status.lastError ?? 'identity provider discovery has not finished',
      );
    return this.config;
  }

  /**
   * The IdP's key set, one cache for ID tokens and bearer tokens. jose refetches it on an
   * unknown kid (a key rotation) at most once per cooldown, so tokens with made-up kids
   * cannot turn into a stream of requests to the IdP.
   */
  keys(): RemoteKeys | null {
    const uri = this.get().serverMetadata().jwks_uri;
    if (!uri) return null;
    if (this.jwks?.uri !== uri) {
      const opts = {
        cooldownDuration: 30_000,
        cacheMaxAge: 10 * 60_000,
        timeoutDuration: 5_000,
        ...(this.fetch !== globalThis.fetch ? { [customFetch]: this.fetch } : {}),
      };
      this.jwks = { uri, get: createRemoteJWKSet(new URL(uri), opts) };
    }
    return this.jwks.get;
  }

  /**
   * Checks an ID token's signature against the allowed algorithms, and its issuer where that is
   * a tenant template; its other claims are openid-client's job.
   */
  async verifyIdToken(token: string): Promise<IdTokenVerdict> {
    const signature = await verifyIdTokenSignature(token, {
      remote: this.keys(),
      algorithms: this.cfg.idTokenAlgorithms,
      secret: this.secret,
    });
    if (signature.kind !== 'ok') return signature;
    // openid-client does put the token's tid into a login.microsoftonline.com template, but
    // takes any tid, a made-up or missing one included.
    const why = this.issuerRefusal(decodeJwt(token));
    return why ? { kind: 'invalid', reason: why } : signature;
  }

  /**
   * Why a verified token's `iss` (and `tid`) do not make it this IdP's, or null, for an IdP whose
   * discovered issuer is Entra's multi-tenant template. An exact issuer is null here: openid-client
   * and jose compare it themselves.
   */
  issuerRefusal(claims: { iss?: unknown; tid?: unknown }): string | null {
    const issuer = this.issuer();
    if (issuer === null || !isTenantTemplate(issuer)) return null;
    // Any tenant of the world could sign in with no tenant check: only azure has one.
    if (this.cfg.provider !== 'azure')
      return `the identity provider's issuer ${issuer} is Microsoft Entra's multi-tenant template, which needs idp_provider: azure (and idp_allowed_tenants)`;
    return tenantIssuerRefusal(issuer, claims);
  }

  /**
   * The issuer this IdP's tokens carry (the discovered one, exactly), or null before discovery
   * and for providers without ID tokens.
   */
  issuer(): string | null {
    if (this.cfg.provider === 'github' || !this.config) return null;
    return this.config.serverMetadata().issuer;
  }

  /** A back-channel Logout Token, checked against this IdP's keys for our client (logout-token.ts). */
  async verifyLogoutToken(token: string, now: number): Promise<LogoutTokenVerdict> {
    const issuer = this.issuer();
    if (issuer === null)
      return { kind: 'unavailable', reason: 'identity provider discovery has not finished' };
    return verifyLogoutToken(token, {
      keys: { remote: this.keys(), algorithms: this.cfg.idTokenAlgorithms, secret: this.secret },
      issuer,
      clientId: this.cfg.clientId,
      now,
    });
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }
}

/**
 * True when the IdP could not be reached at all (connection refused, DNS, timeout), as opposed
 * to an answer it gave: openid-client lets fetch's TypeError through and maps timeouts and
 * aborts to ClientError codes. Classified by type and code, never by message text.
 */
export function isUnreachable(e: unknown): boolean {
  if (e instanceof TypeError) return true;
  return (
    e instanceof client.ClientError && (e.code === 'OAUTH_TIMEOUT' || e.code === 'OAUTH_ABORT')
  );
}

export function describe(e: unknown): string {
  if (e instanceof client.ResponseBodyError)
    return `${e.error}${e.error_description ? `: ${e.error_description}` : ''}`;
  if (e instanceof client.AuthorizationResponseError)
    return `${e.error}${e.error_description ? `: ${e.error_description}` : ''}`;
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    const c =
      cause instanceof Error ? `: ${(cause as NodeJS.ErrnoException).code ?? cause.message}` : '';
    return `${e.message}${c}`;
  }
  return String(e);
}

/**
 * A token request parameter that never reaches the IdP: the redirect URI exactly as the
 * authorization request sent it. openid-client derives redirect_uri from the callback URL with
 * its query stripped, which breaks a redirect URI registered with a query (Authentik's
 * `/outpost.goauthentik.io/callback?X-authentik-auth-callback=true`); RFC 6749 §4.1.3 wants
 * the two identical.
 */
export const REDIRECT_URI_AS_SENT = 'portcullis_redirect_uri';

function tokenRequestFetch(fetchImpl?: typeof globalThis.fetch): client.CustomFetch {
  return (url, init) => {
    const body = init.body;
    if (body instanceof URLSearchParams && body.has(REDIRECT_URI_AS_SENT)) {
      body.set('redirect_uri', body.get(REDIRECT_URI_AS_SENT)!);
      body.delete(REDIRECT_URI_AS_SENT);
    }
    return (fetchImpl ?? globalThis.fetch)(url, init as RequestInit);
  };
}
