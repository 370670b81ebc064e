import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { LogoutList } from './logout-list.js';
import type { Sealer } from './seal.js';
import type { IdpLogout, SessionData, SessionStore } from './types.js';

/**
 * The default store: the session is the cookie, compressed then sealed. Stateless, so it
 * survives restarts and works across replicas that share cookie_secret. Sign-out can only
 * delete the cookie; a copied cookie stays valid until it expires (use a server-side store
 * when that matters). A logout initiated by the IdP is refused by this process only
 * (logout-list.ts).
 */
export class CookieSessionStore implements SessionStore {
  readonly kind = 'cookie';
  readonly serverSide = false;
  private readonly logouts: LogoutList;

  constructor(
    private readonly sealer: Sealer,
    private readonly cookieName: string,
    /** cookie_expire: how long a logout must be remembered. */
    lifetimeMs = 24 * 3600_000,
    onOverflow?: (floor: number) => void,
    maxLogouts?: number,
  ) {
    this.logouts = new LogoutList(lifetimeMs, maxLogouts, onOverflow);
  }

  async endByIdp(logout: IdpLogout, now: number): Promise<null> {
    this.logouts.add(logout, now);
    return null;
  }

  async load(value: string, now: number): Promise<SessionData | null> {
    const raw = this.sealer.open('session', value, this.cookieName);
    if (!raw) return null;
    try {
      const s = JSON.parse(
        inflateRawSync(raw, { maxOutputLength: 1 << 20 }).toString('utf8'),
      ) as SessionData;
      if (s?.v !== 1 || typeof s.sid !== 'string' || typeof s.exp !== 'number' || s.exp <= now)
        return null;
      return this.logouts.ended(s) ? null : s;
    } catch {
      return null;
    }
  }

  async save(session: SessionData): Promise<string> {
    return this.sealer.seal(
      'session',
      deflateRawSync(Buffer.from(JSON.stringify(session))),
      this.cookieName,
    );
  }

  async destroy(): Promise<void> {}
  async close(): Promise<void> {}
}
