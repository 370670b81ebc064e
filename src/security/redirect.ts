import { isIP } from 'node:net';

// Validates post-login / post-logout redirect targets (`rd`, X-Auth-Request-Redirect, sign-out `rd`).
//
// The decision is taken on what the WHATWG URL parser (the same parser browsers use to follow
// a Location header) makes of the input, never on string prefixes or suffixes of the raw input.
// On top of that, anything a browser, an intermediary or the application behind us might read
// differently from the parser is refused outright instead of being "cleaned", because a
// validator that repairs input is one more parser to disagree with
// (oauth2-proxy CVE-2020-4037 / GHSA-5m6c-jp6f-2vcv, GHSA-j7x9-7j54-2v3g were all such disagreements).
//
// Allow-list semantics follow oauth2-proxy's `--whitelist-domain` (pkg/app/redirect/validator.go):
//   - `.example.com` (or `*.example.com`) allows example.com itself and every subdomain of it;
//   - an entry without a port allows only the scheme's default port (URL.port === ''), because
//     another port on the same name is often a different service (an admin console, a dev
//     server) that should not receive users straight from the login page;
//   - `host:8443` allows only that port; `host:*` allows any port, as an explicit opt-in.

export interface RedirectValidatorOptions {
  /** Exact host names, lower-case, optionally with `:port` or `:*`. */
  allowedHosts: readonly string[];
  /** `.example.com` / `*.example.com`: the domain and all its subdomains, optionally with `:port` or `:*`. */
  allowedDomains: readonly string[];
}

/**
 * Splits an allow-list written as oauth2-proxy's `--whitelist-domain` (`.example.com` and
 * `*.example.com` for a domain and its subdomains, anything else one host; `:port` or `:*`)
 * into the validator's options. Throws a TypeError naming the entry that is not one.
 */
export function redirectAllowList(entries: readonly string[]): RedirectValidatorOptions {
  const allowedHosts: string[] = [];
  const allowedDomains: string[] = [];
  for (const entry of entries) {
    if (/[/\\@?#\s]/.test(entry.trim()))
      throw new TypeError(
        `allowed redirect entry "${entry}" is not a host name (no scheme, path or user): write the host alone`,
      );
    const domain = /^\s*(?:\.|\*\.)/.test(entry);
    parseEntry(entry, domain);
    (domain ? allowedDomains : allowedHosts).push(entry.trim().toLowerCase());
  }
  return { allowedHosts, allowedDomains };
}

/** `null` = default port of the scheme only; `'*'` = any port; otherwise that port. */
type PortRule = string | null;

interface DomainRule {
  /** Bare domain without the leading dot. */
  domain: string;
  /** `.` + domain, so the suffix test cannot match `badexample.com` against `example.com`. */
  dotted: string;
  port: PortRule;
}

// Percent-encoded C0 controls or DEL anywhere (%09 tab, %0a/%0d CRLF, %00): browsers strip or
// act on some of them, header writers split on others.
const ENCODED_CONTROL = /%(?:[01][0-9a-f]|7f)/i;
// Exactly two slashes after the scheme, then something that is not another slash: this is
// what refuses `https:evil.com` and `https:///evil.com`, which the parser would quietly repair.
const ABSOLUTE_HTTP = /^https?:\/\/(?!\/)/i;
// oauth2-proxy's invalidRedirectRegex: `//`, `/\`, and the same with whitespace or `.`/`..`
// between the separators. Like oauth2-proxy it covers the query too, and unlike it the input is
// decoded first (repeatedly), so neither `/%2f%2fevil.com` nor `/login?next=https://evil.com`
// gets through: an application that decodes its path, or honours its own `next` parameter,
// would turn either into a second, unvalidated redirect off-site. The price is that targets
// carrying a full URL in their query are refused and the user lands on the default page.
// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const HOSTILE_DECODED_REST = /[/\\](?:\s*|\.{1,2})[/\\]|[\\\x00-\x1f\x7f]/;
const ASCII_ESCAPE = /%([0-7][0-9a-f])/gi;
const PORT_DIGITS = /^\d{1,5}$/;
const MAX_TARGET_LENGTH = 8192;
const MAX_DECODE_ROUNDS = 4;

const decodeAsciiByte = (_m: string, hex: string) => String.fromCharCode(parseInt(hex, 16));

/**
 * Returns a function that yields the parsed URL of an allowed redirect target, or null.
 *
 * Relative targets (`/path`, never `//` or `/\`) are resolved against `base`, which must be the
 * configured origin the request was routed to (never a raw Host / X-Forwarded-Host value);
 * the result is still checked against the allow-lists, so a hostile base cannot widen them.
 * Callers must redirect to the returned URL's `href`, not to the raw input.
 */
export function createRedirectValidator(
  opts: RedirectValidatorOptions,
): (target: string, base?: URL) => URL | null {
  const exact = new Map<string, PortRule[]>();
  for (const entry of opts.allowedHosts) {
    const { host, port } = parseEntry(entry, false);
    const rules = exact.get(host);
    if (rules) rules.push(port);
    else exact.set(host, [port]);
  }
  const domains: DomainRule[] = [];
  for (const entry of opts.allowedDomains) {
    const { host, port } = parseEntry(entry, true);
    domains.push({ domain: host, dotted: '.' + host, port });
  }

  const hostAllowed = (url: URL): boolean => {
    const hostname = url.hostname;
    const rules = exact.get(hostname);
    if (rules) for (const r of rules) if (portMatches(r, url)) return true;
    if (domains.length === 0 || hostname.charCodeAt(0) === 0x5b /* [ */ || isIP(hostname) !== 0)
      return false;
    // An empty label (`.example.com`, `a..example.com`) would satisfy a suffix test but names no host.
    if (hostname.charCodeAt(0) === 0x2e || hostname.includes('..')) return false;
    for (const d of domains) {
      if ((hostname === d.domain || hostname.endsWith(d.dotted)) && portMatches(d.port, url))
        return true;
    }
    return false;
  };

  return (target: string, base?: URL): URL | null => {
    if (typeof target !== 'string' || target.length === 0 || target.length > MAX_TARGET_LENGTH)
      return null;
    if (!isSafeAscii(target) || ENCODED_CONTROL.test(target)) return null;

    let url: URL;
    let restStart: number;
    if (target.charCodeAt(0) === 0x2f /* / */) {
      if (target.length > 1 && target.charCodeAt(1) === 0x2f) return null; // protocol-relative
      if (!base || (base.protocol !== 'https:' && base.protocol !== 'http:')) return null;
      try {
        url = new URL(target, base);
      } catch {
        return null;
      }
      if (url.origin !== base.origin) return null;
      restStart = 0;
    } else {
      if (!ABSOLUTE_HTTP.test(target)) return null;
      const authStart = target.indexOf('//') + 2;
      let authEnd = authStart;
      while (authEnd < target.length) {
        const c = target.charCodeAt(authEnd);
        if (c === 0x2f || c === 0x3f || c === 0x23) break;
        authEnd++;
      }
      const rawHost = rawHostOf(target.slice(authStart, authEnd));
      if (rawHost === null) return null;
      try {
        url = new URL(target);
      } catch {
        return null;
      }
      // The parser rewrote the host (percent-escapes, `0x7f.1`, `2130706433`, IDNA mapping):
      // whoever reads the raw string next may not rewrite it the same way.
      if (url.hostname !== rawHost) return null;
      restStart = authEnd;
    }

    if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
    if (url.username !== '' || url.password !== '') return null;
    if (!hostAllowed(url)) return null;
    if (hostileRest(target, restStart)) return null;
    return url;
  };
}

function isSafeAscii(s: string): boolean {
  // Refuses space, controls, DEL, backslash and everything non-ASCII (full-width and
  // ideographic dots included): real targets come from request URLs, which are ASCII on the wire.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x5c) return false;
  }
  return true;
}

/** Lower-cased host of a raw authority, or null if it carries userinfo or a malformed port. */
function rawHostOf(authority: string): string | null {
  if (authority.length === 0 || authority.includes('@')) return null;
  let host: string;
  let rest: string;
  if (authority.charCodeAt(0) === 0x5b /* [ */) {
    const close = authority.indexOf(']');
    if (close === -1) return null;
    host = authority.slice(0, close + 1);
    rest = authority.slice(close + 1);
  } else {
    const colon = authority.indexOf(':');
    host = colon === -1 ? authority : authority.slice(0, colon);
    rest = colon === -1 ? '' : authority.slice(colon);
  }
  if (rest !== '' && (rest.charCodeAt(0) !== 0x3a || !PORT_DIGITS.test(rest.slice(1)))) return null;
  return host.toLowerCase();
}

/** Checks everything after the authority, decoded until stable, for separators that could become `//`. */
function hostileRest(target: string, start: number): boolean {
  let rest = target.slice(start);
  for (let round = 0; rest.includes('%'); round++) {
    if (round === MAX_DECODE_ROUNDS) return true;
    const decoded = rest.replace(ASCII_ESCAPE, decodeAsciiByte);
    if (decoded === rest) break;
    rest = decoded;
  }
  return HOSTILE_DECODED_REST.test(rest);
}

function portMatches(rule: PortRule, url: URL): boolean {
  if (rule === '*') return true;
  if (rule === null) return url.port === '';
  return (url.port || (url.protocol === 'https:' ? '443' : '80')) === rule;
}

function parseEntry(entry: string, domain: boolean): { host: string; port: PortRule } {
  if (typeof entry !== 'string')
    throw new TypeError(`redirect allow-list entry must be a string, got ${typeof entry}`);
  let s = entry.trim().toLowerCase();
  if (domain) {
    if (s.startsWith('*.')) s = s.slice(2);
    else if (s.startsWith('.')) s = s.slice(1);
    else
      throw new TypeError(
        `allowed redirect domain "${entry}" must start with "." (e.g. .example.com)`,
      );
  }
  let port: PortRule = null;
  const close = s.lastIndexOf(']');
  const colon = s.lastIndexOf(':');
  if (colon > close) {
    const p = s.slice(colon + 1);
    if (p === '*') port = '*';
    else if (PORT_DIGITS.test(p) && Number(p) > 0 && Number(p) < 65536) port = String(Number(p));
    else
      throw new TypeError(
        `allowed redirect host "${entry}" has an invalid port (use 1-65535 or *)`,
      );
    s = s.slice(0, colon);
  }
  let parsed: string;
  try {
    parsed = new URL(`http://${s}/`).hostname;
  } catch {
    parsed = '';
  }
  // Entries must already be in the parser's canonical form (lower-case, punycode), otherwise
  // the exact comparison against URL.hostname would silently never match.
  if (s === '' || parsed !== s) {
    throw new TypeError(
      `allowed redirect ${domain ? 'domain' : 'host'} "${entry}" is not a canonical host name${parsed && parsed !== s ? ` (did you mean "${parsed}"?)` : ''}`,
    );
  }
  if (domain && (s.startsWith('[') || isIP(s) !== 0)) {
    throw new TypeError(
      `allowed redirect domain "${entry}" is an IP address; list it under allowed hosts`,
    );
  }
  return { host: s, port };
}

/**
 * The value of a redirect parameter (`rd`) of a query string, as the address the browser was at.
 *
 * The peers' snippets write it unescaped (`/oauth2/sign_in?rd=$scheme://$host$request_uri`,
 * Authentik's `start?rd=$request_uri`), so one round of decoding turns the `%20` of the original
 * address into a space, which the validator rightly refuses: the user of a page whose address
 * held a space got a 400 instead of their page. Decoded here with `decodeURIComponent`, never
 * form-style (`+` stays a plus: `/c++/docs` is a path), and what decoding made of an escape the
 * browser itself writes (space, non-ASCII) is escaped again. Controls, backslashes and every
 * other character stay as decoded, for the validator to refuse. Undefined when the parameter is
 * absent; a value that does not decode is returned as written, and judged as such.
 */
export function redirectParam(query: string, name: string): string | undefined {
  const q = query.startsWith('?') ? query.slice(1) : query;
  if (q === '') return undefined;
  for (const pair of q.split('&')) {
    const eq = pair.indexOf('=');
    const key = eq === -1 ? pair : pair.slice(0, eq);
    if (decodeOr(key, key) !== name) continue;
    const raw = eq === -1 ? '' : pair.slice(eq + 1);
    const value = decodeOr(raw, null);
    return value === null ? raw : value.replace(BROWSER_ESCAPED, encodeURIComponent);
  }
  return undefined;
}

// A space, or a run of non-ASCII code points (a pair of surrogates stays together for encoding).
const BROWSER_ESCAPED = / |[\u0080-\uffff]+/g;

function decodeOr<T>(s: string, fallback: T): string | T {
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return fallback;
  }
}
