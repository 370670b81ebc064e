import type { ServerResponse } from 'node:http';

// Every answer Portcullis makes itself: a small HTML page for browsers, JSON for API
// clients. Never a stack trace, always the request id so an operator can find the log line.

export function escapeHtml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

export interface PageOptions {
  status: number;
  title: string;
  message: string;
  /** Machine-readable error code for the JSON form, e.g. "access_denied". */
  code: string;
  requestId: string;
  details?: string[] | undefined;
  /** A link the user can follow to try again. */
  retry?: { href: string; label: string } | undefined;
  headers?: Record<string, string | string[]> | undefined;
  setCookies?: string[] | undefined;
}

/** The look of every page Portcullis renders (sign-in, refusals, the admin console). */
export const STYLE =
  'body{font-family:system-ui,sans-serif;max-width:42rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}code,.rid{font-family:ui-monospace,monospace;font-size:.85rem;color:#555}ul{padding-left:1.2rem}a.button,button{display:inline-block;padding:.5rem 1rem;border:1px solid #888;border-radius:4px;background:#f4f4f4;color:#222;text-decoration:none;cursor:pointer}table{border-collapse:collapse}td,th{text-align:left;padding:.2rem .8rem .2rem 0;vertical-align:top}';

export function htmlDocument(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="robots" content="noindex"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>`;
}

export function sendPage(res: ServerResponse, wantsJson: boolean, o: PageOptions): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string | string[]> = {
    'cache-control': 'no-store',
    'x-request-id': o.requestId,
    'x-content-type-options': 'nosniff',
    ...(o.headers ?? {}),
  };
  if (o.setCookies?.length) headers['set-cookie'] = o.setCookies;
  let body: string;
  if (wantsJson) {
    headers['content-type'] = 'application/json; charset=utf-8';
    body = JSON.stringify({
      error: o.code,
      message: o.message,
      ...(o.details?.length ? { details: o.details } : {}),
      request_id: o.requestId,
    });
  } else {
    headers['content-type'] = 'text/html; charset=utf-8';
    headers['content-security-policy'] =
      "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";
    headers['x-frame-options'] = 'DENY';
    const details = o.details?.length
      ? `<ul>${o.details.map((d) => `<li>${escapeHtml(d)}</li>`).join('')}</ul>`
      : '';
    const retry = o.retry
      ? `<p><a class="button" href="${escapeHtml(o.retry.href)}">${escapeHtml(o.retry.label)}</a></p>`
      : '';
    body = htmlDocument(
      o.title,
      `<h1>${escapeHtml(o.title)}</h1><p>${escapeHtml(o.message)}</p>${details}${retry}<p class="rid">Request id: ${escapeHtml(o.requestId)}</p>`,
    );
  }
  headers['content-length'] = String(Buffer.byteLength(body));
  res.writeHead(o.status, headers);
  res.end(body);
}

/** A 302 with its Set-Cookie headers in the same header block (never after a flush). */
export function sendRedirect(
  res: ServerResponse,
  location: string,
  setCookies: string[],
  requestId: string,
): void {
  const headers: Record<string, string | string[]> = {
    location,
    'cache-control': 'no-store',
    'x-request-id': requestId,
    'content-length': '0',
  };
  if (setCookies.length) headers['set-cookie'] = setCookies;
  res.writeHead(302, headers);
  res.end();
}

export function sendJson(
  res: ServerResponse,
  status: number,
  obj: unknown,
  extra: Record<string, string | string[]> = {},
): void {
  const body = JSON.stringify(obj);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': String(Buffer.byteLength(body)),
    ...extra,
  });
  res.end(body);
}
