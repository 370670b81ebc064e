import { redirectToLogin, type AuthRequest } from '../authenticate/flow.js';
import type { Decision } from '../decide/decide.js';
import { sendPage } from './pages.js';

// The one place a refused decision becomes a response, for the reverse proxy and for the
// forward-auth contracts that hand our answer to the browser as is (Traefik, Caddy, Envoy).

/** Every non-allow decision, rendered for a browser (pages, redirects) or an API client (JSON). */
export async function renderRefusal(a: AuthRequest, d: Exclude<Decision, { kind: 'allow' }>): Promise<void> {
  const { res, ctx, requestId } = a;
  const json = !ctx.browser;
  switch (d.kind) {
    case 'login':
      // RFC 6750 3.1: a refused token gets invalid_token and what was wrong, never a login page.
      if (d.tokenError !== undefined) sendPage(res, true, { status: 401, code: 'invalid_token', title: 'Invalid token', message: `The token was refused: ${d.tokenError}.`, requestId, setCookies: a.setCookies, headers: { 'www-authenticate': `Bearer realm="portcullis", error="invalid_token", error_description="${d.tokenError}"`, 'cache-control': 'no-store' } });
      else if (ctx.browser) await redirectToLogin(a);
      else sendPage(res, true, { status: 401, code: 'unauthenticated', title: 'Sign-in required', message: 'This resource needs a session or a bearer token.', requestId, setCookies: a.setCookies, headers: { 'www-authenticate': 'Bearer realm="portcullis"' } });
      return;
    case 'deny':
      sendPage(res, json, {
        status: 403, code: 'access_denied', title: 'Access denied',
        message: d.route.showErrorDetails ? `You are signed in${d.identity?.email ? ` as ${d.identity.email}` : ''}, but this route does not allow you: ${d.policy.reason}.` : 'You are signed in, but you do not have access to this page.',
        requestId, setCookies: a.setCookies, retry: { href: '/.portcullis/sign_out', label: 'Sign in as someone else' },
      });
      return;
    case 'not_found':
      sendPage(res, json, d.knownHost
        ? { status: 404, code: 'no_route', title: 'Not found', message: `No route on ${ctx.host} serves ${ctx.path}.`, requestId }
        : { status: 404, code: 'unknown_host', title: 'Unknown site', message: `Portcullis has no route for the host "${ctx.host}${ctx.port === (ctx.scheme === 'https' ? 443 : 80) ? '' : `:${ctx.port}`}" (${ctx.scheme}). The operator can see the configured hosts in the log line of this request id.`, requestId });
      return;
    case 'bad_request':
      sendPage(res, json, { status: 400, code: 'ambiguous_path', title: 'Bad request', message: `This request was refused: ${d.reason}.`, requestId });
      return;
    case 'unavailable':
      if (/session store/.test(d.reason)) sendPage(res, json, { status: 503, code: 'session_store_unavailable', title: 'Temporarily unavailable', message: 'Sessions cannot be checked right now. Please try again in a moment.', requestId, headers: { 'retry-after': '5' } });
      else sendPage(res, json, { status: 503, code: 'token_check_unavailable', title: 'Temporarily unavailable', message: 'The token cannot be checked with the identity provider right now. Please try again in a moment.', requestId, headers: { 'retry-after': '5' } });
      return;
  }
}

