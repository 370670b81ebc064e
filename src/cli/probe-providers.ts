import type { Config } from '../config/types.js';
import { GoogleDirectory } from '../identity/directory/google.js';
import { GraphDirectory } from '../identity/directory/graph.js';
import { GitHubProvider } from '../identity/github.js';
import { timed, type ProbeCheck } from './probe-check.js';

// What `portcullis probe` checks beyond a standard OpenID provider: the pitfalls each provider
// has that a login only shows when it is too late (docs/identity-providers.md). Each check makes
// the same call the proxy makes, with the same code, so a pass means that call works now.

type Idp = Config['idp'];

/** GitHub has no discovery and no keys: its OAuth app and its REST API are what a login needs. */
export async function githubChecks(
  idp: Idp,
  suffix: string,
  f: typeof fetch,
): Promise<ProbeCheck[]> {
  const gh = new GitHubProvider(idp, f);
  const api = await timed(`idp_api${suffix}`, idp.issuer.origin, async () => {
    const r = await gh.probeApi();
    return { status: r.ok ? 'ok' : 'fail', detail: `${r.target} ${r.detail}` };
  });
  const client = await timed(
    `idp_client${suffix}`,
    `${idp.clientId} at ${idp.issuer.origin}/login/oauth/access_token`,
    async () => {
      const r = await gh.probeClient();
      return { status: r.ok ? 'ok' : 'fail', detail: r.detail };
    },
  );
  return [api, client];
}

/** Entra ID's Graph permission and Google's domain-wide delegation; nothing for the others. */
export async function providerChecks(
  idp: Idp,
  suffix: string,
  f: typeof fetch,
): Promise<ProbeCheck[]> {
  if (idp.provider === 'azure') return azureChecks(idp, `idp_directory${suffix}`, f);
  if (idp.provider === 'google') return [await googleCheck(idp, `idp_directory${suffix}`, f)];
  return [];
}

const TENANT_PATH = /^\/([^/]+)\/v2\.0\/?$/;
const SHARED_TENANTS = new Set(['common', 'organizations', 'consumers']);

/**
 * Users in more than 200 groups sign in only if the app may read group memberships from Graph
 * (application permission GroupMember.Read.All, with admin consent in each tenant). Checked in
 * the tenant of idp_provider_url, or in each tenant of idp_allowed_tenants for a multi-tenant app.
 */
async function azureChecks(idp: Idp, check: string, f: typeof fetch): Promise<ProbeCheck[]> {
  const own = TENANT_PATH.exec(idp.issuer.pathname)?.[1]?.toLowerCase();
  const tenants =
    own && !SHARED_TENANTS.has(own) && !own.includes('{')
      ? [own]
      : idp.allowedTenants.filter((t) => t !== '*');
  const graphUrl = (idp.directoryUrl ?? new URL('https://graph.microsoft.com')).origin;
  if (!tenants.length)
    return [
      {
        check,
        target: graphUrl,
        status: 'skip',
        ms: 0,
        detail:
          'no tenant to check in: idp_allowed_tenants is "*" (every tenant must grant consent itself)',
      },
    ];
  const graph = new GraphDirectory({
    loginOrigin: idp.issuer.origin,
    graphUrl,
    clientId: idp.clientId,
    clientSecret: idp.clientSecret,
    fetch: f,
  });
  return Promise.all(
    tenants.map((tenant) =>
      timed(check, `${graphUrl} tenant ${tenant}`, async () => {
        const r = await graph.probe(tenant);
        return { status: r.ok ? 'ok' : 'fail', detail: r.detail };
      }),
    ),
  );
}

/** Workspace groups: the service account must be delegated the scope, and act as an admin. */
async function googleCheck(idp: Idp, check: string, f: typeof fetch): Promise<ProbeCheck> {
  const d = idp.googleDirectory;
  const api = (idp.directoryUrl ?? new URL('https://admin.googleapis.com')).href.replace(/\/$/, '');
  if (!d)
    return {
      check,
      target: api,
      status: 'skip',
      ms: 0,
      detail:
        'no idp_service_account_file: Google tokens carry no groups, so group rules deny everyone',
    };
  return timed(check, `${api} as ${d.admin}`, async () => {
    // The admin's own groups: the call a sign-in makes, with the token a sign-in would use.
    const r = await new GoogleDirectory(d.account, d.admin, api, f).groupsOf(d.admin);
    if (r.kind === 'ok')
      return {
        status: 'ok',
        detail: `service account ${d.account.clientEmail} reads groups as ${d.admin} (${r.groups.length} for the admin)`,
      };
    return { status: 'fail', detail: r.reason };
  });
}
