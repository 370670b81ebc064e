// Cookie parsing and Set-Cookie serialization. Browsers cap a cookie at about 4096 bytes
// (name + value + attributes), so large sessions are split into numbered chunks.

export interface CookieOptions {
  domain?: string | null | undefined;
  path?: string;
  maxAgeSeconds?: number;
  secure: boolean;
  httpOnly: boolean;
  sameSite: 'Lax' | 'Strict' | 'None';
}

export const CHUNK_SIZE = 3800;
const MAX_CHUNKS = 10;

/** Cookie header → name/value pairs. Later duplicates do not override the first (RFC 6265 5.4 order). */
export function parseCookies(header: string | string[] | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  const text = Array.isArray(header) ? header.join('; ') : header;
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (!name || out.has(name)) continue;
    let value = part.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"'))
      value = value.slice(1, -1);
    out.set(name, value);
  }
  return out;
}

export function serializeCookie(name: string, value: string, o: CookieOptions): string {
  let s = `${name}=${value}; Path=${o.path ?? '/'}`;
  if (o.domain) s += `; Domain=${o.domain}`;
  if (o.maxAgeSeconds !== undefined) {
    s += `; Max-Age=${Math.max(0, Math.floor(o.maxAgeSeconds))}`;
    if (o.maxAgeSeconds <= 0) s += '; Expires=Thu, 01 Jan 1970 00:00:00 GMT';
  }
  if (o.secure) s += '; Secure';
  if (o.httpOnly) s += '; HttpOnly';
  s += `; SameSite=${o.sameSite}`;
  return s;
}

/** Set-Cookie headers that store `value` under `name`, split into `name_1`, `name_2`… when large. */
export function chunkedCookies(
  name: string,
  value: string,
  o: CookieOptions,
  previous: ReadonlyMap<string, string>,
): string[] {
  const out: string[] = [];
  if (value.length <= CHUNK_SIZE) {
    out.push(serializeCookie(name, value, o));
  } else {
    const parts: string[] = [];
    for (let i = 0; i < value.length; i += CHUNK_SIZE) parts.push(value.slice(i, i + CHUNK_SIZE));
    if (parts.length > MAX_CHUNKS)
      throw new Error(
        `session too large for cookies (${value.length} bytes); use a server-side session_storage`,
      );
    out.push(serializeCookie(name, `${parts.length}~${parts[0]}`, o));
    for (let i = 1; i < parts.length; i++) out.push(serializeCookie(`${name}_${i}`, parts[i]!, o));
  }
  // Leftover chunks of an earlier, larger session would otherwise be glued onto the new one.
  const used = value.length <= CHUNK_SIZE ? 1 : Math.ceil(value.length / CHUNK_SIZE);
  for (let i = used; i <= MAX_CHUNKS; i++) {
    if (previous.has(`${name}_${i}`))
      out.push(serializeCookie(`${name}_${i}`, '', { ...o, maxAgeSeconds: 0 }));
  }
  return out;
}

/** Reassembles a chunked cookie; null when absent or when a chunk is missing. */
export function readChunked(name: string, cookies: ReadonlyMap<string, string>): string | null {
  const first = cookies.get(name);
  if (!first) return null;
  const m = /^(\d{1,2})~/.exec(first);
  if (!m) return first;
  const n = Number(m[1]);
  if (n < 2 || n > MAX_CHUNKS) return null;
  let value = first.slice(m[0].length);
  for (let i = 1; i < n; i++) {
    const part = cookies.get(`${name}_${i}`);
    if (part === undefined) return null;
    value += part;
  }
  return value;
}

/**
 * The value of cookie `name` when the header holds it exactly once, unchunked and unquoted,
 * found without parsing the whole header; undefined when that is not certain (absent, twice,
 * chunked, quoted, oddly spaced), and the caller then parses in full. On the hot path a
 * request carries its one session cookie among the application's own.
 */
export function singleCookieValue(
  header: string | string[] | undefined,
  name: string,
): string | undefined {
  if (typeof header !== 'string') return undefined;
  const at = header.indexOf(name);
  if (at === -1 || header.indexOf(name, at + 1) !== -1) return undefined;
  const eq = at + name.length;
  if (header.charCodeAt(eq) !== 0x3d /* = */) return undefined;
  for (let i = at - 1; i >= 0; i--) {
    const c = header.charCodeAt(i);
    if (c === 0x3b /* ; */) break;
    if (c !== 0x20 && c !== 0x09) return undefined; // part of another name: x_portcullis=
  }
  let end = header.indexOf(';', eq + 1);
  if (end === -1) end = header.length;
  const value = header.slice(eq + 1, end).trim();
  const first = value.charCodeAt(0);
  // Empty, quoted or a chunk count ("2~..."): the general path handles those.
  if (!value || first === 0x22 || (first >= 0x30 && first <= 0x39)) return undefined;
  return value;
}

/** Set-Cookie headers that delete `name` and its chunks, host-only and on the domain. */
export function clearCookies(
  name: string,
  o: CookieOptions,
  present: ReadonlyMap<string, string>,
): string[] {
  const out: string[] = [];
  const names = [
    name,
    ...[...present.keys()].filter(
      (k) => k.startsWith(`${name}_`) && /^\d+$/.test(k.slice(name.length + 1)),
    ),
  ];
  for (const n of names) {
    out.push(serializeCookie(n, '', { ...o, domain: null, maxAgeSeconds: 0 }));
    if (o.domain) out.push(serializeCookie(n, '', { ...o, maxAgeSeconds: 0 }));
  }
  return out;
}
