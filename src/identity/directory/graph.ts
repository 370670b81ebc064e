// Microsoft Graph, for the groups an Entra ID token leaves out. Past about 200 groups (150 in
// SAML, 6 in the implicit flow) Entra replaces the `groups` claim with the "overage" pointer
// `_claim_names: { groups: "src1" }` / `_claim_sources` (or `hasgroups: true`): the groups must
// then be read from Graph. Portcullis reads them with its own application identity (client
// credentials in the user's tenant, application permission GroupMember.Read.All with admin
// consent), so a background session refresh needs no user token with Graph scopes.
// Shapes: learn.microsoft.com/en-us/graph/api/user-list-transitivememberof?view=graph-rest-1.0
// (value[], @odata.nextLink), learn.microsoft.com/en-us/graph/throttling (429 + Retry-After),
// learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference (groups, _claim_names).

import { TENANT_ID } from '../entra-tenant.js';

export type DirectoryResult =
  | { kind: 'ok'; groups: string[] }
  /** The directory could not be asked or did not answer usefully: try again later. */
  | { kind: 'unavailable'; reason: string };

export interface GraphSettings {
  /** The issuer's origin (https://login.microsoftonline.com): the tenant's token endpoint lives there. */
  loginOrigin: string;
  /** https://graph.microsoft.com, or a national cloud's Graph. */
  graphUrl: string;
  clientId: string;
  clientSecret: string;
  fetch: typeof fetch;
}

/** Entra said the token's groups are incomplete. */
export function hasGroupsOverage(claims: Record<string, unknown>): boolean {
  if (claims.hasgroups === true || claims.hasgroups === 'true') return true;
  const names = claims._claim_names;
  return typeof names === 'object' && names !== null && 'groups' in names;
}

const TENANT_RE = TENANT_ID;
/** Object ids are GUIDs too. */
const ID_RE = TENANT_ID;
/** Enough for 100,000 groups at Graph's page size of 999: a bound, not a target. */
const MAX_PAGES = 100;
/** A Retry-After longer than this is not waited for in a request: the answer is "later". */
const MAX_WAIT_MS = 5_000;
const TIMEOUT_MS = 10_000;

export class GraphDirectory {
  private readonly tokens = new Map<string, { token: string; exp: number }>();

  constructor(private readonly s: GraphSettings) {}

  /** Every group (object id) the user is a member of, directly or through nesting. */
  async groupsOf(tenant: string, userId: string, now = Date.now()): Promise<DirectoryResult> {
    // Both end up in URLs: only the GUID shapes Entra issues are accepted.
    if (!TENANT_RE.test(tenant))
      return { kind: 'unavailable', reason: 'the token has no valid tid' };
    if (!ID_RE.test(userId)) return { kind: 'unavailable', reason: 'the token has no valid oid' };
    const token = await this.appToken(tenant, now);
    if (typeof token !== 'string') return token;
    const groups: string[] = [];
    let url: string | null =
      `${this.s.graphUrl}/v1.0/users/${userId}/transitiveMemberOf/microsoft.graph.group?$select=id&$top=999`;
    for (let page = 0; url; page++) {
      if (page === MAX_PAGES)
        return { kind: 'unavailable', reason: `more than ${MAX_PAGES} pages of groups` };
      const r = await this.get(url, token);
      if (r.kind !== 'ok') {
        if (r.status === 401) this.tokens.delete(tenant);
        return { kind: 'unavailable', reason: r.reason };
      }
      const body = r.body as { value?: unknown; '@odata.nextLink'?: unknown };
      if (!Array.isArray(body.value))
        return { kind: 'unavailable', reason: 'Graph answered without a value list' };
      for (const item of body.value) {
        const id = (item as { id?: unknown } | null)?.id;
        if (typeof id === 'string' && ID_RE.test(id)) groups.push(id.toLowerCase());
      }
      const next = body['@odata.nextLink'];
      url = null;
      if (typeof next === 'string') {
        // The next page must stay on Graph: a link elsewhere would carry our token there.
        if (!sameOrigin(next, this.s.graphUrl))
          return { kind: 'unavailable', reason: 'Graph sent a next page on another host' };
        url = next;
      }
    }
    return { kind: 'ok', groups: [...new Set(groups)] };
  }

  /**
   * For `portcullis probe`: can this app read group memberships in the tenant right now? It
   * asks for the groups of a user id that exists nowhere: Graph checks the app's permission
   * before it looks the user up, so a 404 means the permission is there, a 403 that it is not.
   */
  async probe(tenant: string): Promise<{ ok: boolean; detail: string }> {
    const token = await this.appToken(tenant, Date.now());
    if (typeof token !== 'string')
      return { ok: false, detail: token.kind === 'unavailable' ? token.reason : 'no token' };
    const nobody = '00000000-0000-0000-0000-00000000d1e5';
    const r = await this.get(
      `${this.s.graphUrl}/v1.0/users/${nobody}/transitiveMemberOf/microsoft.graph.group?$select=id&$top=1`,
      token,
    );
    if (r.kind === 'ok' || r.status === 404)
      return {
        ok: true,
        detail: `app-only Graph token for tenant ${tenant}; Graph lets the app read group memberships (users in over 200 groups can sign in)`,
      };
    return { ok: false, detail: `tenant ${tenant}: ${r.reason}` };
  }

  /** An app-only Graph token for the tenant, cached until a minute before it expires. */
  private async appToken(tenant: string, now: number): Promise<string | DirectoryResult> {
    const cached = this.tokens.get(tenant);
    if (cached && cached.exp > now) return cached.token;
    const body = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: this.s.clientId,
      client_secret: this.s.clientSecret,
      scope: `${this.s.graphUrl}/.default`,
    });
    let res: Response;
    try {
      res = await this.s.fetch(`${this.s.loginOrigin}/${tenant}/oauth2/v2.0/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
        },
        body: body.toString(),
        redirect: 'manual',
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (e) {
      return {
        kind: 'unavailable',
        reason: `the token endpoint could not be reached (${cause(e)})`,
      };
    }
    const json = (await res.json().catch(() => null)) as {
      access_token?: unknown;
      expires_in?: unknown;
      error?: unknown;
      error_description?: unknown;
    } | null;
    if (!res.ok || typeof json?.access_token !== 'string') {
      const err = typeof json?.error === 'string' ? json.error : `HTTP ${res.status}`;
      return {
        kind: 'unavailable',
        reason: `no Graph token for tenant ${tenant} (${err}): the app needs a client secret valid in that tenant`,
      };
    }
    const ttl = typeof json.expires_in === 'number' ? json.expires_in : 3600;
    this.tokens.set(tenant, { token: json.access_token, exp: now + Math.max(0, ttl - 60) * 1000 });
    if (this.tokens.size > 1000) this.tokens.delete(this.tokens.keys().next().value!);
    return json.access_token;
  }

  private async get(
    url: string,
    token: string,
  ): Promise<{ kind: 'ok'; body: unknown } | { kind: 'error'; status: number; reason: string }> {
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await this.s.fetch(url, {
          headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
          redirect: 'manual',
          signal: AbortSignal.timeout(TIMEOUT_MS),
        });
      } catch (e) {
        return { kind: 'error', status: 0, reason: `Graph could not be reached (${cause(e)})` };
      }
      if (res.ok) {
        const body: unknown = await res.json().catch(() => null);
        if (body === null)
          return { kind: 'error', status: res.status, reason: 'Graph sent no JSON' };
        return { kind: 'ok', body };
      }
      await res.body?.cancel();
      if ((res.status === 429 || res.status === 503) && attempt < 2) {
        const wait = retryAfterMs(res.headers.get('retry-after'));
        if (wait !== null && wait <= MAX_WAIT_MS) {
          await new Promise((resolve) => setTimeout(resolve, wait));
          continue;
        }
      }
      const reason =
        res.status === 403
          ? 'Graph refused (403): grant the app the application permission GroupMember.Read.All and admin consent'
          : res.status === 429
            ? `Graph is throttling (429, Retry-After ${res.headers.get('retry-after') ?? 'none'})`
            : `Graph answered HTTP ${res.status}`;
      return { kind: 'error', status: res.status, reason };
    }
  }
}

/** Retry-After as delay-seconds or an HTTP date; null when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | null {
  if (!value) return null;
  if (/^\d{1,6}$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

function sameOrigin(url: string, base: string): boolean {
  try {
    return new URL(url).origin === new URL(base).origin;
  } catch {
    return false;
  }
}

function cause(e: unknown): string {
  const c = (e as { cause?: { code?: string } }).cause;
  return c?.code ?? (e instanceof Error ? e.name : String(e));
}
