import { audit } from '../observe/observer.js';
import { errorText } from '../session/server-store.js';
import { StoreUnavailableError, type SessionSummary } from '../session/types.js';
import type { AdminRequest } from './console.js';
import { csrfToken, csrfValid } from './csrf.js';
import { ADMIN, ago, csrfField, escapeHtml, renderFrame, sendHtml, time } from './render.js';

// Who is signed in, and ending their sessions: the console's face of `portcullis sessions`.
// Revocation goes through the store's revoke(), which deletes the records and announces the ids
// on the store's channel, so every replica refuses them from its next request on
// (docs/high-availability.md), exactly as the command does.

const MAX_ROWS = 500;

export async function sessionsPage(a: AdminRequest): Promise<void> {
  const { rt, ctx } = a;
  const store = rt.sessions.store;
  const q = (a.params.get('q') ?? '').trim().slice(0, 200);
  // The result of an action, shown only when this session's own action produced it: a link
  // cannot make the page claim a revocation that did not happen.
  const said = a.params.get('done');
  const done =
    said !== null && csrfValid(rt.cfg.cookie.secret, flashKey(a, said), a.params.get('sig'))
      ? said
      : null;
  const flash = done ? `<p class="flash" role="status">${escapeHtml(done.slice(0, 300))}</p>` : '';
  if (!store.list || !store.revoke) {
    sendHtml(
      a.res,
      200,
      renderFrame({ ...frame(a), body: flash + cookieStoreNote(a) }),
      a.requestId,
      a.setCookies,
    );
    return;
  }
  let all: SessionSummary[];
  try {
    all = await store.list(ctx.now);
  } catch (e) {
    if (!(e instanceof StoreUnavailableError)) throw e;
    const body = `<p class="warn" role="alert">The ${escapeHtml(store.kind)} session store cannot be reached: ${escapeHtml(errorText(e.cause ?? e))}. Sessions cannot be listed or revoked until it is back; requests that need a session get a 503 meanwhile.</p>`;
    sendHtml(a.res, 503, renderFrame({ ...frame(a), body }), a.requestId, a.setCookies);
    return;
  }
  const rows = all.filter((s) => matches(s, q)).reverse();
  const users = new Set(rows.map((s) => s.email || s.user));
  audit(rt).info(
    { event: 'admin_view', requestId: a.requestId, admin: a.admin, page: 'sessions', query: q },
    'admin console: sessions listed',
  );
  const memoryNote =
    store.kind === 'memory'
      ? '<p class="note">session_storage is memory: these are the sessions of this process only, and a restart ends them all.</p>'
      : '';
  const search = `<form class="bar" method="get" action="${ADMIN}/sessions" role="search"><label>User (e-mail, user or subject)<input type="search" name="q" value="${escapeHtml(q)}" autocomplete="off" id="q"></label><button type="submit">Search</button>${q ? ` <a href="${ADMIN}/sessions">Show all</a>` : ''}</form>`;
  const table = rows.length
    ? `<table class="list"><caption class="muted">${rows.length} session${rows.length === 1 ? '' : 's'}${q ? ` matching “${escapeHtml(q)}”` : ''} in the ${escapeHtml(store.kind)} store${rows.length > MAX_ROWS ? `, the newest ${MAX_ROWS} shown` : ''}. “Last seen” is this replica's view.</caption><thead><tr><th scope="col">User</th><th scope="col">Identity provider</th><th scope="col">Signed in</th><th scope="col">Last seen</th><th scope="col">Expires</th><th scope="col">Client address</th><th scope="col">User agent</th><th scope="col"><span class="muted">Session</span></th></tr></thead><tbody>${rows
        .slice(0, MAX_ROWS)
        .map((s) => row(a, s, q))
        .join('')}</tbody></table>`
    : `<p>No session${q ? ` matches “${escapeHtml(q)}”` : ' is live'}.</p>`;
  const userRevoke =
    q && rows.length && users.size === 1
      ? `<form method="post" action="${ADMIN}/sessions/revoke" data-confirm="End all ${rows.length} sessions of ${escapeHtml(q)}?">${csrfField(a.csrf)}<input type="hidden" name="user" value="${escapeHtml(q)}"><button type="submit" class="danger" id="revoke-user">Revoke all ${rows.length} session${rows.length === 1 ? '' : 's'} of ${escapeHtml([...users][0]!)}</button></form>`
      : '';
  const everyone = all.length
    ? `<details><summary>Revoke every session</summary><form method="post" action="${ADMIN}/sessions/revoke" data-confirm="End every session, yours included? Everyone must sign in again.">${csrfField(a.csrf)}<input type="hidden" name="all" value="yes"><p>Ends all ${all.length} sessions in the store, yours included: everyone signs in again at the identity provider. For a compromised cookie_secret, change the secret as well.</p><label><span><input type="checkbox" name="confirm" value="yes" required> I mean everyone</span></label><p><button type="submit" class="danger" id="revoke-all">Revoke all sessions</button></p></form></details>`
    : '';
  const after =
    '<p class="muted">A revoked user is sent to the identity provider on their next request and can sign in again there: disable the account at the IdP too, or deny it in the policy, when the account itself is compromised.</p>';
  sendHtml(
    a.res,
    200,
    renderFrame({
      ...frame(a),
      body: flash + memoryNote + search + userRevoke + table + after + everyone,
    }),
    a.requestId,
    a.setCookies,
  );
}

function frame(a: AdminRequest) {
  return { page: 'sessions' as const, title: 'Sessions', admin: a.admin, requestId: a.requestId };
}

function matches(s: SessionSummary, q: string): boolean {
  if (!q) return true;
  const w = q.toLowerCase();
  return (
    s.email.toLowerCase().includes(w) ||
    s.user.toLowerCase().includes(w) ||
    s.sub.toLowerCase() === w
  );
}

function row(a: AdminRequest, s: SessionSummary, q: string): string {
  const now = a.ctx.now;
  const mine = s.id === a.session.sid;
  const who = s.email
    ? `${escapeHtml(s.email)}${s.user && s.user !== s.email ? `<br><span class="muted">${escapeHtml(s.user)}</span>` : ''}`
    : escapeHtml(s.user);
  const idp = s.idp ? escapeHtml(hostOf(s.idp)) : '<span class="muted">—</span>';
  const seen = a.rt.observer.recent.lastSeen(s.id);
  return `<tr><td>${who}${mine ? ' <span class="muted">(you)</span>' : ''}</td><td>${idp}</td><td>${time(s.iat)}</td><td>${ago(seen, now)}</td><td>${ago(s.exp, now)}</td><td>${escapeHtml(s.ip ?? '—')}</td><td class="ua">${escapeHtml(s.userAgent ?? '—')}</td><td><form class="inline" method="post" action="${ADMIN}/sessions/revoke" data-confirm="End this session of ${escapeHtml(s.email || s.user)}?">${csrfField(a.csrf)}<input type="hidden" name="id" value="${escapeHtml(s.id)}">${q ? `<input type="hidden" name="q" value="${escapeHtml(q)}">` : ''}<button type="submit" aria-label="Revoke session ${escapeHtml(s.id.slice(0, 8))} of ${escapeHtml(s.email || s.user)}">Revoke</button></form> <code title="${escapeHtml(s.id)}">${escapeHtml(s.id.slice(0, 8))}</code></td></tr>`;
}

function hostOf(issuer: string): string {
  try {
    return new URL(issuer).host;
  } catch {
    return issuer;
  }
}

function cookieStoreNote(a: AdminRequest): string {
  const route = a.rt.cfg.routes[0];
  return `<div class="note"><p><strong>session_storage is cookie:</strong> each session lives, sealed, in its own browser and nowhere on the server. Portcullis cannot list who is signed in, nor end one person's session.</p><p>What can still be done:</p><ul><li><strong>Shut one user out now:</strong> deny them in the policy of the routes (for example <code>deny: {or: [{email: {is: bob@example.com}}]}</code>${route ? ` on <code>${escapeHtml(route.id)}</code>` : ''}) and reload; their next request is refused. Check it in the <a href="${ADMIN}/tester">policy tester</a>.</li><li><strong>Stop new sign-ins:</strong> disable the account at the identity provider; sessions still end at their next refresh or at <code>cookie_expire</code>.</li><li><strong>End every session:</strong> change <code>cookie_secret</code> and reload; everyone signs in again.</li><li><strong>Revoke single sessions from here:</strong> set <code>session_storage</code> to <code>redis://…</code> or <code>postgres://…</code>.</li></ul></div>`;
}

export async function revokeAction(a: AdminRequest): Promise<void> {
  const { rt } = a;
  const store = rt.sessions.store;
  const id = a.params.get('id');
  const user = a.params.get('user')?.trim();
  const all = a.params.get('all') === 'yes';
  let done: string;
  try {
    if (!store.list || !store.revoke) {
      done = 'Nothing revoked: the cookie session store keeps no sessions on the server.';
    } else if (id !== null && user === undefined && !all) {
      const n = await store.revoke([id]);
      done = n
        ? `Revoked session ${id.slice(0, 8)}.`
        : `No session ${id.slice(0, 8)} (it had ended already).`;
      log(a, 'session', id, n);
    } else if (user && id === null && !all) {
      const w = user.toLowerCase();
      const ids = (await store.list(a.ctx.now))
        .filter(
          (s) =>
            s.email.toLowerCase() === w || s.user.toLowerCase() === w || s.sub.toLowerCase() === w,
        )
        .map((s) => s.id);
      const n = ids.length ? await store.revoke(ids) : 0;
      done = `Revoked ${n} session${n === 1 ? '' : 's'} of ${user}.`;
      log(a, 'user', user, n);
    } else if (all && id === null && user === undefined && a.params.get('confirm') === 'yes') {
      const ids = (await store.list(a.ctx.now)).map((s) => s.id);
      const n = ids.length ? await store.revoke(ids) : 0;
      done = `Revoked all ${n} session${n === 1 ? '' : 's'}.`;
      log(a, 'all', '*', n);
    } else {
      done =
        'Nothing revoked: say which session (id), whose (user), or all with the confirmation ticked.';
    }
  } catch (e) {
    if (!(e instanceof StoreUnavailableError)) throw e;
    done = `Nothing revoked: the ${store.kind} session store cannot be reached (${errorText(e.cause ?? e)}).`;
  }
  const back = (user ?? a.params.get('q') ?? '').slice(0, 200);
  // Post/redirect/get: a reload of the result page does not repeat the action.
  a.res.writeHead(303, {
    location: `${ADMIN}/sessions?done=${encodeURIComponent(done)}&sig=${csrfToken(rt.cfg.cookie.secret, flashKey(a, done))}${back ? `&q=${encodeURIComponent(back)}` : ''}`,
    'cache-control': 'no-store',
    'content-length': '0',
    'x-request-id': a.requestId,
    ...(a.setCookies.length ? { 'set-cookie': a.setCookies } : {}),
  });
  a.res.end();
}

function flashKey(a: AdminRequest, message: string): string {
  return `${a.session.sid}|flash|${message}`;
}

function log(a: AdminRequest, scope: 'session' | 'user' | 'all', target: string, n: number): void {
  audit(a.rt).warn(
    {
      event: 'admin_sessions_revoked',
      requestId: a.requestId,
      admin: a.admin,
      adminSub: a.identity.sub,
      scope,
      target,
      revoked: n,
    },
    'admin console: sessions revoked',
  );
}
