import { importPKCS8, SignJWT } from 'jose';
import { retryAfterMs, type DirectoryResult } from './graph.js';

// Google Workspace groups: Google's ID token names none, so they are read from the Admin SDK
// Directory API (groups.list?userKey=<email>) as a service account with domain-wide
// delegation, impersonating a Workspace admin. The service account proves itself with a JWT it
// signs (RFC 7523 JWT bearer grant) at its key file's token_uri.
// Sources: developers.google.com/identity/protocols/oauth2/service-account ("Preparing to make
// an authorized API call": iss, scope, aud, exp ≤ 1 h, iat, sub for delegation; the grant type
// urn:ietf:params:oauth:grant-type:jwt-bearer), developers.google.com/admin-sdk/directory/reference/rest/v1/groups/list
// (userKey, maxResults ≤ 200, pageToken/nextPageToken, groups[].email), and
// developers.google.com/workspace/admin/directory/v1/limits (403/429 rate limits, back off).

export const GROUP_SCOPE = 'https://www.googleapis.com/auth/admin.directory.group.readonly';
const MAX_PAGES = 50;
const MAX_WAIT_MS = 5_000;
const TIMEOUT_MS = 10_000;

export interface ServiceAccount {
  clientEmail: string;
  privateKey: string;
  tokenUri: string;
}

/** A service account key file's fields, or what is wrong with it (for the config error). */
export function parseServiceAccount(text: string): ServiceAccount | string {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return 'is not JSON: expected the key file Google lets you download for a service account';
  }
  const { type, client_email: email, private_key: key, token_uri: uri } = json;
  if (type !== 'service_account') return 'expected "type": "service_account"';
  if (typeof email !== 'string' || !email.includes('@')) return 'has no client_email';
  if (typeof key !== 'string' || !key.includes('PRIVATE KEY')) return 'has no private_key';
  const tokenUri = typeof uri === 'string' ? uri : 'https://oauth2.googleapis.com/token';
  const parsed = URL.parse(tokenUri);
  if (!parsed || (parsed.protocol !== 'https:' && parsed.hostname !== '127.0.0.1'))
    return 'token_uri must be an https URL';
  return { clientEmail: email, privateKey: key, tokenUri };
}

export class GoogleDirectory {
  private token: { value: string; exp: number } | null = null;
  private key: CryptoKey | null = null;

  constructor(
    private readonly account: ServiceAccount,
    /** The Workspace admin the service account acts as (domain-wide delegation's `sub`). */
    private readonly admin: string,
    /** https://admin.googleapis.com, or a stand-in. */
    private readonly apiUrl: string,
    private readonly fetchImpl: typeof fetch,
  ) {}

  /** The email addresses of the groups the user is a direct member of. */
  async groupsOf(email: string, now = Date.now()): Promise<DirectoryResult> {
    const token = await this.accessToken(now);
    if (typeof token !== 'string') return token;
    const groups: string[] = [];
    let pageToken: string | null = null;
    for (let page = 0; page === 0 || pageToken; page++) {
      if (page === MAX_PAGES)
        return { kind: 'unavailable', reason: `more than ${MAX_PAGES} pages` };
      const url = new URL(`${this.apiUrl}/admin/directory/v1/groups`);
      url.searchParams.set('userKey', email);
      url.searchParams.set('maxResults', '200');
      if (pageToken) url.searchParams.set('pageToken', pageToken);
      const r = await this.get(url.href, token);
      if (r.kind !== 'ok') {
        if (r.status === 401) this.token = null;
        return { kind: 'unavailable', reason: r.reason };
      }
      const body = r.body as { groups?: unknown; nextPageToken?: unknown };
      // A user in no group gets an answer without `groups` at all.
      if (body.groups !== undefined && !Array.isArray(body.groups))
        return { kind: 'unavailable', reason: 'the Directory API answered without a groups list' };
      for (const g of (body.groups ?? []) as Array<{ email?: unknown }>)
        if (typeof g?.email === 'string') groups.push(g.email.toLowerCase());
      pageToken =
        typeof body.nextPageToken === 'string' && body.nextPageToken ? body.nextPageToken : null;
    }
    return { kind: 'ok', groups: [...new Set(groups)] };
  }

  private async accessToken(now: number): Promise<string | DirectoryResult> {
    if (this.token && this.token.exp > now) return this.token.value;
    try {
      this.key ??= await importPKCS8(this.account.privateKey, 'RS256');
    } catch {
      return { kind: 'unavailable', reason: 'the service account private_key cannot be read' };
    }
    const iat = Math.floor(now / 1000);
    const assertion = await new SignJWT({ scope: GROUP_SCOPE })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
      .setIssuer(this.account.clientEmail)
      .setSubject(this.admin)
      .setAudience(this.account.tokenUri)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 3600)
      .sign(this.key);
    let res: Response;
    try {
      res = await this.fetchImpl(this.account.tokenUri, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
        },
        body: new URLSearchParams({
          grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
          assertion,
        }).toString(),
        redirect: 'manual',
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch {
      return { kind: 'unavailable', reason: 'Google’s token endpoint could not be reached' };
    }
    const json = (await res.json().catch(() => null)) as Record<string, unknown> | null;
    if (!res.ok || typeof json?.access_token !== 'string') {
      const error =
        typeof json?.error === 'string' ? json.error.slice(0, 64) : `HTTP ${res.status}`;
      return {
        kind: 'unavailable',
        reason:
          error === 'unauthorized_client'
            ? `Google refused the service account (unauthorized_client): authorize its client id for ${GROUP_SCOPE} under domain-wide delegation in the Admin console`
            : `no Directory API token (${error})`,
      };
    }
    const ttl = typeof json.expires_in === 'number' ? json.expires_in : 3600;
    this.token = { value: json.access_token, exp: now + Math.max(0, ttl - 60) * 1000 };
    return json.access_token;
  }

  private async get(
    url: string,
    token: string,
  ): Promise<{ kind: 'ok'; body: unknown } | { kind: 'error'; status: number; reason: string }> {
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await this.fetchImpl(url, {
          headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
          redirect: 'manual',
          signal: AbortSignal.timeout(TIMEOUT_MS),
        });
      } catch {
        return { kind: 'error', status: 0, reason: 'the Directory API could not be reached' };
      }
      if (res.ok) {
        const body: unknown = await res.json().catch(() => null);
        if (body === null) return { kind: 'error', status: res.status, reason: 'no JSON' };
        return { kind: 'ok', body };
      }
      const text = await res.text().catch(() => '');
      const limited = res.status === 429 || (res.status === 403 && /rateLimitExceeded/.test(text));
      if ((limited || res.status === 503) && attempt === 0) {
        const wait = retryAfterMs(res.headers.get('retry-after')) ?? 1_000;
        if (wait <= MAX_WAIT_MS) {
          await new Promise((resolve) => setTimeout(resolve, wait));
          continue;
        }
      }
      const reason = limited
        ? `the Directory API is rate limiting (HTTP ${res.status})`
        : res.status === 403
          ? 'the Directory API refused (403): the impersonated admin (idp_admin_email) must be allowed to read groups'
          : `the Directory API answered HTTP ${res.status}`;
      return { kind: 'error', status: res.status, reason };
    }
  }
}
