// What the admin console's denials page says about a failed sign-in or a failed request. Its
// rows are read by an administrator but fed by anyone on the internet (a forged callback costs
// nothing), so a row never repeats what the request carried: it holds a fixed text per outcome
// code, and an IdP's error code only when it is one of the codes the standards define.

/** Why a sign-in failed, by outcome code (src/http/outcomes.ts). */
const SIGN_IN: Record<string, string> = {
  invalid_state: 'the state parameter is missing or malformed, or the login state is invalid',
  state_not_found:
    'no login of this browser has this state: not started here, or older than 10 minutes',
  state_replayed: 'this sign-in response was already used',
  idp_denied: 'the identity provider refused the sign-in',
  idp_error: 'the identity provider answered with an error',
  idp_mismatch: 'the response came from another identity provider than the one asked',
  idp_unavailable: 'the identity provider cannot be reached (discovery)',
  idp_unreachable: 'the identity provider could not be reached to exchange the code',
  token_exchange_failed: 'the identity provider did not accept the code (token exchange failed)',
  no_id_token: 'the identity provider returned no ID token',
  id_token_invalid: 'the ID token is invalid',
  id_token_keys_unavailable: 'the keys to check the ID token could not be fetched',
  email_unverified: 'the e-mail address is not verified',
  email_verification_unknown: 'the identity provider does not say whether the e-mail is verified',
  organization_not_allowed: 'the user is not in an allowed organization, or a claim is missing',
  directory_unavailable: 'the identity provider’s directory could not be asked for groups',
  invalid_handoff: 'the sign-in hand-over link was refused',
  too_many_logins: 'too many sign-ins were started',
  too_many_handoffs:
    'one session asked for too many hand-over links (20 at once, then 20 a minute)',
};

/** Why a hand-over link was refused, by the `reason` of the audit line handoff_refused (handoff.ts). */
const HANDOFF: Record<string, string> = {
  invalid_or_expired: 'the hand-over link is invalid or has expired',
  wrong_host: 'the hand-over link was made for another site',
  malformed: 'the hand-over link is malformed',
  wrong_origin: 'the hand-over link points to another site',
  other_browser: 'the hand-over link was opened in a browser that did not start the sign-in',
  replayed: 'the hand-over link was already used',
  session_ended: 'the hand-over link names a session that has ended',
};

/** Why a request ended in an error page, by outcome code. */
const ERROR: Record<string, string> = {
  session_store_unavailable: 'the session store is not answering',
  no_upstream: 'the route has no upstream',
  upstream_unavailable: 'the upstream could not be reached',
  no_healthy_upstream: 'none of the route’s upstreams could be reached',
  upstream_timeout: 'the upstream did not answer in time',
  upstream_bad_response: 'the upstream sent a response that cannot be passed on',
  bad_request: 'the request was malformed',
  bad_upgrade: 'an upgrade request that cannot be served',
};

/**
 * The error codes of an authorization response: RFC 6749 section 4.1.2.1
 * (https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1) and OpenID Connect Core 1.0
 * section 3.1.2.6 (https://openid.net/specs/openid-connect-core-1_0.html#AuthError).
 */
const IDP_ERRORS = new Set([
  'invalid_request',
  'unauthorized_client',
  'access_denied',
  'unsupported_response_type',
  'invalid_scope',
  'server_error',
  'temporarily_unavailable',
  'interaction_required',
  'login_required',
  'account_selection_required',
  'consent_required',
  'invalid_request_uri',
  'invalid_request_object',
  'request_not_supported',
  'request_uri_not_supported',
  'registration_not_supported',
]);

/** The outcome codes whose error page the denials page lists when no decision refused the request. */
export function isErrorOutcome(code: string): boolean {
  return Object.hasOwn(ERROR, code);
}

/** An outcome code as the row shows it: a known code, else a placeholder (never the input). */
function safeCode(code: unknown): string {
  return typeof code === 'string' && (Object.hasOwn(SIGN_IN, code) || Object.hasOwn(ERROR, code))
    ? code
    : 'unknown';
}

function signInReason(code: string, idpError: unknown): string {
  const text = SIGN_IN[code] ?? 'the sign-in failed';
  return typeof idpError === 'string' && IDP_ERRORS.has(idpError) ? `${text} (${idpError})` : text;
}

export function errorReason(code: string): string {
  return ERROR[code] ?? 'the request failed';
}

/**
 * The row of an audit line that says a sign-in failed or was refused, or null for any other
 * event. The code is the outcome code the browser was answered with; the reason is a fixed
 * text, with the line's own reason code in parentheses where it has one Portcullis defines.
 */
export function signInFailure(f: {
  event: string;
  reason?: unknown;
  idpError?: unknown;
}): { code: string; reason: string } | null {
  switch (f.event) {
    case 'login_failed': {
      const code = safeCode(f.reason);
      return { code, reason: signInReason(code, f.idpError) };
    }
    case 'idp_unavailable':
      return { code: 'idp_unavailable', reason: SIGN_IN.idp_unavailable! };
    case 'handoff_refused': {
      const why = typeof f.reason === 'string' && Object.hasOwn(HANDOFF, f.reason) ? f.reason : '';
      return {
        code: 'invalid_handoff',
        reason: why ? `${HANDOFF[why]!} (${why})` : SIGN_IN.invalid_handoff!,
      };
    }
    case 'login_rate_limited':
      return {
        code: 'too_many_logins',
        reason: 'too many sign-ins were started from this client address (login_rate_limit)',
      };
    case 'login_rate_limited_global':
      return {
        code: 'too_many_logins',
        reason:
          'too many sign-ins were started from all clients together (login_rate_limit_global)',
      };
    case 'handoff_rate_limited':
      return { code: 'too_many_handoffs', reason: SIGN_IN.too_many_handoffs! };
    default:
      return null;
  }
}
