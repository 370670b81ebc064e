import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEMO_USERS, type DemoUser } from '../demo/idp.js';
import { ConfigError } from '../src/config/errors.js';
import { parseConfig } from '../src/config/load.js';
import { RATE_LIMITED, startGoogleStandin, type GoogleStandin } from './helpers/google-standin.js';
import { request } from './helpers/http.js';
import { BROWSER_HEADERS } from './helpers/login.js';
import {
  HOST,
  startProviderStack,
  upstreamHeaders,
  type ProviderStack,
} from './helpers/provider-stack.js';

// Issue 19, section 1, google. The sign-in itself is OpenID Connect (the real test IdP issuing
// Google's claim shape: `hd` for a Workspace account, none for a consumer account —
// developers.google.com/identity/openid-connect/openid-connect#an-id-tokens-payload, which also
// says to check `hd` in the token rather than trust the hd request parameter). Groups come from
// a stand-in of the Admin SDK Directory API reached with a service-account JWT
// (test/helpers/google-standin.ts cites the pages).

const ADMIN = 'admin@corp.example';
const WORKER: DemoUser = {
  id: 'worker',
  password: 'worker',
  email: 'worker@corp.example',
  name: 'Workspace User',
  groups: [],
  claims: { hd: 'corp.example' },
};
const CONSUMER: DemoUser = {
  id: 'consumer',
  password: 'consumer',
  email: 'someone@gmail.example',
  name: 'Consumer',
  groups: [],
};
const ROUTES = `routes:
  - from: http://${HOST}:\${PORT}
    prefix: /eng
    to: \${UPSTREAM}
    pass_identity_headers: true
    policy:
      allow:
        and:
          - groups: { has: eng@corp.example }
  - from: http://${HOST}:\${PORT}
    to: \${UPSTREAM}
    pass_identity_headers: true
    allow_any_authenticated_user: true
`;

describe('google: hd and Workspace groups from the Directory API', () => {
  let stack: ProviderStack;
  let google: GoogleStandin;
  let keyPath: string;
  let globals: string;
  before(async () => {
    google = await startGoogleStandin({ admin: ADMIN });
    google.memberships.set('worker@corp.example', [
      'all@corp.example',
      'eng@corp.example',
      'oncall@corp.example',
      'Design@corp.example',
      'leads@corp.example',
    ]);
    google.pageSize = 2;
    const dir = mkdtempSync(join(tmpdir(), 'google-'));
    keyPath = join(dir, 'sa.json');
    writeFileSync(keyPath, google.keyFile, { mode: 0o600 });
    stack = await startProviderStack({
      users: [...DEMO_USERS, WORKER, CONSUMER],
      extraClaims: ['hd'],
      deployments: 3,
    });
    globals = [
      'idp_provider: google',
      'idp_hosted_domains: [corp.example]',
      `idp_service_account_file: ${keyPath}`,
      `idp_admin_email: ${ADMIN}`,
      `idp_directory_url: ${google.base}`,
      // Every sign-in asks the directory, so each fault below is met (the cache has its own test).
      'idp_directory_cache_ttl: 0s',
      'idp_directory_outage_grace: 0s',
    ].join('\n');
  });
  after(async () => {
    await Promise.allSettled([stack.close(), google.close()]);
  });

  test('a Workspace user: groups (every page) are the group addresses; a group policy works', async () => {
    const d = await stack.deploy(globals, ROUTES);
    google.log.length = 0;
    const { final } = await d.signIn('worker', '/eng?format=json');
    assert.equal(final.status, 200, final.body);
    assert.deepEqual(upstreamHeaders(final)['x-forwarded-groups'], [
      'all@corp.example,eng@corp.example,oncall@corp.example,design@corp.example,leads@corp.example',
    ]);
    assert.equal(
      google.log.filter((l) => l.startsWith('GET /admin/directory/v1/groups')).length,
      3,
    );
    assert.ok(google.log.some((l) => l.includes('userKey=worker%40corp.example')));
    // Google issues a refresh token only for access_type=offline.
    const start = await request(`http://${HOST}:${d.port}/`, { headers: BROWSER_HEADERS });
    assert.match(start.location ?? '', /access_type=offline/);

    // A consumer account has no hd: refused with its own code, and the directory is not asked.
    google.log.length = 0;
    const consumer = await d.signIn('consumer');
    assert.equal(consumer.final.status, 403, consumer.final.body);
    assert.match(consumer.final.body, /Accounts of your organization cannot sign in here/);
    assert.deepEqual(google.log, []);
    const line = d.logs.find((l) => l.reason === 'organization_not_allowed');
    assert.match(String(line?.detail), /consumer Google account/);
  });

  test('a service account without domain-wide delegation: 503 naming the Admin console step', async () => {
    const d = await stack.deploy(globals, ROUTES);
    google.delegated = false;
    try {
      const { final, jar } = await d.signIn('worker');
      assert.equal(final.status, 503, final.body);
      const again = await request(`http://${HOST}:${d.port}/?format=json`, {
        jar,
        headers: BROWSER_HEADERS,
      });
      assert.equal(again.status, 302, 'no session');
      const line = d.logs.find((l) => l.reason === 'directory_unavailable');
      assert.match(String(line?.directory), /unauthorized_client.*domain-wide delegation/);
    } finally {
      google.delegated = true;
    }
  });

  test('rate limited once: backed off and retried; rate limited again: a clear 503, not a 500', async () => {
    const d = await stack.deploy(globals, ROUTES);
    google.faults.push({ status: 403, body: RATE_LIMITED, times: 1 });
    const ok = await d.signIn('worker');
    assert.equal(ok.final.status, 200, ok.final.body);
    google.faults.push({ status: 403, body: RATE_LIMITED, times: 2 });
    const limited = await d.signIn('worker');
    assert.equal(limited.final.status, 503, limited.final.body);
    assert.match(
      String(d.logs.filter((l) => l.reason === 'directory_unavailable').at(-1)?.directory),
      /rate limiting/,
    );
  });

  test('config: the key file and admin are checked when the config loads', () => {
    const dir = mkdtempSync(join(tmpdir(), 'google-bad-'));
    const notJson = join(dir, 'bad.json');
    writeFileSync(notJson, 'not json');
    const wrongType = join(dir, 'user.json');
    writeFileSync(wrongType, JSON.stringify({ type: 'authorized_user', client_id: 'x' }));
    const yaml = (extra: string, provider = 'google') => `address: 127.0.0.1:8443
cookie_secret: ${Buffer.alloc(32, 2).toString('base64')}
idp_provider: ${provider}
idp_provider_url: https://accounts.google.com
idp_client_id: x.apps.googleusercontent.com
idp_client_secret: GOCSPX-abcdefghijklmnopqrstuvwxyz12
${extra}
routes:
  - from: https://app.example.com
    to: http://127.0.0.1:9000
    allow_any_authenticated_user: true
`;
    const cases: Array<[string, string, RegExp]> = [
      [`idp_service_account_file: ${notJson}\nidp_admin_email: ${ADMIN}`, 'google', /is not JSON/],
      [
        `idp_service_account_file: ${wrongType}\nidp_admin_email: ${ADMIN}`,
        'google',
        /expected "type": "service_account"/,
      ],
      [`idp_service_account_file: ${keyPath}`, 'google', /needs both idp_service_account_file/],
      [
        `idp_service_account_file: ${join(dir, 'missing.json')}\nidp_admin_email: ${ADMIN}`,
        'google',
        /cannot read .*ENOENT/,
      ],
      [
        'idp_hosted_domains: [corp.example]',
        'okta',
        /Google Workspace setting: it needs idp_provider: google/,
      ],
      [`idp_admin_email: not-an-address`, 'google', /expected idp_admin_email as an address/],
    ];
    for (const [extra, provider, expected] of cases)
      assert.throws(
        () => parseConfig(yaml(extra, provider), 'google.yaml', {}),
        (e: unknown) => e instanceof ConfigError && expected.test(e.message),
        extra,
      );
  });
});
