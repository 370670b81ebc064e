// A deliberately literal HTTP client for tests: it sends whatever Host header and
// request-target it is given (no URL normalisation), connects wherever it is told, and
// keeps cookies the way a browser would, closely enough to test a proxy's session handling.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

export interface StoredCookie {
  name: string;
  value: string;
  domain: string;
  hostOnly: boolean;
  path: string;
  secure: boolean;
  httpOnly: boolean;
  sameSite?: string;
  /** epoch milliseconds; absent for session cookies */
  expires?: number;
}

interface Entry extends StoredCookie {
  created: number;
}

let creation = 0;

function domainMatch(host: string, domain: string): boolean {
  if (host === domain) return true;
  return !net.isIP(host) && host.endsWith(`.${domain}`);
}

function pathMatch(reqPath: string, cookiePath: string): boolean {
  if (reqPath === cookiePath) return true;
  if (!reqPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || reqPath[cookiePath.length] === '/';
}

function defaultPath(pathname: string): string {
  if (!pathname.startsWith('/')) return '/';
  const i = pathname.lastIndexOf('/');
  return i <= 0 ? '/' : pathname.slice(0, i);
}

function hostOf(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
}

// Browsers treat loopback as a secure context, so Secure cookies work on http://localhost.
function isSecureContext(url: URL): boolean {
  const h = hostOf(url);
  return (
    url.protocol === 'https:' ||
    url.protocol === 'wss:' ||
    h === 'localhost' ||
    h === '127.0.0.1' ||
    h === '::1'
  );
}

export class CookieJar {
  private cookies: Entry[] = [];

  setFrom(url: URL, setCookieHeaders: string[]): void {
    for (const header of setCookieHeaders) this.setOne(url, header);
  }

  private setOne(url: URL, header: string): void {
    const [pair = '', ...attrs] = header.split(';');
    const eq = pair.indexOf('=');
    if (eq < 0) return;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (!name) return;
    const host = hostOf(url);
    const now = Date.now();

    let domainAttr: string | undefined;
    let pathAttr: string | undefined;
    let maxAge: number | undefined;
    let expiresAttr: number | undefined;
    let secure = false;
    let httpOnly = false;
    let sameSite: string | undefined;
    for (const raw of attrs) {
      const i = raw.indexOf('=');
      const key = (i < 0 ? raw : raw.slice(0, i)).trim().toLowerCase();
      const val = i < 0 ? '' : raw.slice(i + 1).trim();
      switch (key) {
        case 'domain':
          if (val) domainAttr = val.replace(/^\./, '').toLowerCase();
          break;
        case 'path':
          pathAttr = val.startsWith('/') ? val : undefined;
          break;
        case 'max-age':
          if (/^-?\d+$/.test(val)) maxAge = Number(val);
          break;
        case 'expires': {
          const t = Date.parse(val);
          if (!Number.isNaN(t)) expiresAttr = t;
          break;
        }
        case 'secure':
          secure = true;
          break;
        case 'httponly':
          httpOnly = true;
          break;
        case 'samesite':
          sameSite = val;
          break;
      }
    }

    // RFC 6265bis: an insecure origin may neither set nor overwrite Secure cookies.
    if (secure && !isSecureContext(url)) return;
    if (name.startsWith('__Secure-') && !secure) return;
    if (name.startsWith('__Host-') && (!secure || domainAttr !== undefined || pathAttr !== '/'))
      return;

    let hostOnly = true;
    let domain = host;
    if (domainAttr !== undefined && domainAttr !== host) {
      if (!domainMatch(host, domainAttr)) return;
      hostOnly = false;
      domain = domainAttr;
    } else if (domainAttr !== undefined) {
      hostOnly = false;
    }
    const path = pathAttr ?? defaultPath(url.pathname);

    let expires: number | undefined;
    if (maxAge !== undefined) expires = maxAge <= 0 ? 0 : now + maxAge * 1000;
    else if (expiresAttr !== undefined) expires = expiresAttr;

    const idx = this.cookies.findIndex(
      (c) => c.name === name && c.domain === domain && c.path === path,
    );
    const old = idx >= 0 ? this.cookies[idx] : undefined;
    if (old && old.secure && !isSecureContext(url)) return;
    if (idx >= 0) this.cookies.splice(idx, 1);
    if (expires !== undefined && expires <= now) return;

    const entry: Entry = {
      name,
      value,
      domain,
      hostOnly,
      path,
      secure,
      httpOnly,
      created: old?.created ?? ++creation,
    };
    if (sameSite !== undefined) entry.sameSite = sameSite;
    if (expires !== undefined) entry.expires = expires;
    this.cookies.push(entry);
  }

  private purge(): void {
    const now = Date.now();
    this.cookies = this.cookies.filter((c) => c.expires === undefined || c.expires > now);
  }

  private matching(url: URL): Entry[] {
    this.purge();
    const host = hostOf(url);
    const path = url.pathname || '/';
    const secureOk = isSecureContext(url);
    return this.cookies
      .filter((c) => (c.hostOnly ? c.domain === host : domainMatch(host, c.domain)))
      .filter((c) => pathMatch(path, c.path))
      .filter((c) => !c.secure || secureOk)
      .sort((a, b) => b.path.length - a.path.length || a.created - b.created);
  }

  header(url: URL): string {
    return this.matching(url)
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  get(name: string, host?: string): string | undefined {
    this.purge();
    const h = host?.toLowerCase();
    return this.cookies.find(
      (c) =>
        c.name === name &&
        (h === undefined || (c.hostOnly ? c.domain === h : domainMatch(h, c.domain))),
    )?.value;
  }

  all(): StoredCookie[] {
    this.purge();
    return this.cookies.map(({ created: _created, ...c }) => ({ ...c }));
  }

  clear(): void {
    this.cookies = [];
  }
}

export interface Resp {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  setCookies: string[];
  body: string;
  location?: string;
  json<T = any>(): T;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  jar?: CookieJar;
  /** default: every host name connects to 127.0.0.1 on the URL's port */
  connectTo?: { host: string; port: number };
  /** sent verbatim as the request-target instead of the URL's path and query */
  rawPath?: string;
  /** default false: test servers use self-signed certificates */
  rejectUnauthorized?: boolean;
  timeoutMs?: number;
}

function portOf(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

export function request(url: string, opts: RequestOptions = {}): Promise<Resp> {
  const u = new URL(url);
  const secure = u.protocol === 'https:';
  const connect = opts.connectTo ?? { host: '127.0.0.1', port: portOf(u) };
  const headers: Record<string, string | string[]> = {};
  let hasHost = false;
  let hasCookie = false;
  for (const [k, v] of Object.entries(opts.headers ?? {})) {
    headers[k] = v;
    if (k.toLowerCase() === 'host') hasHost = true;
    if (k.toLowerCase() === 'cookie') hasCookie = true;
  }
  if (!hasHost) headers.host = u.host;
  if (opts.jar && !hasCookie) {
    const cookie = opts.jar.header(u);
    if (cookie) headers.cookie = cookie;
  }
  const body = typeof opts.body === 'string' ? Buffer.from(opts.body) : opts.body;
  if (
    body &&
    !Object.keys(headers).some(
      (k) => k.toLowerCase() === 'content-length' || k.toLowerCase() === 'transfer-encoding',
    )
  ) {
    headers['content-length'] = String(body.length);
  }
  const target = opts.rawPath ?? `${u.pathname}${u.search}`;
  const sniHost = hostOf(u);

  return new Promise<Resp>((resolve, reject) => {
    const common = {
      host: connect.host,
      port: connect.port,
      method: opts.method ?? 'GET',
      path: target,
      headers,
      setHost: false,
      agent: false as const,
    };
    const req = secure
      ? https.request({
          ...common,
          servername: net.isIP(sniHost) ? undefined : sniHost,
          rejectUnauthorized: opts.rejectUnauthorized ?? false,
        })
      : http.request(common);
    req.setTimeout(opts.timeoutMs ?? 30_000, () =>
      req.destroy(new Error(`request to ${url} timed out`)),
    );
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const setCookies = res.headers['set-cookie'] ?? [];
        if (opts.jar && setCookies.length) opts.jar.setFrom(u, setCookies);
        const text = Buffer.concat(chunks).toString('utf8');
        const resp: Resp = {
          status: res.statusCode ?? 0,
          headers: res.headers,
          setCookies,
          body: text,
          json: <T>() => JSON.parse(text) as T,
        };
        if (typeof res.headers.location === 'string') resp.location = res.headers.location;
        resolve(resp);
      });
    });
    req.end(body);
  });
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

const decodeEntities = (s: string): string =>
  s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|#39|apos);/gi, (_m, e: string) => {
    const l = e.toLowerCase();
    if (l.startsWith('#x')) return String.fromCodePoint(parseInt(l.slice(2), 16));
    if (l.startsWith('#')) return String.fromCodePoint(Number(l.slice(1)));
    return (
      ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[l] ?? ''
    );
  });

function attr(tag: string, name: string): string | undefined {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(tag);
  if (!m) return undefined;
  return decodeEntities(m[1] ?? m[2] ?? m[3] ?? '');
}

export interface HtmlForm {
  action: string;
  method: string;
  fields: Array<[string, string]>;
  html: string;
}

/** Every <form> in a page with its (resolved) action, method and named input values. */
export function parseForms(html: string, baseUrl: string): HtmlForm[] {
  const forms: HtmlForm[] = [];
  const re = /<form\b([^>]*)>([\s\S]*?)<\/form>/gi;
  for (let m = re.exec(html); m; m = re.exec(html)) {
    const open = ` ${m[1] ?? ''}`;
    const inner = m[2] ?? '';
    const fields: Array<[string, string]> = [];
    const inputRe = /<input\b([^>]*)>/gi;
    for (let i = inputRe.exec(inner); i; i = inputRe.exec(inner)) {
      const tag = ` ${i[1] ?? ''}`;
      const n = attr(tag, 'name');
      if (n === undefined) continue;
      const type = (attr(tag, 'type') ?? 'text').toLowerCase();
      if ((type === 'checkbox' || type === 'radio') && !/\schecked\b/i.test(tag)) continue;
      if (type === 'submit' || type === 'button' || type === 'image') continue;
      fields.push([n, attr(tag, 'value') ?? '']);
    }
    forms.push({
      action: new URL(attr(open, 'action') || baseUrl, baseUrl).href,
      method: (attr(open, 'method') ?? 'get').toUpperCase(),
      fields,
      html: m[0],
    });
  }
  return forms;
}

/**
 * A page that only exists to POST itself onward (form_post responses, the demo IdP's
 * logout step): what a browser would submit without the user doing anything.
 */
export function autoSubmitForm(resp: Resp, pageUrl: string): HtmlForm | undefined {
  if (!/text\/html/i.test(String(resp.headers['content-type'] ?? ''))) return undefined;
  if (!/document\.forms\[0\]\.submit\(\)/.test(resp.body)) return undefined;
  const form = parseForms(resp.body, pageUrl)[0];
  return form && form.method === 'POST' ? form : undefined;
}

export interface FollowOptions {
  jar: CookieJar;
  /** default 20 */
  max?: number;
  /** where to connect for a host; default 127.0.0.1 on the URL's port */
  resolve?: (host: string, port: number) => { host: string; port: number };
  headers?: Record<string, string>;
}

export interface Step {
  method: string;
  url: string;
  body?: string;
  headers?: Record<string, string>;
}

/**
 * Drives one navigation like a browser: follows redirects (and self-submitting forms)
 * until a page that is neither. `next` may inject one extra step for a page (a login form).
 */
export async function navigate(
  first: Step,
  opts: FollowOptions,
  next?: (resp: Resp, url: string) => Step | undefined,
): Promise<{ final: Resp; chain: string[] }> {
  const max = opts.max ?? 20;
  const chain: string[] = [];
  let step: Step = first;
  for (let hops = 0; ; hops++) {
    const u = new URL(step.url);
    const connectTo = opts.resolve?.(hostOf(u), portOf(u));
    const headers: Record<string, string> = { ...opts.headers, ...step.headers };
    const reqOpts: RequestOptions = { method: step.method, headers, jar: opts.jar };
    if (connectTo) reqOpts.connectTo = connectTo;
    if (step.body !== undefined) reqOpts.body = step.body;
    chain.push(step.url);
    const resp = await request(step.url, reqOpts);

    let following: Step | undefined;
    if (REDIRECTS.has(resp.status) && resp.location) {
      const to = new URL(resp.location, step.url).href;
      const keep =
        (resp.status === 307 || resp.status === 308) &&
        step.method !== 'GET' &&
        step.method !== 'HEAD';
      following = keep
        ? { ...step, url: to, headers: { ...step.headers } }
        : { method: 'GET', url: to };
    } else {
      const form = autoSubmitForm(resp, step.url);
      if (form) {
        following = {
          method: 'POST',
          url: form.action,
          body: new URLSearchParams(form.fields).toString(),
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            origin: new URL(step.url).origin,
          },
        };
      } else {
        following = next?.(resp, step.url);
      }
    }
    if (!following) return { final: resp, chain };
    if (hops + 1 >= max) throw new Error(`too many redirects: ${chain.join(' -> ')}`);
    step = following;
  }
}

export function followRedirects(
  url: string,
  opts: FollowOptions,
): Promise<{ final: Resp; chain: string[] }> {
  return navigate({ method: 'GET', url }, opts);
}
