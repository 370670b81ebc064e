import { audit } from '../observe/observer.js';
import type { Denial } from '../observe/recent.js';
import type { AdminRequest } from './console.js';
import { ADMIN, ago, escapeHtml, renderFrame, sendHtml, time } from './render.js';

// The recent denied and failed requests of this process, newest first, kept in a bounded ring
// (observe/recent.ts) and fed by the events that write the audit log and the access line: policy
// denials, failed sign-ins (the audit log's login_failed, idp_unavailable, handoff_refused and
// the sign-in rate limits' lines) and requests that ended in an error page (a dependency down,
// an upstream unreachable, a malformed request).

const KINDS: Array<[string, string]> = [
  ['', 'All'],
  ['deny', 'Denied by policy'],
  ['sign_in', 'Sign-in failed'],
  ['error', 'Error'],
];

const LABEL: Record<Denial['kind'], string> = {
  deny: 'denied',
  sign_in: 'sign-in failed',
  error: 'error',
};

export async function denialsPage(a: AdminRequest): Promise<void> {
  const q = (a.params.get('q') ?? '').trim().slice(0, 200);
  const asked = a.params.get('kind') ?? '';
  const kind = KINDS.some(([k]) => k === asked) ? asked : '';
  const all = a.rt.observer.recent.denials();
  const w = q.toLowerCase();
  const rows = all.filter(
    (d) =>
      (!kind || d.kind === kind) &&
      (!w ||
        [d.email, d.user, d.route, d.host, d.path, d.code, d.reason, d.clientIp, d.requestId].some(
          (f) => f.toLowerCase().includes(w),
        )),
  );
  audit(a.rt).info(
    { event: 'admin_view', requestId: a.requestId, admin: a.admin, page: 'denials', query: q },
    'admin console: denials listed',
  );
  const filter = `<form class="bar" method="get" action="${ADMIN}/denials" role="search"><label>Filter (user, route, host, path, reason, address, request id)<input type="search" name="q" id="q" value="${escapeHtml(q)}" autocomplete="off"></label><label>Kind<select name="kind" id="kind">${KINDS.map(([v, l]) => `<option value="${v}"${v === kind ? ' selected' : ''}>${l}</option>`).join('')}</select></label><button type="submit">Filter</button>${q || kind ? ` <a href="${ADMIN}/denials">Clear</a>` : ''}</form>`;
  const table = rows.length
    ? `<table class="list" id="denials"><caption class="muted">${rows.length} of the last ${all.length} refused or failed requests on this replica (kept in memory, newest first; the audit and access logs have them all).</caption><thead><tr><th scope="col">When</th><th scope="col">Request</th><th scope="col">Route or host</th><th scope="col">User</th><th scope="col">Reason</th><th scope="col">Client</th><th scope="col"></th></tr></thead><tbody>${rows.map((d) => row(a, d)).join('')}</tbody></table>`
    : `<p>${all.length ? 'No refused or failed request matches.' : 'No request has been refused and no sign-in has failed since this process started.'}</p>`;
  sendHtml(
    a.res,
    200,
    renderFrame({
      page: 'denials',
      title: 'Recent denials and failures',
      admin: a.admin,
      requestId: a.requestId,
      body: filter + table,
    }),
    a.requestId,
    a.setCookies,
  );
}

function row(a: AdminRequest, d: Denial): string {
  const who = d.email || d.user;
  const where = d.route
    ? `<code>${escapeHtml(d.route)}</code><br><span class="muted">${escapeHtml(d.host)}</span>`
    : `<code>${escapeHtml(d.host)}</code>`;
  const reason =
    d.kind === 'deny'
      ? escapeHtml(d.reason)
      : `<code class="code">${escapeHtml(d.code)}</code>: ${escapeHtml(d.reason)}`;
  // The tester judges a route's policy: a sign-in or a Portcullis page never reached one, and an
  // unparsed request has no URL.
  const test =
    d.kind !== 'sign_in' && d.url && d.route !== '(portcullis)'
      ? `<a href="${escapeHtml(testerLink(d))}">Test this</a>`
      : '';
  return `<tr data-kind="${d.kind}"><td>${time(d.at)}<br><span class="muted">${ago(d.at, a.ctx.now)}</span></td><td><span class="kind${d.kind === 'error' ? '' : ' bad'}">${LABEL[d.kind]}</span>${d.method ? ` <code>${escapeHtml(d.method)}</code>` : ''} <code>${escapeHtml(d.path)}</code></td><td>${where}</td><td>${who ? escapeHtml(who) : `<span class="muted">${d.kind === 'sign_in' ? 'not known' : 'anonymous'}</span>`}${d.groups.length ? `<br><span class="muted">${escapeHtml(d.groups.slice(0, 8).join(', '))}${d.groups.length > 8 ? ', …' : ''}</span>` : ''}</td><td>${reason}</td><td>${escapeHtml(d.clientIp)}<br><code class="muted">${escapeHtml(d.requestId)}</code></td><td>${test}</td></tr>`;
}

/** The tester, filled in with the refused request as it was (time included: time criteria). */
export function testerLink(d: Denial): string {
  const p = new URLSearchParams({ url: d.url, method: d.method });
  if (d.email) p.set('email', d.email);
  if (d.user && d.user !== d.email) p.set('user', d.user);
  if (d.groups.length) p.set('groups', d.groups.join(', '));
  p.set('ip', d.clientIp);
  p.set('time', new Date(d.at).toISOString());
  return `${ADMIN}/tester?${p.toString()}`;
}
