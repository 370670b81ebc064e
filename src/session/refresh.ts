import * as client from 'openid-client';
import type { Config } from '../config/types.js';
import { keepUserClaims, mergeUserinfo } from '../identity/claims.js';
import { emailRefusal } from '../identity/email-verified.js';
import { describe, IdpUnavailableError, type Idp } from '../identity/oidc.js';
import type { SessionData } from './types.js';

// One refresh-token grant plus a userinfo read: new access (and refresh) token, and the
// user's current claims, so a group removed at the IdP is removed here too.

export type RefreshResult =
  /** New tokens and claims. */
  | { kind: 'ok'; session: SessionData }
  /** The IdP said no (revoked or rotated refresh token, disabled user, deleted client): the session is over. */
  | { kind: 'rejected'; reason: string }
  /** The IdP could not be asked (down, timeout, 5xx): try again later, the session is not at fault. */
  | { kind: 'transient'; reason: string };

export interface Refresher {
  refresh(session: SessionData, now: number): Promise<RefreshResult>;
}

const keep = keepUserClaims;

export class OidcRefresher implements Refresher {
  constructor(
    private readonly idp: Idp,
    private readonly settings: Config['idp'],
  ) {}

  async refresh(s: SessionData, now: number): Promise<RefreshResult> {
    if (!s.refreshToken) return { kind: 'rejected', reason: 'no refresh token' };
    let config: client.Configuration;
    try {
      config = this.idp.get();
    } catch (e) {
      if (e instanceof IdpUnavailableError) return { kind: 'transient', reason: e.message };
      throw e;
    }
    let tokens;
    try {
      tokens = await client.refreshTokenGrant(config, s.refreshToken);
    } catch (e) {
      // An OAuth error answer (invalid_grant, invalid_client, unauthorized_client…) is the IdP's
      // verdict; anything else (no answer, 5xx, a broken body) says nothing about the session.
      if (e instanceof client.ResponseBodyError && e.status < 500)
        return { kind: 'rejected', reason: describe(e) };
      return { kind: 'transient', reason: describe(e) };
    }
    const idClaims = tokens.claims();
    if (idClaims && idClaims.sub !== s.sub)
      return { kind: 'rejected', reason: 'the refreshed ID token names another subject' };
    if (tokens.id_token) {
      const signature = await this.idp.verifyIdToken(tokens.id_token);
      if (signature.kind === 'invalid') return { kind: 'rejected', reason: signature.reason };
      if (signature.kind === 'unavailable') return { kind: 'transient', reason: signature.reason };
    }
    // The claims are replaced, not merged: a group the IdP no longer lists must disappear even
    // when the IdP leaves the whole claim out.
    let claims: Record<string, unknown> | null = null;
    if (idClaims) keep(idClaims, (claims = {}));
    if (tokens.access_token && config.serverMetadata().userinfo_endpoint) {
      try {
        const info = await client.fetchUserInfo(config, tokens.access_token, s.sub);
        mergeUserinfo(info, (claims ??= {}));
      } catch {
        // The ID token's claims (or, without one, the previous claims until the next refresh) stand.
      }
    }
    if (claims) {
      const completed = await this.idp.completer.complete(claims, now);
      if (completed.kind === 'refused')
        return { kind: 'rejected', reason: `${completed.message} (${completed.detail})` };
      if (completed.kind === 'unavailable') return { kind: 'transient', reason: completed.reason };
      claims = completed.claims;
    }
    // An address changed at the IdP to one it has not verified ends the session like any other
    // identity the IdP no longer vouches for.
    const refusal = claims ? emailRefusal(claims, this.settings) : null;
    if (refusal) return { kind: 'rejected', reason: `${refusal.message} (${refusal.setting})` };
    return {
      kind: 'ok',
      session: {
        ...s,
        claims: claims ?? s.claims,
        accessToken: tokens.access_token,
        accessTokenExp: tokens.expires_in ? now + tokens.expires_in * 1000 : undefined,
        // IdPs that do not rotate refresh tokens answer without one: the old one stays valid.
        refreshToken: tokens.refresh_token ?? s.refreshToken,
        refreshedAt: now,
        // Only sessions that carry an ID token for pass_id_token keep one, and never a stale one.
        idToken: s.idToken !== undefined ? tokens.id_token : undefined,
      },
    };
  }
}
