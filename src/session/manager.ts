import { randomBytes } from 'node:crypto';
import type { Config } from '../config/types.js';
import type { Identity, RequestContext } from '../decide/types.js';
import { identityFromClaims } from '../identity/claims.js';
import { chunkedCookies, clearCookies, parseCookies, readChunked, type CookieOptions } from './cookies.js';
import type { SessionData, SessionStore } from './types.js';

export interface SessionLookup {
  identity: Identity | null;
  session: SessionData | null;
  /** Set-Cookie headers to send with whatever answer follows (e.g. clearing a garbled cookie). */
  setCookies: string[];
}

const CACHE_MAX = 10_000;

/**
 * Turns the cookie on a request into an identity. Decoding (decrypt + inflate + JSON) is
 * cached by the full cookie value, so the hot path pays it once per session, not per request;
 * the cache is bounded and an entry is dropped as soon as its session has expired.
 */
export class SessionManager {
  private readonly cache = new Map<string, { session: SessionData; identity: Identity }>();

  constructor(private readonly cfg: Config, readonly store: SessionStore) {}

  cookieOptions(host: string, maxAgeSeconds?: number): CookieOptions {
    const c = this.cfg.cookie;
    const o: CookieOptions = { domain: this.cookieDomainFor(host), secure: c.secure, httpOnly: c.httpOnly, sameSite: c.sameSite };
    if (maxAgeSeconds !== undefined) o.maxAgeSeconds = maxAgeSeconds;
    return o;
  }

  /** cookie_domain when the host is under it; otherwise the cookie stays host-only. */
  cookieDomainFor(host: string): string | null {
    const d = this.cfg.cookie.domain;
    return d && (host === d || host.endsWith(`.${d}`)) ? d : null;
  }

  async lookup(ctx: RequestContext): Promise<SessionLookup> {
    const cookies = parseCookies(ctx.headers.cookie);
    const name = this.cfg.cookie.name;
    if (!cookies.has(name)) return { identity: null, session: null, setCookies: [] };
    const value = readChunked(name, cookies);
    if (value) {
      const hit = this.cache.get(value);
      if (hit) {
        if (hit.session.exp > ctx.now) return { identity: hit.identity, session: hit.session, setCookies: [] };
        this.cache.delete(value);
      }
      const session = await this.store.load(value, ctx.now);
      if (session) {
        const identity = identityFromClaims(session.sub, session.claims, this.cfg.idp, 'session');
        if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
        this.cache.set(value, { session, identity });
        return { identity, session, setCookies: [] };
      }
    }
    // Pitfall 14: a stale, foreign or garbled cookie is no session, and is cleared so it
    // cannot keep confusing later attempts.
    return { identity: null, session: null, setCookies: clearCookies(name, this.cookieOptions(ctx.host), cookies) };
  }

  newSession(sub: string, claims: Record<string, unknown>, tokens: { accessToken?: string | undefined; accessTokenExp?: number | undefined; refreshToken?: string | undefined; idToken?: string | undefined }, now = Date.now()): SessionData {
    return { v: 1, sid: randomBytes(18).toString('base64url'), sub, claims, iat: now, exp: now + this.cfg.cookie.expireMs, ...tokens };
  }

  /** Stores the session and returns the Set-Cookie headers that carry it on `host`. */
  async issue(session: SessionData, host: string, cookieHeader: string | string[] | undefined): Promise<string[]> {
    const value = await this.store.save(session);
    return this.cookiesFor(value, session, host, cookieHeader);
  }

  cookiesFor(value: string, session: SessionData, host: string, cookieHeader: string | string[] | undefined): string[] {
    const maxAge = Math.floor((session.exp - Date.now()) / 1000);
    return chunkedCookies(this.cfg.cookie.name, value, this.cookieOptions(host, maxAge), parseCookies(cookieHeader));
  }

  /** Ends the session named by the request's cookie (server-side too) and clears the cookie. */
  async end(cookieHeader: string | string[] | undefined, host: string): Promise<string[]> {
    const cookies = parseCookies(cookieHeader);
    const value = readChunked(this.cfg.cookie.name, cookies);
    if (value) {
      this.cache.delete(value);
      await this.store.destroy(value);
    }
    return clearCookies(this.cfg.cookie.name, this.cookieOptions(host), cookies.size ? cookies : new Map([[this.cfg.cookie.name, '']]));
  }

  /** The raw cookie value on a request, for the cross-domain handoff. */
  cookieValue(cookieHeader: string | string[] | undefined): string | null {
    return readChunked(this.cfg.cookie.name, parseCookies(cookieHeader));
  }
}
