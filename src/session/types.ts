import type { UnavailableCause } from '../decide/types.js';
// The session layer's contract. The cookie store keeps the whole session in the browser;
// server-side stores (Redis, PostgreSQL) keep it encrypted and hand the browser only an id
// and a key. decide() never knows which one is in use.

export interface SessionData {
  v: 1;
  /** Random id, new at every login (session fixation). */
  sid: string;
  sub: string;
  /** Claims of the validated ID token merged with userinfo (userinfo wins). */
  claims: Record<string, unknown>;
  /** Issued at and expiry (ms). Portcullis's own lifetime: cookie_expire, not the IdP token's. */
  iat: number;
  exp: number;
  accessToken?: string | undefined;
  accessTokenExp?: number | undefined;
  refreshToken?: string | undefined;
  idToken?: string | undefined;
  /** When the tokens and claims were last read from the IdP (ms); absent = at login (iat). */
  refreshedAt?: number | undefined;
  /** Server-side stores: where the sign-in came from, for the admin console (never in a cookie). */
  client?: { ip: string; ua: string; idp: string } | undefined;
  /**
   * The issuer of the ID token and its `sid` claim (the IdP's session): what a back-channel or
   * front-channel logout names. Absent for providers without ID tokens (GitHub).
   */
  idpIss?: string | undefined;
  idpSid?: string | undefined;
  /** The id of the IdP the user signed in with; absent (sessions made before `idps`) = the default IdP. */
  idp?: string | undefined;
}

/**
 * What an IdP-initiated logout names (OpenID Connect Back-Channel Logout 1.0 §2.4, Front-Channel
 * Logout 1.0 §2): the sessions of one IdP session (`sid`), or of one user (`sub`), at `iss`.
 * With both, the sessions of that IdP session and user, and the user's sessions that recorded
 * no IdP session id (they might be the one meant).
 */
export interface IdpLogout {
  iss: string;
  sid?: string | undefined;
  sub?: string | undefined;
  /** When the IdP session ended (ms): sessions started later are not the ones meant. */
  at: number;
}

/**
 * What a request needs of its session once decoded (what SessionManager.lookup returns and its
 * cache holds): never the refresh token or the claims (those are in the Identity), and the
 * access and ID tokens only when some route passes them upstream. A full SessionData fits too.
 */
export interface SessionView {
  sid: string;
  exp: number;
  accessToken?: string | undefined;
  idToken?: string | undefined;
}

/** What `portcullis sessions list` shows: never a token. */
export interface SessionSummary {
  id: string;
  user: string;
  email: string;
  sub: string;
  iat: number;
  exp: number;
  /** The issuer that signed the user in, the client address and user agent at sign-in. */
  idp?: string | undefined;
  ip?: string | undefined;
  userAgent?: string | undefined;
}

/**
 * The session cannot be checked right now: the store is down, or (`source: 'idp_refresh'`) the
 * session is due for a refresh that the IdP cannot give. Either way a 503, never an allow.
 */
export class StoreUnavailableError extends Error {
  readonly source: Extract<UnavailableCause, 'session_store' | 'idp_refresh' | 'directory'>;

  constructor(
    message: string,
    options?: { cause?: unknown; source?: 'session_store' | 'idp_refresh' | 'directory' },
  ) {
    super(message, options);
    this.name = 'StoreUnavailableError';
    this.source = options?.source ?? 'session_store';
  }
}

export interface SessionStore {
  readonly kind: string;
  /**
   * true when the session lives in a shared store: it can be revoked, so a decoded copy held in
   * memory must be checked against the store again after a short while.
   */
  readonly serverSide: boolean;
  /** The session a cookie value names, or null (unknown, expired, tampered). Throws StoreUnavailableError when the store is down. */
  load(cookieValue: string, now: number): Promise<SessionData | null>;
  /** Stores a new session and returns the cookie value that names it. */
  save(session: SessionData): Promise<string>;
  /** Ends a session everywhere it is known. */
  destroy(cookieValue: string): Promise<void>;
  /**
   * Server-side stores: rewrites the session named by the cookie (token refresh) and keeps the
   * cookie as it is. false when the session no longer exists (ended while being refreshed).
   */
  update?(session: SessionData, cookieValue: string): Promise<boolean>;
  /**
   * A short exclusive lock on the session, shared by every process using the store, so only one
   * of them refreshes its tokens. Resolves to the release function, or null when someone else
   * holds it. Absent on stores that only one process can see.
   */
  lock?(cookieValue: string, ttlMs: number): Promise<(() => Promise<void>) | null>;
  /** Every live session, for `portcullis sessions list` (server-side stores only). */
  list?(now: number): Promise<SessionSummary[]>;
  /** Ends the sessions with these ids; returns how many existed. */
  revoke?(ids: string[]): Promise<number>;
  /**
   * Server-side stores: `ended` hears the ids of sessions ended or rewritten by any process (this
   * one included) as soon as the store says so. One listener: a later call replaces it (a reload
   * builds a new SessionManager on the same store).
   */
  watch?(ended: (sids: ReadonlySet<string>) => void): void;
  /**
   * Since when every end of a session has reached `watch`'s listener without a gap (ms), or null
   * while that is not known (the channel is down or has gone quiet). A decoded session confirmed
   * by the store after this instant can be trusted until the listener hears otherwise.
   */
  watchedSince?(now: number): number | null;
  /**
   * Marks a single-use id (login state, handoff link) as spent in the shared store, so it is spent
   * for every process: true the first time, false for a replay. Absent when the store is not shared.
   * Throws StoreUnavailableError when the store is down.
   */
  spend?(id: string, expiresAt: number, now: number): Promise<boolean>;
  /**
   * Ends the sessions an IdP-initiated logout names, everywhere the store is seen. Resolves to
   * how many ended, or null when the store cannot count them (the cookie store, which can only
   * refuse them in this process from now on). Throws StoreUnavailableError when the store is down.
   */
  endByIdp?(logout: IdpLogout, now: number): Promise<number | null>;
  /** Connects (and migrates) early, so an outage at start is logged before the first request. */
  start?(): Promise<void>;
  close(): Promise<void>;
}
