import type { IdpLogout, SessionData } from './types.js';

/** Logouts remembered at most; see LogoutList. */
export const LOGOUT_LIST_MAX = 10_000;

/**
 * The cookie store's answer to a logout initiated by the IdP. A cookie-store session lives in the
 * browser and nowhere else, so it cannot be deleted; this process can only refuse it from now on.
 * Each logout is remembered as "sessions of this IdP session (or user) that started before this
 * instant are over", for as long as any such session could still be alive (cookie_expire).
 *
 * What this cannot do, and the docs say: other processes and replicas never hear of it (each
 * answers only the logouts it received itself), and a restart forgets it. Bounded: when more
 * logouts are pending than `max`, the oldest one is folded into a floor, "every session that
 * started before this instant is over", so an overflow signs out too many people, never too few.
 */
export class LogoutList {
  /** Key -> when (ms); insertion order is the order logouts arrived. */
  private readonly entries = new Map<string, number>();
  private floor = -Infinity;

  constructor(
    /** How long a session can live (cookie_expire): older entries can match nothing alive. */
    private readonly lifetimeMs: number,
    private readonly max = LOGOUT_LIST_MAX,
    private readonly onOverflow: (floor: number) => void = () => {},
  ) {}

  add(logout: IdpLogout, now: number): void {
    this.sweep(now);
    const keys: string[] = [];
    if (logout.sid !== undefined) keys.push(key('sid', logout.iss, logout.sid));
    // With a sid the user's sessions that recorded none may be the ones meant (as in the
    // server-side stores); without one, every session of the user.
    if (logout.sub !== undefined)
      keys.push(key(logout.sid !== undefined ? 'nosid' : 'sub', logout.iss, logout.sub));
    for (const k of keys) {
      this.entries.delete(k);
      this.entries.set(k, logout.at);
    }
    while (this.entries.size > this.max) {
      const [oldest, at] = this.entries.entries().next().value!;
      this.entries.delete(oldest);
      if (at > this.floor) {
        this.floor = at;
        this.onOverflow(at);
      }
    }
  }

  /** Whether a logout this process heard of has ended this session. */
  ended(s: Pick<SessionData, 'sub' | 'iat' | 'idpIss' | 'idpSid'>): boolean {
    if (s.iat <= this.floor) return true;
    if (s.idpIss === undefined || this.entries.size === 0) return false;
    const hit = (k: string): boolean => {
      const at = this.entries.get(k);
      return at !== undefined && s.iat <= at;
    };
    if (hit(key('sub', s.idpIss, s.sub))) return true;
    return s.idpSid !== undefined
      ? hit(key('sid', s.idpIss, s.idpSid))
      : hit(key('nosid', s.idpIss, s.sub));
  }

  get size(): number {
    return this.entries.size;
  }

  private sweep(now: number): void {
    for (const [k, at] of this.entries) {
      // Insertion order is arrival order, and `at` is at most the arrival: stop at the first live one.
      if (at + this.lifetimeMs > now) break;
      this.entries.delete(k);
    }
  }
}

function key(kind: string, iss: string, v: string): string {
  return JSON.stringify([kind, iss, v]);
}
