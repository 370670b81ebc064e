import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { decodeJwt } from 'jose';
import { codes, sendOutcome } from '../http/outcomes.js';
import { htmlDocument, sendJson } from '../http/pages.js';
import type { Idp } from '../identity/oidc.js';
import { audit } from '../observe/observer.js';
import type { Runtime } from '../runtime.js';
import { StoreUnavailableError, type IdpLogout } from '../session/types.js';
import type { AuthRequest } from './flow.js';
import { spendOnce } from './once.js';

// Logouts the identity provider starts: the user signed out at the IdP, or an admin ended their
// IdP session. Two ways to hear of it:
//   POST /.portcullis/backchannel-logout   OpenID Connect Back-Channel Logout 1.0: the IdP posts
//        a signed Logout Token (logout_token=<JWT>) server to server. 200 when done; 400 with
//        {"error": ...} otherwise (§2.8), never cached.
//   GET  /.portcullis/frontchannel-logout?iss=&sid=   Front-Channel Logout 1.0: the IdP's
//        logout page loads us in an iframe. Unsigned, so it can only name an IdP session (sid),
//        which only the IdP and the user's own ID token know; the page may be framed by the IdP.
//        `sid` alone (Entra ID) means the only configured IdP.
// Either ends the sessions of that IdP session (sid), else of that user (sub), in the session
// store, which tells every replica (session/server-store.ts); the cookie store can only refuse
// them in this process (session/logout-list.ts). docs/identity-providers.md says which IdP
// offers which, and how to register the addresses.

const MAX_BODY = 64 * 1024;

/**
 * The configured IdP whose tokens carry this issuer, or null. The one place an incoming logout
 * is matched to an IdP: with a single IdP, iss must be its issuer exactly (as discovered).
 */
export function idpForIssuer(rt: Runtime, iss: string): Idp | null {
  return rt.providerForIssuer(iss)?.idp ?? null;
}

/**
 * The IdP a front-channel logout naming no issuer means. Microsoft Entra ID calls the
 * front-channel logout URL with `sid` alone, without the `iss` that Front-Channel Logout 1.0 §2
 * asks for: the only IdP configured, or with several (`idps:`) the only Entra ID among them.
 */
export function onlyIdp(rt: Runtime): Idp | null {
  const all = rt.identities.all();
  const meant = all.length === 1 ? all : all.filter((p) => p.settings.provider === 'azure');
  return meant.length === 1 && meant[0]!.idp.issuer() !== null ? meant[0]!.idp : null;
}

/** The origins of the configured IdPs: who may frame the front-channel logout page. */
function idpOrigins(rt: Runtime): string[] {
  const out = new Set<string>();
  for (const p of rt.identities.all()) {
    const iss = p.idp.issuer();
    const origin = iss ? URL.parse(iss)?.origin : undefined;
    if (origin && origin !== 'null') out.add(origin);
  }
  return [...out];
}

/** POST /.portcullis/backchannel-logout */
export async function backchannelLogout(a: AuthRequest): Promise<void> {
  const { rt, ctx, req, res, requestId } = a;
  const refuse = (error: string, description: string, extra: Record<string, unknown> = {}) => {
    audit(rt).warn(
      { requestId, event: 'idp_logout_refused', channel: 'back', reason: description, ...extra },
      'refused a back-channel logout',
    );
    sendJson(res, 400, { error, error_description: description }, { 'x-request-id': requestId });
  };
  const type = String(req.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim()
    .toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    refuse('invalid_request', 'the body must be application/x-www-form-urlencoded');
    return;
  }
  const body = await readBody(req, MAX_BODY);
  if (body === null) {
    refuse('invalid_request', `the body is larger than ${MAX_BODY} bytes, or was cut off`);
    return;
  }
  const tokens = new URLSearchParams(body).getAll('logout_token');
  if (tokens.length !== 1 || !tokens[0]) {
    refuse(
      'invalid_request',
      tokens.length > 1 ? 'logout_token is given more than once' : 'logout_token is missing',
    );
    return;
  }
  const token = tokens[0];
  // The issuer is read before the signature is checked only to choose whose keys check it.
  let iss: unknown;
  try {
    iss = decodeJwt(token).iss;
  } catch {
    refuse('invalid_request', 'the logout_token is not a JWT');
    return;
  }
  const idp = typeof iss === 'string' ? idpForIssuer(rt, iss) : null;
  if (!idp) {
    refuse('invalid_request', 'the logout_token is not from a configured identity provider', {
      iss: printable(iss),
    });
    return;
  }
  const verdict = await idp.verifyLogoutToken(token, ctx.now);
  if (verdict.kind === 'unavailable') {
    refuse('temporarily_unavailable', verdict.reason);
    return;
  }
  if (verdict.kind === 'invalid') {
    refuse('invalid_request', verdict.reason);
    return;
  }
  const c = verdict.claims;
  let ended: number | null;
  try {
    // Spent for every replica sharing the store: a Logout Token ends sessions once, so a copy
    // replayed later cannot end the sessions the user has started since.
    const first = await spendOnce(
      rt.once,
      rt.sessions.store,
      `logout:${c.iss}|${c.jti}`,
      c.acceptableUntil,
      ctx.now,
    );
    if (!first) {
      refuse('invalid_request', 'this logout_token was already used (its jti is spent)');
      return;
    }
    ended = await rt.sessions.endByIdp(
      { iss: c.iss, sid: c.sid, sub: c.sub, at: ctx.now },
      ctx.now,
    );
  } catch (e) {
    if (!(e instanceof StoreUnavailableError)) throw e;
    refuse('temporarily_unavailable', 'the session store is unavailable; nothing was ended');
    return;
  }
  logged(rt, requestId, 'back', { iss: c.iss, sid: c.sid, sub: c.sub, at: ctx.now }, ended);
  res.writeHead(200, {
    'cache-control': 'no-store',
    'x-request-id': requestId,
    'content-length': '0',
  });
  res.end();
}

/** GET /.portcullis/frontchannel-logout?iss=...&sid=... (or ?sid=... alone) */
export async function frontchannelLogout(a: AuthRequest): Promise<void> {
  const { rt, ctx, res, requestId } = a;
  const q = new URLSearchParams(ctx.query.startsWith('?') ? ctx.query.slice(1) : ctx.query);
  const bad = (message: string): void => {
    audit(rt).warn(
      { requestId, event: 'idp_logout_refused', channel: 'front', reason: message },
      'refused a front-channel logout',
    );
    sendOutcome(res, !ctx.browser, codes.bad_request, { message, requestId });
  };
  const iss = q.getAll('iss');
  const sid = q.getAll('sid');
  if (iss.length > 1 || sid.length > 1) {
    bad('The logout request names iss or sid more than once.');
    return;
  }
  let cleared: string[] = [];
  let ended: number | null = 0;
  let logout: IdpLogout | null = null;
  if (iss.length || sid.length) {
    if (!sid[0] || sid[0].length > 255) {
      bad('A front-channel logout must name the IdP session (sid).');
      return;
    }
    const idp = iss.length ? idpForIssuer(rt, iss[0]!) : onlyIdp(rt);
    const issuer = idp?.issuer();
    if (!issuer) {
      bad('The logout request does not come from a configured identity provider (iss).');
      return;
    }
    logout = { iss: issuer, sid: sid[0], at: ctx.now };
    ended = await rt.sessions.endByIdp(logout, ctx.now);
  } else {
    // Without iss and sid the IdP can only mean the session of the browser in the frame: only
    // reachable when the IdP is same-site, since the cookie is SameSite=Lax.
    cleared = await rt.sessions.end(ctx.headers.cookie, ctx.host);
  }
  if (logout) logged(rt, requestId, 'front', logout, ended);
  else
    audit(rt).info(
      { requestId, event: 'idp_logout', channel: 'front', by: 'cookie', host: ctx.host },
      'the identity provider ended the session of this browser',
    );
  const body = htmlDocument('Signed out', '<h1>Signed out</h1><p>You are signed out.</p>');
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    // Front-Channel Logout 1.0 §2: the RP's logout page must not be cached.
    'cache-control': 'no-cache, no-store',
    pragma: 'no-cache',
    'x-request-id': requestId,
    'x-content-type-options': 'nosniff',
    // The one page of ours that may be framed, and only by the IdP (its logout page frames
    // each relying party); no X-Frame-Options, which cannot name an origin.
    'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; frame-ancestors ${[
      "'self'",
      ...idpOrigins(rt),
    ].join(' ')}`,
    'content-length': String(Buffer.byteLength(body)),
    ...(cleared.length ? { 'set-cookie': cleared } : {}),
  });
  res.end(ctx.method === 'HEAD' ? undefined : body);
}

function logged(
  rt: Runtime,
  requestId: string,
  channel: 'back' | 'front',
  l: IdpLogout,
  ended: number | null,
): void {
  audit(rt).info(
    {
      requestId,
      event: 'idp_logout',
      channel,
      iss: l.iss,
      by: l.sid !== undefined ? 'sid' : 'sub',
      user: l.sub,
      // Hashed: a front-channel logout needs nothing more than the sid, so it stays out of logs.
      idpSession: l.sid !== undefined ? hashed(l.sid) : undefined,
      ended: ended ?? 'refused from now on by this process (cookie store)',
    },
    'the identity provider ended a session',
  );
}

function hashed(s: string): string {
  return createHash('sha256').update(s).digest('base64url').slice(0, 12);
}

function printable(v: unknown): string {
  return String(v)
    .replace(/[^\x20-\x7e]/g, '?')
    .slice(0, 120);
}

/** The request body as text, or null past `limit` bytes (or cut off). */
async function readBody(req: IncomingMessage, limit: number): Promise<string | null> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return null;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) return null;
      chunks.push(chunk);
    }
  } catch {
    return null; // the client went away mid-body: nothing to act on
  }
  return Buffer.concat(chunks).toString('utf8');
}
