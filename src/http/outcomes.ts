import type { ServerResponse } from 'node:http';
import type { UnavailableCause } from '../decide/types.js';
import { sendPage, type PageOptions } from './pages.js';

// Every answer Portcullis gives on its own account, by code: the code is what API clients and
// log searches match on (the `error` of the JSON body), so it is a constant, and its status
// and page title are said once, here. Callers give only what differs per request: the message.

interface OutcomeSpec {
  status: number;
  title: string;
}

const spec = (status: number, title: string): OutcomeSpec => ({ status, title });

const TABLE = {
  // Decisions
  unauthenticated: spec(401, 'Sign-in required'),
  invalid_token: spec(401, 'Invalid token'),
  access_denied: spec(403, 'Access denied'),
  wrong_host: spec(403, 'Access denied'),
  no_route: spec(404, 'Not found'),
  unknown_host: spec(404, 'Unknown site'),
  ambiguous_path: spec(400, 'Bad request'),
  session_store_unavailable: spec(503, 'Temporarily unavailable'),
  idp_unavailable: spec(503, 'Sign-in is temporarily unavailable'),
  token_check_unavailable: spec(503, 'Temporarily unavailable'),
  // Sign-in refusals (the login callback)
  email_unverified: spec(403, 'Sign-in refused'),
  email_verification_unknown: spec(403, 'Sign-in refused'),
  organization_not_allowed: spec(403, 'Sign-in refused'),
  /** The IdP's directory (Graph, GitHub, Google) could not say which groups the user is in. */
  directory_unavailable: spec(503, 'Sign-in is temporarily unavailable'),
  id_token_invalid: spec(502, 'Sign-in could not be completed'),
  id_token_keys_unavailable: spec(502, 'Sign-in could not be completed'),
  // The request itself
  bad_request: spec(400, 'Bad request'),
  bad_upgrade: spec(400, 'Bad request'),
  not_found: spec(404, 'Not found'),
  method_not_allowed: spec(405, 'Method not allowed'),
  internal_error: spec(500, 'Something went wrong'),
  // Sign-in, callback, hand-over, sign-out
  too_many_logins: spec(429, 'Too many sign-in attempts'),
  invalid_state: spec(400, 'Sign-in could not be completed'),
  state_not_found: spec(400, 'Sign-in could not be completed'),
  state_replayed: spec(400, 'Sign-in could not be completed'),
  idp_denied: spec(403, 'Sign-in was refused'),
  idp_error: spec(400, 'The identity provider reported an error'),
  idp_unreachable: spec(502, 'Sign-in could not be completed'),
  token_exchange_failed: spec(400, 'Sign-in could not be completed'),
  no_id_token: spec(400, 'Sign-in could not be completed'),
  invalid_redirect: spec(400, 'Invalid return address'),
  /** sign_in?idp= names no IdP this return address accepts. */
  unknown_idp: spec(400, 'Unknown identity provider'),
  /** The callback's `iss` names another IdP than the one the sign-in started with (a mix-up). */
  idp_mismatch: spec(400, 'Sign-in could not be completed'),
  invalid_handoff: spec(400, 'Sign-in could not be completed'),
  too_many_handoffs: spec(429, 'Too many sign-in hand-overs'),
  /** Not a refusal: the JSON form of the signed-out page. */
  signed_out: spec(200, 'Signed out'),
  // Command-line login
  invalid_redirect_uri: spec(400, 'Invalid redirect_uri'),
  invalid_login_request: spec(400, 'Command-line login failed'),
  // Forward-auth
  forward_auth_misconfigured: spec(500, 'Proxy misconfigured'),
  not_a_forward_auth_endpoint: spec(400, 'Bad request'),
  // The admin console (src/admin/)
  not_an_admin: spec(403, 'Not an administrator'),
  admin_action_refused: spec(403, 'Action refused'),
  // Upstreams
  no_upstream: spec(502, 'No upstream'),
  upstream_unavailable: spec(502, 'The application is unavailable'),
  /** Every upstream of a load-balanced route refused the connection (Envoy's "no healthy upstream"). */
  no_healthy_upstream: spec(503, 'The application is unavailable'),
  upstream_timeout: spec(504, 'The application did not answer in time'),
  upstream_bad_response: spec(502, 'The application sent an invalid response'),
} as const satisfies Record<string, OutcomeSpec>;

export type OutcomeCode = keyof typeof TABLE;

/** The codes as constants, so a typo is a compile error: `codes.access_denied`. */
export const codes = Object.freeze(Object.fromEntries(Object.keys(TABLE).map((k) => [k, k]))) as {
  readonly [K in OutcomeCode]: K;
};

export function outcomeStatus(code: OutcomeCode): number {
  return TABLE[code].status;
}

export type OutcomeOptions = Omit<PageOptions, 'status' | 'title' | 'code'> & {
  /** Only where one code is answered with another status by contract (nginx: never a 400). */
  status?: number;
};

// The code each response was answered with, for the request's access event (the admin
// console's denials page lists the error pages): a WeakMap, so it lives as long as the response.
const sent = new WeakMap<ServerResponse, OutcomeCode>();

/** The outcome code this response was answered with, if Portcullis answered it itself. */
export function outcomeOf(res: ServerResponse): OutcomeCode | undefined {
  return sent.get(res);
}

/** A page (browsers) or JSON (API clients) for an outcome of the table. */
export function sendOutcome(
  res: ServerResponse,
  wantsJson: boolean,
  code: OutcomeCode,
  o: OutcomeOptions,
): void {
  const s = TABLE[code];
  sent.set(res, code);
  sendPage(res, wantsJson, { ...o, code, status: o.status ?? s.status, title: s.title });
}

export type UnavailableCode = Extract<
  OutcomeCode,
  | 'session_store_unavailable'
  | 'idp_unavailable'
  | 'token_check_unavailable'
  | 'directory_unavailable'
>;

/** The outcome code of each cause: what the page says, and what API clients and dashboards match on. */
export function unavailableCode(cause: UnavailableCause): UnavailableCode {
  switch (cause) {
    case 'session_store':
      return codes.session_store_unavailable;
    case 'idp_refresh':
      return codes.idp_unavailable;
    case 'directory':
      return codes.directory_unavailable;
    case 'idp_keys':
    case 'idp_introspection':
      return codes.token_check_unavailable;
  }
}
