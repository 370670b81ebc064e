import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RequestContext } from '../decide/types.js';
import { codes, sendOutcome } from '../http/outcomes.js';
import { sendRedirect } from '../http/pages.js';
import { audit } from '../observe/observer.js';
import type { Runtime } from '../runtime.js';
import { parseCookies, serializeCookie, type CookieOptions } from '../session/cookies.js';
import type { AuthRequest } from './flow.js';
import { LOGIN_TTL_MS, sealReturn } from './return-state.js';
import { spendOnce } from './once.js';

// A handoff link carries a session: whoever opens it becomes that user on the target host. If
// any browser could spend it, a user signed in on the authenticate host could mint links at
// will and make someone else's browser adopt his session (login CSRF, a session swap). So a
// link only works in the browser that asked for it:
//
//   app host ──302 + nonce cookie (this host only)──▶ auth host sign_in?return=<sealed URL, nonce hash>
//   auth host ──302──▶ app host /.portcullis/handoff?token=<sealed session, nonce hash, 60 s, once>
//   handoff: the nonce cookie must hash to the token's nonce hash, or nothing is set.
//
// The auth host only mints for a return address that carries a nonce hash, which only an app
// host's redirect makes; any other (a forward-auth sign-in URL, an `rd`) first takes the browser
// through the target host's sign_in to be given a nonce there.

const HANDOFF_TTL_MS = 60_000;
const NONCE_RE = /^[A-Za-z0-9_-]{24}$/;

interface HandoffToken {
  value: string;
  aud: string;
  rd: string;
  jti: string;
  exp: number;
  nh: string;
}

/**
 * With Secure cookies the __Host- prefix makes the browser refuse this cookie from anyone but
 * this very host: a sibling subdomain cannot plant a nonce it knows (cookie tossing).
 */
export function nonceCookieName(rt: Pick<Runtime, 'cfg'>): string {
  return rt.cfg.cookie.secure
    ? `__Host-${rt.cfg.cookie.name}_handoff`
    : `${rt.cfg.cookie.name}_handoff`;
}

// Path=/, not /.portcullis/: the __Host- prefix demands it, and the redirect to the login starts
// on whatever app path needed it, where a tab must see the nonce another tab already holds.
// Portcullis never forwards its own cookies upstream (proxy/forward.ts stripOwnCookies).
function nonceCookieOptions(rt: Pick<Runtime, 'cfg'>, maxAgeSeconds: number): CookieOptions {
  return {
    path: '/',
    secure: rt.cfg.cookie.secure,
    httpOnly: true,
    sameSite: 'Lax',
    maxAgeSeconds,
  };
}

function nonceHash(nonce: string): string {
  return createHash('sha256').update(nonce).digest('base64url');
}

/**
 * On a host that is about to send the browser to the authenticate host: the nonce hash to seal
 * into the return address and the cookie that holds the nonce. A nonce the browser already has
 * is kept, so tabs that start a login at the same time do not overwrite each other's.
 */
export function bindBrowser(
  rt: Pick<Runtime, 'cfg'>,
  ctx: RequestContext,
): { nh: string; cookie: string } {
  const held = parseCookies(ctx.headers.cookie).get(nonceCookieName(rt));
  const nonce = held && NONCE_RE.test(held) ? held : randomBytes(18).toString('base64url');
  const cookie = serializeCookie(
    nonceCookieName(rt),
    nonce,
    nonceCookieOptions(rt, LOGIN_TTL_MS / 1000),
  );
  return { nh: nonceHash(nonce), cookie };
}

/** The one-time link that gives the session `value` to `target`'s host, for the browser holding the nonce behind `nh`. */
export function handoffUrl(
  rt: Pick<Runtime, 'sealer'>,
  now: number,
  value: string,
  target: URL,
  nh: string,
): string {
  const jti = randomBytes(12).toString('base64url');
  const token: HandoffToken = {
    value,
    aud: target.host,
    rd: target.href,
    jti,
    exp: now + HANDOFF_TTL_MS,
    nh,
  };
  return `${target.origin}/.portcullis/handoff?token=${rt.sealer.sealJson('handoff', token)}`;
}

/** For a return address without a nonce hash: the target host's sign_in, which gives the browser one and comes back. */
export function nonceDetour(rt: Pick<Runtime, 'sealer'>, now: number, target: URL): string {
  return `${target.origin}/.portcullis/sign_in?return=${sealReturn(rt, now, target.href)}`;
}

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** GET /.portcullis/handoff on a host the session cookie of the authenticate host cannot reach. */
export async function handoff(authRequest: AuthRequest): Promise<void> {
  const { rt, ctx } = authRequest;
  const q = new URLSearchParams(ctx.query.startsWith('?') ? ctx.query.slice(1) : ctx.query);
  const t = rt.sealer.openJson<HandoffToken>('handoff', q.get('token') ?? '', '', ctx.now);
  const here = new URL(`${rt.origin(ctx)}/`);
  const refuse = (reason: string, why: string, retry = { href: '/', label: 'Try again' }): void => {
    audit(rt).warn(
      {
        requestId: authRequest.requestId,
        event: 'handoff_refused',
        reason,
        host: ctx.host,
        path: ctx.path,
        client: ctx.clientIp,
      },
      'session handoff refused',
    );
    sendOutcome(authRequest.res, !ctx.browser, codes.invalid_handoff, {
      message: `The sign-in hand-over link ${why}.`,
      requestId: authRequest.requestId,
      setCookies: authRequest.setCookies,
      retry,
    });
  };
  if (!t)
    return refuse('invalid_or_expired', 'is invalid or has expired (it is valid for one minute)');
  if (t.aud !== here.host) return refuse('wrong_host', 'was made for another site');
  let rd: URL;
  try {
    rd = new URL(t.rd);
  } catch {
    return refuse('malformed', 'is malformed');
  }
  if (rd.origin !== here.origin) return refuse('wrong_origin', 'points to another site');
  // Checked before the link is spent: a link preview or a victim's click must not burn the
  // owner's link, and learns nothing either way.
  const nonce = parseCookies(ctx.headers.cookie).get(nonceCookieName(rt));
  if (typeof t.nh !== 'string' || !nonce || !sameHash(nonceHash(nonce), t.nh)) {
    const again = {
      href: `/.portcullis/sign_in?return=${sealReturn(rt, ctx.now, rd.href)}`,
      label: 'Sign in',
    };
    return refuse(
      'other_browser',
      'was not started in this browser: it only works in the browser that began the sign-in, ' +
        'and nothing was changed here',
      again,
    );
  }
  const fresh = await spendOnce(rt.once, rt.sessions.store, `handoff:${t.jti}`, t.exp, ctx.now);
  if (!fresh) return refuse('replayed', 'was already used');
  const session = await rt.sessions.store.load(t.value, ctx.now);
  if (!session) return refuse('session_ended', 'names a session that has ended');
  const spent = serializeCookie(nonceCookieName(rt), '', nonceCookieOptions(rt, 0));
  const cookies = rt.sessions.cookiesFor(t.value, session, ctx.host, ctx.headers.cookie);
  sendRedirect(
    authRequest.res,
    rd.href,
    [...authRequest.setCookies, ...cookies, spent],
    authRequest.requestId,
  );
}

/** A person opens a few hosts of other parent domains a minute; more than that is someone minting links. */
export function mintAllowed(authRequest: AuthRequest, sid: string): boolean {
  if (authRequest.rt.handoffMints.take(sid, authRequest.ctx.now)) return true;
  audit(authRequest.rt).warn(
    {
      requestId: authRequest.requestId,
      event: 'handoff_rate_limited',
      host: authRequest.ctx.host,
      path: authRequest.ctx.path,
      client: authRequest.ctx.clientIp,
    },
    'too many session handoffs for one session',
  );
  sendOutcome(authRequest.res, !authRequest.ctx.browser, codes.too_many_handoffs, {
    message:
      'This session asked to be handed to other sites too often. Please wait a minute and try again.',
    requestId: authRequest.requestId,
    setCookies: authRequest.setCookies,
    headers: { 'retry-after': '60' },
  });
  return false;
}
