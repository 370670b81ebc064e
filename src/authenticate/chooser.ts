import type { ServerResponse } from 'node:http';
import { escapeHtml, htmlDocument } from '../http/pages.js';
import type { IdentityProvider } from '../identity/registry.js';
import type { Runtime } from '../runtime.js';
import { normalizeRequestTarget } from '../security/path.js';

// Several IdPs (`idps:`): which of them may sign a user in for a return address, and the page
// that lets the user choose when more than one may. The page is plain links in a list: the
// browser's own Tab order and Enter make it usable from the keyboard, with a visible focus ring.

/** The IdPs whose sessions the route behind `returnTo` accepts (all, for a host no route serves). */
export function idpsFor(rt: Runtime, returnTo: string): IdentityProvider[] {
  const all = rt.identities.all();
  const u = URL.parse(returnTo);
  if (!u) return all;
  const scheme = u.protocol === 'https:' ? 'https' : 'http';
  const port = Number(u.port) || (scheme === 'https' ? 443 : 80);
  // The path as decide() will see it, so the chooser offers what that route will accept.
  const target = `${u.pathname}${u.search}`;
  const norm = normalizeRequestTarget(target);
  const alt = norm.ok ? norm : normalizeRequestTarget(target, { allowAmbiguous: true });
  const path = alt.ok ? alt.path : u.pathname;
  const route = rt.routes.match(scheme, u.hostname.toLowerCase(), port, path);
  if (!route) return all;
  return all.filter((p) => route.idps.includes(p.id));
}

const CHOOSER_STYLE =
  '.idps{list-style:none;padding:0}.idps li{margin:.6rem 0}.idps a{min-width:16rem}' +
  '.idps a:focus-visible,.idps a:focus{outline:3px solid #1a5fb4;outline-offset:2px}';

/** The sign-in chooser: one link per IdP, each back to sign_in with the same sealed return. */
export function sendChooser(
  res: ServerResponse,
  o: {
    wantsJson: boolean;
    idps: IdentityProvider[];
    /** The sign_in URL of each choice, given the IdP id. */
    href: (id: string) => string;
    requestId: string;
    setCookies: string[];
  },
): void {
  const headers: Record<string, string | string[]> = {
    'cache-control': 'no-store',
    'x-request-id': o.requestId,
    'x-content-type-options': 'nosniff',
  };
  if (o.setCookies.length) headers['set-cookie'] = o.setCookies;
  let body: string;
  if (o.wantsJson) {
    headers['content-type'] = 'application/json; charset=utf-8';
    body = JSON.stringify({
      error: 'idp_choice_required',
      message: 'Choose the identity provider to sign in with.',
      idps: o.idps.map((p) => ({ id: p.id, name: p.name, sign_in: o.href(p.id) })),
      request_id: o.requestId,
    });
  } else {
    headers['content-type'] = 'text/html; charset=utf-8';
    headers['content-security-policy'] =
      "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";
    headers['x-frame-options'] = 'DENY';
    const items = o.idps
      .map(
        (p) =>
          `<li><a class="button" id="idp-${escapeHtml(p.id)}" href="${escapeHtml(o.href(p.id))}">Sign in with ${escapeHtml(p.name)}</a></li>`,
      )
      .join('');
    body = htmlDocument(
      'Sign in',
      `<style>${CHOOSER_STYLE}</style><main><h1>Sign in</h1><p id="choose">Choose how to sign in:</p><ul class="idps" aria-labelledby="choose">${items}</ul><p class="rid">Request id: ${escapeHtml(o.requestId)}</p></main>`,
    );
  }
  headers['content-length'] = String(Buffer.byteLength(body));
  res.writeHead(200, headers);
  res.end(body);
}
