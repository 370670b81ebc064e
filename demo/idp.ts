// A real OpenID Provider (panva's oidc-provider) for the demo and the integration tests.
// Everything is in memory and per instance, so several IdPs can run in one test process.
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import type {
  Adapter,
  AdapterPayload,
  GrantInstance,
  Provider as ProviderInstance,
} from 'oidc-provider';

export interface DemoUser {
  id: string;
  password: string;
  email: string;
  name: string;
  groups: string[];
  /** default true; 'omitted' sends no email_verified claim at all (as Entra ID does) */
  emailVerified?: boolean | 'omitted';
  disabled?: boolean;
  /**
   * More claims in the shape a particular IdP sends them (realm_access, cognito:groups,
   * namespaced Auth0 claims…): released with the `groups` scope when IdpOptions.extraClaims
   * names them.
   */
  claims?: Record<string, unknown>;
}

export interface IdpClient {
  client_id: string;
  client_secret: string;
  redirect_uris: string[];
  post_logout_redirect_uris?: string[];
  /** default: authorization_code + refresh_token */
  grant_types?: string[];
  /** OpenID Connect Back-Channel Logout 1.0 (IdpOptions.backchannelLogout must be on) */
  backchannel_logout_uri?: string;
  backchannel_logout_session_required?: boolean;
}

export interface IdpOptions {
  /** 0 (default) = random */
  port?: number;
  clients: IdpClient[];
  /** default: alice & bob */
  users?: DemoUser[];
  /** seconds, default 3600 */
  accessTokenTtl?: number;
  /** seconds, default 3600 */
  idTokenTtl?: number;
  /** seconds, default 14 days */
  refreshTokenTtl?: number;
  /** Claim names (beyond the standard ones) released with the `groups` scope; values from DemoUser.claims. */
  extraClaims?: string[];
  /** when set, access tokens for that resource (and client_credentials tokens) are JWTs */
  jwtAccessTokenAudience?: string;
  /**
   * Rewrites every token endpoint answer before it is sent: lets a test play an IdP (or a man
   * in the middle) that hands out tampered tokens.
   */
  tokenResponse?: (
    body: Record<string, unknown>,
  ) => Record<string, unknown> | Promise<Record<string, unknown>>;
  /** Enables back-channel logout: end_session posts a Logout Token to each client's URI. */
  backchannelLogout?: boolean;
  /**
   * How the IdP makes its own requests (back-channel logout posts). oidc-provider's default
   * refuses loopback and private addresses (SSRF protection), where every test service runs.
   */
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
}

export interface RunningIdp {
  issuer: string;
  port: number;
  users: Map<string, DemoUser>;
  setGroups(userId: string, groups: string[]): void;
  /** the user can no longer log in and their refresh tokens fail with invalid_grant */
  disableUser(userId: string): void;
  /** simulates a client deleted at the IdP: the token endpoint then answers invalid_client */
  removeClient(clientId: string): void;
  /** How many requests reached `path` (e.g. /token/introspection): what relying parties cost the IdP. */
  requestCount(path: string): number;
  /**
   * Signs any claims with the IdP's own key (header alg RS256 and its kid, plus `header`): lets a
   * test play an IdP that sends a malformed Logout Token or other token.
   */
  signJwt(payload: JWTPayload, header?: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

function emailVerifiedClaim(u: DemoUser): { email_verified?: boolean } {
  return u.emailVerified === 'omitted' ? {} : { email_verified: u.emailVerified ?? true };
}

/** Holds back the JSON body koa writes, passes it through `rewrite`, then sends it. */
function tamperWith(res: ServerResponse, rewrite: NonNullable<IdpOptions['tokenResponse']>): void {
  const end = res.end.bind(res) as (chunk?: unknown) => ServerResponse;
  res.end = ((chunk?: unknown) => {
    const text =
      typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('utf8') : '';
    let body: Record<string, unknown> | null = null;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // not JSON: passed on as it is
    }
    if (!body || res.statusCode !== 200) return end(chunk);
    Promise.resolve(rewrite(body)).then(
      (out) => {
        const json = JSON.stringify(out);
        res.setHeader('content-length', Buffer.byteLength(json));
        end(json);
      },
      (err: unknown) => {
        console.error('demo idp tokenResponse failed:', err);
        res.destroy();
      },
    );
    return res;
  }) as typeof res.end;
}

export const DEMO_USERS: DemoUser[] = [
  {
    id: 'alice',
    password: 'alice',
    email: 'alice@example.com',
    name: 'Alice Example',
    groups: ['admins', 'eng'],
  },
  { id: 'bob', password: 'bob', email: 'bob@example.com', name: 'Bob Example', groups: ['eng'] },
];

type OidcModule = typeof import('oidc-provider');
let modulePromise: Promise<OidcModule> | undefined;

// oidc-provider warns at import time that Node 20 is not its preferred runtime; it works,
// and the warning would be noise in every test run, so only that one line is swallowed.
function loadOidcProvider(): Promise<OidcModule> {
  modulePromise ??= (async () => {
    const original = console.warn;
    console.warn = (...args: unknown[]) => {
      if (
        typeof args[0] === 'string' &&
        args[0].includes('oidc-provider WARNING: Unsupported runtime')
      )
        return;
      original(...args);
    };
    try {
      return await import('oidc-provider');
    } finally {
      console.warn = original;
    }
  })();
  return modulePromise;
}

interface Entry {
  payload: AdapterPayload;
  expiresAt?: number;
}

// The bundled memory adapter keeps one module-global LRU shared by every Provider in the
// process (capped at 1000 entries); tests start many IdPs, so each gets its own store.
// Clients live here too (not in the static `clients` config, which cannot be changed at
// runtime) so removeClient() can make them disappear.
function makeAdapter(clients: Map<string, AdapterPayload>) {
  const store = new Map<string, Entry>();
  const grantMembers = new Map<string, Set<string>>();
  const uidIndex = new Map<string, string>();
  const userCodeIndex = new Map<string, string>();
  let writes = 0;

  const live = (key: string): AdapterPayload | undefined => {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry.payload;
  };

  return class MemoryAdapter implements Adapter {
    constructor(private readonly model: string) {}

    private key(id: string): string {
      return `${this.model}:${id}`;
    }

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      const key = this.key(id);
      if (this.model === 'Client') {
        clients.set(id, structuredClone(payload));
        return;
      }
      // Expired entries are otherwise only dropped when looked up; a long demo run would grow.
      if (++writes % 500 === 0) {
        const now = Date.now();
        for (const [k, e] of store)
          if (e.expiresAt !== undefined && e.expiresAt <= now) store.delete(k);
      }
      store.set(key, {
        payload: structuredClone(payload),
        expiresAt: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined,
      });
      if (payload.grantId) {
        let members = grantMembers.get(payload.grantId);
        if (!members) grantMembers.set(payload.grantId, (members = new Set()));
        members.add(key);
      }
      if (typeof payload.uid === 'string') uidIndex.set(payload.uid, id);
      if (typeof payload.userCode === 'string') userCodeIndex.set(payload.userCode, id);
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.model === 'Client') {
        const c = clients.get(id);
        return c ? structuredClone(c) : undefined;
      }
      const p = live(this.key(id));
      return p ? structuredClone(p) : undefined;
    }

    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      const id = uidIndex.get(uid);
      return id === undefined ? undefined : this.find(id);
    }

    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      const id = userCodeIndex.get(userCode);
      return id === undefined ? undefined : this.find(id);
    }

    async consume(id: string): Promise<void> {
      const p = live(this.key(id));
      if (p) p.consumed = Math.floor(Date.now() / 1000);
    }

    async destroy(id: string): Promise<void> {
      if (this.model === 'Client') {
        clients.delete(id);
        return;
      }
      const key = this.key(id);
      const p = store.get(key)?.payload;
      store.delete(key);
      if (p && typeof p.uid === 'string' && uidIndex.get(p.uid) === id) uidIndex.delete(p.uid);
      if (p && typeof p.userCode === 'string' && userCodeIndex.get(p.userCode) === id)
        userCodeIndex.delete(p.userCode);
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      const members = grantMembers.get(grantId);
      grantMembers.delete(grantId);
      for (const key of members ?? []) store.delete(key);
    }
  };
}

const esc = (s: unknown): string =>
  String(s).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
body{font-family:system-ui,sans-serif;background:#f3f4f6;margin:0;padding:40px 16px}
.card{max-width:360px;margin:0 auto;background:#fff;border-radius:8px;padding:24px 28px;box-shadow:0 1px 4px rgba(0,0,0,.15)}
h1{font-size:1.3em;margin-top:0}label{display:block;margin:12px 0 4px}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:8px;font-size:1em}
button{margin-top:16px;width:100%;padding:10px;font-size:1em;background:#2563eb;color:#fff;border:0;border-radius:4px;cursor:pointer}
.error{color:#b91c1c;background:#fee2e2;padding:8px;border-radius:4px}.muted{color:#6b7280;font-size:.9em}
</style>
</head>
<body><div class="card">
${body}
</div></body>
</html>`;
}

function loginPage(
  uid: string,
  clientId: string | undefined,
  error?: string,
  username = '',
): string {
  return page(
    'Sign in - Demo IdP',
    `<h1>Sign in to the Demo IdP</h1>
<p class="muted">to continue to <strong>${esc(clientId ?? 'the application')}</strong></p>
${error ? `<p class="error" id="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="username">Username</label>
<input type="text" id="username" name="username" value="${esc(username)}" autofocus required>
<label for="password">Password</label>
<input type="password" id="password" name="password" required>
<button type="submit" id="submit">Sign in</button>
</form>
<p><a id="cancel" href="/interaction/${esc(uid)}/abort">Cancel</a></p>`,
  );
}

async function readForm(req: IncomingMessage, limit = 64 * 1024): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new Error('form body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(html),
  });
  res.end(html);
}

const SCOPES = ['openid', 'email', 'profile', 'groups', 'offline_access'];

// One signing key and cookie key per process, so ID tokens and JWTs signed before an IdP
// restart (same port, same test) still verify against the restarted IdP's JWKS.
let keysPromise:
  Promise<{ jwk: Record<string, unknown>; privateKey: CryptoKey; cookieKey: string }> | undefined;
function processKeys() {
  keysPromise ??= (async () => {
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    const jwk = {
      ...(await exportJWK(privateKey)),
      kid: randomBytes(8).toString('hex'),
      alg: 'RS256',
      use: 'sig',
    };
    return { jwk, privateKey, cookieKey: randomBytes(32).toString('base64url') };
  })();
  return keysPromise;
}

export async function startIdp(opts: IdpOptions): Promise<RunningIdp> {
  const { Provider, errors } = await loadOidcProvider();

  const users = new Map<string, DemoUser>();
  for (const u of opts.users ?? DEMO_USERS) users.set(u.id, { ...u, groups: [...u.groups] });

  const clients = new Map<string, AdapterPayload>();
  for (const c of opts.clients) {
    const grantTypes = c.grant_types ?? ['authorization_code', 'refresh_token'];
    clients.set(c.client_id, {
      client_id: c.client_id,
      client_secret: c.client_secret,
      redirect_uris: [...c.redirect_uris],
      post_logout_redirect_uris: [...(c.post_logout_redirect_uris ?? [])],
      grant_types: grantTypes,
      response_types: grantTypes.includes('authorization_code') ? ['code'] : [],
      token_endpoint_auth_method: 'client_secret_basic',
      ...(c.backchannel_logout_uri
        ? {
            backchannel_logout_uri: c.backchannel_logout_uri,
            backchannel_logout_session_required: c.backchannel_logout_session_required ?? true,
          }
        : {}),
    });
  }

  const accessTokenTtl = opts.accessTokenTtl ?? 3600;
  const idTokenTtl = opts.idTokenTtl ?? 3600;
  const refreshTokenTtl = opts.refreshTokenTtl ?? 14 * 24 * 3600;
  const audience = opts.jwtAccessTokenAudience;

  const { jwk, privateKey, cookieKey } = await processKeys();

  let provider: ProviderInstance | undefined;
  let handle: http.RequestListener | undefined;
  // Interaction paths carry a fresh uid each and are not counted; the rest are a fixed few,
  // but a cap keeps a long demo run that someone probes with random paths bounded.
  const counts = new Map<string, number>();

  const server = http.createServer((req, res) => {
    if (!handle || !provider) {
      res.writeHead(503).end();
      return;
    }
    const path = (req.url ?? '/').split('?')[0]!;
    if (path.startsWith('/interaction/')) {
      interactions(provider, req, res, path).catch((err: unknown) => {
        if (!res.headersSent) {
          const known = err instanceof errors.SessionNotFound;
          sendHtml(
            res,
            known ? 400 : 500,
            page(
              'Error',
              `<h1>Sign-in failed</h1><p class="error">${esc(
                known
                  ? 'This sign-in attempt has expired or was already completed. Start again from the application.'
                  : (err as Error).message,
              )}</p>`,
            ),
          );
        } else {
          res.destroy();
        }
      });
      return;
    }
    if (counts.has(path) || counts.size < 1000) counts.set(path, (counts.get(path) ?? 0) + 1);
    if (opts.tokenResponse && path === '/token') {
      tamperWith(res, opts.tokenResponse);
    }
    handle(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}`;

  const findAccount = async (_ctx: unknown, sub: string) => {
    const user = users.get(sub);
    if (!user || user.disabled) return undefined;
    return {
      accountId: user.id,
      // Claims are read at the moment a token is minted, so setGroups() shows up on the
      // next refresh; oidc-provider itself filters them down to the granted scopes.
      async claims() {
        const u = users.get(sub) ?? user;
        return {
          sub: u.id,
          email: u.email,
          ...emailVerifiedClaim(u),
          name: u.name,
          preferred_username: u.id,
          groups: [...u.groups],
          ...structuredClone(u.claims ?? {}),
        };
      },
    };
  };

  // There is no consent screen: every grant gets whatever the request asked for, so the
  // consent prompt's checks always pass. An existing grant is widened rather than replaced.
  const loadExistingGrant = async (ctx: any): Promise<GrantInstance | undefined> => {
    const oidc = ctx.oidc;
    const p = oidc.provider as ProviderInstance;
    const grantId: string | undefined =
      oidc.result?.consent?.grantId ?? oidc.session.grantIdFor(oidc.client.clientId);
    let grant = grantId ? await p.Grant.find(grantId) : undefined;
    if (grant && grant.accountId !== oidc.session.accountId) grant = undefined;
    grant ??= new p.Grant({ accountId: oidc.session.accountId, clientId: oidc.client.clientId });
    const oidcScopes = [...(oidc.requestParamOIDCScopes as Set<string>)];
    if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
    const claims = [...(oidc.requestParamClaims as Set<string>)];
    if (claims.length) grant.addOIDCClaims(claims);
    for (const [indicator, rs] of Object.entries(
      oidc.resourceServers as Record<string, { scope: string }>,
    )) {
      grant.addResourceScope(indicator, rs.scope);
    }
    await grant.save();
    return grant;
  };

  const resourceServerInfo = () => ({
    scope: 'api',
    audience,
    accessTokenFormat: 'jwt',
    accessTokenTTL: accessTokenTtl,
    jwt: { sign: { alg: 'RS256' } },
  });

  const outgoing = opts.fetch;
  const configuration = {
    ...(outgoing
      ? {
          // oidc-provider's SSRF-guarding dispatcher is dropped with the rest of its options.
          fetch: (url: string, o: RequestInit & { dispatcher?: unknown }) => {
            const { dispatcher: _ignored, ...init } = o;
            return outgoing(url, init);
          },
        }
      : {}),
    adapter: makeAdapter(clients),
    clients: [],
    jwks: { keys: [jwk] },
    cookies: { keys: [cookieKey] },
    scopes: SCOPES,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups', ...(opts.extraClaims ?? [])],
    },
    // Without this, scope-derived claims go only to userinfo whenever an access token is
    // issued too; relying parties here read identity straight from the ID token.
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { required: () => true },
    findAccount,
    loadExistingGrant,
    // The default also demands the offline_access scope, which oidc-provider drops unless
    // prompt=consent is sent; any client registered for refresh_token gets one instead.
    issueRefreshToken: async (_ctx: unknown, client: any, code: any) =>
      client.grantTypeAllowed('refresh_token') && code.kind === 'AuthorizationCode',
    rotateRefreshToken: true,
    // expiresWithSession keeps its default: without offline_access (which needs prompt=consent)
    // tokens are bound to the IdP session, so RP-initiated logout revokes them.
    extraTokenClaims: async (_ctx: unknown, token: any) => {
      if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
      const u = users.get(token.accountId);
      if (!u) return undefined;
      return {
        email: u.email,
        ...emailVerifiedClaim(u),
        name: u.name,
        preferred_username: u.id,
        groups: [...u.groups],
      };
    },
    interactions: {
      url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}`,
    },
    ttl: {
      AccessToken: accessTokenTtl,
      ClientCredentials: accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: idTokenTtl,
      RefreshToken: refreshTokenTtl,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
      DeviceCode: 600,
      BackchannelAuthenticationRequest: 600,
      PreAuthorizedCode: 600,
    },
    clientBasedCORS: (_ctx: unknown, origin: string, client: any) =>
      origin !== 'null' &&
      (client.redirectUris as string[]).some((u) => URL.parse(u)?.origin === origin),
    renderError: async (ctx: any, out: Record<string, string>) => {
      ctx.type = 'html';
      ctx.body = page(
        'Error - Demo IdP',
        `<h1>Something went wrong</h1>${Object.entries(out)
          .map(
            ([k, v]) => `<p><strong>${esc(k)}</strong>: <span id="${esc(k)}">${esc(v)}</span></p>`,
          )
          .join('')}`,
      );
    },
    features: {
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: opts.backchannelLogout === true },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx: any, client: any, token: any) =>
          !(client.clientAuthMethod === 'none' && token.clientId !== ctx.oidc.client.clientId),
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx: unknown, client: any, token: any) => {
          if (token.clientId === client.clientId) return true;
          if (client.clientAuthMethod === 'none') return false;
          throw new errors.InvalidRequest!(
            'client is not authorized to revoke the presented token',
          );
        },
      },
      rpInitiatedLogout: {
        enabled: true,
        // No confirmation step: the page posts itself (the same self-submitting form that
        // oidc-provider uses for form_post), so the browser lands on post_logout_redirect_uri.
        logoutSource: async (ctx: any, form: string) => {
          const autoForm = form.replace(
            '</form>',
            '<input type="hidden" name="logout" value="yes"/><noscript><button type="submit" id="submit">Sign out</button></noscript></form>',
          );
          ctx.type = 'html';
          ctx.body = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Signing out</title>
<script>document.addEventListener('DOMContentLoaded', function () { document.forms[0].submit() });</script>
</head><body>${autoForm}</body></html>`;
        },
        postLogoutSuccessSource: async (ctx: any) => {
          ctx.type = 'html';
          ctx.body = page(
            'Signed out - Demo IdP',
            '<h1>Signed out</h1><p>You have been signed out of the Demo IdP.</p>',
          );
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx: any, _client: unknown, oneOf?: string[]) => {
          if (oneOf) return oneOf;
          if (
            audience &&
            ctx.oidc.route === 'token' &&
            ctx.oidc.params?.grant_type === 'client_credentials'
          )
            return audience;
          return undefined;
        },
        // A code or refresh token obtained for the audience keeps yielding JWTs for it
        // without the client repeating `resource` at the token endpoint.
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, indicator: string) => {
          if (audience && indicator === audience) return resourceServerInfo();
          throw new errors.InvalidTarget();
        },
      },
    },
  };

  provider = new Provider(issuer, configuration);
  provider.on('server_error', (_ctx: unknown, err: Error) => {
    console.error('demo idp server_error:', err);
  });
  provider.on('backchannel.error', (_ctx: unknown, err: Error) => {
    console.error('demo idp backchannel logout failed:', err.message);
  });
  // Client metadata is only validated when first looked up; fail fast on a bad test setup.
  for (const id of clients.keys()) {
    try {
      await provider.Client.find(id);
    } catch (err) {
      server.closeAllConnections();
      server.close();
      throw err;
    }
  }
  handle = provider.callback();

  return {
    issuer,
    port,
    users,
    setGroups(userId, groups) {
      const u = users.get(userId);
      if (!u) throw new Error(`no such user: ${userId}`);
      u.groups = [...groups];
    },
    disableUser(userId) {
      const u = users.get(userId);
      if (!u) throw new Error(`no such user: ${userId}`);
      u.disabled = true;
    },
    removeClient(clientId) {
      clients.delete(clientId);
    },
    requestCount(path) {
      return counts.get(path) ?? 0;
    },
    async signJwt(payload, header = {}) {
      return new SignJWT(payload)
        .setProtectedHeader({ ...header, alg: 'RS256', kid: jwk.kid as string })
        .sign(privateKey);
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };

  async function interactions(
    p: ProviderInstance,
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
  ): Promise<void> {
    const m = /^\/interaction\/([^/]+)(?:\/(login|abort))?\/?$/.exec(path);
    if (!m) {
      sendHtml(res, 404, page('Not found', '<h1>Not found</h1>'));
      return;
    }
    const action = m[2];
    const details = await p.interactionDetails(req, res);
    if (details.uid !== m[1]) throw new errors.SessionNotFound('interaction mismatch');

    if (action === 'abort') {
      await p.interactionFinished(
        req,
        res,
        {
          error: 'access_denied',
          error_description: 'End-User aborted interaction',
        },
        { mergeWithLastSubmission: false },
      );
      return;
    }

    if (details.prompt.name === 'consent') {
      // Only reachable if a check outside loadExistingGrant asks (e.g. native clients):
      // grant exactly what is missing and carry on without showing anything.
      const d = details.prompt.details as {
        missingOIDCScope?: string[];
        missingOIDCClaims?: string[];
        missingResourceScopes?: Record<string, string[]>;
      };
      const accountId = details.session?.accountId;
      const clientId = details.params.client_id;
      if (!accountId || !clientId) throw new errors.SessionNotFound('no session');
      const grant =
        (details.grantId ? await p.Grant.find(details.grantId) : undefined) ??
        new p.Grant({ accountId, clientId });
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {}))
        grant.addResourceScope(indicator, scopes.join(' '));
      const id = await grant.save();
      await p.interactionFinished(
        req,
        res,
        { consent: { grantId: id } },
        { mergeWithLastSubmission: true },
      );
      return;
    }

    if (req.method === 'GET' && !action) {
      sendHtml(
        res,
        200,
        loginPage(
          details.uid,
          details.params.client_id,
          undefined,
          details.params.login_hint ?? '',
        ),
      );
      return;
    }
    if (req.method === 'POST' && action === 'login') {
      const form = await readForm(req);
      const username = (form.get('username') ?? '').trim();
      const password = form.get('password') ?? '';
      const user = users.get(username) ?? [...users.values()].find((u) => u.email === username);
      if (!user || user.password !== password || user.disabled) {
        sendHtml(
          res,
          401,
          loginPage(
            details.uid,
            details.params.client_id,
            user?.disabled && user.password === password
              ? 'This account is disabled.'
              : 'Invalid username or password.',
            username,
          ),
        );
        return;
      }
      await p.interactionFinished(
        req,
        res,
        { login: { accountId: user.id } },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    res.writeHead(405, { allow: action ? 'POST' : 'GET' }).end();
  }
}
