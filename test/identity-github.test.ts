import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startWhoami, type RunningWhoami } from '../demo/whoami.js';
import { ConfigError } from '../src/config/errors.js';
import { parseConfig } from '../src/config/load.js';
import { nextLink } from '../src/identity/github.js';
import type { RunningPortcullis } from '../src/server.js';
import {
  githubSignIn,
  startGitHubStandin,
  type GitHubStandin,
  type GitHubUser,
} from './helpers/github-standin.js';
import { request } from './helpers/http.js';
import { BROWSER_HEADERS } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import { startLoggedPortcullis } from './helpers/logged-portcullis.js';
import { upstreamHeaders } from './helpers/provider-stack.js';

// Issue 19, section 1, github: OAuth 2.0 (not OIDC) through the provider seam
// (src/identity/provider.ts), against a stand-in built from GitHub's REST docs
// (test/helpers/github-standin.ts names the pages). Facts relied on here:
// - only an address GitHub marks primary AND verified is the user's email
//   (docs.github.com/rest/users/emails, fields primary/verified);
// - teams come with their organization (docs.github.com/rest/teams/teams#list-teams-for-the-authenticated-user);
// - lists are paginated through the Link header, rel="next" (docs.github.com/rest/using-the-rest-api/using-pagination-in-the-rest-api);
// - a primary rate limit is 403 or 429 with x-ratelimit-remaining: 0 and x-ratelimit-reset;
//   secondary limits send retry-after (docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api);
// - GitHub Enterprise Server serves the API under <base>/api/v3 (docs.github.com/enterprise-server@3.14/rest).

const CLIENT_ID = `Iv1.${randomBytes(8).toString('hex')}`;
const CLIENT_SECRET = randomBytes(20).toString('hex');
const HOST = 'app.corp.test';

const OCTO: GitHubUser = {
  id: 583231,
  login: 'octocat',
  name: 'The Octocat',
  emails: [
    { email: 'octo-old@corp.example', primary: false, verified: true },
    { email: 'octocat@corp.example', primary: true, verified: true },
  ],
  orgs: ['acme', 'widgets'],
  teams: [
    { org: 'acme', slug: 'sre' },
    { org: 'acme', slug: 'platform' },
    { org: 'acme', slug: 'security' },
    { org: 'widgets', slug: 'design' },
    { org: 'hidden-org', slug: 'ops' },
  ],
};
const UNVERIFIED: GitHubUser = {
  id: 42,
  login: 'mallory',
  name: 'Mallory',
  emails: [
    { email: 'ceo@corp.example', primary: true, verified: false },
    { email: 'mallory@elsewhere.example', primary: false, verified: true },
  ],
  orgs: [],
  teams: [],
};
const LEAVER: GitHubUser = {
  id: 7,
  login: 'leaver',
  name: 'Leaver',
  emails: [{ email: 'leaver@corp.example', primary: true, verified: true }],
  orgs: ['acme'],
  teams: [{ org: 'acme', slug: 'sre' }],
};

interface Deployed {
  port: number;
  logs: Array<Record<string, unknown>>;
  text: () => string;
}

describe('github against a stand-in of GitHub and its REST API', () => {
  let gh: GitHubStandin;
  let upstream: RunningWhoami;
  const started: RunningPortcullis[] = [];

  async function deploy(globals: string, withFetch = true): Promise<Deployed> {
    const port = await freePort();
    const yaml = `address: 127.0.0.1:${port}
insecure_server: true
cookie_secure: false
cookie_secret: ${randomBytes(32).toString('base64')}
idp_provider: github
idp_client_id: ${CLIENT_ID}
${globals}
routes:
  - from: http://${HOST}:${port}
    prefix: /sre
    to: ${upstream.url}
    pass_identity_headers: true
    policy:
      allow:
        and:
          - groups: { has: "acme:sre" }
  - from: http://${HOST}:${port}
    to: ${upstream.url}
    pass_identity_headers: true
    allow_any_authenticated_user: true
`;
    const { proxy, logs, text } = await startLoggedPortcullis(parseConfig(yaml, 'github.yaml'), {
      listen: { host: '127.0.0.1', port },
      ...(withFetch ? { fetch: gh.fetch } : {}),
    });
    started.push(proxy);
    return { port, logs, text };
  }

  let pub: Deployed;
  before(async () => {
    gh = await startGitHubStandin({
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      users: [OCTO, UNVERIFIED, LEAVER],
    });
    gh.pageSize = 2;
    upstream = await startWhoami({ name: 'upstream' });
    pub = await deploy(
      `idp_provider_url: https://github.com\nidp_client_secret: ${CLIENT_SECRET}\nidp_refresh_directory_interval: 10s`,
    );
  });
  after(async () => {
    await Promise.allSettled([...started.map((p) => p.close()), upstream.close(), gh.close()]);
  });

  const url = (d: Deployed, path = '/?format=json') => `http://${HOST}:${d.port}${path}`;

  test('github.com: login as the user, the primary verified email, orgs and org:team groups over every page', async () => {
    gh.log.length = 0;
    const { final } = await githubSignIn(gh, url(pub, '/sre?format=json'), 'octocat');
    assert.equal(final.status, 200, final.body);
    const h = upstreamHeaders(final);
    assert.deepEqual(h['x-forwarded-user'], ['octocat']);
    assert.deepEqual(h['x-forwarded-email'], ['octocat@corp.example']);
    assert.deepEqual(h['x-forwarded-groups'], [
      'acme,widgets,acme:sre,acme:platform,acme:security,widgets:design,hidden-org,hidden-org:ops',
    ]);
    const teamPages = gh.log.filter((l) => l.startsWith('GET /api/v3/user/teams'));
    assert.equal(teamPages.length, 3, '5 teams at 2 a page, followed through Link rel="next"');
    assert.ok(
      teamPages.every((l) => l.endsWith('[Bearer]')),
      'the token goes in Authorization',
    );
    assert.ok(
      gh.log.some(
        (l) =>
          l.startsWith('GET /login/oauth/authorize?') &&
          l.includes('scope=read%3Auser+user%3Aemail+read%3Aorg'),
      ),
      'the preset asks for read:user user:email read:org',
    );
  });

  test('an unverified primary address is never the email, nor a verified secondary one', async () => {
    const { final } = await githubSignIn(gh, url(pub), 'mallory');
    assert.equal(final.status, 200, final.body);
    const h = upstreamHeaders(final);
    assert.deepEqual(h['x-forwarded-user'], ['mallory']);
    assert.equal(h['x-forwarded-email']?.[0] ?? '', '');
    const sre = await githubSignIn(gh, url(pub, '/sre?format=json'), 'mallory');
    assert.equal(sre.final.status, 403, 'no acme:sre team');
  });

  test('rate limited (403, x-ratelimit-remaining: 0): a clear 503 with the reset time logged; no session', async () => {
    const reset = Math.floor(Date.now() / 1000) + 1800;
    gh.faults.push({
      status: 403,
      headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(reset) },
      times: 1,
    });
    const { final, jar } = await githubSignIn(gh, url(pub), 'octocat');
    assert.equal(final.status, 503, final.body);
    assert.match(final.body, /could not be read from GitHub right now/);
    const again = await request(url(pub), { jar, headers: BROWSER_HEADERS });
    assert.equal(again.status, 302);
    const line = pub.logs.filter((l) => l.reason === 'directory_unavailable').at(-1);
    assert.match(
      String(line?.directory),
      new RegExp(`rate limit.*${new Date(reset * 1000).toISOString()}`),
    );
  });

  test('429 with retry-after 1 (a secondary limit) is waited out once; then the sign-in succeeds', async () => {
    gh.faults.push({ status: 429, headers: { 'retry-after': '1' }, times: 1 });
    const started = Date.now();
    const { final } = await githubSignIn(gh, url(pub), 'octocat');
    assert.equal(final.status, 200, final.body);
    assert.ok(Date.now() - started >= 900);
  });

  test('a 403 without rate-limit headers names the missing scope or org restriction', async () => {
    gh.faults.push({ status: 403, headers: {}, times: 1 });
    const { final } = await githubSignIn(gh, url(pub), 'octocat');
    assert.equal(final.status, 503, final.body);
    const line = pub.logs.filter((l) => l.reason === 'directory_unavailable').at(-1);
    assert.match(String(line?.directory), /read:org.*restricts OAuth app access/);
  });

  test('a next page on another host is not followed: the token stays with GitHub', async () => {
    gh.nextLinkOverride = 'https://api.github.com.evil.example/user/teams?page=2';
    try {
      const { final } = await githubSignIn(gh, url(pub), 'octocat');
      assert.equal(final.status, 503, final.body);
    } finally {
      gh.nextLinkOverride = null;
    }
  });

  test('a wrong client secret: GitHub answers 200 with an error, Portcullis a 400 that names it', async () => {
    const bad = await deploy(
      'idp_provider_url: https://github.com\nidp_client_secret: not-the-secret',
    );
    const { final } = await githubSignIn(gh, url(bad), 'octocat');
    assert.equal(final.status, 400, final.body);
    assert.match(final.body, /GitHub did not accept the sign-in \(incorrect_client_credentials\)/);
    assert.doesNotMatch(bad.text(), /not-the-secret/);
  });

  test('GitHub Enterprise Server: one base URL, the API under /api/v3', async () => {
    const ghes = await deploy(
      `idp_provider_url: ${gh.base}\nidp_client_secret: ${CLIENT_SECRET}`,
      false,
    );
    gh.log.length = 0;
    const { final } = await githubSignIn(gh, url(ghes), 'octocat');
    assert.equal(final.status, 200, final.body);
    assert.ok(gh.log.some((l) => l.startsWith('GET /api/v3/user ')));
    assert.ok(gh.log.some((l) => l.startsWith('POST /login/oauth/access_token')));
  });

  test('refreshed with the session: a team removed at GitHub is gone; a revoked token ends the session', async () => {
    const octo = await githubSignIn(gh, url(pub, '/sre?format=json'), 'octocat');
    assert.equal(octo.final.status, 200);
    const leaver = await githubSignIn(gh, url(pub, '/sre?format=json'), 'leaver');
    assert.equal(leaver.final.status, 200);
    const octoUser = gh.users.get('octocat')!;
    const savedTeams = octoUser.teams;
    octoUser.teams = savedTeams.filter((t) => t.slug !== 'sre');
    for (const t of gh.tokensOf('leaver')) gh.revoked.add(t);
    try {
      await new Promise((resolve) => setTimeout(resolve, 11_000));
      const o = await request(url(pub, '/sre?format=json'), {
        jar: octo.jar,
        headers: BROWSER_HEADERS,
      });
      assert.equal(o.status, 403, 'acme:sre was removed at GitHub');
      const l = await request(url(pub, '/?format=json'), {
        jar: leaver.jar,
        headers: BROWSER_HEADERS,
      });
      assert.equal(l.status, 302, 'the revoked token ended the session: sign in again');
    } finally {
      octoUser.teams = savedTeams;
    }
  });

  /** A config for GitHub at `url`, with `extra` among its globals. */
  const githubYaml = (url: string, ...extra: string[]): string => `address: 127.0.0.1:8443
idp_provider: github
idp_provider_url: ${url}
${extra.map((l) => `${l}\n`).join('')}idp_client_id: x
idp_client_secret: ${CLIENT_SECRET}
cookie_secret: ${Buffer.alloc(32, 1).toString('base64')}
routes:
  - from: https://app.example.com
    to: http://127.0.0.1:9000
    allow_any_authenticated_user: true
`;
  const refused = (yaml: string, message: RegExp): void =>
    assert.throws(
      () => parseConfig(yaml, 'gh.yaml', {}),
      (e: unknown) => e instanceof ConfigError && message.test(e.message),
    );

  test('config: bearer tokens cannot be verified with GitHub', () => {
    refused(
      githubYaml('https://github.com', 'allow_bearer_tokens: true'),
      /allow_bearer_tokens: GitHub issues no verifiable tokens/,
    );
  });

  test('config: idp_directory_url must be https unless on this machine (tokens go there)', () => {
    refused(
      githubYaml(
        'https://github.example.com',
        'idp_directory_url: http://github-api.example.com/api/v3',
      ),
      /idp_directory_url: expected an https:\/\/ URL/,
    );
  });

  test('Link header parsing: rel="next" only, whatever the order and spacing', () => {
    assert.equal(
      nextLink(
        '<https://api.github.com/x?page=3>; rel="last", <https://api.github.com/x?page=2>; rel="next"',
      ),
      'https://api.github.com/x?page=2',
    );
    assert.equal(nextLink('<https://a/x?page=1>; rel="prev"'), null);
    assert.equal(nextLink('<https://a/x?page=2>;rel=next'), 'https://a/x?page=2');
    assert.equal(nextLink('garbage'), null);
    assert.equal(nextLink(null), null);
  });
});
