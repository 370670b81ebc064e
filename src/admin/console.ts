import type { AuthRequest } from '../authenticate/flow.js';
import { redirectToLogin } from '../authenticate/flow.js';
import type { Identity } from '../decide/types.js';
import { codes, sendOutcome, unavailableCode } from '../http/outcomes.js';
import { audit } from '../observe/observer.js';
import { StoreUnavailableError, type SessionView } from '../session/types.js';
import { csrfToken, csrfValid } from './csrf.js';
import { denialsPage } from './denials.js';
import { healthPage } from './health.js';
import { adminHeaders, ADMIN } from './render.js';
import { ADMIN_SCRIPT } from './script.js';
import { revokeAction, sessionsPage } from './sessions.js';
import { testerPage } from './tester.js';

// /.portcullis/admin/…: who may enter is decided by admin_policy, evaluated by the same policy
// engine as every route; nobody is an administrator unless the config says so. Every answer to
// anyone else is the same 403 (or a sign-in first), whatever the path or method, so the console
// cannot be probed. Every action is a POST with a CSRF token bound to the admin's session, and
// every action and refusal is written to the audit log with who did it.

/** The administrator a request comes from, as each page gets it. */
export interface AdminRequest extends AuthRequest {
  identity: Identity;
  session: SessionView;
  /** The name shown and written to the audit log. */
  admin: string;
  csrf: string;
  /** The query of a GET, or the form of a POST. */
  params: URLSearchParams;
}

const MAX_FORM_BYTES = 64 * 1024;

type Handler = (a: AdminRequest) => Promise<void>;

const GETS: Record<string, Handler> = {
  '/sessions': sessionsPage,
  '/denials': denialsPage,
  '/tester': testerPage,
  '/health': healthPage,
  '/admin.js': script,
};
const POSTS: Record<string, Handler> = {
  '/sessions/revoke': revokeAction,
};

/** True when the path belongs to the console (even when the console is off: then a 404). */
export function isAdminPath(sub: string): boolean {
  return sub === 'admin' || sub.startsWith('admin/');
}

export async function answerAdmin(ar: AuthRequest): Promise<void> {
  const { rt, ctx, res, requestId } = ar;
  const admin = rt.cfg.admin;
  const hostPort = `${ctx.host}${ctx.port === (ctx.scheme === 'https' ? 443 : 80) ? '' : `:${ctx.port}`}`;
  const here = admin
    ? admin.host !== null
      ? admin.host === hostPort || admin.host === `${ctx.host}:${ctx.port}`
      : rt.cfg.authenticateUrl === null || rt.isAuthHost(ctx)
    : false;
  if (!admin || !here) {
    sendOutcome(res, !ctx.browser, codes.not_found, {
      message: admin
        ? `The admin console is not served on ${hostPort}.`
        : 'The admin console is off: admin_policy is not set in the configuration.',
      requestId,
    });
    return;
  }
  const sub = ctx.path.slice(ADMIN.length);
  let found: Awaited<ReturnType<typeof rt.sessions.lookup>>;
  try {
    found = await rt.sessions.lookup(ctx);
  } catch (e) {
    if (!(e instanceof StoreUnavailableError)) throw e;
    storeDown(ar, e);
    return;
  }
  const setCookies = [...ar.setCookies, ...found.setCookies];
  // Only a browser session counts: a bearer token would make every POST a CSRF-free action.
  if (!found.identity || !found.session) {
    if (ctx.browser && ctx.method === 'GET') {
      await redirectToLogin({ ...ar, setCookies });
      return;
    }
    refuse(
      ar,
      codes.unauthenticated,
      'Sign in first: the admin console needs a Portcullis session.',
      setCookies,
    );
    return;
  }
  const identity = found.identity;
  const who = identity.email || identity.user;
  const verdict = admin.policy({ ctx, identity });
  if (!verdict.allow) {
    audit(rt).warn(
      {
        event: 'admin_refused',
        requestId,
        user: who,
        method: ctx.method,
        path: ctx.path,
        reason: verdict.reason,
      },
      'admin console refused: admin_policy does not allow this user',
    );
    refuse(
      ar,
      codes.not_an_admin,
      `${who} is not an administrator of this Portcullis (admin_policy: ${verdict.reason}).`,
      setCookies,
    );
    return;
  }
  const token = csrfToken(rt.cfg.cookie.secret, found.session.sid);
  const base = { ...ar, setCookies, identity, session: found.session, admin: who, csrf: token };
  if (ctx.method === 'POST') {
    const handler = Object.hasOwn(POSTS, sub) ? POSTS[sub]! : null;
    if (!handler) return notFound(ar, Object.hasOwn(GETS, sub) ? 'GET' : null);
    const form = await readForm(ar);
    const refusal =
      form === null
        ? 'the form is not application/x-www-form-urlencoded or is over 64 KB'
        : crossSite(ar)
          ? 'the request came from another site'
          : !csrfValid(rt.cfg.cookie.secret, found.session.sid, form.get('csrf'))
            ? form.get('csrf') === null
              ? 'the CSRF token is missing'
              : 'the CSRF token does not belong to this session'
            : null;
    if (refusal) {
      audit(rt).warn(
        { event: 'admin_csrf_refused', requestId, user: who, path: ctx.path, reason: refusal },
        'admin action refused: it did not come from the console',
      );
      refuse(
        ar,
        codes.admin_action_refused,
        `This action was refused: ${refusal}. Reload the page and try again.`,
        setCookies,
      );
      return;
    }
    await handler({ ...base, params: form! });
    return;
  }
  if (sub === '' || sub === '/') {
    res.writeHead(302, {
      location: `${ADMIN}/sessions`,
      'cache-control': 'no-store',
      'content-length': '0',
      'x-request-id': requestId,
      ...(setCookies.length ? { 'set-cookie': setCookies } : {}),
    });
    res.end();
    return;
  }
  const handler = Object.hasOwn(GETS, sub) ? GETS[sub]! : null;
  if (!handler) return notFound(ar, Object.hasOwn(POSTS, sub) ? 'POST' : null);
  if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
    sendOutcome(res, !ctx.browser, codes.method_not_allowed, {
      message: `${ctx.method} is not allowed on ${ctx.path}.`,
      requestId,
      headers: { allow: 'GET, HEAD' },
    });
    return;
  }
  await handler({ ...base, params: new URLSearchParams(ctx.query) });
}

const DOWN: Record<StoreUnavailableError['source'], string> = {
  session_store: 'the session store, which holds your session, is not answering',
  idp_refresh:
    'your session is due for a check with the identity provider, which cannot be reached',
  directory:
    'your groups are due for a check with the identity provider’s directory, which has not answered for too long',
};

/**
 * Nothing of the console, Health included, is shown without checking the admin's own session:
 * a session remembered from before the outage could have been revoked on another replica since,
 * and that replica could not tell this one (the revocation channel is the store's). So a 503, but
 * one that says what is down and where to look without a session.
 */
function storeDown(ar: AuthRequest, e: StoreUnavailableError): void {
  sendOutcome(ar.res, !ar.ctx.browser, unavailableCode(e.source), {
    message: `The admin console cannot check who you are: ${DOWN[e.source]}. Its pages, Health included, need that check. Without a session, /ready on metrics_address and the ${e.source === 'session_store' ? 'session_store_unavailable' : 'session_refresh_unavailable'} log line say what is down.`,
    requestId: ar.requestId,
    setCookies: ar.setCookies,
    headers: { 'retry-after': '5' },
  });
}

function notFound(ar: AuthRequest, allow: string | null): void {
  if (allow) {
    sendOutcome(ar.res, !ar.ctx.browser, codes.method_not_allowed, {
      message: `${ar.ctx.method} is not allowed on ${ar.ctx.path}.`,
      requestId: ar.requestId,
      headers: { allow },
    });
    return;
  }
  sendOutcome(ar.res, !ar.ctx.browser, codes.not_found, {
    message: `${ar.ctx.path} is not a page of the admin console.`,
    requestId: ar.requestId,
  });
}

function refuse(
  ar: AuthRequest,
  code: 'unauthenticated' | 'not_an_admin' | 'admin_action_refused',
  message: string,
  setCookies: string[],
): void {
  sendOutcome(ar.res, !ar.ctx.browser, codes[code], {
    message,
    requestId: ar.requestId,
    setCookies,
  });
}

/** A browser tells where a request comes from; a token alone is the check, these are a second one. */
function crossSite(ar: AuthRequest): boolean {
  const h = ar.ctx.headers;
  const site = h['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return true;
  const origin = h.origin;
  if (origin === undefined) return false;
  return Array.isArray(origin) || origin !== ar.rt.origin(ar.ctx);
}

async function readForm(ar: AuthRequest): Promise<URLSearchParams | null> {
  const type = String(ar.req.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim()
    .toLowerCase();
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  for await (const c of ar.req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_FORM_BYTES) over = true;
    else chunks.push(c);
  }
  if (over || type !== 'application/x-www-form-urlencoded') return null;
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function script(a: AdminRequest): Promise<void> {
  a.res.writeHead(200, {
    ...adminHeaders(null),
    'content-type': 'text/javascript; charset=utf-8',
    'content-length': String(Buffer.byteLength(ADMIN_SCRIPT)),
    'x-request-id': a.requestId,
  });
  a.res.end(a.ctx.method === 'HEAD' ? undefined : ADMIN_SCRIPT);
}
