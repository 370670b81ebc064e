// A local stand-in for Microsoft Entra ID (v2.0 endpoints) and the part of Microsoft Graph
// Portcullis reads, built from Microsoft's documented shapes:
// - discovery: learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc (the
//   /organizations/v2.0 document's issuer is "https://login.microsoftonline.com/{tenantid}/v2.0")
// - ID token: learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference
//   (tid, oid, groups as object ids, roles, the overage _claim_names/_claim_sources)
// - client credentials: learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow
// - Graph: learn.microsoft.com/en-us/graph/api/user-list-transitivememberof?view=graph-rest-1.0
//   (value[] of directoryObjects, @odata.nextLink) and learn.microsoft.com/en-us/graph/throttling
//   (429 with Retry-After in seconds)
// Portcullis reaches it through StartOptions.fetch, which sends Microsoft's host names here; the
// test plays the browser and does the same for the one browser hop to the authorize endpoint.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { CookieJar, request, type Resp } from './http.js';
import { BROWSER_HEADERS } from './login.js';

export const LOGIN = 'https://login.microsoftonline.com';
export const GRAPH = 'https://graph.microsoft.com';

export interface EntraUser {
  oid: string;
  tid: string;
  name: string;
  email: string;
  /** Object ids of the groups the user is in (transitively). */
  groups: string[];
  roles?: string[];
  /** xms_edov optional claim. */
  edov?: boolean;
}

export interface GraphFault {
  /** Answer the next `times` Graph requests with this status (429 with Retry-After when set). */
  status: number;
  retryAfter?: string;
  times: number;
}

export interface EntraStandin {
  port: number;
  users: Map<string, EntraUser>;
  /** The user the next authorize request signs in. */
  nextUser: string;
  /** Groups per page in Graph answers (Graph's own page size is up to 999). */
  pageSize: number;
  /** Above this many groups the ID token carries the overage pointer instead (Entra: 200). */
  overageLimit: number;
  graphFaults: GraphFault[];
  /** Graph is switched off: connections are cut. */
  graphDown: boolean;
  /** A next page link pointing elsewhere (a hostile or broken answer). */
  nextLinkOverride: string | null;
  /** Paths (with query) of every request, in order, prefixed by the host that was asked. */
  log: string[];
  /**
   * Claims the next ID token carries in place of the real ones (a forged `iss` or `tid`), then
   * cleared: what a broken or hostile token endpoint would answer, signed with the real key.
   */
  idTokenOverrides: Record<string, unknown> | null;
  /**
   * A v2.0 access token for this app's own API, as Entra issues it to a client of that API
   * (learn.microsoft.com/en-us/entra/identity-platform/access-tokens: aud is the client id,
   * iss the user's tenant, tid, oid, scp), signed with the stand-in's key; `overrides`
   * replace or add claims (undefined removes one).
   */
  accessToken(oid: string, overrides?: Record<string, unknown>): Promise<string>;
  /** The fetch Portcullis uses: Microsoft's hosts are answered here; anything else is refused. */
  fetch: typeof fetch;
  close(): Promise<void>;
}

interface Code {
  user: EntraUser;
  clientId: string;
  redirectUri: string;
  nonce: string;
  challenge: string;
}

export async function startEntraStandin(o: {
  clientId: string;
  clientSecret: string;
  users: EntraUser[];
}): Promise<EntraStandin> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomBytes(6).toString('hex');
  const jwk = { ...(await exportJWK(publicKey)), kid, use: 'sig', alg: 'RS256' };
  const codes = new Map<string, Code>();
  const refreshTokens = new Map<string, string>();
  const appTokens = new Map<string, string>();
  const server = http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      res.writeHead(500).end(String(e));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const s: EntraStandin = {
    port,
    users: new Map(o.users.map((u) => [u.oid, u])),
    nextUser: o.users[0]!.oid,
    pageSize: 100,
    overageLimit: 200,
    graphFaults: [],
    graphDown: false,
    nextLinkOverride: null,
    log: [],
    idTokenOverrides: null,
    accessToken: (oid, overrides = {}) => {
      const user = s.users.get(oid)!;
      return sign(
        {
          aud: o.clientId,
          iss: `${LOGIN}/${user.tid}/v2.0`,
          tid: user.tid,
          oid: user.oid,
          sub: createHash('sha256').update(`${user.oid}:${o.clientId}`).digest('base64url'),
          azp: randomUUID(),
          scp: 'access_as_user',
          name: user.name,
          preferred_username: user.email,
          email: user.email,
          ...(user.edov !== undefined ? { xms_edov: user.edov } : {}),
          ver: '2.0',
          ...overrides,
        },
        '1h',
      );
    },
    fetch: (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      s.log.push(`${url.host}${url.pathname}${url.search}`);
      if (url.origin !== LOGIN && url.origin !== GRAPH)
        throw new TypeError('fetch failed', { cause: { code: 'ENOTFOUND' } });
      if (url.origin === GRAPH && s.graphDown)
        throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
      const local = `http://127.0.0.1:${port}${url.origin === GRAPH ? '/_graph' : ''}${url.pathname}${url.search}`;
      return fetch(input instanceof Request ? new Request(local, input) : local, init);
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
  const oauthError = (res: http.ServerResponse, status: number, error: string) =>
    json(res, status, { error, error_description: `AADSTS00000: ${error}` });

  async function idToken(user: EntraUser, nonce: string | null): Promise<string> {
    const claims: Record<string, unknown> = {
      tid: user.tid,
      oid: user.oid,
      // `sub` is pairwise per app in Entra: never the same as oid.
      sub: createHash('sha256').update(`${user.oid}:${o.clientId}`).digest('base64url'),
      name: user.name,
      preferred_username: user.email,
      email: user.email,
      ver: '2.0',
    };
    if (nonce) claims.nonce = nonce;
    if (user.edov !== undefined) claims.xms_edov = user.edov;
    if (user.roles) claims.roles = user.roles;
    if (user.groups.length > s.overageLimit) {
      claims._claim_names = { groups: 'src1' };
      claims._claim_sources = {
        src1: { endpoint: `${GRAPH}/v1.0/users/${user.oid}/getMemberObjects` },
      };
    } else {
      claims.groups = user.groups;
    }
    const overrides = s.idTokenOverrides ?? {};
    s.idTokenOverrides = null;
    return sign(
      { ...claims, iss: `${LOGIN}/${user.tid}/v2.0`, aud: o.clientId, ...overrides },
      '1h',
    );
  }

  /** Signed with the tenant-independent key set every Entra tenant publishes. */
  function sign(claims: Record<string, unknown>, expires: string): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const body: Record<string, unknown> = { iat: now, nbf: now, ...claims };
    for (const [k, v] of Object.entries(body)) if (v === undefined) delete body[k];
    return new SignJWT(body)
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
      .setExpirationTime(expires)
      .sign(privateKey as CryptoKey);
  }

  function clientAuth(req: http.IncomingMessage, form: URLSearchParams): boolean {
    const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
    let id = form.get('client_id');
    let secret = form.get('client_secret');
    if (basic) {
      const [u, p] = Buffer.from(basic[1]!, 'base64').toString().split(':');
      id = decodeURIComponent(u ?? '');
      secret = decodeURIComponent(p ?? '');
    }
    return id === o.clientId && secret === o.clientSecret;
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${port}`);
    const path = url.pathname;
    if (path.startsWith('/_graph/')) return graph(req, res, url);
    let m = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/.exec(path);
    if (m) {
      const tenant = m[1]!;
      const shared = ['common', 'organizations', 'consumers'].includes(tenant);
      return json(res, 200, {
        issuer: `${LOGIN}/${shared ? '{tenantid}' : tenant}/v2.0`,
        authorization_endpoint: `${LOGIN}/${tenant}/oauth2/v2.0/authorize`,
        token_endpoint: `${LOGIN}/${tenant}/oauth2/v2.0/token`,
        jwks_uri: `${LOGIN}/${tenant}/discovery/v2.0/keys`,
        userinfo_endpoint: `${GRAPH}/oidc/userinfo`,
        end_session_endpoint: `${LOGIN}/${tenant}/oauth2/v2.0/logout`,
        response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
        response_modes_supported: ['query', 'fragment', 'form_post'],
        subject_types_supported: ['pairwise'],
        id_token_signing_alg_values_supported: ['RS256'],
        scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
        token_endpoint_auth_methods_supported: [
          'client_secret_post',
          'private_key_jwt',
          'client_secret_basic',
        ],
        claims_supported: [
          'sub',
          'iss',
          'aud',
          'exp',
          'iat',
          'nonce',
          'tid',
          'oid',
          'email',
          'name',
        ],
        tenant_region_scope: null,
        cloud_instance_name: 'microsoftonline.com',
      });
    }
    if (/^\/[^/]+\/discovery\/v2\.0\/keys$/.test(path)) return json(res, 200, { keys: [jwk] });
    m = /^\/([^/]+)\/oauth2\/v2\.0\/authorize$/.exec(path);
    if (m) {
      const q = url.searchParams;
      if (q.get('client_id') !== o.clientId) return oauthError(res, 400, 'unauthorized_client');
      if (q.get('code_challenge_method') !== 'S256') return oauthError(res, 400, 'invalid_request');
      const user = s.users.get(s.nextUser)!;
      const code = randomBytes(16).toString('base64url');
      codes.set(code, {
        user,
        clientId: o.clientId,
        redirectUri: q.get('redirect_uri') ?? '',
        nonce: q.get('nonce') ?? '',
        challenge: q.get('code_challenge') ?? '',
      });
      const back = new URL(q.get('redirect_uri') ?? '');
      back.searchParams.set('code', code);
      back.searchParams.set('state', q.get('state') ?? '');
      back.searchParams.set('session_state', randomUUID());
      res.writeHead(302, { location: back.href }).end();
      return;
    }
    m = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(path);
    if (m && req.method === 'POST') {
      const form = new URLSearchParams(await body(req));
      if (!clientAuth(req, form)) return oauthError(res, 401, 'invalid_client');
      const grant = form.get('grant_type');
      if (grant === 'client_credentials') {
        if (form.get('scope') !== `${GRAPH}/.default`) return oauthError(res, 400, 'invalid_scope');
        const token = `app.${m[1]}.${randomBytes(12).toString('base64url')}`;
        appTokens.set(token, m[1]!);
        return json(res, 200, { token_type: 'Bearer', expires_in: 3599, access_token: token });
      }
      let user: EntraUser | undefined;
      let nonce: string | null = null;
      if (grant === 'authorization_code') {
        const c = codes.get(form.get('code') ?? '');
        codes.delete(form.get('code') ?? '');
        const verifier = form.get('code_verifier') ?? '';
        if (
          !c ||
          c.redirectUri !== form.get('redirect_uri') ||
          createHash('sha256').update(verifier).digest('base64url') !== c.challenge
        )
          return oauthError(res, 400, 'invalid_grant');
        user = c.user;
        nonce = c.nonce;
      } else if (grant === 'refresh_token') {
        const oid = refreshTokens.get(form.get('refresh_token') ?? '');
        user = oid ? s.users.get(oid) : undefined;
        if (!user) return oauthError(res, 400, 'invalid_grant');
      } else return oauthError(res, 400, 'unsupported_grant_type');
      const refresh = randomBytes(16).toString('base64url');
      refreshTokens.set(refresh, user.oid);
      return json(res, 200, {
        token_type: 'Bearer',
        scope: 'openid profile email',
        expires_in: 3600,
        access_token: `user.${user.oid}.${randomBytes(12).toString('base64url')}`,
        refresh_token: refresh,
        id_token: await idToken(user, nonce),
      });
    }
    res.writeHead(404).end();
  }

  async function graph(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
  ): Promise<void> {
    const path = url.pathname.slice('/_graph'.length);
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    if (path === '/oidc/userinfo') {
      const oid = /^user\.([^.]+)\./.exec(bearer)?.[1];
      const user = oid ? s.users.get(oid) : undefined;
      if (!user) return json(res, 401, { error: { code: 'InvalidAuthenticationToken' } });
      return json(res, 200, {
        sub: createHash('sha256').update(`${user.oid}:${o.clientId}`).digest('base64url'),
        name: user.name,
        email: user.email,
      });
    }
    const fault = s.graphFaults[0];
    if (fault) {
      if (--fault.times <= 0) s.graphFaults.shift();
      const headers: Record<string, string> = fault.retryAfter
        ? { 'retry-after': fault.retryAfter }
        : {};
      return json(
        res,
        fault.status,
        { error: { code: fault.status === 429 ? 'TooManyRequests' : 'Forbidden', message: '' } },
        headers,
      );
    }
    const tenant = appTokens.get(bearer);
    if (!tenant) return json(res, 401, { error: { code: 'InvalidAuthenticationToken' } });
    const m = /^\/v1\.0\/users\/([^/]+)\/transitiveMemberOf\/microsoft\.graph\.group$/.exec(path);
    const user = m ? s.users.get(m[1]!) : undefined;
    if (!m) return json(res, 400, { error: { code: 'BadRequest' } });
    if (!user || user.tid !== tenant)
      return json(res, 404, { error: { code: 'Request_ResourceNotFound' } });
    const skip = Number(url.searchParams.get('$skiptoken') ?? '0');
    const page = user.groups.slice(skip, skip + s.pageSize);
    const out: Record<string, unknown> = {
      '@odata.context': `${GRAPH}/v1.0/$metadata#groups(id)`,
      value: page.map((id) => ({ '@odata.type': '#microsoft.graph.group', id })),
    };
    if (skip + s.pageSize < user.groups.length) {
      const next = new URL(`${GRAPH}${path}`);
      next.search = url.search;
      next.searchParams.set('$skiptoken', String(skip + s.pageSize));
      out['@odata.nextLink'] = s.nextLinkOverride ?? next.href;
    }
    return json(res, 200, out);
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

/**
 * A browser signing in: the app sends it to Microsoft's authorize endpoint, which the test
 * answers from the stand-in (as DNS would), then back to Portcullis's callback and the app.
 */
export async function entraSignIn(
  standin: EntraStandin,
  startUrl: string,
  oid: string,
): Promise<{ final: Resp; jar: CookieJar; chain: Resp[] }> {
  standin.nextUser = oid;
  const jar = new CookieJar();
  const chain: Resp[] = [];
  let url = startUrl;
  for (let i = 0; i < 10; i++) {
    const target = new URL(url);
    const viaStandin = target.origin === LOGIN;
    const r = await request(
      viaStandin ? `http://127.0.0.1:${standin.port}${target.pathname}${target.search}` : url,
      { jar, headers: BROWSER_HEADERS },
    );
    chain.push(r);
    if (r.status < 300 || r.status >= 400 || !r.location) return { final: r, jar, chain };
    url = new URL(r.location, url).href;
  }
  throw new Error('too many redirects');
}
