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
}

export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

export interface SessionStore {
  readonly kind: string;
  /** The session a cookie value names, or null (unknown, expired, tampered). Throws StoreUnavailableError when the store is down. */
  load(cookieValue: string, now: number): Promise<SessionData | null>;
  /** Stores a session and returns the cookie value that names it. */
  save(session: SessionData): Promise<string>;
  /** Ends a session everywhere it is known. */
  destroy(cookieValue: string): Promise<void>;
  close(): Promise<void>;
}
