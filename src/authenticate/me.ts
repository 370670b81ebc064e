import type { Identity } from '../decide/types.js';
import { escapeHtml, htmlDocument, sendJson } from '../http/pages.js';
import type { SessionView } from '../session/types.js';
import { redirectToLogin, type AuthRequest } from './flow.js';

// /.portcullis/ and /.portcullis/userinfo: who you are, as the proxy sees you. Tokens and
// secrets never appear here, only the identity the policies are evaluated against.

function view(identity: Identity, session: SessionView, severalIdps = false) {
  return {
    // Which IdP signed the user in, once there is more than one to tell apart (`idps:`).
    ...(severalIdps && identity.idp ? { idp: identity.idp } : {}),
    user: identity.user,
    sub: identity.sub,
    email: identity.email,
    email_verified: identity.emailVerified,
    name: identity.name,
    preferred_username: identity.preferredUsername,
    groups: identity.groups,
    session_expires_at: new Date(session.exp).toISOString(),
  };
}

export async function userinfo(authRequest: AuthRequest): Promise<void> {
  const found = await authRequest.rt.sessions.lookup(authRequest.ctx);
  if (!found.identity || !found.session) {
    sendJson(
      authRequest.res,
      401,
      { error: 'unauthenticated', message: 'no valid session', request_id: authRequest.requestId },
      {
        'www-authenticate': 'Bearer realm="portcullis"',
        'x-request-id': authRequest.requestId,
        ...(found.setCookies.length ? { 'set-cookie': found.setCookies } : {}),
      },
    );
    return;
  }
  // A refresh during this lookup re-issues the cookie: it must reach the browser from here too.
  const several = authRequest.rt.identities.all().length > 1;
  sendJson(authRequest.res, 200, view(found.identity, found.session, several), {
    'x-request-id': authRequest.requestId,
    ...(found.setCookies.length ? { 'set-cookie': found.setCookies } : {}),
  });
}

export async function mePage(authRequest: AuthRequest): Promise<void> {
  const found = await authRequest.rt.sessions.lookup(authRequest.ctx);
  if (!found.identity || !found.session) {
    if (authRequest.ctx.browser)
      await redirectToLogin({
        ...authRequest,
        setCookies: [...authRequest.setCookies, ...found.setCookies],
      });
    else await userinfo(authRequest);
    return;
  }
  const v = view(found.identity, found.session);
  const rows: Array<[string, string]> = [
    ['User', v.user],
    ['Email', `${v.email}${v.email_verified ? '' : ' (not verified)'}`],
    ['Name', v.name],
    [
      'Groups',
      v.groups.length ? v.groups.join(', ') : '(none: the identity provider sent no groups claim)',
    ],
    ['Session expires', v.session_expires_at],
  ];
  const body = htmlDocument(
    'Portcullis: your session',
    `<h1>You are signed in</h1><table>${rows.map(([k, val]) => `<tr><th>${k}</th><td>${escapeHtml(val)}</td></tr>`).join('')}</table>
<form method="post" action="/.portcullis/sign_out"><p><button type="submit" id="sign-out">Sign out</button></p></form><p class="rid">Request id: ${escapeHtml(authRequest.requestId)}</p>`,
  );
  authRequest.res.writeHead(200, {
    ...(found.setCookies.length ? { 'set-cookie': found.setCookies } : {}),
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'x-frame-options': 'DENY',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    'content-length': String(Buffer.byteLength(body)),
  });
  authRequest.res.end(body);
}
