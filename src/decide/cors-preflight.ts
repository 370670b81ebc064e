import { canonicalHeaderName } from '../security/headers.js';
import type { PolicyResult, RequestContext } from './types.js';

// cors_allow_preflight (https://www.pomerium.com/docs/reference/routes/cors-preflight): a
// browser's CORS preflight carries no credentials, so a route that wants cross-origin calls
// must let it through without a session. What counts as a preflight is narrow on purpose,
// because whatever qualifies reaches the upstream unjudged:
//   - method OPTIONS, with non-empty Origin and Access-Control-Request-Method (Fetch standard,
//     "CORS-preflight request"; Pomerium checks the same three);
//   - no body: a preflight never has one, and a body is something an upstream could act on;
//   - no Upgrade: the WebSocket path would turn it into a GET handshake;
//   - no method-override header, in any spelling a framework folds (`_` and `.` read as `-`):
//     frameworks that honour X-HTTP-Method-Override would run the OPTIONS as a DELETE or POST.

const OVERRIDES = ['x-http-method-override', 'x-http-method', 'x-method-override'];

function present(v: string | string[] | undefined): boolean {
  if (v === undefined) return false;
  return Array.isArray(v) ? v.some((x) => x.trim() !== '') : v.trim() !== '';
}

export function isCorsPreflight(ctx: RequestContext): boolean {
  if (ctx.method !== 'OPTIONS') return false;
  const h = ctx.headers;
  if (!present(h.origin) || !present(h['access-control-request-method'])) return false;
  if (h['transfer-encoding'] !== undefined) return false;
  const length = h['content-length'];
  if (length !== undefined && String(length).trim() !== '0') return false;
  if (h.upgrade !== undefined) return false;
  for (const name of Object.keys(h)) {
    if (OVERRIDES.includes(canonicalHeaderName(name))) return false;
  }
  return true;
}

export const PREFLIGHT_ALLOWED: PolicyResult = Object.freeze({
  allow: true,
  reason: 'CORS preflight (cors_allow_preflight)',
  trace: Object.freeze([]),
  needsIdentity: false,
}) as PolicyResult;
