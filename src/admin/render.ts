import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { escapeHtml, STYLE } from '../http/pages.js';

// The admin console's page frame: the sign-in pages' look, a navigation every page shares, and
// a Content-Security-Policy that lets only this response's own style and script run (a nonce
// per response: the reserved prefix shares its origin with the app behind the route).

export const ADMIN = '/.portcullis/admin';

export const PAGES = [
  ['sessions', 'Sessions'],
  ['denials', 'Denials'],
  ['tester', 'Policy tester'],
  ['health', 'Health'],
] as const;

export type PageName = (typeof PAGES)[number][0];

const ADMIN_STYLE =
  'body{max-width:76rem;margin:2rem auto}nav{display:flex;gap:1rem;align-items:baseline;flex-wrap:wrap;border-bottom:1px solid #ccc;padding-bottom:.5rem;margin-bottom:1rem}nav a{color:#225;text-decoration:none;padding:.2rem .1rem}nav a[aria-current=page]{font-weight:600;border-bottom:2px solid #225}nav .who{margin-left:auto;color:#555;font-size:.9rem}a:focus,button:focus,input:focus,select:focus,textarea:focus,summary:focus{outline:3px solid #58f;outline-offset:2px}table.list{width:100%;font-size:.9rem}table.list thead th{border-bottom:1px solid #aaa}caption{text-align:left;padding:.3rem 0}table.list tr:nth-child(even) td{background:#f7f7f7}td.ua{max-width:18rem;overflow-wrap:anywhere;color:#555}form.inline{display:inline;margin:0}form.bar{display:flex;gap:.6rem;flex-wrap:wrap;align-items:end;margin:1rem 0}label{display:flex;flex-direction:column;font-size:.85rem;gap:.2rem}input,select,textarea{font:inherit;padding:.3rem;border:1px solid #888;border-radius:4px}button.danger{border-color:#a33;color:#a33;background:#fff6f6}.note{background:#f4f6fb;border-left:4px solid #58f;padding:.6rem 1rem}.warn{background:#fff8e6;border-left:4px solid #d90;padding:.6rem 1rem}.flash{background:#eef8ee;border-left:4px solid #3a3;padding:.6rem 1rem}.verdict{font-size:1.3rem;font-weight:700;padding:.4rem .8rem;display:inline-block;border-radius:4px}.allow{background:#e3f5e3;color:#164}.deny{background:#fbe5e5;color:#811}.ok{color:#164}.bad{color:#811}pre{background:#f6f6f6;padding:.8rem;overflow-x:auto;font-size:.85rem}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:.6rem;align-items:end}.muted{color:#666;font-size:.85rem}';

export interface Frame {
  page: PageName;
  title: string;
  admin: string;
  requestId: string;
  body: string;
}

export interface Rendered {
  html: string;
  nonce: string;
}

export function renderFrame(f: Frame): Rendered {
  const nonce = randomBytes(16).toString('base64');
  const nav = PAGES.map(
    ([p, label]) =>
      `<a href="${ADMIN}/${p}"${p === f.page ? ' aria-current="page"' : ''}>${label}</a>`,
  ).join('');
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="robots" content="noindex"><title>${escapeHtml(f.title)} · Portcullis admin</title><style nonce="${nonce}">${STYLE}${ADMIN_STYLE}</style><script nonce="${nonce}" src="${ADMIN}/admin.js" defer></script></head><body><nav aria-label="Admin console"><strong>Portcullis admin</strong>${nav}<span class="who">Signed in as ${escapeHtml(f.admin)}</span></nav><main><h1>${escapeHtml(f.title)}</h1>${f.body}</main><p class="rid">Request id: ${escapeHtml(f.requestId)}</p></body></html>`;
  return { html, nonce };
}

/** Security headers of every admin answer. */
export function adminHeaders(nonce: string | null): Record<string, string> {
  return {
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'same-origin',
    'content-security-policy': nonce
      ? `default-src 'none'; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}'; connect-src 'none'; img-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`
      : "default-src 'none'; frame-ancestors 'none'",
  };
}

export function sendHtml(
  res: ServerResponse,
  status: number,
  r: Rendered,
  requestId: string,
  setCookies: string[],
): void {
  const headers: Record<string, string | string[]> = {
    ...adminHeaders(r.nonce),
    'content-type': 'text/html; charset=utf-8',
    'content-length': String(Buffer.byteLength(r.html)),
    'x-request-id': requestId,
  };
  if (setCookies.length) headers['set-cookie'] = setCookies;
  res.writeHead(status, headers);
  res.end(r.html);
}

/** A hidden CSRF field for a POST form. */
export function csrfField(token: string): string {
  return `<input type="hidden" name="csrf" value="${escapeHtml(token)}">`;
}

export function time(ms: number | null | undefined): string {
  if (!ms) return '<span class="muted">—</span>';
  const iso = new Date(ms).toISOString().replace('.000Z', 'Z');
  return `<time datetime="${iso}">${escapeHtml(iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC'))}</time>`;
}

/** "3 min ago" style age, for 3 a.m. reading; the exact time is in the title. */
export function ago(ms: number | null | undefined, now: number): string {
  if (!ms) return '<span class="muted">—</span>';
  const s = Math.round((now - ms) / 1000);
  const text = s < 0 ? `in ${span(-s)}` : s < 5 ? 'just now' : `${span(s)} ago`;
  return `<span title="${new Date(ms).toISOString()}">${text}</span>`;
}

function span(s: number): string {
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

export { escapeHtml };
