// Normalizes the HTTP request-target once; the result is what the policy matches AND what the
// upstream receives, so the two can never see different paths (the class of bug behind
// Pomerium/Envoy/Istio path-normalization advisories: `/public/..%2fadmin`, `//admin`,
// `/admin;x` matched one way at the proxy and served another way by the application).
//
// Input that has a well-formed but ambiguous meaning (encoded `/` or `\`, a raw `\`, `;` path
// parameters, double-encoded `%25XX`, Unicode look-alikes of `.` `/` `\` `;` `%`) is refused
// unless `allowAmbiguous` is set, in which case it is kept encoded and passed on unchanged.
// Input that is malformed (controls, NUL, bad escapes, bad UTF-8, fragments, non-origin-form)
// is refused whatever the option says: there is no faithful way to forward it.

export type NormalizedTarget =
  | {
      ok: true;
      path: string;
      query: string;
      /**
       * Set only when normalization changed what an application reading the raw path would
       * see: dot segments or empty segments (`//`) removed, or escaped letters, digits and
       * `-._~` decoded. The path as sent (`/admin/../x`, `/%61dmin`), with only the case of
       * escapes and the escaping of characters no path may hold raw normalized. A reverse proxy
       * forwards `path` and never needs it; a forward-auth server, whose proxy forwards the
       * target as sent, must not judge `path` in its place.
       */
      asSent?: string;
    }
  | { ok: false; reason: string };

export interface NormalizeOptions {
  /** Keep ambiguous-but-well-formed encodings (%2F, %5C, `;`, ...) instead of refusing them. */
  allowAmbiguous?: boolean;
}

const HEX = '0123456789ABCDEF';

// Character classes for raw (unencoded) ASCII in a path.
const PLAIN = 1; // unreserved, sub-delims except `;`, `:` and `@`: kept as is
const ENCODE = 2; // not allowed raw in a path (RFC 3986 pchar): percent-encoded on output
const CLASS = new Uint8Array(128);
for (let c = 0x21; c < 0x7f; c++) CLASS[c] = ENCODE;
for (const ch of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@")
  CLASS[ch.charCodeAt(0)] = PLAIN;

// Decoded Unicode code points that NFKC (used by some frameworks and file systems) or IDNA map
// onto a path delimiter: full-width / small / leader dots, ideographic full stops, full-width
// and division/fraction slashes, full-width and small reverse solidus, semicolon look-alikes,
// full-width and small percent. Computed offline from String.prototype.normalize('NFKC').
const LOOKALIKES: ReadonlySet<number> = new Set([
  0x2024,
  0x2025,
  0x2026,
  0xfe19,
  0xfe30,
  0xfe52,
  0xff0e,
  0x3002,
  0xff61, // dots
  0xff0f,
  0x2215,
  0x2044, // slashes
  0xfe68,
  0xff3c, // backslashes
  0x037e,
  0xfe14,
  0xfe54,
  0xff1b, // semicolons
  0xfe6a,
  0xff05, // percent
]);

const fail = (reason: string): NormalizedTarget => ({ ok: false, reason });

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

function isUnreserved(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) ||
    (b >= 0x61 && b <= 0x7a) ||
    (b >= 0x30 && b <= 0x39) ||
    b === 0x2d ||
    b === 0x2e ||
    b === 0x5f ||
    b === 0x7e
  );
}

const enc = (b: number): string => '%' + HEX[b >> 4] + HEX[b & 15];

/** Reads `%XX` at i; the byte value, or -1 if it is not a valid escape. */
function escapeAt(s: string, i: number): number {
  if (i + 2 >= s.length || s.charCodeAt(i) !== 0x25) return -1;
  const h = hexVal(s.charCodeAt(i + 1));
  const l = hexVal(s.charCodeAt(i + 2));
  return h < 0 || l < 0 ? -1 : (h << 4) | l;
}

/**
 * Splits and normalizes an origin-form request-target (`/a/b?x=1`). The query is returned
 * verbatim (with its `?`, or '') and never takes part in path matching.
 */
export function normalizeRequestTarget(
  rawTarget: string,
  opts?: NormalizeOptions,
): NormalizedTarget {
  const ambiguous = opts?.allowAmbiguous === true;
  if (typeof rawTarget !== 'string' || rawTarget.charCodeAt(0) !== 0x2f) {
    return fail('request target is not an absolute path (it must start with /)');
  }
  const len = rawTarget.length;
  let qpos = -1;
  // One scan over the whole target: the query is forwarded verbatim, so it must be clean too.
  let fast = true;
  let prev = 0;
  for (let i = 0; i < len; i++) {
    const c = rawTarget.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f)
      return fail(
        c === 0
          ? 'NUL byte in request target'
          : c === 0x20
            ? 'space in request target'
            : 'control character in request target',
      );
    if (c === 0x23) return fail('fragment (#) in request target');
    if (qpos === -1) {
      if (c === 0x3f) qpos = i;
      // Anything but plain characters, or a segment starting with `.`, or `//`, needs the slow path.
      else if (c >= 0x80 || (CLASS[c] !== PLAIN && c !== 0x2f)) fast = false;
      else if (prev === 0x2f && (c === 0x2f || c === 0x2e)) fast = false;
      prev = c;
    }
  }
  const rawPath = qpos === -1 ? rawTarget : rawTarget.slice(0, qpos);
  const query = qpos === -1 ? '' : rawTarget.slice(qpos);
  if (fast) return { ok: true, path: rawPath, query };

  let out = '';
  // The path as the proxy in front would forward it: the same, but unreserved escapes kept.
  let sent = '';
  let decoded = false;
  const plen = rawPath.length;
  for (let i = 0; i < plen;) {
    const c = rawPath.charCodeAt(i);
    if (c !== 0x25) {
      if (c >= 0x80) return fail('raw non-ASCII character in path (it must be percent-encoded)');
      if (c === 0x5c) {
        if (!ambiguous) return fail('backslash in path');
        out += '%5C';
        sent += '%5C';
      } else if (c === 0x3b) {
        // Servlet containers (Tomcat, Jetty) strip `;params` before routing, so `/admin;x=1`
        // would be matched here as something other than `/admin` and served as `/admin`.
        if (!ambiguous)
          return fail(
            'path parameter (;) in path: the application may ignore it and see a different path',
          );
        out += ';';
        sent += ';';
      } else if (c === 0x2f || CLASS[c] === PLAIN) {
        out += rawPath[i];
        sent += rawPath[i];
      } else {
        out += enc(c);
        sent += enc(c);
      }
      i++;
      continue;
    }

    const b = escapeAt(rawPath, i);
    if (b < 0) return fail('invalid percent escape in path');
    if (b < 0x80) {
      if (b < 0x20 || b === 0x7f)
        return fail(
          b === 0 ? 'encoded NUL (%00) in path' : `encoded control character (${enc(b)}) in path`,
        );
      if (isUnreserved(b)) {
        out += String.fromCharCode(b);
        sent += enc(b);
        decoded = true;
      } else if (b === 0x2f) {
        if (!ambiguous) return fail('encoded slash (%2F) in path');
        out += '%2F';
        sent += '%2F';
      } else if (b === 0x5c) {
        if (!ambiguous) return fail('encoded backslash (%5C) in path');
        out += '%5C';
        sent += '%5C';
      } else if (b === 0x3b) {
        if (!ambiguous) return fail('encoded semicolon (%3B) in path');
        out += '%3B';
        sent += '%3B';
      } else {
        out += enc(b);
        sent += enc(b);
      }
      i += 3;
      continue;
    }

    // A multi-byte UTF-8 sequence, every byte percent-encoded. Overlong forms (`%C0%AF` for `/`,
    // `%C0%AE` for `.`), surrogates and out-of-range values are what IIS-era decoders turned into
    // separators; refusing them is the only way to be sure nobody downstream does.
    let need: number;
    let cp: number;
    let min: number;
    if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      cp = b & 0x1f;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      cp = b & 0x0f;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      cp = b & 0x07;
      min = 0x10000;
    } else return fail('invalid or overlong UTF-8 in percent-encoded path');
    let j = i + 3;
    for (let k = 0; k < need; k++, j += 3) {
      const cb = escapeAt(rawPath, j);
      if (cb < 0x80 || cb > 0xbf) return fail('invalid or overlong UTF-8 in percent-encoded path');
      cp = (cp << 6) | (cb & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return fail('invalid or overlong UTF-8 in percent-encoded path');
    if (cp < 0xa0) return fail('encoded control character in path');
    if (!ambiguous && LOOKALIKES.has(cp))
      return fail('Unicode look-alike of a path delimiter (. / \\ ; %) in path');
    for (let k = i; k < j; k += 3)
      out += '%' + rawPath[k + 1]!.toUpperCase() + rawPath[k + 2]!.toUpperCase();
    sent += out.slice(out.length - (j - i));
    i = j;
  }

  const path = removeDotSegments(out);
  // Judged on the output so that the verdict is the same when the output is normalized again.
  if (!ambiguous && hasDoubleEncoding(path)) return fail('double-encoded percent (%25XX) in path');
  if (!decoded)
    return path === out ? { ok: true, path, query } : { ok: true, path, query, asSent: out };
  return path === sent ? { ok: true, path, query } : { ok: true, path, query, asSent: sent };
}

/** RFC 3986 5.2.4 on an absolute path, also collapsing empty segments (`//`). */
function removeDotSegments(p: string): string {
  const segs: string[] = [];
  const len = p.length;
  let trailing = false;
  let start = 1;
  while (start <= len) {
    let end = p.indexOf('/', start);
    if (end === -1) end = len;
    const seg = p.slice(start, end);
    const last = end === len;
    if (seg === '..') {
      segs.pop();
      trailing = last;
    } else if (seg === '.' || seg === '') {
      trailing = last;
    } else {
      segs.push(seg);
      trailing = false;
    }
    start = end + 1;
  }
  if (segs.length === 0) return '/';
  const joined = '/' + segs.join('/');
  return trailing ? joined + '/' : joined;
}

function hasDoubleEncoding(p: string): boolean {
  for (let i = p.indexOf('%25'); i !== -1; i = p.indexOf('%25', i + 3)) {
    if (i + 4 < p.length && hexVal(p.charCodeAt(i + 3)) >= 0 && hexVal(p.charCodeAt(i + 4)) >= 0)
      return true;
  }
  return false;
}
