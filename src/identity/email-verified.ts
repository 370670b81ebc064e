import type { Config } from '../config/types.js';

// Self-registration and social logins let anyone type any address: until the IdP says it
// checked that the user owns it (email_verified, OIDC Core 5.1), an email is only a claim,
// and `email`/`domain` policies, allowed_emails and X-Forwarded-Email would all believe it.
// So an unverified email refuses the sign-in (or the bearer token) unless the operator opts
// in, and an email the IdP says nothing about is refused unless the operator trusts that IdP
// (docs/configuration.md lists which IdPs send the claim).

export type EmailRefusal = {
  code: 'email_unverified' | 'email_verification_unknown';
  email: string;
  /** For the user: what happened, without configuration names. */
  message: string;
  /** For the operator's log: which setting would change the outcome. */
  setting: string;
};

/** null when the claims may be used as they are. */
export function emailRefusal(
  claims: Record<string, unknown>,
  idp: Config['idp'],
): EmailRefusal | null {
  // email_verified is defined for `email` only: another claim chosen as the email (e.g. Entra's
  // upn) is the operator's statement that the IdP controls it.
  if (idp.emailClaim !== 'email' || idp.allowUnverifiedEmail) return null;
  const email = claims.email;
  if (typeof email !== 'string' || !email) return null;
  const verified = claims.email_verified;
  // Some IdPs (older Cognito pools) send the JSON string.
  if (verified === true || verified === 'true') return null;
  // Entra sends no email_verified; its optional claim xms_edov says the address's domain is
  // verified by the tenant that owns it (learn.microsoft.com/en-us/entra/identity-platform/optional-claims-reference).
  if (idp.provider === 'azure' && verified === undefined) {
    const edov = claims.xms_edov;
    if (edov === true || edov === 'true' || edov === 1 || edov === '1') return null;
  }
  if (verified === undefined) {
    if (idp.emailVerifiedMissing === 'trust') return null;
    return {
      code: 'email_verification_unknown',
      email,
      message: `The identity provider did not say whether the email address ${email} is verified, so it cannot be used to sign in here.`,
      setting:
        'idp_email_verified_missing: trust (only for an IdP whose users cannot choose their own address)',
    };
  }
  return {
    code: 'email_unverified',
    email,
    message: `The identity provider has not verified the email address ${email}. Verify it there, then sign in again.`,
    setting: 'idp_allow_unverified_email: true',
  };
}
