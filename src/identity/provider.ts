// The seam between the login flow (authenticate/flow.ts) and an identity provider: where the
// browser is sent, how the code it brings back becomes a user, and how that user is re-read
// later. OpenID Connect is one provider (oidc-provider.ts); GitHub, which speaks plain OAuth 2.0,
// is another (github.ts). The flow keeps everything that is the same for all of them: state,
// PKCE, the login cookie, email rules, sessions.

export interface AuthorizationRequest {
  redirectUri: string;
  state: string;
  nonce: string;
  codeChallenge: string;
}

export interface CallbackCheck {
  verifier: string;
  state: string;
  nonce: string;
  /** The redirect_uri of the authorization request, exactly as it was sent. */
  redirectUri: string;
}

/** Why a sign-in failed; each is an outcome code of src/http/outcomes.ts. */
export type SignInFailure =
  | 'idp_unavailable'
  | 'idp_unreachable'
  | 'token_exchange_failed'
  | 'no_id_token'
  | 'id_token_invalid'
  | 'id_token_keys_unavailable'
  | 'organization_not_allowed'
  | 'directory_unavailable';

export interface ProviderTokens {
  accessToken?: string | undefined;
  accessTokenExp?: number | undefined;
  refreshToken?: string | undefined;
  idToken?: string | undefined;
}

export type SignInResult =
  | {
      kind: 'ok';
      sub: string;
      claims: Record<string, unknown>;
      tokens: ProviderTokens;
      /** The directory was down: last-known groups were used (idp_directory_outage_grace). */
      staleGroups?: boolean;
      /**
       * The ID token's issuer and `sid` (the IdP's session), kept with the session so a logout
       * the IdP initiates can find it. Absent without an ID token.
       */
      idpSession?: { iss: string; sid?: string | undefined };
    }
  | {
      kind: 'failed';
      code: SignInFailure;
      /** For the user. */
      message: string;
      /** For the operator's audit line. */
      log?: Record<string, unknown>;
    };

export interface RefreshInput {
  sub: string;
  claims: Record<string, unknown>;
  accessToken?: string | undefined;
  refreshToken?: string | undefined;
}

export type ProviderRefresh =
  /** claims null: the provider said nothing about the user this time; the old claims stand. */
  | { kind: 'ok'; claims: Record<string, unknown> | null; tokens: ProviderTokens }
  /** The IdP said no: the session is over. */
  | { kind: 'rejected'; reason: string }
  /** The IdP (or, source directory, its directory API) could not be asked: try again later. */
  | { kind: 'transient'; reason: string; source?: 'directory' };

export interface Provider {
  /** The address to send the browser to; throws IdpUnavailableError while the IdP is unknown. */
  authorizationUrl(r: AuthorizationRequest): URL;
  /** The callback's URL (with code and state) to a user, or why not. */
  signIn(callback: URL, check: CallbackCheck, now: number): Promise<SignInResult>;
  /** Whether sessions can be re-read later (a refresh token, or a token that does not expire). */
  canRefresh(tokens: ProviderTokens): boolean;
  refresh(input: RefreshInput, now: number): Promise<ProviderRefresh>;
}
