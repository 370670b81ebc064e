import type { Config } from '../config/types.js';
import { emailRefusal } from '../identity/email-verified.js';
import type { Provider } from '../identity/provider.js';
import type { SessionData } from './types.js';

// One refresh through the provider (a refresh-token grant plus userinfo for OpenID Connect; the
// API again for GitHub): new tokens, and the user's current claims, so a group removed at the
// IdP is removed here too.

export type RefreshResult =
  /** New tokens and claims. */
  | { kind: 'ok'; session: SessionData }
  /** The IdP said no (revoked or rotated refresh token, disabled user, deleted client): the session is over. */
  | { kind: 'rejected'; reason: string }
  /** The IdP could not be asked (down, timeout, 5xx): try again later, the session is not at fault. */
  | { kind: 'transient'; reason: string; source?: 'directory' };

export interface Refresher {
  /** Whether this session can be refreshed at all (else it lives until it expires). */
  canRefresh(session: SessionData): boolean;
  refresh(session: SessionData, now: number): Promise<RefreshResult>;
}

/**
 * Several IdPs (`idps:`): each session is refreshed by the IdP it signed in with, never by
 * another; a session whose IdP left the config cannot be refreshed and ends.
 */
export class RefresherByIdp implements Refresher {
  constructor(
    private readonly byId: ReadonlyMap<string, Refresher>,
    private readonly defaultId: string,
  ) {}

  private pick(s: SessionData): Refresher | undefined {
    return this.byId.get(s.idp ?? this.defaultId);
  }

  canRefresh(s: SessionData): boolean {
    return this.pick(s)?.canRefresh(s) ?? false;
  }

  async refresh(s: SessionData, now: number): Promise<RefreshResult> {
    const r = this.pick(s);
    if (!r)
      return { kind: 'rejected', reason: `the session's IdP ${s.idp} is no longer configured` };
    return r.refresh(s, now);
  }
}

export class ProviderRefresher implements Refresher {
  constructor(
    private readonly provider: Provider,
    private readonly settings: Config['idp'],
  ) {}

  canRefresh(s: SessionData): boolean {
    return this.provider.canRefresh(s);
  }

  async refresh(s: SessionData, now: number): Promise<RefreshResult> {
    const r = await this.provider.refresh(s, now);
    if (r.kind !== 'ok') return r;
    // An address changed at the IdP to one it has not verified ends the session like any other
    // identity the IdP no longer vouches for.
    const refusal = r.claims ? emailRefusal(r.claims, this.settings) : null;
    if (refusal) return { kind: 'rejected', reason: `${refusal.message} (${refusal.setting})` };
    return {
      kind: 'ok',
      session: {
        ...s,
        claims: r.claims ?? s.claims,
        accessToken: r.tokens.accessToken,
        accessTokenExp: r.tokens.accessTokenExp,
        refreshToken: r.tokens.refreshToken,
        refreshedAt: now,
        // Only sessions that carry an ID token for pass_id_token keep one, and never a stale one.
        idToken: s.idToken !== undefined ? r.tokens.idToken : undefined,
      },
    };
  }
}
