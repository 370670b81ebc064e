import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { startWhoami, type RunningWhoami } from '../demo/whoami.js';
import { ConfigError } from '../src/config/errors.js';
import { parseConfig } from '../src/config/load.js';
import { createLogger } from '../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../src/server.js';
import {
  entraSignIn,
  startEntraStandin,
  type EntraStandin,
  type EntraUser,
} from './helpers/entra-standin.js';
import { request } from './helpers/http.js';
import { BROWSER_HEADERS } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import { upstreamHeaders } from './helpers/provider-stack.js';

// Issue 19, section 1, azure: Entra ID against a local stand-in of Entra's v2.0 endpoints and
// Microsoft Graph (test/helpers/entra-standin.ts cites the documented shapes it follows).
// - `oid` is the user's id across the tenant; `sub` is pairwise per app
//   (learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference).
// - Above 200 groups the token carries _claim_names/_claim_sources instead of `groups`
//   (same page, "Groups overage claim"); Graph's transitiveMemberOf lists them in pages joined
//   by @odata.nextLink (learn.microsoft.com/en-us/graph/api/user-list-transitivememberof).
// - Graph throttles with 429 and Retry-After in seconds (learn.microsoft.com/en-us/graph/throttling).
// - Multi-tenant apps use the /organizations/v2.0 issuer whose metadata says {tenantid}
//   (learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc).

const CLIENT_ID = randomUUID();
const CLIENT_SECRET = randomBytes(24).toString('base64url');
const TENANT = randomUUID();
const OTHER_TENANT = randomUUID();
const HOST = 'app.corp.test';
const ADMINS = randomUUID();
const manyGroups = Array.from({ length: 250 }, () => randomUUID());

const SMALL: EntraUser = {
  oid: randomUUID(),
  tid: TENANT,
  name: 'Small Groups',
  email: 'small@corp.example',
  groups: [ADMINS, randomUUID()],
  roles: ['Portal.Admin'],
  edov: true,
};
const MANY: EntraUser = {
  oid: randomUUID(),
  tid: TENANT,
  name: 'Many Groups',
  email: 'many@corp.example',
  groups: [...manyGroups, ADMINS],
  edov: true,
};
const OUTSIDER: EntraUser = {
  oid: randomUUID(),
  tid: OTHER_TENANT,
  name: 'Outsider',
  email: 'someone@other.example',
  groups: [ADMINS],
  edov: true,
};
const THIRD_TENANT = randomUUID();
const STRANGER: EntraUser = {
  oid: randomUUID(),
  tid: THIRD_TENANT,
  name: 'Stranger',
  email: 'someone@third.example',
  groups: [],
  edov: true,
};
const UNVERIFIED: EntraUser = {
  oid: randomUUID(),
  tid: TENANT,
  name: 'No edov',
  email: 'ceo@corp.example',
  groups: [],
};

const TOP_LEVEL_AZURE = `idp_provider: azure
idp_client_id: ${CLIENT_ID}
idp_client_secret: ${CLIENT_SECRET}`;

interface Deployed {
  proxy: RunningPortcullis;
  port: number;
  logs: Array<Record<string, unknown>>;
  text: () => string;
}

describe('azure (Entra ID) against a stand-in of Entra and Microsoft Graph', () => {
  let standin: EntraStandin;
  let upstream: RunningWhoami;
  const started: RunningPortcullis[] = [];

  /** `identity`: the IdP keys, the top-level azure ones by default (`globals` then adds to them). */
  async function deploy(globals: string, identity = TOP_LEVEL_AZURE): Promise<Deployed> {
    const port = await freePort();
    const yaml = `address: 127.0.0.1:${port}
insecure_server: true
cookie_secure: false
cookie_secret: ${randomBytes(32).toString('base64')}
${identity}
${globals}
routes:
  - from: http://${HOST}:${port}
    prefix: /api
    to: ${upstream.url}
    pass_identity_headers: true
    allow_bearer_tokens: true
    allow_any_authenticated_user: true
  - from: http://${HOST}:${port}
    prefix: /admins
    to: ${upstream.url}
    pass_identity_headers: true
    policy:
      allow:
        and:
          - groups: { has: ${ADMINS} }
  - from: http://${HOST}:${port}
    to: ${upstream.url}
    pass_identity_headers: true
    allow_any_authenticated_user: true
`;
    const logs: Array<Record<string, unknown>> = [];
    let text = '';
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        text += chunk.toString('utf8');
        for (const line of chunk.toString('utf8').split('\n'))
          if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
        cb();
      },
    });
    const proxy = await startPortcullis(parseConfig(yaml, 'entra.yaml'), {
      logger: createLogger('debug', sink),
      listen: { host: '127.0.0.1', port },
      fetch: standin.fetch,
    });
    started.push(proxy);
    await Promise.all(proxy.state.runtime.identities.all().map((p) => p.idp.start()));
    assert.equal(proxy.idp.status.ready, true, String(proxy.idp.status.lastError));
    return { proxy, port, logs, text: () => text };
  }

  let multi: Deployed;
  before(async () => {
    standin = await startEntraStandin({
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      users: [SMALL, MANY, OUTSIDER, STRANGER, UNVERIFIED],
    });
    standin.pageSize = 100;
    upstream = await startWhoami({ name: 'upstream' });
    // No cache here: each sign-in must reach Graph for the fault tests below to mean anything.
    multi = await deploy(
      `idp_provider_url: https://login.microsoftonline.com/organizations/v2.0\nidp_allowed_tenants: [${TENANT}]\nidp_directory_cache_ttl: 0s\nidp_directory_outage_grace: 0s`,
    );
  });
  after(async () => {
    await Promise.allSettled([...started.map((p) => p.close()), upstream.close(), standin.close()]);
  });

  const url = (d: Deployed, path = '/?format=json') => `http://${HOST}:${d.port}${path}`;

  test('multi-tenant issuer: the user is the oid, groups are object ids, app roles count as groups', async () => {
    const { final } = await entraSignIn(standin, url(multi, '/admins?format=json'), SMALL.oid);
    assert.equal(final.status, 200, final.body);
    const h = upstreamHeaders(final);
    assert.deepEqual(h['x-forwarded-user'], [SMALL.oid]);
    assert.deepEqual(h['x-forwarded-groups'], [[...SMALL.groups, 'Portal.Admin'].join(',')]);
    // xms_edov vouches for the address in place of email_verified.
    assert.deepEqual(h['x-forwarded-email'], ['small@corp.example']);
  });

  test('a tenant not in idp_allowed_tenants is refused with its own code; no session', async () => {
    const { final, jar } = await entraSignIn(standin, url(multi), OUTSIDER.oid);
    assert.equal(final.status, 403, final.body);
    assert.match(final.body, /Accounts of your organization cannot sign in here/);
    const again = await request(url(multi), { jar, headers: BROWSER_HEADERS });
    assert.equal(again.status, 302, 'no session was created');
    const line = multi.logs.find(
      (l) => l.event === 'login_failed' && l.reason === 'organization_not_allowed',
    );
    assert.ok(line);
    assert.match(String(line.detail), new RegExp(OTHER_TENANT));
  });

  test('no xms_edov and no email_verified: the address is not taken on trust', async () => {
    const { final } = await entraSignIn(standin, url(multi), UNVERIFIED.oid);
    assert.equal(final.status, 403, final.body);
    assert.match(final.body, /did not say whether the email address ceo@corp\.example is verified/);
  });

  test('groups overage: all 251 groups come from Graph, page by page, with an app-only token', async () => {
    standin.log.length = 0;
    const { final } = await entraSignIn(standin, url(multi, '/admins?format=json'), MANY.oid);
    assert.equal(final.status, 200, final.body);
    const groups = upstreamHeaders(final)['x-forwarded-groups']?.[0]?.split(',') ?? [];
    assert.equal(groups.length, 251);
    assert.ok(groups.includes(ADMINS), 'the group on the last page counts');
    const graphCalls = standin.log.filter((l) => l.includes('/transitiveMemberOf/'));
    assert.equal(graphCalls.length, 3, '251 groups at 100 a page');
    assert.ok(
      standin.log.some((l) => l === `login.microsoftonline.com/${TENANT}/oauth2/v2.0/token`),
      "the Graph token came from the user's own tenant",
    );
  });

  test('429 with a short Retry-After is waited out; the sign-in succeeds', async () => {
    standin.graphFaults.push({ status: 429, retryAfter: '1', times: 1 });
    const started = Date.now();
    const { final } = await entraSignIn(standin, url(multi, '/admins?format=json'), MANY.oid);
    assert.equal(final.status, 200, final.body);
    assert.ok(Date.now() - started >= 900, 'Retry-After was honoured');
  });

  test('429 with a long Retry-After, Graph down, Graph 403: a clear 503, never a 500, no session', async () => {
    const cases: Array<[() => void, RegExp]> = [
      [() => standin.graphFaults.push({ status: 429, retryAfter: '120', times: 1 }), /throttling/],
      [() => (standin.graphDown = true), /could not be reached/],
      [() => standin.graphFaults.push({ status: 403, times: 1 }), /GroupMember\.Read\.All/],
      [() => standin.graphFaults.push({ status: 500, times: 1 }), /HTTP 500/],
    ];
    for (const [arrange, reason] of cases) {
      arrange();
      const { final, jar } = await entraSignIn(standin, url(multi), MANY.oid);
      standin.graphDown = false;
      standin.graphFaults.length = 0;
      assert.equal(final.status, 503, final.body);
      assert.match(final.body, /group memberships could not be read/);
      assert.equal(final.headers['content-type']?.includes('text/html'), true);
      const again = await request(url(multi), { jar, headers: BROWSER_HEADERS });
      assert.equal(again.status, 302, 'no session was created');
      const line = multi.logs
        .filter((l) => l.event === 'login_failed' && l.reason === 'directory_unavailable')
        .at(-1);
      assert.ok(line);
      assert.match(String(line.directory), reason);
    }
    assert.doesNotMatch(
      multi.text(),
      new RegExp(CLIENT_SECRET),
      'the client secret is never logged',
    );
    assert.doesNotMatch(multi.text(), /app\.[0-9a-f-]{36}\.[A-Za-z0-9_-]{16}/, 'nor a Graph token');
  });

  test('a next page link to another host is not followed: the Graph token stays with Graph', async () => {
    standin.nextLinkOverride = 'https://graph.evil.example/v1.0/steal?$skiptoken=100';
    standin.log.length = 0;
    try {
      const { final } = await entraSignIn(standin, url(multi), MANY.oid);
      assert.equal(final.status, 503, final.body);
    } finally {
      standin.nextLinkOverride = null;
    }
    assert.ok(!standin.log.some((l) => l.startsWith('graph.evil.example')));
  });

  test('a single-tenant issuer works without idp_allowed_tenants; the issuer pins the tenant', async () => {
    const single = await deploy(
      `idp_provider_url: https://login.microsoftonline.com/${TENANT}/v2.0`,
    );
    const ok = await entraSignIn(standin, url(single), SMALL.oid);
    assert.equal(ok.final.status, 200, ok.final.body);
    // A token from another tenant fails the issuer check of the tenant's own metadata.
    const other = await entraSignIn(standin, url(single), OUTSIDER.oid);
    assert.equal(other.final.status, 400, other.final.body);
    assert.match(other.final.body, /did not accept the sign-in|could not be trusted/);
  });

  test('directory answers are cached: a second sign-in within idp_directory_cache_ttl does not walk Graph again', async () => {
    const cached = await deploy(
      `idp_provider_url: https://login.microsoftonline.com/${TENANT}/v2.0`,
    );
    standin.log.length = 0;
    assert.equal((await entraSignIn(standin, url(cached), MANY.oid)).final.status, 200);
    const first = standin.log.filter((l) => l.includes('/transitiveMemberOf/')).length;
    assert.equal(first, 3);
    assert.equal((await entraSignIn(standin, url(cached), MANY.oid)).final.status, 200);
    assert.equal(standin.log.filter((l) => l.includes('/transitiveMemberOf/')).length, first);
  });

  test('Graph down: last-known groups for idp_directory_outage_grace, then a clear 503 directory_unavailable', async () => {
    const d = await deploy(
      [
        `idp_provider_url: https://login.microsoftonline.com/${TENANT}/v2.0`,
        'idp_refresh_directory_interval: 10s',
        'idp_directory_cache_ttl: 1s',
        'idp_directory_outage_grace: 5s',
      ].join('\n'),
    );
    const session = await entraSignIn(standin, url(d, '/admins?format=json'), MANY.oid);
    assert.equal(session.final.status, 200, session.final.body);
    standin.graphDown = true;
    try {
      // A new sign-in while Graph is down, past the TTL but within the grace: the last-known
      // groups are used.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const again = await entraSignIn(standin, url(d, '/admins?format=json'), MANY.oid);
      assert.equal(again.final.status, 200, again.final.body);
      assert.ok(d.logs.some((l) => l.event === 'directory_stale_groups'));
      // Past the grace, a sign-in is refused clearly.
      await new Promise((resolve) => setTimeout(resolve, 5_200));
      const late = await entraSignIn(standin, url(d), MANY.oid);
      assert.equal(late.final.status, 503, late.final.body);
      // The session: due for its re-read after 10 s; Graph still down, so it keeps its groups
      // for the grace (5 s) past that, then every request is a 503 naming the directory.
      await new Promise((resolve) => setTimeout(resolve, 4_300));
      const during = await request(url(d, '/admins?format=json'), {
        jar: session.jar,
        headers: BROWSER_HEADERS,
      });
      assert.equal(during.status, 200, 'within the grace, last-known groups still decide');
      await new Promise((resolve) => setTimeout(resolve, 5_500));
      const after = await request(url(d, '/admins?format=json'), {
        jar: session.jar,
        headers: { ...BROWSER_HEADERS, accept: 'application/json' },
      });
      assert.equal(after.status, 503, after.body);
      assert.equal(after.json().error, 'directory_unavailable');
      assert.match(after.json().message, /group memberships/);
    } finally {
      standin.graphDown = false;
    }
  });

  // Multi-tenant issuers, for sign-ins and bearer tokens alike. Microsoft: the metadata of a
  // shared authority names the issuer https://login.microsoftonline.com/{tenantid}/v2.0; a
  // validator puts the token's tid in place of {tenantid} and compares the result with its iss
  // (learn.microsoft.com/en-us/entra/identity-platform/access-tokens#validate-the-issuer); `tid`
  // is the tenant's GUID (learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference,
  // and .../access-token-claims-reference for access tokens, whose v2.0 `aud` is the client id).
  const TEMPLATE = 'https://login.microsoftonline.com/{tenantid}/v2.0';
  const issuerOf = (tenant: string) => `https://login.microsoftonline.com/${tenant}/v2.0`;

  async function bearer(d: Deployed, token: string) {
    const r = await request(url(d, '/api/whoami?format=json'), {
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    });
    const h = String(r.headers['www-authenticate'] ?? '');
    return { r, why: /error_description="([^"]*)"/.exec(h)?.[1] ?? '' };
  }

  test('multi-tenant sign-in: users of every allowed tenant, each the oid; the session is theirs', async () => {
    const two = await deploy(
      `idp_provider_url: https://login.microsoftonline.com/organizations/v2.0\nidp_allowed_tenants: [${TENANT}, ${OTHER_TENANT}]`,
    );
    for (const user of [SMALL, OUTSIDER]) {
      const { final, jar } = await entraSignIn(standin, url(two), user.oid);
      assert.equal(final.status, 200, final.body);
      assert.deepEqual(upstreamHeaders(final)['x-forwarded-user'], [user.oid]);
      const me = await request(url(two, '/.portcullis/userinfo'), {
        jar,
        headers: { accept: 'application/json' },
      });
      assert.equal(me.status, 200, me.body);
      assert.equal(me.json().user, user.oid);
    }
  });

  test('multi-tenant bearer tokens: an allowed tenant is let in as its oid, another tenant is refused', async () => {
    const a = await bearer(multi, await standin.accessToken(SMALL.oid));
    assert.equal(a.r.status, 200, a.r.body);
    assert.deepEqual(upstreamHeaders(a.r)['x-forwarded-user'], [SMALL.oid]);

    const b = await bearer(multi, await standin.accessToken(OUTSIDER.oid));
    assert.equal(b.r.status, 401, b.r.body);
    assert.equal(b.why, `the token's tenant ${OTHER_TENANT} is not in idp_allowed_tenants`);
    assert.doesNotMatch(b.r.body, new RegExp(OUTSIDER.oid), 'the upstream was not reached');
  });

  test('forged multi-tenant issuers are refused, each with its reason, whatever the allow-list', async () => {
    // `*` is the widest allow-list: only the issuer check stands between these and the app.
    const any = await deploy(
      'idp_provider_url: https://login.microsoftonline.com/common/v2.0\nidp_allowed_tenants: ["*"]',
    );
    const ok = await bearer(any, await standin.accessToken(STRANGER.oid));
    assert.equal(ok.r.status, 200, 'any real tenant is let in with *');
    const cases: Array<[string, Record<string, unknown>, string | RegExp]> = [
      [
        'iss of another tenant than tid',
        { iss: issuerOf(OTHER_TENANT) },
        `the token was issued by ${issuerOf(OTHER_TENANT)} but names the tenant ${TENANT} (tid): the two must be the same tenant`,
      ],
      [
        'a tid that is not a GUID, iss made to match',
        { tid: 'contoso.onmicrosoft.com', iss: issuerOf('contoso.onmicrosoft.com') },
        "the token's tenant (tid) contoso.onmicrosoft.com is not a tenant id",
      ],
      [
        'a tid with path characters',
        { tid: `${TENANT}/../common`, iss: issuerOf(`${TENANT}/../common`) },
        `the token's tenant (tid) ${TENANT}/../common is not a tenant id`,
      ],
      [
        'the template itself as iss, the placeholder as tid',
        { tid: '{tenantid}', iss: TEMPLATE },
        "the token's tenant (tid) {tenantid} is not a tenant id",
      ],
      [
        'no tid at all',
        { tid: undefined },
        'the token names no tenant (tid), which a multi-tenant issuer needs',
      ],
      [
        'a tid that is not a string',
        { tid: 42 },
        "the token's tenant (tid) (a number) is not a tenant id",
      ],
      [
        'the v1.0 issuer (another host)',
        { iss: `https://sts.windows.net/${TENANT}/` },
        `the token was issued by https://sts.windows.net/${TENANT}/, not by the configured identity provider (expected ${issuerOf(TENANT)})`,
      ],
      [
        'a look-alike host',
        { iss: `https://login.microsoftonline.com.evil.example/${TENANT}/v2.0` },
        /^the token was issued by https:\/\/login\.microsoftonline\.com\.evil\.example\/.*, not by the configured identity provider/,
      ],
      [
        'a longer path',
        { iss: `${issuerOf(TENANT)}/extra` },
        /not by the configured identity provider/,
      ],
    ];
    for (const [name, overrides, reason] of cases) {
      const { r, why } = await bearer(any, await standin.accessToken(SMALL.oid, overrides));
      assert.equal(r.status, 401, `${name}: ${r.body}`);
      if (typeof reason === 'string') assert.equal(why, reason, name);
      else assert.match(why, reason, name);
      assert.equal(r.json().error, 'invalid_token', name);
      assert.doesNotMatch(r.body, new RegExp(SMALL.oid), `${name}: the upstream was not reached`);
    }
  });

  test('forged ID tokens at sign-in: a made-up, missing or placeholder tid is refused; no session', async () => {
    const any = await deploy(
      'idp_provider_url: https://login.microsoftonline.com/organizations/v2.0\nidp_allowed_tenants: ["*"]',
    );
    // openid-client puts the token's tid into the template, so each of these passes its issuer
    // comparison: only Portcullis's own tenant check refuses them.
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ tid: 'evil', iss: issuerOf('evil') }, "the token's tenant (tid) evil is not a tenant id"],
      [
        { tid: undefined, iss: issuerOf('undefined') },
        'the token names no tenant (tid), which a multi-tenant issuer needs',
      ],
      [
        { tid: '{tenantid}', iss: TEMPLATE },
        "the token's tenant (tid) {tenantid} is not a tenant id",
      ],
    ];
    for (const [overrides, reason] of cases) {
      standin.idTokenOverrides = overrides;
      const { final, jar } = await entraSignIn(standin, url(any), SMALL.oid);
      assert.equal(final.status, 502, final.body);
      // The page escapes HTML (src/http/pages.ts): quotes arrive as &#39;.
      assert.ok(final.body.includes(reason.replace(/'/g, '&#39;')), final.body);
      const again = await request(url(any), { jar, headers: BROWSER_HEADERS });
      assert.equal(again.status, 302, 'no session was created');
      const line = any.logs.filter((l) => l.event === 'login_failed').at(-1);
      assert.equal(line?.reason, 'id_token_invalid');
    }
    // The iss of another tenant than tid: refused too (by openid-client already).
    standin.idTokenOverrides = { iss: issuerOf(OTHER_TENANT) };
    const other = await entraSignIn(standin, url(any), SMALL.oid);
    assert.ok(other.final.status >= 400, other.final.body);
    const again = await request(url(any), { jar: other.jar, headers: BROWSER_HEADERS });
    assert.equal(again.status, 302, 'no session was created');
    // And a real token still signs in.
    assert.equal((await entraSignIn(standin, url(any), SMALL.oid)).final.status, 200);
  });

  test('several IdPs: a token names its IdP by exact issuer first, else by the tenant template; each IdP reports readiness', async () => {
    const metricsPort = await freePort();
    const d = await deploy(
      `metrics_address: 127.0.0.1:${metricsPort}`,
      `idps:
  - id: orgs
    idp_provider: azure
    idp_provider_url: https://login.microsoftonline.com/organizations/v2.0
    idp_client_id: ${CLIENT_ID}
    idp_client_secret: ${CLIENT_SECRET}
    idp_allowed_tenants: [${TENANT}]
  - id: partner
    idp_provider: azure
    idp_provider_url: ${issuerOf(OTHER_TENANT)}
    idp_client_id: ${CLIENT_ID}
    idp_client_secret: ${CLIENT_SECRET}
  - id: offline
    idp_provider_url: https://sso.unreachable.example
    idp_client_id: portcullis
    idp_client_secret: ${CLIENT_SECRET}`,
    );
    // The partner's own tenant: its exact issuer, not the template that would refuse it.
    const partner = await bearer(d, await standin.accessToken(OUTSIDER.oid));
    assert.equal(partner.r.status, 200, partner.why);
    assert.deepEqual(upstreamHeaders(partner.r)['x-forwarded-user'], [OUTSIDER.oid]);
    const orgs = await bearer(d, await standin.accessToken(SMALL.oid));
    assert.equal(orgs.r.status, 200, orgs.why);
    const third = await bearer(d, await standin.accessToken(STRANGER.oid));
    assert.equal(third.r.status, 401);
    assert.equal(third.why, `the token's tenant ${THIRD_TENANT} is not in idp_allowed_tenants`);
    const forged = await bearer(
      d,
      await standin.accessToken(SMALL.oid, { iss: issuerOf(THIRD_TENANT) }),
    );
    assert.equal(forged.r.status, 401);
    assert.match(forged.why, /but names the tenant .* \(tid\): the two must be the same tenant/);

    const m = (await request(`http://127.0.0.1:${metricsPort}/metrics`)).body;
    assert.match(m, /^portcullis_idp_ready\{idp="orgs"\} 1$/m);
    assert.match(m, /^portcullis_idp_ready\{idp="partner"\} 1$/m);
    assert.match(m, /^portcullis_idp_ready\{idp="offline"\} 0$/m);
  });

  test('config: a shared issuer without idp_allowed_tenants, bad tenant ids, tenants without azure', () => {
    const base = (extra: string, provider = 'azure') => `address: 127.0.0.1:8443
insecure_server: true
cookie_secure: false
cookie_secret: ${Buffer.alloc(32, 3).toString('base64')}
idp_provider: ${provider}
idp_client_id: ${CLIENT_ID}
idp_client_secret: ${CLIENT_SECRET}
${extra}
routes:
  - from: https://app.example.com
    to: http://127.0.0.1:9000
    allow_any_authenticated_user: true
`;
    const cases: Array<[string, string, RegExp]> = [
      [
        'idp_provider_url: https://login.microsoftonline.com/common/v2.0',
        'azure',
        /idp_provider_url: \/common\/v2\.0 is shared by every Entra tenant: list the tenant ids .*idp_allowed_tenants/,
      ],
      [
        'idp_provider_url: https://login.microsoftonline.com/organizations/v2.0\nidp_allowed_tenants: [contoso.com]',
        'azure',
        /idp_allowed_tenants: expected tenant ids .* got "contoso.com"/,
      ],
      [
        'idp_provider_url: https://login.microsoftonline.com/organizations/v2.0',
        'oidc',
        /idp_provider_url: \/organizations\/v2\.0 is Microsoft Entra's multi-tenant issuer: it needs idp_provider: azure/,
      ],
      [
        `idp_provider_url: https://idp.example.com\nidp_allowed_tenants: [${TENANT}]`,
        'okta',
        /idp_allowed_tenants: is an Entra ID setting: it needs idp_provider: azure/,
      ],
    ];
    for (const [extra, provider, expected] of cases)
      assert.throws(
        () => parseConfig(base(extra, provider), 'entra.yaml', {}),
        (e: unknown) => e instanceof ConfigError && expected.test(e.message),
        extra,
      );
    const any = parseConfig(
      base(
        'idp_provider_url: https://login.microsoftonline.com/organizations/v2.0\nidp_allowed_tenants: ["*"]',
      ),
      'entra.yaml',
      {},
    );
    assert.deepEqual(any.idp.allowedTenants, ['*']);
  });
});
