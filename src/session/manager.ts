import { randomBytes } from 'node:crypto';
import type { Config } from '../config/types.js';
import type { Identity, RequestContext } from '../decide/types.js';
import { groupsAt } from '../identity/claim-path.js';
import { claimText, identityFromClaims } from '../identity/claims.js';
import type { Logger } from '../observe/logger.js';
import {
  chunkedCookies,
  clearCookies,
  parseCookies,
  readChunked,
  singleCookieValue,
  type CookieOptions,
} from './cookies.js';
import type { Refresher } from './refresh.js';
import {
  StoreUnavailableError,
  type IdpLogout,
  type SessionData,
  type SessionStore,
  type SessionView,
} from './types.js';

export interface SessionLookup {
  identity: Identity | null;
  /** The session's id, expiry, and its tokens only when a route passes them upstream. */
  session: SessionView | null;
  /** Set-Cookie headers to send with whatever answer follows (e.g. clearing a garbled cookie). */
  setCookies: string[];
}

/** Refresh results remembered at most (see RECENT_MS). */
const RECENT_MAX = 10_000;
/**
 * Server-side stores: how long a decoded session is trusted without asking the store again while
 * the store's channel is not known to deliver every sign-out and revocation (down, quiet, not yet
 * subscribed). It bounds both how long an ending made through another process can go unnoticed
 * and how long cached sessions are served once the store itself is down (docs/high-availability.md).
 */
export const UNWATCHED_MS = 1_000;
/**
 * While the channel is up, endings arrive within milliseconds and the cache can keep a session
 * longer. The store is still asked now and then, in case a message was lost without a sign.
 */
export const WATCHED_MS = 30_000;
/** Cross-process refresh lock: longer than any refresh takes, short enough to outlive a crash. */
const LOCK_MS = 10_000;
const POLL_MS = 100;
/** After the IdP could not be reached, the same session's refresh is retried this much later. */
const RETRY_AFTER_TRANSIENT_MS = 15_000;
/** A refresh result is remembered this long, for requests that still carry the pre-refresh state. */
const RECENT_MS = 60_000;

/**
 * A decoded session, cut down to what the hot path needs. The refresh token is never kept in
 * memory: a refresh reads the session again from the store (the cookie store: decrypts the
 * cookie again), which happens once per refresh interval, not per request.
 */
interface Decoded {
  view: SessionView;
  identity: Identity;
  /** When the tokens and claims were last read from the IdP (refreshedAt, else iat). */
  since: number;
  /** When the tokens are due for a refresh; Infinity without a refresh token. */
  dueAt: number;
}

interface Entry extends Decoded {
  /** When the store last confirmed this session (server-side stores). */
  checkedAt: number;
  /** Cookie store: the refreshed cookie value to hand to a browser still sending this one. */
  reissue?: string | undefined;
}

type Refreshed = { decoded: Decoded; value: string } | null;

export interface SessionManagerOptions {
  refresher?: Refresher | undefined;
  log?: Logger | undefined;
}

/** When a session's tokens should be refreshed: before the access token expires, and at least every `interval`. */
export function refreshDueAt(s: SessionData, intervalMs: number): number {
  const since = s.refreshedAt ?? s.iat;
  let due = since + intervalMs;
  if (s.accessTokenExp !== undefined) {
    // A quarter of the token's life ahead (1 to 60 s): a 5-minute token is renewed a minute
    // early, a 5-second one just over a second early, so requests never carry an expired one.
    const margin = Math.min(60_000, Math.max(1_000, (s.accessTokenExp - since) / 4));
    due = Math.min(due, s.accessTokenExp - margin);
  }
  return due;
}

/**
 * Turns the cookie on a request into an identity, refreshing the IdP tokens when they are due.
 *
 * Decoding is cached by the full cookie value, so the hot path pays it once per session; the
 * cache is bounded by session_cache_size (more sessions than that in use at once evict each
 * other, and each request decrypts its cookie and signs a new assertion again: 2.4x fewer
 * requests per second in the 20,000-session bench), an entry is dropped as soon as its session
 * has expired, and with a server-side store an entry is dropped as soon as the store's channel
 * says its session ended anywhere; while that channel is down, an entry older than UNWATCHED_MS
 * is checked against the store again, so an ending is refused here within that bound.
 *
 * Refresh happens once per session however many requests arrive together: one promise per
 * session id in this process, and the store's lock across processes (the loser waits for the
 * winner's result instead of spending the refresh token a second time, which an IdP that
 * rotates refresh tokens would treat as theft and answer by revoking the whole grant).
 */
export class SessionManager {
  private readonly cache = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<Refreshed>>();
  private readonly recent = new Map<string, { result: Refreshed; at: number }>();
  private readonly retryAt = new Map<string, number>();
  /** Sessions whose last refresh failed because the IdP's directory (not the IdP) was down. */
  private readonly directoryDown = new Set<string>();
  private idpTrouble = false;
  /** Counts endings heard, so a store read that raced one is not cached (see lookup). */
  private endings = 0;
  private readonly refresher: Refresher | undefined;
  private readonly log: Logger | undefined;
  /** Whether any route passes the access token / the ID token upstream (else the cache drops them). */
  private readonly keepAccessToken: boolean;
  private readonly keepIdToken: boolean;

  constructor(
    private readonly cfg: Config,
    readonly store: SessionStore,
    opts: SessionManagerOptions = {},
  ) {
    this.refresher = opts.refresher;
    this.log = opts.log;
    this.keepAccessToken = cfg.routes.some((r) => r.passAccessToken !== null);
    this.keepIdToken = cfg.routes.some((r) => r.passIdToken !== null);
    store.watch?.((sids) => this.forget(sids));
  }

  /** Sessions ended or rewritten by any process: their decoded copies go at once. */
  private forget(sids: ReadonlySet<string>): void {
    this.endings++;
    // A scan of the cache per message: endings are rare next to requests, and an index by
    // session id would cost every cache miss a second map write.
    for (const [value, e] of this.cache) if (sids.has(e.view.sid)) this.cache.delete(value);
  }

  /**
   * Ends the sessions a logout from the IdP names (authenticate/idp-logout.ts): in the store,
   * which tells every replica of a shared one, and in this process's cache. The cookie store can
   * only refuse them here (session/logout-list.ts); its count is null.
   */
  async endByIdp(logout: IdpLogout, now: number): Promise<number | null> {
    const ended = this.store.endByIdp ? await this.store.endByIdp(logout, now) : null;
    if (!this.store.serverSide) {
      // The cache does not know which IdP session an entry came from; the store does, on the
      // next read. Logouts are rare next to requests: every entry is decoded once more.
      this.endings++;
      this.cache.clear();
    }
    return ended;
  }

  cookieOptions(host: string, maxAgeSeconds?: number): CookieOptions {
    const c = this.cfg.cookie;
    const o: CookieOptions = {
      domain: this.cookieDomainFor(host),
      secure: c.secure,
      httpOnly: c.httpOnly,
      sameSite: c.sameSite,
    };
    if (maxAgeSeconds !== undefined) o.maxAgeSeconds = maxAgeSeconds;
    return o;
  }

  /** cookie_domain when the host is under it; otherwise the cookie stays host-only. */
  cookieDomainFor(host: string): string | null {
    const d = this.cfg.cookie.domain;
    return d && (host === d || host.endsWith(`.${d}`)) ? d : null;
  }

  async lookup(ctx: RequestContext): Promise<SessionLookup> {
    const name = this.cfg.cookie.name;
    let cookies: Map<string, string> | null = null;
    let value = singleCookieValue(ctx.headers.cookie, name) ?? null;
    if (value === null) {
      cookies = parseCookies(ctx.headers.cookie);
      if (!cookies.has(name)) return { identity: null, session: null, setCookies: [] };
      value = readChunked(name, cookies);
    }
    if (value) {
      const entry = await this.current(value, ctx.now);
      if (entry) {
        const setCookies = entry.reissue
          ? this.cookiesFor(entry.reissue, entry.view, ctx.host, ctx.headers.cookie)
          : [];
        return { identity: entry.identity, session: entry.view, setCookies };
      }
    }
    // Pitfall 14: a stale, foreign or garbled cookie is no session, and is cleared so it
    // cannot keep confusing later attempts. A session whose refresh the IdP refused ends here
    // too: the browser goes through the login again, an API client gets 401, never a 500.
    return {
      identity: null,
      session: null,
      setCookies: clearCookies(
        name,
        this.cookieOptions(ctx.host),
        cookies ?? parseCookies(ctx.headers.cookie),
      ),
    };
  }

  /**
   * The session a Portcullis CLI token names (its cookie value), judged exactly as that cookie
   * would be: the same cache and revalidation bound, refresh when due, ended and revoked sessions
   * refused. null when the session is over. Throws StoreUnavailableError like lookup().
   */
  async resolve(
    value: string,
    now: number,
  ): Promise<{ identity: Identity; session: SessionView } | null> {
    const entry = await this.current(value, now);
    return entry ? { identity: entry.identity, session: entry.view } : null;
  }

  private async current(value: string, now: number): Promise<Entry | null> {
    let entry = this.cached(value, now);
    if (!entry) {
      const endings = this.endings;
      const session = await this.store.load(value, now);
      // An ending heard while the store was being read may be this very session's: the answer
      // stands for this request, the next one asks the store again.
      // A session from an IdP no longer configured is no session: nobody can refresh it or
      // sign it out at its IdP, and its claims were read under settings that are gone.
      if (session && this.idpSettings(session))
        entry = this.remember(
          value,
          this.decode(session),
          endings === this.endings ? now : -Infinity,
        );
    }
    if (entry && this.refresher && this.due(entry, now))
      entry = await this.refreshed(value, entry, now);
    return entry;
  }

  private cached(value: string, now: number): Entry | null {
    const hit = this.cache.get(value);
    if (!hit) return null;
    // A cookie-store entry is decoded once and kept, unless it was read while an ending was
    // heard (checkedAt -Infinity): the ending may have been its own (a logout from the IdP).
    if (
      hit.view.exp > now &&
      (this.store.serverSide ? this.fresh(hit.checkedAt, now) : hit.checkedAt !== -Infinity)
    )
      return hit;
    this.cache.delete(value);
    return null;
  }

  private fresh(checkedAt: number, now: number): boolean {
    const since = this.store.watchedSince?.(now) ?? null;
    if (since !== null && checkedAt >= since) return now - checkedAt < WATCHED_MS;
    return now - checkedAt < UNWATCHED_MS;
  }

  /** The parts of a session the cache keeps (see Decoded). */
  private decode(s: SessionData): Decoded {
    const view: SessionView = { sid: s.sid, exp: s.exp };
    if (this.keepAccessToken && s.accessToken !== undefined) view.accessToken = s.accessToken;
    if (this.keepIdToken && s.idToken !== undefined) view.idToken = s.idToken;
    return {
      view,
      identity: identityFromClaims(s.sub, s.claims, this.idpSettings(s) ?? this.cfg.idp, 'session'),
      since: s.refreshedAt ?? s.iat,
      dueAt: this.refresher?.canRefresh(s)
        ? refreshDueAt(s, this.cfg.idpRefreshDirectoryIntervalMs)
        : Infinity,
    };
  }

  /** The settings of the IdP a session came from (claim paths, email rules), or null when it is gone. */
  private idpSettings(s: Pick<SessionData, 'idp'>): Config['idp'] | null {
    if (s.idp === undefined) return this.cfg.idp;
    return this.cfg.idps.find((i) => i.id === s.idp) ?? null;
  }

  private remember(value: string, d: Decoded, now: number, reissue?: string): Entry {
    const entry: Entry = {
      view: d.view,
      identity: d.identity,
      since: d.since,
      dueAt: d.dueAt,
      checkedAt: now,
      reissue,
    };
    this.cache.delete(value);
    if (this.cache.size >= this.cfg.sessionCacheSize)
      this.cache.delete(this.cache.keys().next().value!);
    // The value is usually a slice of the request's Cookie header, and V8 keeps a slice's whole
    // parent alive: a cached key would hold every other cookie the browser sent (8 KB of them
    // measured 8.9 KB per entry). Copying it costs one allocation per cache miss.
    this.cache.set(ownCopy(value), entry);
    return entry;
  }

  private due(e: Entry, now: number): boolean {
    const dueAt = e.dueAt;
    if (now < dueAt) return false; // also: no refresh token (Infinity)
    const retry = this.retryAt.get(e.view.sid);
    if (retry !== undefined && now < retry) {
      // The IdP could not be reached: the session goes on with what it has, but only for one
      // more interval. After that its groups are too old to trust, and it fails closed (503).
      this.failClosedAfter(e.view.sid, dueAt, now);
      return false;
    }
    return true;
  }

  /** The entry after a refresh, or null when the session is over. */
  private async refreshed(value: string, entry: Entry, now: number): Promise<Entry | null> {
    const sid = entry.view.sid;
    const since = entry.since;
    const endings = this.endings;
    let result: Refreshed;
    const recent = this.recent.get(sid);
    if (
      recent &&
      now - recent.at < RECENT_MS &&
      (recent.result === null || recent.result.decoded.since > since)
    ) {
      result = recent.result;
    } else {
      let p = this.inflight.get(sid);
      if (!p) {
        // Cookie store: an older value (a CLI token's, a browser that missed the Set-Cookie)
        // holds a refresh token already spent; presenting it again would make a rotating IdP
        // revoke the whole grant. The newest value this process handed out carries the live one.
        p = this.runRefresh(entry.reissue ?? value, sid, since).finally(() =>
          this.inflight.delete(sid),
        );
        this.inflight.set(sid, p);
      }
      result = await p;
    }
    if (!result) {
      this.cache.delete(value);
      return null;
    }
    return this.remember(
      value,
      result.decoded,
      // Cookie store: read before a logout from the IdP that arrived meanwhile, so good for this
      // request, not for the next. (Server-side stores re-check the store within their bound.)
      endings === this.endings || this.store.serverSide ? Date.now() : -Infinity,
      result.value !== value ? result.value : undefined,
    );
  }

  /** `since`: when the tokens this process has were read from the IdP. */
  private async runRefresh(value: string, sid: string, since: number): Promise<Refreshed> {
    if (!this.store.lock) {
      // The cache holds no refresh token: read the session again (the cookie store decrypts the cookie).
      const current = await this.store.load(value, Date.now());
      if (!current) return this.settle(sid, null);
      return this.refreshAndStore(value, current);
    }
    const release = await this.store.lock(value, LOCK_MS);
    if (!release) return this.waitForOther(value, sid, since);
    try {
      // Another process may have refreshed between our read and our lock.
      const current = await this.store.load(value, Date.now());
      if (!current) return this.settle(sid, null);
      if ((current.refreshedAt ?? current.iat) > since)
        return { decoded: this.decode(current), value };
      return await this.refreshAndStore(value, current);
    } finally {
      await release();
    }
  }

  /** Another process holds the lock: use its result rather than spending the refresh token twice. */
  private async waitForOther(value: string, sid: string, since: number): Promise<Refreshed> {
    const deadline = Date.now() + LOCK_MS;
    for (;;) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      const s = await this.store.load(value, Date.now());
      if (!s) return null;
      if ((s.refreshedAt ?? s.iat) > since) return { decoded: this.decode(s), value };
      // The lock is free again but nothing changed: the other process could not reach the IdP
      // (or died). Go on with the session as it is; the next request past the retry delay tries again.
      const release = Date.now() < deadline ? await this.store.lock!(value, POLL_MS) : null;
      if (release || Date.now() >= deadline) {
        await release?.();
        this.retryAt.set(sid, Date.now() + RETRY_AFTER_TRANSIENT_MS);
        return { decoded: this.decode(s), value };
      }
    }
  }

  private async refreshAndStore(value: string, s: SessionData): Promise<Refreshed> {
    const now = Date.now();
    const r = await this.refresher!.refresh(s, now);
    const user = claimText(s.claims, this.cfg.idp.emailClaim) || s.sub;
    if (r.kind === 'ok') {
      this.retryAt.delete(s.sid);
      this.directoryDown.delete(s.sid);
      if (this.idpTrouble) {
        this.idpTrouble = false;
        this.log?.info({ event: 'session_refresh_recovered' }, 'token refresh works again');
      }
      let next = value;
      if (this.store.update) {
        // Ended (signed out, revoked) while the IdP was being asked: it stays ended.
        if (!(await this.store.update(r.session, value))) return this.settle(s.sid, null);
      } else {
        next = await this.store.save(r.session);
      }
      this.log?.debug(
        {
          event: 'session_refreshed',
          user,
          groups: groupsAt(
            r.session.claims,
            this.cfg.idp.groupsClaims,
            this.cfg.idp.groupsSeparator,
          ),
        },
        'session tokens refreshed',
      );
      return this.settle(s.sid, { decoded: this.decode(r.session), value: next });
    }
    if (r.kind === 'rejected') {
      this.log?.info(
        { event: 'session_refresh_rejected', user, reason: r.reason },
        'the identity provider refused to refresh the session; it is ended and the user must sign in again',
      );
      await this.store.destroy(value).catch(() => {});
      return this.settle(s.sid, null);
    }
    if (!this.idpTrouble) {
      // Once per IdP outage, not once per session or request.
      this.idpTrouble = true;
      this.log?.warn(
        { event: 'session_refresh_unavailable', reason: r.reason },
        'token refresh failed: the identity provider cannot be reached; sessions continue for one refresh interval, then fail closed',
      );
    }
    this.retryAt.set(s.sid, now + RETRY_AFTER_TRANSIENT_MS);
    if (r.source === 'directory') this.directoryDown.add(s.sid);
    else this.directoryDown.delete(s.sid);
    this.failClosedAfter(s.sid, refreshDueAt(s, this.cfg.idpRefreshDirectoryIntervalMs), now);
    return { decoded: this.decode(s), value };
  }

  /**
   * A session whose refresh keeps failing goes on with the groups it has, for one more refresh
   * interval when the IdP is down, or idp_directory_outage_grace when only its directory is;
   * after that its groups are too old to trust, and it fails closed (503, never an allow).
   */
  private failClosedAfter(sid: string, dueAt: number, now: number): void {
    const directory = this.directoryDown.has(sid);
    const grace = directory
      ? this.cfg.idp.directoryOutageGraceMs
      : this.cfg.idpRefreshDirectoryIntervalMs;
    if (now <= dueAt + grace) return;
    throw new StoreUnavailableError(
      directory
        ? 'the identity provider’s directory cannot be reached to re-read the session’s groups'
        : 'the identity provider cannot be reached to refresh the session',
      { source: directory ? 'directory' : 'idp_refresh' },
    );
  }

  private settle(sid: string, result: Refreshed): Refreshed {
    this.recent.delete(sid);
    if (this.recent.size >= RECENT_MAX) this.recent.delete(this.recent.keys().next().value!);
    this.recent.set(sid, { result, at: Date.now() });
    return result;
  }

  newSession(
    sub: string,
    claims: Record<string, unknown>,
    tokens: {
      accessToken?: string | undefined;
      accessTokenExp?: number | undefined;
      refreshToken?: string | undefined;
      idToken?: string | undefined;
    },
    now = Date.now(),
    idpSession?: { iss: string; sid?: string | undefined },
    idp?: string,
  ): SessionData {
    return {
      v: 1,
      sid: randomBytes(18).toString('base64url'),
      sub,
      claims,
      iat: now,
      exp: now + this.cfg.cookie.expireMs,
      ...tokens,
      ...(idpSession
        ? {
            idpIss: idpSession.iss,
            ...(idpSession.sid !== undefined ? { idpSid: idpSession.sid } : {}),
          }
        : {}),
      ...(idp !== undefined ? { idp } : {}),
    };
  }

  /** Stores the session and returns the Set-Cookie headers that carry it on `host`. */
  async issue(
    session: SessionData,
    host: string,
    cookieHeader: string | string[] | undefined,
  ): Promise<string[]> {
    const value = await this.store.save(session);
    return this.cookiesFor(value, session, host, cookieHeader);
  }

  cookiesFor(
    value: string,
    session: Pick<SessionData, 'exp'>,
    host: string,
    cookieHeader: string | string[] | undefined,
  ): string[] {
    const maxAge = Math.floor((session.exp - Date.now()) / 1000);
    return chunkedCookies(
      this.cfg.cookie.name,
      value,
      this.cookieOptions(host, maxAge),
      parseCookies(cookieHeader),
    );
  }

  /** Ends the session named by the request's cookie (server-side too) and clears the cookie. */
  async end(cookieHeader: string | string[] | undefined, host: string): Promise<string[]> {
    const cookies = parseCookies(cookieHeader);
    const value = readChunked(this.cfg.cookie.name, cookies);
    if (value) {
      // A copy of a cookie-store cookie cannot be revoked, but this process stops refreshing it.
      const s = this.cache.get(value)?.view;
      if (s) this.settle(s.sid, null);
      this.cache.delete(value);
      await this.store.destroy(value);
    }
    return clearCookies(
      this.cfg.cookie.name,
      this.cookieOptions(host),
      cookies.size ? cookies : new Map([[this.cfg.cookie.name, '']]),
    );
  }

  /** The id of the IdP the request's session signed in with, or null; never refreshes it. */
  async idpOf(cookieHeader: string | string[] | undefined, now: number): Promise<string | null> {
    const value = readChunked(this.cfg.cookie.name, parseCookies(cookieHeader));
    if (!value) return null;
    const hit = this.cache.get(value);
    if (hit) return hit.identity.idp ?? this.cfg.idp.id;
    try {
      const s = await this.store.load(value, now);
      return s ? (s.idp ?? this.cfg.idp.id) : null;
    } catch {
      // The store is down: the sign-out itself says so; the default IdP's logout is offered.
      return null;
    }
  }

  /** The raw cookie value on a request, for the cross-domain handoff. */
  cookieValue(cookieHeader: string | string[] | undefined): string | null {
    return readChunked(this.cfg.cookie.name, parseCookies(cookieHeader));
  }
}

/** A string that shares no storage with the one it came from (see remember). */
function ownCopy(s: string): string {
  return ` ${s}`.slice(1);
}
