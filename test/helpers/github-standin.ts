// A local stand-in for GitHub's OAuth web flow and the REST endpoints Portcullis reads, built
// from GitHub's documented shapes (docs.github.com, REST API version 2022-11-28):
// - "Authorizing OAuth apps": GET /login/oauth/authorize, POST /login/oauth/access_token
//   answering JSON with Accept: application/json, errors such as bad_verification_code with 200
// - "REST API endpoints for users / emails / organizations / teams": GET /user, /user/emails
//   ({email, primary, verified, visibility}), /user/orgs ({login, id}), /user/teams
//   ({slug, organization: {login}})
// - "Using pagination in the REST API": Link: <…&page=2>; rel="next", <…>; rel="last"
// - "Rate limits for the REST API": 403 or 429 with x-ratelimit-remaining: 0 and
//   x-ratelimit-reset (epoch seconds); secondary limits with retry-after
// One server plays both github.com (web) and api.github.com (API), or a GitHub Enterprise
// Server at one origin with the API under /api/v3.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CookieJar, request, type Resp } from './http.js';
import { BROWSER_HEADERS } from './login.js';

export interface GitHubUser {
  id: number;
  login: string;
  name: string;
  emails: Array<{ email: string; primary: boolean; verified: boolean }>;
  orgs: string[];
  teams: Array<{ org: string; slug: string }>;
}

export interface ApiFault {
  status: number;
  headers: Record<string, string>;
  times: number;
}

export interface GitHubStandin {
  port: number;
  /** http://127.0.0.1:port: as a GitHub Enterprise Server base URL. */
  base: string;
  users: Map<string, GitHubUser>;
  nextUser: string;
  pageSize: number;
  faults: ApiFault[];
  /** Tokens GitHub no longer accepts (the user revoked the app). */
  revoked: Set<string>;
  /** Every token issued, by login. */
  tokensOf(login: string): string[];
  /** A next page link pointing elsewhere (a hostile or broken answer). */
  nextLinkOverride: string | null;
  /** Every request: `METHOD path?query` (and the Authorization scheme for API calls). */
  log: string[];
  /** Maps https://github.com and https://api.github.com here (for public GitHub). */
  fetch: typeof fetch;
  close(): Promise<void>;
}

export async function startGitHubStandin(o: {
  clientId: string;
  clientSecret: string;
  users: GitHubUser[];
}): Promise<GitHubStandin> {
  const codes = new Map<string, { login: string; redirectUri: string; challenge: string }>();
  const tokens = new Map<string, string>();
  const server = http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => res.writeHead(500).end(String(e)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;
  const s: GitHubStandin = {
    port,
    base,
    users: new Map(o.users.map((u) => [u.login, u])),
    nextUser: o.users[0]!.login,
    pageSize: 100,
    faults: [],
    revoked: new Set(),
    nextLinkOverride: null,
    tokensOf: (login) => [...tokens].filter(([, l]) => l === login).map(([t]) => t),
    log: [],
    fetch: (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (url.origin === 'https://github.com')
        return fetch(`${base}${url.pathname}${url.search}`, init);
      if (url.origin !== 'https://api.github.com')
        throw new TypeError('fetch failed', { cause: { code: 'ENOTFOUND' } });
      const headers = new Headers(init?.headers);
      headers.set('x-standin-public', '1');
      return fetch(`${base}/api/v3${url.pathname}${url.search}`, { ...init, headers });
    }) as typeof fetch,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };

  const json = (res: http.ServerResponse, status: number, body: unknown, headers = {}) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
    res.end(JSON.stringify(body));
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', base);
    const scheme = (req.headers.authorization ?? '').split(' ')[0] ?? '';
    s.log.push(`${req.method} ${url.pathname}${url.search}${scheme ? ` [${scheme}]` : ''}`);
    if (url.pathname === '/login/oauth/authorize') {
      const q = url.searchParams;
      if (q.get('client_id') !== o.clientId) return json(res, 404, { message: 'Not Found' });
      const code = randomBytes(10).toString('hex');
      codes.set(code, {
        login: s.nextUser,
        redirectUri: q.get('redirect_uri') ?? '',
        challenge: q.get('code_challenge') ?? '',
      });
      const back = new URL(q.get('redirect_uri') ?? '');
      back.searchParams.set('code', code);
      back.searchParams.set('state', q.get('state') ?? '');
      res.writeHead(302, { location: back.href }).end();
      return;
    }
    if (url.pathname === '/login/oauth/access_token' && req.method === 'POST') {
      const form = new URLSearchParams(await body(req));
      if (form.get('client_id') !== o.clientId || form.get('client_secret') !== o.clientSecret)
        return json(res, 200, {
          error: 'incorrect_client_credentials',
          error_description: 'The client_id and/or client_secret passed are incorrect.',
          error_uri:
            'https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials',
        });
      const c = codes.get(form.get('code') ?? '');
      codes.delete(form.get('code') ?? '');
      const verifier = form.get('code_verifier') ?? '';
      if (
        !c ||
        c.redirectUri !== form.get('redirect_uri') ||
        createHash('sha256').update(verifier).digest('base64url') !== c.challenge
      )
        return json(res, 200, {
          error: 'bad_verification_code',
          error_description: 'The code passed is incorrect or expired.',
        });
      const token = `gho_${randomBytes(18).toString('base64url')}`;
      tokens.set(token, c.login);
      return json(res, 200, {
        access_token: token,
        token_type: 'bearer',
        scope: 'read:org,read:user,user:email',
      });
    }
    if (url.pathname.startsWith('/api/v3/')) return api(req, res, url, url.pathname.slice(7));
    res.writeHead(404).end();
  }

  function api(req: http.IncomingMessage, res: http.ServerResponse, url: URL, path: string): void {
    const fault = s.faults[0];
    if (fault) {
      if (--fault.times <= 0) s.faults.shift();
      return json(
        res,
        fault.status,
        {
          message:
            fault.status === 429 || fault.headers['x-ratelimit-remaining'] === '0'
              ? 'API rate limit exceeded for user ID 1.'
              : 'Forbidden',
          documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api',
        },
        fault.headers,
      );
    }
    // "REST API endpoints for meta" (GET /meta): answered without a token.
    if (path === '/meta') return json(res, 200, { verifiable_password_authentication: false });
    const token = /^(?:Bearer|token) (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const login = tokens.get(token);
    const user = login && !s.revoked.has(token) ? s.users.get(login) : undefined;
    if (!user)
      return json(res, 401, {
        message: 'Bad credentials',
        documentation_url: 'https://docs.github.com/rest',
      });
    const rate = {
      'x-ratelimit-limit': '5000',
      'x-ratelimit-remaining': '4999',
      'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + 3600),
    };
    if (path === '/user')
      return json(
        res,
        200,
        { login: user.login, id: user.id, name: user.name, type: 'User' },
        rate,
      );
    const lists: Record<string, unknown[]> = {
      '/user/emails': user.emails.map((e) => ({ ...e, visibility: e.primary ? 'private' : null })),
      '/user/orgs': user.orgs.map((login, i) => ({
        login,
        id: 1000 + i,
        url: `${base}/api/v3/orgs/${login}`,
      })),
      '/user/teams': user.teams.map((t, i) => ({
        id: 5000 + i,
        slug: t.slug,
        name: t.slug,
        organization: { login: t.org, id: 1000 },
      })),
    };
    const list = lists[path];
    if (!list) return json(res, 404, { message: 'Not Found' });
    const page = Number(url.searchParams.get('page') ?? '1');
    const size = Math.min(s.pageSize, Number(url.searchParams.get('per_page') ?? '30'));
    const items = list.slice((page - 1) * size, page * size);
    const pages = Math.max(1, Math.ceil(list.length / size));
    // Links point where the API was asked: the public API host or the enterprise /api/v3.
    const apiBase = req.headers['x-standin-public'] ? 'https://api.github.com' : `${base}/api/v3`;
    const link = (p: number) => {
      const u = new URL(`${apiBase}${path}`);
      u.search = url.search;
      u.searchParams.set('page', String(p));
      return `<${s.nextLinkOverride ?? u.href}>`;
    };
    const headers: Record<string, string> = { ...rate };
    const parts: string[] = [];
    if (page < pages) parts.push(`${link(page + 1)}; rel="next"`, `${link(pages)}; rel="last"`);
    if (page > 1) parts.push(`${link(1)}; rel="first"`, `${link(page - 1)}; rel="prev"`);
    if (parts.length) headers.link = parts.join(', ');
    return json(res, 200, items, headers);
  }

  return s;
}

function body(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (data += c));
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

/** A browser signing in; hops to github.com are answered by the stand-in. */
export async function githubSignIn(
  standin: GitHubStandin,
  startUrl: string,
  login: string,
): Promise<{ final: Resp; jar: CookieJar }> {
  standin.nextUser = login;
  const jar = new CookieJar();
  let url = startUrl;
  for (let i = 0; i < 10; i++) {
    const target = new URL(url);
    const local =
      target.origin === 'https://github.com'
        ? `${standin.base}${target.pathname}${target.search}`
        : url;
    const r = await request(local, { jar, headers: BROWSER_HEADERS });
    if (r.status < 300 || r.status >= 400 || !r.location) return { final: r, jar };
    url = new URL(r.location, local).href;
  }
  throw new Error('too many redirects');
}
