import { audit } from '../observe/observer.js';
import type { Denial } from '../observe/recent.js';
import type { AdminRequest } from './console.js';
import { ADMIN, ago, escapeHtml, renderFrame, sendHtml, time } from './render.js';

// The recent denied and failed requests of this process, newest first: the same events that
// write the audit log's access_denied lines and the access log, kept in a bounded ring.

const KINDS: Array<[string, string]> = [
  ['', 'All'],
  ['deny', 'Denied by policy'],
  ['unavailable', 'Unavailable (503)'],
  ['bad_request', 'Bad request'],
];

export async function denialsPage(a: AdminRequest): Promise<void> {
  const q = (a.params.get('q') ?? '').trim().slice(0, 200);
  const kind = a.params.get('kind') ?? '';
  const all = a.rt.observer.recent.denials();
  const w = q.toLowerCase();
  const rows = all.filter(
    (d) =>
      (!kind || d.kind === kind) &&
      (!w ||
        [d.email, d.user, d.route, d.url, d.reason, d.clientIp, d.requestId].some((f) =>
          f.toLowerCase().includes(w),
        )),
  );
  audit(a.rt).info(
    { event: 'admin_view', requestId: a.requestId, admin: a.admin, page: 'denials', query: q },
    'admin console: denials listed',
  );
  const filter = `<form class="bar" method="get" action="${ADMIN}/denials" role="search"><label>Filter (user, route, URL, reason, address, request id)<input type="search" name="q" id="q" value="${escapeHtml(q)}" autocomplete="off"></label><label>Kind<select name="kind" id="kind">${KINDS.map(([v, l]) => `<option value="${v}"${v === kind ? ' selected' : ''}>${l}</option>`).join('')}</select></label><button type="submit">Filter</button>${q || kind ? ` <a href="${ADMIN}/denials">Clear</a>` : ''}</form>`;
  const table = rows.length
    ? `<table class="list"><caption class="muted">${rows.length} of the last ${all.length} refused requests on this replica (kept in memory, newest first; the audit log has them all).</caption><thead><tr><th scope="col">When</th><th scope="col">Request</th><th scope="col">Route</th><th scope="col">User</th><th scope="col">Rule and reason</th><th scope="col">Client</th><th scope="col"></th></tr></thead><tbody>${rows.map((d) => row(a, d)).join('')}</tbody></table>`
    : `<p>${all.length ? 'No refused request matches.' : 'No request has been refused since this process started.'}</p>`;
  sendHtml(
    a.res,
    200,
    renderFrame({
      page: 'denials',
      title: 'Recent denials',
      admin: a.admin,
      requestId: a.requestId,
      body: filter + table,
    }),
    a.requestId,
    a.setCookies,
  );
}

function row(a: AdminRequest, d: Denial): string {
  const label =
    d.kind === 'deny' ? 'denied' : d.kind === 'unavailable' ? 'unavailable' : 'bad request';
  const who = d.email || d.user;
  const rule =
    d.kind === 'deny'
      ? escapeHtml(d.reason)
      : `<strong>${escapeHtml(d.rule)}</strong>: ${escapeHtml(d.reason)}`;
  return `<tr><td>${time(d.at)}<br><span class="muted">${ago(d.at, a.ctx.now)}</span></td><td><span class="${d.kind === 'deny' ? 'bad' : ''}">${label}</span> <code>${escapeHtml(d.method)}</code> <code>${escapeHtml(d.url)}</code></td><td><code>${escapeHtml(d.route)}</code></td><td>${who ? escapeHtml(who) : '<span class="muted">anonymous</span>'}${d.groups.length ? `<br><span class="muted">${escapeHtml(d.groups.slice(0, 8).join(', '))}${d.groups.length > 8 ? ', …' : ''}</span>` : ''}</td><td>${rule}</td><td>${escapeHtml(d.clientIp)}<br><code class="muted">${escapeHtml(d.requestId)}</code></td><td><a href="${escapeHtml(testerLink(d))}">Test this</a></td></tr>`;
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
