import { redirectToLogin, type AuthRequest } from '../authenticate/flow.js';
import type { Decision } from '../decide/decide.js';
import { codes, sendOutcome, unavailableCode, type UnavailableCode } from './outcomes.js';

export { unavailableCode };

// The one place a refused decision becomes a response, for the reverse proxy and for the
// forward-auth contracts that hand our answer to the browser as is (Traefik, Caddy, Envoy).

/** Every non-allow decision, rendered for a browser (pages, redirects) or an API client (JSON). */
export async function renderRefusal(
  authRequest: AuthRequest,
  decision: Exclude<Decision, { kind: 'allow' }>,
): Promise<void> {
  const { res, ctx, requestId } = authRequest;
  const json = !ctx.browser;
  switch (decision.kind) {
    case 'login':
      // RFC 6750 3.1: a refused token gets invalid_token and what was wrong, never a login page.
      if (decision.tokenError !== undefined)
        sendOutcome(res, true, codes.invalid_token, {
          message: `The token was refused: ${decision.tokenError}.`,
          requestId,
          setCookies: authRequest.setCookies,
          headers: {
            'www-authenticate': `Bearer realm="portcullis", error="invalid_token", error_description="${decision.tokenError}"`,
            'cache-control': 'no-store',
          },
        });
      else if (ctx.browser) await redirectToLogin(authRequest, decision.route);
      else
        sendOutcome(res, true, codes.unauthenticated, {
          message: 'This resource needs a session or a bearer token.',
          requestId,
          setCookies: authRequest.setCookies,
          headers: { 'www-authenticate': 'Bearer realm="portcullis"' },
        });
      return;
    case 'deny':
      sendOutcome(res, json, codes.access_denied, {
        message: decision.route.showErrorDetails
          ? `You are signed in${decision.identity?.email ? ` as ${decision.identity.email}` : ''}, but this route does not allow you: ${decision.policy.reason}.`
          : 'You are signed in, but you do not have access to this page.',
        requestId,
        setCookies: authRequest.setCookies,
        retry: { href: '/.portcullis/sign_out', label: 'Sign in as someone else' },
      });
      return;
    case 'not_found':
      if (decision.knownHost)
        sendOutcome(res, json, codes.no_route, {
          message: `No route on ${ctx.host} serves ${ctx.path}.`,
          requestId,
        });
      else
        sendOutcome(res, json, codes.unknown_host, {
          message: `Portcullis has no route for the host "${ctx.host}${ctx.port === (ctx.scheme === 'https' ? 443 : 80) ? '' : `:${ctx.port}`}" (${ctx.scheme}). The operator can see the configured hosts in the log line of this request id.`,
          requestId,
        });
      return;
    case 'bad_request':
      sendOutcome(res, json, codes.ambiguous_path, {
        message: `This request was refused: ${decision.reason}.`,
        requestId,
      });
      return;
    case 'unavailable': {
      const code = unavailableCode(decision.cause);
      sendOutcome(res, json, code, {
        message: UNAVAILABLE_MESSAGE[code],
        requestId,
        headers: { 'retry-after': '5' },
      });
      return;
    }
  }
}

const UNAVAILABLE_MESSAGE: Record<UnavailableCode, string> = {
  session_store_unavailable: 'Sessions cannot be checked right now. Please try again in a moment.',
  idp_unavailable:
    'Your session is due for a check with the identity provider, which cannot be reached right now. Please try again in a moment.',
  token_check_unavailable:
    'The token cannot be checked with the identity provider right now. Please try again in a moment.',
  directory_unavailable:
    'Your group memberships are due for a check with the identity provider’s directory, which has not answered for too long. Please try again later.',
};
