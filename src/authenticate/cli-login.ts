import { codes, sendOutcome } from '../http/outcomes.js';
import { sendJson, sendRedirect } from '../http/pages.js';
import { redirectToLogin, signInUrl, type AuthRequest } from './flow.js';

// Programmatic login for command-line tools, the loopback flow of RFC 8252:
//   CLI ── GET /.portcullis/api/v1/login?redirect_uri=http://127.0.0.1:PORT/cb ──▶ login URL
//   CLI opens the URL in the user's browser; the browser logs in as usual and lands on
//   /.portcullis/api/v1/login/complete, which redirects to the loopback URL with
//   ?portcullis_token=<token>. The CLI then sends `Authorization: Portcullis <token>`.
// The token names the browser's session, so it ends when the session does.

const REQUEST_TTL_MS = 10 * 60_000;
export const TOKEN_PARAM = 'portcullis_token';

/**
 * Only a loopback address on this machine may receive a token: anything else would let a
 * crafted login link deliver the user's session to someone else's server.
 */
export function loopbackRedirect(value: string | null): URL | null {
  if (!value || /[\s\\]/.test(value)) return null;
  const u = URL.parse(value);
  if (!u || u.protocol !== 'http:' || u.username || u.password || u.hash || !u.port) return null;
  return u.hostname === '127.0.0.1' || u.hostname === '[::1]' || u.hostname === 'localhost'
    ? u
    : null;
}

function param(authRequest: AuthRequest, name: string): string | null {
  return new URLSearchParams(
    authRequest.ctx.query.startsWith('?') ? authRequest.ctx.query.slice(1) : authRequest.ctx.query,
  ).get(name);
}

/** GET /.portcullis/api/v1/login?redirect_uri=http://127.0.0.1:PORT/path */
export function cliLoginStart(authRequest: AuthRequest): void {
  const { rt, ctx } = authRequest;
  const redirect = loopbackRedirect(param(authRequest, 'redirect_uri'));
  if (!redirect) {
    sendOutcome(authRequest.res, true, codes.invalid_redirect_uri, {
      message:
        'redirect_uri must be a loopback URL with a port, e.g. http://127.0.0.1:8400/callback.',
      requestId: authRequest.requestId,
    });
    return;
  }
  const request = rt.tokens.cli.sealRequest({
    redirectUri: redirect.href,
    exp: ctx.now + REQUEST_TTL_MS,
  });
  const complete = `${rt.authOrigin(ctx)}/.portcullis/api/v1/login/complete?request=${request}`;
  const loginUrl = signInUrl(rt, ctx, complete);
  rt.log.info(
    { requestId: authRequest.requestId, event: 'cli_login_start', host: ctx.host },
    'programmatic login started',
  );
  // Plain text, as Pomerium's /.pomerium/api/v1/login answers, so existing CLIs work; JSON on request.
  if (String(ctx.headers.accept ?? '').includes('application/json')) {
    sendJson(
      authRequest.res,
      200,
      { login_url: loginUrl },
      { 'cache-control': 'no-store', 'x-request-id': authRequest.requestId },
    );
    return;
  }
  authRequest.res.writeHead(200, {
    'content-type': 'text/plain; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': String(Buffer.byteLength(loginUrl)),
    'x-request-id': authRequest.requestId,
  });
  authRequest.res.end(loginUrl);
}

/** GET /.portcullis/api/v1/login/complete?request=…: the browser, signed in, hands the session to the CLI. */
export async function cliLoginComplete(authRequest: AuthRequest): Promise<void> {
  const { rt, ctx } = authRequest;
  const req = rt.tokens.cli.openRequest(param(authRequest, 'request') ?? '', ctx.now);
  const redirect = req ? loopbackRedirect(req.redirectUri) : null;
  if (!req || !redirect) {
    sendOutcome(authRequest.res, !ctx.browser, codes.invalid_login_request, {
      message: 'This login link is invalid or older than 10 minutes. Run the login command again.',
      requestId: authRequest.requestId,
    });
    return;
  }
  const found = await rt.sessions.lookup(ctx);
  const value = found.session ? rt.sessions.cookieValue(ctx.headers.cookie) : null;
  if (!found.session || !value) {
    await redirectToLogin({
      ...authRequest,
      setCookies: [...authRequest.setCookies, ...found.setCookies],
    });
    return;
  }
  redirect.searchParams.set(TOKEN_PARAM, rt.tokens.cli.mintToken(value, found.session.exp));
  rt.log.info(
    {
      requestId: authRequest.requestId,
      event: 'cli_login',
      user: found.identity?.email || found.identity?.user,
      host: ctx.host,
    },
    'programmatic login completed',
  );
  sendRedirect(
    authRequest.res,
    redirect.href,
    [...authRequest.setCookies, ...found.setCookies],
    authRequest.requestId,
  );
}
