import type { Config } from '../config/types.js';
import { retryAfterMs } from './directory/graph.js';
import type {
  AuthorizationRequest,
  CallbackCheck,
  Provider,
  ProviderRefresh,
  ProviderTokens,
  RefreshInput,
  SignInResult,
} from './provider.js';

// GitHub (and GitHub Enterprise Server) speaks OAuth 2.0, not OpenID Connect: no ID token, no
// discovery. The user is read from the REST API with the user's token: /user (the numeric id is
// the stable subject; logins can be renamed), /user/emails (only an address GitHub marks
// primary and verified), /user/orgs and /user/teams as groups `org` and `org:team-slug`.
// Sources (docs.github.com, REST API version 2022-11-28): "Authorizing OAuth apps" (the web
// flow, the token endpoint answering errors with 200), "Scopes for OAuth apps" (read:org,
// user:email), "Using pagination in the REST API" (the Link header), "Rate limits for the REST
// API" (403/429 with x-ratelimit-remaining: 0 and x-ratelimit-reset; retry-after for secondary
// limits), "REST API endpoints for emails / organizations / teams".

const API_VERSION = '2022-11-28';
const MAX_PAGES = 50;
const MAX_WAIT_MS = 5_000;
const TIMEOUT_MS = 10_000;

type ApiResult<T> =
  | { kind: 'ok'; body: T }
  /** The token is no good (revoked, expired): the user must sign in again. */
  | { kind: 'rejected'; reason: string }
  | { kind: 'unavailable'; reason: string };

interface GitHubUser {
  id?: unknown;
  login?: unknown;
  name?: unknown;
}

export class GitHubProvider implements Provider {
  private readonly web: string;
  private readonly api: string;

  constructor(
    private readonly idp: Config['idp'],
    private readonly fetchImpl: typeof fetch,
  ) {
    this.web = idp.issuer.origin;
    this.api = idp.directoryUrl
      ? idp.directoryUrl.href.replace(/\/$/, '')
      : this.web === 'https://github.com'
        ? 'https://api.github.com'
        : `${this.web}/api/v3`;
  }

  authorizationUrl(r: AuthorizationRequest): URL {
    const url = new URL(`${this.web}/login/oauth/authorize`);
    url.search = new URLSearchParams({
      client_id: this.idp.clientId,
      redirect_uri: r.redirectUri,
      scope: this.idp.scopes.join(' '),
      state: r.state,
      code_challenge: r.codeChallenge,
      code_challenge_method: 'S256',
      allow_signup: 'false',
    }).toString();
    return url;
  }

  canRefresh(tokens: ProviderTokens): boolean {
    // OAuth app tokens do not expire: the same token re-reads the user and their groups.
    return !!(tokens.refreshToken || tokens.accessToken);
  }

  async signIn(callback: URL, check: CallbackCheck, now: number): Promise<SignInResult> {
    const code = callback.searchParams.get('code');
    if (!code)
      return {
        kind: 'failed',
        code: 'token_exchange_failed',
        message: 'GitHub sent no authorization code.',
      };
    const redirectUri = `${callback.origin}${callback.pathname}`;
    const t = await this.token(
      { code, redirect_uri: redirectUri, code_verifier: check.verifier },
      now,
    );
    if (t.kind === 'unreachable')
      return {
        kind: 'failed',
        code: 'idp_unreachable',
        message: 'GitHub could not be reached to finish the sign-in.',
      };
    if (t.kind === 'error')
      return {
        kind: 'failed',
        code: 'token_exchange_failed',
        message: `GitHub did not accept the sign-in (${t.reason}).`,
      };
    const who = await this.read(t.tokens.accessToken!);
    if (who.kind !== 'ok')
      return {
        kind: 'failed',
        code: 'directory_unavailable',
        message:
          'Your account and organizations could not be read from GitHub right now. Please try again in a minute.',
        log: { directory: who.reason },
      };
    return { kind: 'ok', sub: who.body.sub as string, claims: who.body, tokens: t.tokens };
  }

  async refresh(s: RefreshInput, now: number): Promise<ProviderRefresh> {
    let tokens: ProviderTokens = { accessToken: s.accessToken, refreshToken: s.refreshToken };
    if (s.refreshToken) {
      // A GitHub App with expiring user tokens: 8-hour access tokens, 6-month refresh tokens.
      const t = await this.token(
        { grant_type: 'refresh_token', refresh_token: s.refreshToken },
        now,
      );
      if (t.kind === 'unreachable') return { kind: 'transient', reason: t.reason };
      if (t.kind === 'error') return { kind: 'rejected', reason: t.reason };
      tokens = { ...t.tokens, refreshToken: t.tokens.refreshToken ?? s.refreshToken };
    }
    if (!tokens.accessToken) return { kind: 'rejected', reason: 'no GitHub token' };
    const who = await this.read(tokens.accessToken);
    if (who.kind === 'rejected') return who;
    if (who.kind === 'unavailable')
      return { kind: 'transient', reason: who.reason, source: 'directory' };
    if (who.body.sub !== s.sub) return { kind: 'rejected', reason: 'GitHub names another user' };
    return { kind: 'ok', claims: who.body, tokens };
  }

  /**
   * For `portcullis probe`: GitHub still knows this OAuth app and its secret. A made-up code
   * is answered `bad_verification_code` by a known client with the right secret, and
   * `incorrect_client_credentials` when the app was deleted or the secret is wrong.
   */
  async probeClient(): Promise<{ ok: boolean; detail: string }> {
    const code = `portcullis-probe-${crypto.randomUUID()}`;
    const t = await this.token({ code }, Date.now());
    if (t.kind === 'error' && t.reason === 'bad_verification_code')
      return {
        ok: true,
        detail: 'client id and secret accepted (bad_verification_code for a made-up code)',
      };
    if (t.kind === 'error' && t.reason === 'incorrect_client_credentials')
      return {
        ok: false,
        detail:
          'incorrect_client_credentials: GitHub does not know this client id and secret (the OAuth app was deleted, or the secret is wrong or was mangled on its way into the config); logins will fail',
      };
    if (t.kind === 'unreachable') return { ok: false, detail: `not reachable: ${t.reason}` };
    if (t.kind === 'ok')
      return {
        ok: false,
        detail: 'the token endpoint accepted a made-up code: this is not GitHub',
      };
    return { ok: false, detail: `unexpected answer: ${t.reason}` };
  }

  /** The REST API answers (GitHub Enterprise Server: `<base>/api/v3`). */
  async probeApi(): Promise<{ ok: boolean; detail: string; target: string }> {
    const target = `${this.api}/meta`;
    try {
      const res = await this.fetchImpl(target, {
        headers: {
          accept: 'application/vnd.github+json',
          'x-github-api-version': API_VERSION,
          'user-agent': 'portcullis',
        },
        redirect: 'manual',
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      await res.body?.cancel();
      if (res.ok) return { ok: true, detail: `answered HTTP ${res.status}`, target };
      return {
        ok: false,
        detail: `answered HTTP ${res.status}${res.status === 404 ? ' (wrong idp_provider_url or idp_directory_url)' : ''}`,
        target,
      };
    } catch (e) {
      return { ok: false, detail: `not reachable: ${cause(e)}`, target };
    }
  }

  private async token(
    params: Record<string, string>,
    now: number,
  ): Promise<
    | { kind: 'ok'; tokens: ProviderTokens }
    | { kind: 'error'; reason: string }
    | { kind: 'unreachable'; reason: string }
  > {
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.web}/login/oauth/access_token`, {
        method: 'POST',
        headers: {
          accept: 'application/json',
          'content-type': 'application/x-www-form-urlencoded',
          'user-agent': 'portcullis',
        },
        body: new URLSearchParams({
          client_id: this.idp.clientId,
          client_secret: this.idp.clientSecret,
          ...params,
        }).toString(),
        redirect: 'manual',
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (e) {
      return { kind: 'unreachable', reason: cause(e) };
    }
    const body = (await res.json().catch(() => null)) as Record<string, unknown> | null;
    if (res.status >= 500 || body === null)
      return { kind: 'unreachable', reason: `GitHub's token endpoint answered HTTP ${res.status}` };
    // GitHub answers OAuth errors (bad_verification_code, incorrect_client_credentials…) with 200.
    if (typeof body.error === 'string' || typeof body.access_token !== 'string') {
      const error = typeof body.error === 'string' ? body.error.slice(0, 64) : 'no access_token';
      return { kind: 'error', reason: error };
    }
    const num = (v: unknown) => (typeof v === 'number' && v > 0 ? v : undefined);
    const expiresIn = num(body.expires_in);
    return {
      kind: 'ok',
      tokens: {
        accessToken: body.access_token,
        accessTokenExp: expiresIn ? now + expiresIn * 1000 : undefined,
        refreshToken: typeof body.refresh_token === 'string' ? body.refresh_token : undefined,
      },
    };
  }

  /** The user as claims: sub, login, name, email (primary and verified only), groups. */
  private async read(token: string): Promise<ApiResult<Record<string, unknown>>> {
    const user = await this.get<GitHubUser>(`${this.api}/user`, token);
    if (user.kind !== 'ok') return user;
    const { id, login, name } = user.body.body;
    if (typeof id !== 'number' || typeof login !== 'string')
      return { kind: 'unavailable', reason: 'GitHub /user answered without id and login' };
    const emails = await this.pages<{ email?: unknown; primary?: unknown; verified?: unknown }>(
      `${this.api}/user/emails?per_page=100`,
      token,
    );
    if (emails.kind !== 'ok') return emails;
    const orgs = await this.pages<{ login?: unknown }>(`${this.api}/user/orgs?per_page=100`, token);
    if (orgs.kind !== 'ok') return orgs;
    const teams = await this.pages<{ slug?: unknown; organization?: { login?: unknown } }>(
      `${this.api}/user/teams?per_page=100`,
      token,
    );
    if (teams.kind !== 'ok') return teams;
    const primary = emails.body.find(
      (e) => e.primary === true && e.verified === true && typeof e.email === 'string',
    );
    const groups = new Set<string>();
    for (const o of orgs.body) if (typeof o.login === 'string') groups.add(o.login);
    for (const t of teams.body) {
      const org = t.organization?.login;
      if (typeof org === 'string' && typeof t.slug === 'string') {
        groups.add(org);
        groups.add(`${org}:${t.slug}`);
      }
    }
    const claims: Record<string, unknown> = {
      sub: String(id),
      login,
      preferred_username: login,
      name: typeof name === 'string' ? name : '',
      groups: [...groups],
    };
    if (primary) {
      claims.email = primary.email;
      claims.email_verified = true;
    }
    return { kind: 'ok', body: claims };
  }

  /** Every item of a paginated list, following rel="next" on the API's own origin. */
  private async pages<T>(first: string, token: string): Promise<ApiResult<T[]>> {
    const items: T[] = [];
    let url: string | null = first;
    for (let page = 0; url; page++) {
      if (page === MAX_PAGES)
        return { kind: 'unavailable', reason: `more than ${MAX_PAGES} pages` };
      const r: ApiResult<{ body: unknown; next: string | null }> = await this.get(url, token);
      if (r.kind !== 'ok') return r;
      if (!Array.isArray(r.body.body))
        return {
          kind: 'unavailable',
          reason: `GitHub answered ${new URL(url).pathname} without a list`,
        };
      items.push(...(r.body.body as T[]));
      url = r.body.next;
      if (url !== null && URL.parse(url)?.origin !== new URL(this.api).origin)
        return { kind: 'unavailable', reason: 'GitHub sent a next page on another host' };
    }
    return { kind: 'ok', body: items };
  }

  private async get<T>(
    url: string,
    token: string,
  ): Promise<ApiResult<{ body: T; next: string | null }>> {
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await this.fetchImpl(url, {
          headers: {
            authorization: `Bearer ${token}`,
            accept: 'application/vnd.github+json',
            'x-github-api-version': API_VERSION,
            'user-agent': 'portcullis',
          },
          redirect: 'manual',
          signal: AbortSignal.timeout(TIMEOUT_MS),
        });
      } catch (e) {
        return { kind: 'unavailable', reason: `GitHub could not be reached (${cause(e)})` };
      }
      if (res.ok) {
        const body = (await res.json().catch(() => undefined)) as T | undefined;
        if (body === undefined) return { kind: 'unavailable', reason: 'GitHub sent no JSON' };
        return { kind: 'ok', body: { body, next: nextLink(res.headers.get('link')) } };
      }
      await res.body?.cancel();
      const path = new URL(url).pathname;
      if (res.status === 401)
        return { kind: 'rejected', reason: 'GitHub no longer accepts the token (revoked?)' };
      const limited =
        res.status === 429 ||
        (res.status === 403 &&
          (res.headers.get('x-ratelimit-remaining') === '0' || res.headers.has('retry-after')));
      if (limited) {
        const wait = retryAfterMs(res.headers.get('retry-after'));
        if (attempt === 0 && wait !== null && wait <= MAX_WAIT_MS) {
          await new Promise((resolve) => setTimeout(resolve, wait));
          continue;
        }
        const reset = Number(res.headers.get('x-ratelimit-reset'));
        const until =
          Number.isFinite(reset) && reset > 0 ? new Date(reset * 1000).toISOString() : null;
        return {
          kind: 'unavailable',
          reason: `GitHub rate limit reached on ${path}${until ? ` until ${until}` : ''}`,
        };
      }
      if (res.status === 403)
        return {
          kind: 'unavailable',
          reason: `GitHub refused ${path} (403): the token lacks a scope (read:org, user:email) or an organization restricts OAuth app access`,
        };
      return { kind: 'unavailable', reason: `GitHub answered HTTP ${res.status} on ${path}` };
    }
  }
}

/** The rel="next" target of a Link header (RFC 8288), or null. */
export function nextLink(header: string | null): string | null {
  if (!header) return null;
  for (const part of header.split(',')) {
    const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (m && /(^|;)\s*rel="?([^";]*\s)?next(\s[^";]*)?"?\s*(;|$)/i.test(m[2]!)) return m[1]!;
  }
  return null;
}

function cause(e: unknown): string {
  const c = (e as { cause?: { code?: string } }).cause;
  return c?.code ?? (e instanceof Error ? e.name : String(e));
}
