import * as client from 'openid-client';
import { keepUserClaims, mergeUserinfo } from './claims.js';
import {
  describe,
  IdpUnavailableError,
  isUnreachable,
  REDIRECT_URI_AS_SENT,
  type Idp,
} from './oidc.js';
import type {
  AuthorizationRequest,
  CallbackCheck,
  Provider,
  ProviderRefresh,
  ProviderTokens,
  RefreshInput,
  SignInResult,
} from './provider.js';

// OpenID Connect: authorization code with PKCE, the ID token checked twice (openid-client for
// its claims, id-token.ts for its signature against our allow-list), userinfo merged, then what
// a directory still owes (directory/complete.ts).

export class OidcProvider implements Provider {
  constructor(
    private readonly idp: Idp,
    private readonly scopes: readonly string[],
    private readonly log: (detail: string) => void = () => {},
    /** Parameters an IdP needs beyond OIDC's (Google: access_type=offline for a refresh token). */
    private readonly extraParams: Record<string, string> = {},
  ) {}

  authorizationUrl(r: AuthorizationRequest): URL {
    return client.buildAuthorizationUrl(this.idp.get(), {
      redirect_uri: r.redirectUri,
      scope: this.scopes.join(' '),
      state: r.state,
      nonce: r.nonce,
      code_challenge: r.codeChallenge,
      code_challenge_method: 'S256',
      ...this.extraParams,
    });
  }

  canRefresh(tokens: ProviderTokens): boolean {
    return !!tokens.refreshToken;
  }

  async signIn(callback: URL, check: CallbackCheck, now: number): Promise<SignInResult> {
    let config: client.Configuration;
    try {
      config = this.idp.get();
    } catch (e) {
      return { kind: 'failed', code: 'idp_unavailable', message: (e as Error).message };
    }
    let tokens;
    try {
      tokens = await client.authorizationCodeGrant(
        config,
        callback,
        {
          pkceCodeVerifier: check.verifier,
          expectedState: check.state,
          expectedNonce: check.nonce,
          idTokenExpected: true,
        },
        // openid-client sends the callback URL without its query as redirect_uri; one registered
        // with a query (Authentik's) must be sent as it was in the authorization request.
        new URL(check.redirectUri).search
          ? { [REDIRECT_URI_AS_SENT]: check.redirectUri }
          : undefined,
      );
    } catch (e) {
      const network = isUnreachable(e);
      return {
        kind: 'failed',
        code: network ? 'idp_unreachable' : 'token_exchange_failed',
        message: network
          ? 'The identity provider could not be reached to finish the sign-in.'
          : `The identity provider did not accept the sign-in (${describe(e)}).`,
      };
    }
    const idClaims = tokens.claims();
    if (!idClaims || !tokens.id_token)
      return {
        kind: 'failed',
        code: 'no_id_token',
        message: 'The identity provider returned no ID token.',
      };
    const signature = await this.idp.verifyIdToken(tokens.id_token);
    if (signature.kind !== 'ok')
      return {
        kind: 'failed',
        code: signature.kind === 'invalid' ? 'id_token_invalid' : 'id_token_keys_unavailable',
        message: `The identity provider's answer could not be trusted: ${signature.reason}.`,
      };
    const claims: Record<string, unknown> = {};
    keepUserClaims(idClaims, claims);
    if (tokens.access_token && config.serverMetadata().userinfo_endpoint) {
      try {
        const info = await client.fetchUserInfo(config, tokens.access_token, idClaims.sub);
        mergeUserinfo(info, claims);
      } catch (e) {
        this.log(describe(e));
      }
    }
    const completed = await this.idp.completer.complete(claims, now);
    if (completed.kind === 'refused')
      return {
        kind: 'failed',
        code: completed.code,
        message: completed.message,
        log: { user: idClaims.sub, detail: completed.detail },
      };
    if (completed.kind === 'unavailable')
      return {
        kind: 'failed',
        code: 'directory_unavailable',
        message:
          'Your group memberships could not be read from the identity provider’s directory right now. Please try again in a minute.',
        log: { user: idClaims.sub, directory: completed.reason },
      };
    return {
      kind: 'ok',
      sub: idClaims.sub,
      claims: completed.claims,
      staleGroups: completed.stale === true,
      idpSession: {
        // The IdP as discovered, not the token's iss: the two differ for a multi-tenant Entra
        // issuer ({tenantid}), and a logout is matched to the IdP, not to a tenant.
        iss: this.idp.issuer() ?? idClaims.iss,
        // Bounded: it is kept in the session and hashed into an index name, never trusted further.
        sid:
          typeof idClaims.sid === 'string' && idClaims.sid.length <= 255 ? idClaims.sid : undefined,
      },
      tokens: {
        accessToken: tokens.access_token,
        accessTokenExp: tokens.expires_in ? now + tokens.expires_in * 1000 : undefined,
        refreshToken: tokens.refresh_token,
        idToken: tokens.id_token,
      },
    };
  }

  async refresh(s: RefreshInput, now: number): Promise<ProviderRefresh> {
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
    if (idClaims) keepUserClaims(idClaims, (claims = {}));
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
      if (completed.kind === 'unavailable')
        return { kind: 'transient', reason: completed.reason, source: 'directory' };
      claims = completed.claims;
    }
    return {
      kind: 'ok',
      claims,
      tokens: {
        accessToken: tokens.access_token,
        accessTokenExp: tokens.expires_in ? now + tokens.expires_in * 1000 : undefined,
        // IdPs that do not rotate refresh tokens answer without one: the old one stays valid.
        refreshToken: tokens.refresh_token ?? s.refreshToken,
        idToken: tokens.id_token,
      },
    };
  }
}
