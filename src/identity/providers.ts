import type { GroupSeparator } from './claim-path.js';

// What `idp_provider` changes: the defaults an operator of that IdP would otherwise have to
// know. Every value here is only a default; idp_scopes, idp_groups_claim, idp_user_claim,
// idp_email_claim and idp_groups_separator in the config win. Sources are in
// docs/identity-providers.md, one section per provider.

export const IDP_PROVIDERS = [
  'oidc',
  'keycloak',
  'okta',
  'google',
  'azure',
  'auth0',
  'authentik',
  'gitlab',
  'ping',
  'onelogin',
  'cognito',
  'github',
] as const;
export type IdpProvider = (typeof IDP_PROVIDERS)[number];

export interface ProviderDefaults {
  scopes: string[];
  /** Claim paths whose values together are the user's groups. */
  groupsClaims: string[];
  userClaim: string;
  emailClaim: string;
  groupsSeparator: GroupSeparator;
  /**
   * The IdP sends groups without a `groups` scope being asked for (the roles are part of the
   * token by default, or a scope of another name carries them): `portcullis check` then does
   * not warn about a missing groups scope.
   */
  groupsWithoutScope: boolean;
}

const OIDC_SCOPES = ['openid', 'profile', 'email', 'offline_access'];

const base: ProviderDefaults = {
  scopes: OIDC_SCOPES,
  groupsClaims: ['groups'],
  userClaim: 'sub',
  emailClaim: 'email',
  groupsSeparator: 'none',
  groupsWithoutScope: false,
};

export function providerDefaults(provider: IdpProvider, clientId: string): ProviderDefaults {
  switch (provider) {
    case 'keycloak':
      // Groups need a "Group Membership" mapper (claim `groups`); realm and client roles are
      // in the default `roles` client scope, which Keycloak adds without it being requested.
      return {
        ...base,
        groupsClaims: ['groups', 'realm_access.roles', `resource_access.${clientId}.roles`],
        groupsWithoutScope: true,
      };
    case 'okta':
      // The org authorization server releases `groups` for the `groups` scope once the app's
      // groups claim filter is set; a custom authorization server needs a groups claim.
      return { ...base, scopes: [...OIDC_SCOPES, 'groups'] };
    case 'cognito':
      // Cognito knows no offline_access scope (an unknown scope fails the sign-in) and always
      // issues a refresh token; groups are `cognito:groups` in the ID token.
      return {
        ...base,
        scopes: ['openid', 'profile', 'email'],
        groupsClaims: ['cognito:groups'],
        groupsWithoutScope: true,
      };
    case 'gitlab':
      // GitLab (doorkeeper) has no offline_access scope; the ID token carries groups_direct,
      // userinfo `groups` (direct and inherited): together, every group the user is in.
      return {
        ...base,
        scopes: ['openid', 'profile', 'email'],
        groupsClaims: ['groups', 'groups_direct'],
        groupsWithoutScope: true,
      };
    case 'authentik':
      // authentik's default `profile` scope mapping carries `groups`.
      return { ...base, groupsWithoutScope: true };
    case 'onelogin':
    case 'ping':
      return { ...base, scopes: [...OIDC_SCOPES, 'groups'] };
    case 'auth0':
      // Auth0 drops custom claims that are not namespaced: idp_groups_claim must name the
      // namespaced claim an Action adds (e.g. https://corp.example.com/groups); check warns.
      // An Action's claims need no scope.
      return { ...base, groupsWithoutScope: true };
    case 'azure':
      // `oid` is the user's immutable id across every app of the tenant; `sub` differs per app.
      // Groups are object ids; app roles (`roles`) are names the app defines.
      return {
        ...base,
        groupsClaims: ['groups', 'roles'],
        userClaim: 'oid',
        groupsWithoutScope: true,
      };
    case 'google':
      // Google's ID token has no groups: they come from the Directory API (see
      // docs/identity-providers.md); Google rejects a `groups` scope.
      return { ...base, scopes: ['openid', 'profile', 'email'], groupsWithoutScope: true };
    case 'github':
      // OAuth 2.0 with the REST API (github.ts): the login is the user name people know; the
      // numeric id is the session subject. read:org lists private memberships and teams.
      return {
        ...base,
        scopes: ['read:user', 'user:email', 'read:org'],
        userClaim: 'login',
        groupsWithoutScope: true,
      };
    case 'oidc':
      return base;
  }
}
