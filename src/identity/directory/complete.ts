import type { Config } from '../../config/types.js';
import { DirectoryCache } from './cache.js';
import { GoogleDirectory } from './google.js';
import { GraphDirectory, hasGroupsOverage } from './graph.js';

// After the ID token and userinfo, some IdPs still owe an answer: who may sign in at all (an
// Entra app open to many tenants) and which groups the user is in (Entra's groups overage).
// complete() settles both, at sign-in and at every refresh, and rewrites the claims so the
// rest of Portcullis reads groups the usual way.

export type Completion =
  /** stale: the directory is down and last-known groups (within idp_directory_outage_grace) were used. */
  | { kind: 'ok'; claims: Record<string, unknown>; stale?: boolean }
  /** The user may not sign in here; `message` is for them, `detail` for the operator's log. */
  | { kind: 'refused'; code: 'organization_not_allowed'; message: string; detail: string }
  /** The directory could not answer: nothing is known, so nothing is granted. */
  | { kind: 'unavailable'; reason: string };

export interface ClaimsCompleter {
  complete(claims: Record<string, unknown>, now: number): Promise<Completion>;
}

/** Nothing to add: every IdP whose tokens already say everything. */
const NOTHING: ClaimsCompleter = { complete: async (claims) => ({ kind: 'ok', claims }) };

export function createCompleter(idp: Config['idp'], fetchImpl: typeof fetch): ClaimsCompleter {
  if (idp.provider === 'azure') return new EntraCompleter(idp, fetchImpl);
  if (idp.provider === 'google') return new GoogleCompleter(idp, fetchImpl);
  return NOTHING;
}

const ORG_REFUSED = 'Accounts of your organization cannot sign in here.';

function cacheFor(idp: Config['idp']): DirectoryCache {
  return new DirectoryCache({
    ttlMs: idp.directoryCacheTtlMs,
    graceMs: idp.directoryOutageGraceMs,
    maxEntries: idp.directoryCacheSize,
  });
}

class GoogleCompleter implements ClaimsCompleter {
  private readonly directory: GoogleDirectory | null;
  private readonly cache: DirectoryCache;

  constructor(
    private readonly idp: Config['idp'],
    fetchImpl: typeof fetch,
  ) {
    const d = idp.googleDirectory;
    this.directory = d
      ? new GoogleDirectory(
          d.account,
          d.admin,
          (idp.directoryUrl ?? new URL('https://admin.googleapis.com')).href.replace(/\/$/, ''),
          fetchImpl,
        )
      : null;
    this.cache = cacheFor(idp);
  }

  async complete(claims: Record<string, unknown>, now: number): Promise<Completion> {
    // `hd` is only in the token of a Workspace account; the hd= hint in the authorization
    // request is just a hint, so the claim itself is what is checked.
    const hd = typeof claims.hd === 'string' ? claims.hd.toLowerCase() : '';
    if (this.idp.hostedDomains.length && !this.idp.hostedDomains.includes(hd))
      return {
        kind: 'refused',
        code: 'organization_not_allowed',
        message: ORG_REFUSED,
        detail: `hosted domain ${hd || '(none: a consumer Google account)'} is not in idp_hosted_domains`,
      };
    const email = typeof claims.email === 'string' ? claims.email : '';
    if (!this.directory || !email || claims.email_verified !== true) return { kind: 'ok', claims };
    const directory = this.directory;
    const key = `google:${email.toLowerCase()}`;
    const r = await this.cache.lookup(key, () => directory.groupsOf(email, now), now);
    if (r.kind !== 'ok') return r;
    return { kind: 'ok', claims: { ...claims, groups: r.groups }, stale: r.stale === true };
  }
}

const OVERAGE_CLAIMS = ['_claim_names', '_claim_sources', 'hasgroups'];

class EntraCompleter implements ClaimsCompleter {
  private readonly graph: GraphDirectory;
  private readonly anyTenant: boolean;
  private readonly cache: DirectoryCache;

  constructor(
    private readonly idp: Config['idp'],
    fetchImpl: typeof fetch,
  ) {
    this.graph = new GraphDirectory({
      loginOrigin: idp.issuer.origin,
      graphUrl: (idp.directoryUrl ?? new URL('https://graph.microsoft.com')).origin,
      clientId: idp.clientId,
      clientSecret: idp.clientSecret,
      fetch: fetchImpl,
    });
    this.anyTenant = idp.allowedTenants.includes('*');
    this.cache = cacheFor(idp);
  }

  async complete(claims: Record<string, unknown>, now: number): Promise<Completion> {
    const tid = typeof claims.tid === 'string' ? claims.tid.toLowerCase() : '';
    if (this.idp.allowedTenants.length && !this.anyTenant && !this.idp.allowedTenants.includes(tid))
      return {
        kind: 'refused',
        code: 'organization_not_allowed',
        message: ORG_REFUSED,
        detail: `tenant ${tid || '(none)'} is not in idp_allowed_tenants`,
      };
    if (!hasGroupsOverage(claims)) return { kind: 'ok', claims };
    const oid = typeof claims.oid === 'string' ? claims.oid : '';
    const r = await this.cache.lookup(
      `azure:${tid}:${oid}`,
      () => this.graph.groupsOf(tid, oid, now),
      now,
    );
    if (r.kind !== 'ok') return r;
    const out: Record<string, unknown> = { ...claims, groups: r.groups };
    for (const k of OVERAGE_CLAIMS) delete out[k];
    return { kind: 'ok', claims: out, stale: r.stale === true };
  }
}
