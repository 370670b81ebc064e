// Which hosts an auth location protects, as the operator wrote them in the auth URL:
//   proxy_pass http://127.0.0.1:4180/.portcullis/auth/nginx?host=app.example.com;
//
// The original request's host comes from the client (nginx builds X-Original-URL from the
// client's Host, and sends a request for a host no server_name matches to its default server).
// Without a binding, a client who names another route's host gets that route's policy applied
// to this location's upstream: anonymous `Host: status.example.com` reaching an admins-only app.
// The auth URL is the one part of the auth request the client cannot touch, so the binding lives
// there, and a description of any other host is refused.

export interface HostPattern {
  /** Lower case, no trailing dot; for a wildcard, the suffix with its leading dot (`.example.com`). */
  host: string;
  wildcard: boolean;
  /** Only this port, when the binding names one. */
  port: number | undefined;
}

export type HostBinding =
  { ok: true; patterns: readonly HostPattern[] | null } | { ok: false; reason: string };

const NAME_RE =
  /^(\*\.)?([a-z0-9](?:[a-z0-9_-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?)*)\.?(?::(\d{1,5}))?$/;
const IPV6_RE = /^(\[[0-9a-f:.]+\])(?::(\d{1,5}))?$/;
const UNBOUND: HostBinding = { ok: true, patterns: null };

function pattern(text: string): HostPattern | null {
  const v = text.trim().toLowerCase();
  const six = IPV6_RE.exec(v);
  if (six) {
    const port = six[2] === undefined ? undefined : Number(six[2]);
    if (port !== undefined && (port < 1 || port > 65535)) return null;
    return { host: six[1]!, wildcard: false, port };
  }
  const m = NAME_RE.exec(v);
  if (!m) return null;
  const port = m[3] === undefined ? undefined : Number(m[3]);
  if (port !== undefined && (port < 1 || port > 65535)) return null;
  return m[1]
    ? { host: `.${m[2]!}`, wildcard: true, port }
    : { host: m[2]!, wildcard: false, port };
}

// The auth URL is fixed per location, so a handful of distinct queries arrive over and over.
// Bounded: a caller that is not a proxy may send any query it likes.
const cache = new Map<string, HostBinding>();

/**
 * The binding in the query of the auth request's own URL (`?host=a.example.com&host=*.example.com`,
 * or comma-separated). `patterns: null` when the URL names no host.
 */
export function hostBinding(query: string): HostBinding {
  if (query.length < 6 || !query.includes('host=')) return UNBOUND;
  const hit = cache.get(query);
  if (hit) return hit;
  const values = new URLSearchParams(query.slice(1)).getAll('host');
  let result: HostBinding = UNBOUND;
  if (values.length) {
    const patterns: HostPattern[] = [];
    for (const item of values.flatMap((v) => v.split(','))) {
      const p = pattern(item);
      if (!p) {
        result = {
          ok: false,
          reason: `the auth URL's host=${JSON.stringify(item.slice(0, 100))} is not a host name, *.domain or [IPv6], with an optional :port`,
        };
        break;
      }
      patterns.push(p);
    }
    if (patterns.length === values.flatMap((v) => v.split(',')).length)
      result = { ok: true, patterns };
  }
  if (cache.size >= 256) cache.clear();
  cache.set(query, result);
  return result;
}

/** True when the original request's host (as parsed by parseHostHeader) is one the location protects. */
export function hostAllowed(patterns: readonly HostPattern[], host: string, port: number): boolean {
  for (const p of patterns) {
    if (p.port !== undefined && p.port !== port) continue;
    if (p.wildcard ? host.length > p.host.length && host.endsWith(p.host) : host === p.host)
      return true;
  }
  return false;
}
