import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as client from 'openid-client';
import type { Route } from '../config/types.js';
import type { RequestContext } from '../decide/types.js';
import { codes, sendOutcome, type OutcomeCode } from '../http/outcomes.js';
import { sendRedirect } from '../http/pages.js';
import { emailRefusal } from '../identity/email-verified.js';
import { describe, IdpUnavailableError } from '../identity/oidc.js';
import { issuerOf, type IdentityProvider } from '../identity/registry.js';
import { audit } from '../observe/observer.js';
import type { Runtime } from '../runtime.js';
import { addressBucket } from '../security/rate-limit.js';
import { redirectParam } from '../security/redirect.js';
import { parseCookies, serializeCookie } from '../session/cookies.js';
import { idpsFor, sendChooser } from './chooser.js';
import { bindBrowser, handoffUrl, mintAllowed, nonceDetour } from './handoff.js';
import { LOGIN_TTL_MS, openReturn, sealReturn } from './return-state.js';
import { spendOnce } from './once.js';

export { handoff } from './handoff.js';

// The login, step by step:
//   app host, no session ──302──▶ auth host /.portcullis/sign_in?return=<sealed URL>
//   sign_in ──302 + login cookie (state, PKCE verifier, nonce, return URL)──▶ IdP
//   IdP ──302──▶ auth host /.portcullis/callback?code&state
//   callback: state cookie must match, code exchanged with PKCE, ID token checked (nonce,
//   iss, aud, exp, signature) ──▶ session cookie, then 302 to the return URL, or, for a host
//   the cookie cannot reach, to that host's /.portcullis/handoff?token=<sealed, 60 s, once,
//   for this browser only> (handoff.ts: the app host's first redirect gave the browser a nonce).

const MAX_LOGIN_COOKIES = 4;
const STATE_RE = /^[A-Za-z0-9_-]{22,64}$/;

interface LoginState {
  state: string;
  verifier: string;
  nonce: string;
  returnTo: string;
  /** The return address's nonce hash (handoff.ts), when an app host made it. */
  nh?: string | undefined;
  redirectUri: string;
  /**
   * The id of the IdP the browser was sent to: the callback exchanges the code there and
   * nowhere else (absent in a login started before `idps`: the default IdP).
   */
  idp?: string | undefined;
  iat: number;
  exp: number;
}

export interface AuthRequest {
  rt: Runtime;
  ctx: RequestContext;
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  /** Set-Cookie headers decide() produced (e.g. clearing a garbled cookie); sent with our answer. */
  setCookies: string[];
}

function loginCookiePrefix(rt: Runtime): string {
  return `${rt.cfg.cookie.name}_login_`;
}

function query(ctx: RequestContext): URLSearchParams {
  return new URLSearchParams(ctx.query.startsWith('?') ? ctx.query.slice(1) : ctx.query);
}

/**
 * A browser that needs a session: start the login and come back to exactly this URL, through
 * the hosts of the route's depends_on first.
 */
export async function redirectToLogin(
  authRequest: AuthRequest,
  route?: Pick<Route, 'dependsOn'>,
): Promise<void> {
  const here = `${authRequest.rt.origin(authRequest.ctx)}${authRequest.ctx.path}${authRequest.ctx.query}`;
  const returnTo = route?.dependsOn.length
    ? dependsOnChain(authRequest.rt, authRequest.ctx, route.dependsOn, here)
    : here;
  if (authRequest.rt.isAuthHost(authRequest.ctx)) {
    await startLogin(authRequest, returnTo, undefined, null);
    return;
  }
  const bind = bindBrowser(authRequest.rt, authRequest.ctx);
  const sealed = sealReturn(authRequest.rt, authRequest.ctx.now, returnTo, bind.nh);
  const authSignIn = `${authRequest.rt.authOrigin(authRequest.ctx)}/.portcullis/sign_in?return=${sealed}`;
  sendRedirect(
    authRequest.res,
    authSignIn,
    [...authRequest.setCookies, bind.cookie],
    authRequest.requestId,
  );
}

/**
 * depends_on (Pomerium's multi-domain login, https://www.pomerium.com/docs/reference/routes/additional-login-redirect-hosts):
 * the login of a route also gets a session on the listed hosts, then lands where it started.
 * The return address becomes a chain of sign_in stops, this host's first: each stop, once its
 * host has a session, sends the browser to the next; a stop without a session signs in there
 * first (silently: the IdP or the authenticate host already knows the user) and comes back
 * to itself. Stops reuse sign_in and handoff as they are, so each host still gets its session
 * only in the browser that holds its own handoff nonce.
 */
function dependsOnChain(
  rt: Runtime,
  ctx: RequestContext,
  hosts: readonly string[],
  finalUrl: string,
): string {
  let next = finalUrl;
  for (const origin of [rt.origin(ctx), ...hosts].reverse())
    next = `${origin}/.portcullis/sign_in?return=${sealReturn(rt, ctx.now, next, undefined, true)}`;
  return next;
}

/** The sign-in address that comes back to `returnTo`, for answers that cannot start a login themselves (forward-auth). */
export function signInUrl(rt: Runtime, ctx: RequestContext, returnTo: string): string {
  return `${rt.authOrigin(ctx)}/.portcullis/sign_in?return=${sealReturn(rt, ctx.now, returnTo)}`;
}

/**
 * Reads the return URL of sign_in/sign_out: a sealed `return` (with its nonce hash, if an app
 * host made it), or an `rd` checked against the configured hosts.
 */
export function returnTarget(
  authRequest: AuthRequest,
  fallback: string | null,
): { url: string; nh?: string | undefined; dep?: true | undefined } | null {
  const q = query(authRequest.ctx);
  const sealed = q.get('return');
  if (sealed) return openReturn(authRequest.rt, sealed, authRequest.ctx.now);
  const rd =
    redirectParam(authRequest.ctx.query, 'rd') ??
    authRequest.ctx.headers['x-auth-request-redirect'];
  if (typeof rd === 'string' && rd) {
    const u = authRequest.rt.validateRedirect(
      rd,
      new URL(`${authRequest.rt.origin(authRequest.ctx)}/`),
    );
    if (!u) return null;
    // Back to a sign-in, callback or sign-out would start it all over, and the peers' snippets
    // send one: nginx's `/oauth2/` location sets X-Auth-Request-Redirect $request_uri, which is
    // /oauth2/start itself when the user opens it. Like oauth2-proxy, that host's root instead.
    return { url: ownEndpoint(authRequest.rt, u.pathname) ? `${u.origin}/` : u.href };
  }
  return fallback === null ? null : { url: fallback };
}

// Where a flow starts or ends, under every name Portcullis answers.
const FLOW_ENDPOINTS = new Set([
  '/.portcullis/sign_in',
  '/.portcullis/sign_out',
  '/.portcullis/signed_out',
  '/.portcullis/callback',
  '/.portcullis/handoff',
  '/.portcullis/frontchannel-logout',
  '/oauth2/start',
  '/oauth2/sign_in',
  '/oauth2/sign_out',
  '/oauth2/callback',
  '/outpost.goauthentik.io/start',
  '/outpost.goauthentik.io/callback',
  '/outpost.goauthentik.io/sign_out',
]);

function ownEndpoint(rt: Runtime, pathname: string): boolean {
  const path = pathname.replace(/\/+$/, '').toLowerCase();
  return path === rt.cfg.callbackPath.toLowerCase() || FLOW_ENDPOINTS.has(path);
}

/** GET /.portcullis/sign_in */
export async function signIn(authRequest: AuthRequest): Promise<void> {
  let target = returnTarget(authRequest, `${authRequest.rt.origin(authRequest.ctx)}/`);
  if (!target) {
    badRedirect(authRequest);
    return;
  }
  if (target.dep) {
    // A depends_on stop (dependsOnChain): on once this host has a session; else this stop
    // is where the sign-in here comes back to.
    const found = await authRequest.rt.sessions.lookup(authRequest.ctx);
    if (found.session) {
      sendRedirect(
        authRequest.res,
        target.url,
        [...authRequest.setCookies, ...found.setCookies],
        authRequest.requestId,
      );
      return;
    }
    target = {
      url: `${authRequest.rt.origin(authRequest.ctx)}${authRequest.ctx.path}${authRequest.ctx.query}`,
    };
  }
  if (!authRequest.rt.isAuthHost(authRequest.ctx)) {
    // Whatever nonce hash a sealed return carried belongs to another redirect: this host's own
    // nonce is the one its handoff will ask for.
    const bind = bindBrowser(authRequest.rt, authRequest.ctx);
    const sealed = sealReturn(authRequest.rt, authRequest.ctx.now, target.url, bind.nh);
    const chosen = query(authRequest.ctx).get('idp');
    const authSignIn = `${authRequest.rt.authOrigin(authRequest.ctx)}/.portcullis/sign_in?return=${sealed}${chosen ? `&idp=${encodeURIComponent(chosen)}` : ''}`;
    sendRedirect(
      authRequest.res,
      authSignIn,
      [...authRequest.setCookies, bind.cookie],
      authRequest.requestId,
    );
    return;
  }
  // Already signed in here: hand the session to the target host without bothering the IdP.
  // Only for our own sealed redirects (an app host asking for the session): an explicit
  // sign-in always goes to the IdP, so a session cookie planted in the browser by someone
  // else can never be adopted by a user who meant to sign in as themselves.
  // A session from an IdP the target's route does not accept is not handed on: the user signs
  // in again with one it accepts (the new session replaces this one).
  const found = await authRequest.rt.sessions.lookup(authRequest.ctx);
  const accepted = idpsFor(authRequest.rt, target.url);
  const sessionIdp = found.identity?.idp ?? authRequest.rt.identities.default.id;
  // An explicit choice of another IdP (`?idp=`) is a sign-in with that one, not a hand-over.
  const chosen = query(authRequest.ctx).get('idp');
  const value =
    found.session &&
    query(authRequest.ctx).has('return') &&
    accepted.some((p) => p.id === sessionIdp) &&
    (chosen === null || chosen === sessionIdp)
      ? authRequest.rt.sessions.cookieValue(authRequest.ctx.headers.cookie)
      : null;
  const setCookies = [...authRequest.setCookies, ...found.setCookies];
  if (found.session && value) {
    const to = new URL(target.url);
    if (to.origin === authRequest.rt.origin(authRequest.ctx)) {
      // The session cookie already reaches it.
      sendRedirect(authRequest.res, to.href, setCookies, authRequest.requestId);
    } else if (!target.nh) {
      sendRedirect(
        authRequest.res,
        nonceDetour(authRequest.rt, authRequest.ctx.now, to),
        setCookies,
        authRequest.requestId,
      );
    } else if (mintAllowed({ ...authRequest, setCookies }, found.session.sid)) {
      sendRedirect(
        authRequest.res,
        handoffUrl(authRequest.rt, authRequest.ctx.now, value, to, target.nh),
        setCookies,
        authRequest.requestId,
      );
    }
    return;
  }
  await startLogin({ ...authRequest, setCookies }, target.url, target.nh, chosen);
}

/**
 * Sends the browser to the IdP the return address's route accepts, or, when it accepts several
 * and none was chosen (`?idp=`), shows the sign-in chooser, whose links come back here with one.
 */
async function startLogin(
  authRequest: AuthRequest,
  returnTo: string,
  nh: string | undefined,
  chosen: string | null,
): Promise<void> {
  const { rt, ctx } = authRequest;
  const accepted = idpsFor(rt, returnTo);
  if (chosen !== null) {
    const p = accepted.find((a) => a.id === chosen);
    if (!p) {
      audit(rt).warn(
        { requestId: authRequest.requestId, event: 'unknown_idp', host: ctx.host },
        'sign-in asked for an identity provider the return address does not accept',
      );
      sendOutcome(authRequest.res, !ctx.browser, codes.unknown_idp, {
        message: `The sign-in asked for an identity provider that this site does not accept. It accepts: ${accepted.map((a) => a.name).join(', ')}.`,
        requestId: authRequest.requestId,
        setCookies: authRequest.setCookies,
        retry: {
          href: `/.portcullis/sign_in?return=${sealReturn(rt, ctx.now, returnTo, nh)}`,
          label: 'Choose again',
        },
      });
      return;
    }
    await beginAuthorization(authRequest, returnTo, nh, p);
    return;
  }
  if (accepted.length <= 1) {
    await beginAuthorization(authRequest, returnTo, nh, accepted[0] ?? rt.identities.default);
    return;
  }
  const sealed = sealReturn(rt, ctx.now, returnTo, nh);
  sendChooser(authRequest.res, {
    wantsJson: !ctx.browser,
    idps: accepted,
    href: (id) => `/.portcullis/sign_in?return=${sealed}&idp=${encodeURIComponent(id)}`,
    requestId: authRequest.requestId,
    setCookies: authRequest.setCookies,
  });
}

/** Both sign-in start limits (Runtime.loginStarts); a refusal is a 429 and an audit line, never a 5xx. */
function loginStartAllowed(authRequest: AuthRequest): boolean {
  const { loginStarts, loginStartsGlobal } = authRequest.rt;
  // The client's own budget first, so one flooding address does not spend everyone's.
  const own =
    loginStarts === null ||
    loginStarts.take(addressBucket(authRequest.ctx.clientIp), authRequest.ctx.now);
  if (own && (loginStartsGlobal === null || loginStartsGlobal.take('', authRequest.ctx.now)))
    return true;
  const event = own ? 'login_rate_limited_global' : 'login_rate_limited';
  audit(authRequest.rt).warn(
    {
      requestId: authRequest.requestId,
      event,
      host: authRequest.ctx.host,
      path: authRequest.ctx.path,
      client: authRequest.ctx.clientIp,
    },
    own
      ? 'too many login starts from all clients together (login_rate_limit_global)'
      : 'too many login starts from one client address (login_rate_limit)',
  );
  sendOutcome(authRequest.res, !authRequest.ctx.browser, codes.too_many_logins, {
    message: own
      ? 'Too many sign-ins are starting right now. Please try again in a few seconds.'
      : 'Too many sign-ins were started from your address. Please wait a minute and try again.',
    requestId: authRequest.requestId,
    setCookies: authRequest.setCookies,
    headers: { 'retry-after': own ? '5' : '60' },
  });
  return false;
}

async function beginAuthorization(
  authRequest: AuthRequest,
  returnTo: string,
  nh: string | undefined,
  idp: IdentityProvider,
): Promise<void> {
  if (!loginStartAllowed(authRequest)) return;
  const state = randomBytes(18).toString('base64url');
  const verifier = client.randomPKCECodeVerifier();
  const nonce = client.randomNonce();
  const { callbackPath, callbackQuery } = authRequest.rt.cfg;
  const redirectUri = `${authRequest.rt.authOrigin(authRequest.ctx)}${callbackPath}${callbackQuery}`;
  const login: LoginState = {
    state,
    verifier,
    nonce,
    returnTo,
    ...(nh ? { nh } : {}),
    redirectUri,
    idp: idp.id,
    iat: authRequest.ctx.now,
    exp: authRequest.ctx.now + LOGIN_TTL_MS,
  };
  const name = `${loginCookiePrefix(authRequest.rt)}${state}`;
  // Path=/ (not /.portcullis/) so the cap below sees every tab's cookie, whichever app path
  // started the login; Portcullis never forwards its own cookies to an upstream.
  const opts = {
    path: '/',
    secure: authRequest.rt.cfg.cookie.secure,
    httpOnly: true,
    sameSite: 'Lax' as const,
  };
  const cookies = [
    ...authRequest.setCookies,
    serializeCookie(name, authRequest.rt.sealer.sealJson('login', login, name), {
      ...opts,
      maxAgeSeconds: LOGIN_TTL_MS / 1000,
    }),
  ];
  // Several tabs may start a login at once: each gets its own cookie, but only a few live.
  const existing = [...parseCookies(authRequest.ctx.headers.cookie).keys()].filter((k) =>
    k.startsWith(loginCookiePrefix(authRequest.rt)),
  );
  if (existing.length >= MAX_LOGIN_COOKIES) {
    for (const k of existing.slice(0, existing.length - MAX_LOGIN_COOKIES + 1))
      cookies.push(serializeCookie(k, '', { ...opts, maxAgeSeconds: 0 }));
  }
  let url: URL;
  try {
    url = idp.provider.authorizationUrl({
      redirectUri,
      state,
      nonce,
      codeChallenge: await client.calculatePKCECodeChallenge(verifier),
    });
  } catch (e) {
    if (e instanceof IdpUnavailableError) {
      idpUnavailable(authRequest, e.message);
      return;
    }
    throw e;
  }
  authRequest.rt.log.info(
    {
      requestId: authRequest.requestId,
      event: 'login_start',
      host: authRequest.ctx.host,
      ...(authRequest.rt.identities.all().length > 1 ? { idp: idp.id } : {}),
    },
    'login started',
  );
  sendRedirect(authRequest.res, url.href, cookies, authRequest.requestId);
}

/** GET /.portcullis/callback */
export async function callback(authRequest: AuthRequest): Promise<void> {
  const { rt, ctx } = authRequest;
  const q = query(ctx);
  const state = q.get('state') ?? '';
  const cookieOpts = {
    path: '/',
    secure: rt.cfg.cookie.secure,
    httpOnly: true,
    sameSite: 'Lax' as const,
    maxAgeSeconds: 0,
  };
  // `retryTo` keeps the nonce hash: the retry link is shown to, and followed by, this browser.
  type Retry = Pick<LoginState, 'returnTo' | 'nh'>;
  const fail = (
    code: OutcomeCode,
    message: string,
    retryTo?: Retry,
    setCookies: string[] = [],
    log: Record<string, unknown> = {},
  ): void => {
    audit(rt).warn(
      {
        requestId: authRequest.requestId,
        event: 'login_failed',
        reason: code,
        detail: message,
        host: ctx.host,
        path: ctx.path,
        client: ctx.clientIp,
        ...log,
      },
      'login failed',
    );
    sendOutcome(authRequest.res, !ctx.browser, code, {
      message,
      requestId: authRequest.requestId,
      setCookies: [...authRequest.setCookies, ...setCookies],
      retry: {
        href: retryTo
          ? `/.portcullis/sign_in?return=${sealReturn(rt, ctx.now, retryTo.returnTo, retryTo.nh)}`
          : '/',
        label: 'Try signing in again',
      },
    });
  };
  if (!STATE_RE.test(state)) {
    fail(codes.invalid_state, 'The sign-in response has no valid state parameter.');
    return;
  }
  const name = `${loginCookiePrefix(rt)}${state}`;
  const sealed = parseCookies(ctx.headers.cookie).get(name);
  if (!sealed) {
    const replay = rt.once.has(`state:${state}`, ctx.now);
    fail(
      replay ? codes.state_replayed : codes.state_not_found,
      replay
        ? 'This sign-in response was already used. Each sign-in link works once.'
        : 'This sign-in was not started in this browser, or it took longer than 10 minutes.',
    );
    return;
  }
  const clear = [serializeCookie(name, '', cookieOpts)];
  const login = rt.sealer.openJson<LoginState>('login', sealed, name, ctx.now);
  if (!login || login.state !== state) {
    fail(codes.invalid_state, 'The sign-in state is invalid or has expired.', undefined, clear);
    return;
  }
  if (!(await spendOnce(rt.once, rt.sessions.store, `state:${state}`, login.exp, ctx.now))) {
    fail(
      codes.state_replayed,
      'This sign-in response was already used. Each sign-in link works once.',
      login,
      clear,
    );
    return;
  }
  const idpError = q.get('error');
  if (idpError) {
    const desc = q.get('error_description');
    const denied = idpError === 'access_denied';
    // The IdP's own error code goes to the message and the audit line, never into the outcome
    // code: that one is a fixed set (metrics label it, API clients match on it).
    fail(
      denied ? codes.idp_denied : codes.idp_error,
      `The identity provider answered "${idpError.slice(0, 100)}"${desc ? `: ${desc.slice(0, 300)}` : ''}.`,
      login,
      clear,
      { idpError: idpError.replace(/[^a-z_]/gi, '').slice(0, 64) },
    );
    return;
  }
  // The IdP that started this sign-in finishes it: its code is exchanged there and nowhere else.
  const idp = rt.identities.get(login.idp ?? rt.identities.default.id);
  if (!idp) {
    fail(
      codes.invalid_state,
      'The identity provider this sign-in started with is no longer configured.',
      login,
      clear,
    );
    return;
  }
  // RFC 9207: an IdP that names itself in the response must be the one the browser was sent
  // to; another one's code (an IdP mix-up) is refused before any token request. (With one IdP
  // there is no other to mix up, and openid-client holds `iss` to the issuer as before.)
  const iss = q.get('iss');
  if (iss !== null && rt.identities.all().length > 1 && iss !== issuerOf(idp)) {
    fail(
      codes.idp_mismatch,
      'The sign-in response came from another identity provider than the one this sign-in was started with.',
      login,
      clear,
      { idp: idp.id, iss: iss.slice(0, 200) },
    );
    return;
  }
  const current = new URL(login.redirectUri);
  current.search = ctx.query;
  const signedIn = await idp.provider.signIn(
    current,
    { verifier: login.verifier, state, nonce: login.nonce, redirectUri: login.redirectUri },
    ctx.now,
  );
  if (signedIn.kind === 'failed') {
    if (signedIn.code === 'idp_unavailable') {
      idpUnavailable(
        { ...authRequest, setCookies: [...authRequest.setCookies, ...clear] },
        signedIn.message,
      );
      return;
    }
    fail(codes[signedIn.code], signedIn.message, login, clear, signedIn.log);
    return;
  }
  const { claims, tokens } = signedIn;
  if (signedIn.staleGroups)
    rt.log.warn(
      { requestId: authRequest.requestId, event: 'directory_stale_groups', user: signedIn.sub },
      'the directory could not be asked: signed in with last-known groups (idp_directory_outage_grace)',
    );
  const idClaims = { sub: signedIn.sub };
  const refusal = emailRefusal(claims, idp.settings);
  if (refusal) {
    fail(codes[refusal.code], refusal.message, login, clear, {
      user: idClaims.sub,
      email: refusal.email,
      setting: refusal.setting,
    });
    return;
  }
  const session = rt.sessions.newSession(
    idClaims.sub,
    claims,
    {
      accessToken: tokens.accessToken,
      accessTokenExp: tokens.accessTokenExp,
      refreshToken: tokens.refreshToken,
      // Kept only when a route forwards it (pass_id_token): otherwise it would just grow the cookie.
      idToken: rt.cfg.routes.some((r) => r.passIdToken) ? tokens.idToken : undefined,
    },
    ctx.now,
    signedIn.idpSession,
    // A single-IdP config writes sessions exactly as before `idps` (absent = the default IdP).
    rt.identities.all().length > 1 ? idp.id : undefined,
  );
  // Shown on the admin console's sessions page; a cookie session has no room for it.
  if (rt.sessions.store.serverSide)
    session.client = {
      ip: ctx.clientIp,
      ua: headerText(ctx.headers['user-agent']).slice(0, 200),
      idp: idp.settings.issuer.href,
    };
  let cookies: string[];
  let value: string;
  try {
    value = await rt.sessions.store.save(session);
    cookies = rt.sessions.cookiesFor(value, session, ctx.host, ctx.headers.cookie);
  } catch (e) {
    rt.log.error(
      { requestId: authRequest.requestId, event: 'session_store_failed', detail: describe(e) },
      'could not store the session',
    );
    sendOutcome(authRequest.res, !ctx.browser, codes.session_store_unavailable, {
      message: 'Sessions cannot be stored right now. Please try again in a moment.',
      requestId: authRequest.requestId,
      setCookies: [...authRequest.setCookies, ...clear],
    });
    return;
  }
  audit(rt).info(
    {
      requestId: authRequest.requestId,
      event: 'login',
      user: claims.email ?? idClaims.sub,
      host: ctx.host,
      ...(rt.identities.all().length > 1 ? { idp: idp.id } : {}),
    },
    'login succeeded',
  );
  const target = new URL(login.returnTo);
  const covered =
    (target.host ===
      ctx.host + (ctx.port === (ctx.scheme === 'https' ? 443 : 80) ? '' : `:${ctx.port}`) &&
      target.protocol === `${ctx.scheme}:`) ||
    (rt.sessions.cookieDomainFor(target.hostname) !== null &&
      rt.sessions.cookieDomainFor(target.hostname) === rt.sessions.cookieDomainFor(ctx.host));
  // A host Portcullis does not serve (one allowed_redirect_domains lets an `rd` name) has no
  // session to be handed: the browser goes there as it would after oauth2-proxy's sign-in.
  const targetPort = Number(target.port) || (target.protocol === 'https:' ? 443 : 80);
  const served =
    rt.routes.knowsHost(
      target.protocol === 'https:' ? 'https' : 'http',
      target.hostname,
      targetPort,
    ) ||
    (rt.cfg.authenticateUrl !== null && rt.cfg.authenticateUrl.origin === target.origin);
  // Not covered: a handoff, for the browser holding the nonce; a return address made without
  // one (an `rd`, a forward-auth sign-in) first collects it on the target host.
  const location =
    covered || !served
      ? target.href
      : login.nh
        ? handoffUrl(rt, ctx.now, value, target, login.nh)
        : nonceDetour(rt, ctx.now, target);
  sendRedirect(
    authRequest.res,
    location,
    [...authRequest.setCookies, ...clear, ...cookies],
    authRequest.requestId,
  );
}

/** GET or POST /.portcullis/sign_out: ends the session here and on the authenticate host, then at the IdP. */
export async function signOut(
  authRequest: AuthRequest,
  opts: { atIdp: boolean } = { atIdp: true },
): Promise<void> {
  const { rt, ctx } = authRequest;
  const target = returnTarget(authRequest, null);
  const asked =
    query(ctx).has('rd') ||
    query(ctx).has('return') ||
    ctx.headers['x-auth-request-redirect'] !== undefined;
  if (target === null && asked) {
    badRedirect(authRequest);
    return;
  }
  // The session's own IdP is the one to sign out at: read before the session ends. An app host
  // that ended it names the IdP to the authenticate host (`idp`), which has no session left
  // to read it from when the two share a server-side store; only a configured id is used.
  const several = rt.identities.all().length > 1;
  const named = query(ctx).get('idp');
  const sessionIdp = several
    ? ((await rt.sessions.idpOf(ctx.headers.cookie, ctx.now)) ??
      (named !== null && rt.identities.get(named) ? named : null))
    : null;
  const cleared = await rt.sessions.end(ctx.headers.cookie, ctx.host);
  audit(rt).info(
    { requestId: authRequest.requestId, event: 'sign_out', host: ctx.host },
    'signed out',
  );
  const returnState = target ? sealReturn(rt, ctx.now, target.url) : '';
  if (!rt.isAuthHost(ctx)) {
    sendRedirect(
      authRequest.res,
      `${rt.authOrigin(ctx)}/.portcullis/sign_out${returnState ? `?return=${returnState}` : ''}${sessionIdp ? `${returnState ? '&' : '?'}idp=${encodeURIComponent(sessionIdp)}` : ''}`,
      [...authRequest.setCookies, ...cleared],
      authRequest.requestId,
    );
    return;
  }
  if (!opts.atIdp) {
    // oauth2-proxy's /oauth2/sign_out ends its own session only, then goes to `rd` or `/`
    // (its docs, features/endpoints "Sign out"): the IdP never had a post-logout URI registered
    // for it, so sending the browser there would end on the IdP's error page.
    signedOutPage(authRequest, target?.url ?? `${rt.origin(ctx)}/`, cleared);
    return;
  }
  let endSession: string | null = null;
  const idp = (sessionIdp !== null && rt.identities.get(sessionIdp)) || rt.identities.default;
  try {
    const config = idp.idp.get();
    if (config.serverMetadata().end_session_endpoint) {
      const params: Record<string, string> = {
        post_logout_redirect_uri: `${rt.authOrigin(ctx)}/.portcullis/signed_out`,
        client_id: idp.settings.clientId,
      };
      if (returnState) params.state = returnState;
      endSession = client.buildEndSessionUrl(config, params).href;
    }
  } catch {
    // IdP unreachable: the local session is gone, which is what matters; say so on the page.
  }
  if (endSession)
    sendRedirect(
      authRequest.res,
      endSession,
      [...authRequest.setCookies, ...cleared],
      authRequest.requestId,
    );
  else signedOutPage(authRequest, target?.url ?? null, cleared);
}

/** GET /.portcullis/signed_out: where the IdP sends the browser after RP-initiated logout. */
export function signedOut(authRequest: AuthRequest): void {
  const state = query(authRequest.ctx).get('state');
  const r = state ? openReturn(authRequest.rt, state, authRequest.ctx.now) : null;
  signedOutPage(authRequest, r?.url ?? null, []);
}

function signedOutPage(authRequest: AuthRequest, target: string | null, cleared: string[]): void {
  if (target) {
    sendRedirect(
      authRequest.res,
      target,
      [...authRequest.setCookies, ...cleared],
      authRequest.requestId,
    );
    return;
  }
  sendOutcome(authRequest.res, !authRequest.ctx.browser, codes.signed_out, {
    message: 'You are signed out.',
    requestId: authRequest.requestId,
    setCookies: [...authRequest.setCookies, ...cleared],
    retry: { href: '/', label: 'Sign in again' },
  });
}

function badRedirect(authRequest: AuthRequest): void {
  audit(authRequest.rt).warn(
    { requestId: authRequest.requestId, event: 'redirect_refused', host: authRequest.ctx.host },
    'refused a redirect target outside the configured hosts',
  );
  sendOutcome(authRequest.res, !authRequest.ctx.browser, codes.invalid_redirect, {
    message:
      'The address to return to after signing in is not one of the sites this proxy protects.',
    requestId: authRequest.requestId,
    setCookies: authRequest.setCookies,
    retry: { href: '/', label: 'Go to the start page' },
  });
}

export function idpUnavailable(authRequest: AuthRequest, detail: string): void {
  audit(authRequest.rt).warn(
    {
      requestId: authRequest.requestId,
      event: 'idp_unavailable',
      detail,
      host: authRequest.ctx.host,
      path: authRequest.ctx.path,
      client: authRequest.ctx.clientIp,
    },
    'login needed but the identity provider is unavailable',
  );
  sendOutcome(authRequest.res, !authRequest.ctx.browser, codes.idp_unavailable, {
    message: 'The identity provider cannot be reached right now. Please try again in a minute.',
    requestId: authRequest.requestId,
    setCookies: authRequest.setCookies,
    headers: { 'retry-after': '10' },
    retry: { href: `${authRequest.ctx.path}${authRequest.ctx.query}`, label: 'Try again' },
  });
}

function headerText(v: string | string[] | undefined): string {
  return (Array.isArray(v) ? v[0] : v) ?? '';
}
