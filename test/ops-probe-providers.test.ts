import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { lintConfig } from '../src/config/lint.js';
import { parseConfig } from '../src/config/load.js';
import { runProbe, type ProbeCheck } from '../src/cli/probe.js';
import { startEntraStandin, type EntraStandin } from './helpers/entra-standin.js';
import { startGitHubStandin, type GitHubStandin } from './helpers/github-standin.js';
import { startGoogleStandin, type GoogleStandin } from './helpers/google-standin.js';

// `portcullis probe` and `portcullis check` know each provider's pitfalls (issue 19): a deleted
// GitHub OAuth app, Graph's admin consent not granted, a Google service account without
// domain-wide delegation, and scopes that make group or email rules deny everyone. Each runs
// against the stand-ins of test/helpers, which cite the providers' pages for every shape used:
// GitHub's token endpoint answering `incorrect_client_credentials` / `bad_verification_code`
// with HTTP 200 (docs.github.com "Troubleshooting OAuth app access token request errors"),
// Graph's 403 without the application permission (learn.microsoft.com/en-us/graph/api/
// user-list-transitivememberof, "Permissions"), Google's `unauthorized_client` for a client id
// without delegation (developers.google.com/identity/protocols/oauth2/service-account).

const dir = mkdtempSync(join(tmpdir(), 'probe-providers-'));

function config(provider: string, globals: string, routes = ''): string {
  return `address: 127.0.0.1:0
insecure_server: true
cookie_secure: false
cookie_secret: ${randomBytes(32).toString('base64')}
idp_provider: ${provider}
${globals}
routes:
  - from: http://app.corp.test
    to: http://127.0.0.1:9
${routes || '    allow_any_authenticated_user: true\n'}`;
}

function byName(cs: ProbeCheck[], name: string): ProbeCheck[] {
  const found = cs.filter((c) => c.check === name);
  assert.ok(found.length, `no ${name} check in ${JSON.stringify(cs)}`);
  return found;
}

const GROUP_ROUTE = `    policy:
      allow:
        and:
          - groups: { has: "acme:sre" }
`;

describe('probe: GitHub (OAuth 2.0, no discovery)', () => {
  const CLIENT_ID = 'Iv1.probe0123456789';
  const CLIENT_SECRET = randomBytes(20).toString('hex');
  let gh: GitHubStandin;
  before(async () => {
    gh = await startGitHubStandin({
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      users: [{ id: 1, login: 'octocat', name: 'Octo', emails: [], orgs: [], teams: [] }],
    });
  });
  after(() => gh?.close());

  const file = (secret: string): string => {
    const f = join(dir, `github-${randomBytes(4).toString('hex')}.yaml`);
    writeFileSync(
      f,
      config(
        'github',
        `idp_provider_url: ${gh.base}\nidp_client_id: ${CLIENT_ID}\nidp_client_secret: ${secret}`,
      ),
    );
    return f;
  };

  const probe = (f: string): Promise<{ code: number; out: { checks: ProbeCheck[] } }> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        ['dist/src/cli/main.js', 'probe', '--config', f, '--format', 'json'],
        { cwd: process.cwd(), timeout: 60_000 },
        (err, stdout) =>
          resolve({
            code: err ? Number((err as { code?: number }).code) : 0,
            out: JSON.parse(stdout) as { checks: ProbeCheck[] },
          }),
      );
    });

  test('the right secret: no discovery is asked for, the API and the client pass', async () => {
    const r = await probe(file(CLIENT_SECRET));
    const idp = r.out.checks.filter((c) => c.check.startsWith('idp_'));
    assert.deepEqual(
      idp.map((c) => [c.check, c.status]),
      [
        ['idp_api', 'ok'],
        ['idp_client', 'ok'],
      ],
      JSON.stringify(idp),
    );
    assert.match(byName(idp, 'idp_client')[0]!.detail, /bad_verification_code/);
    // GitHub has no /.well-known/openid-configuration: asking for it would always fail.
    assert.ok(!gh.log.some((l) => l.includes('.well-known')), gh.log.join('\n'));
    assert.ok(
      gh.log.some((l) => l.startsWith('GET /api/v3/meta')),
      gh.log.join('\n'),
    );
  });

  test('a wrong or deleted secret fails the probe with what to do, and the secret is not shown', async () => {
    const wrong = randomBytes(20).toString('hex');
    const r = await probe(file(wrong));
    assert.equal(r.code, 1);
    const c = byName(r.out.checks, 'idp_client')[0]!;
    assert.equal(c.status, 'fail');
    assert.match(c.detail, /incorrect_client_credentials.*deleted.*secret/);
    assert.ok(!JSON.stringify(r.out).includes(wrong));
  });
});

describe('probe: Entra ID Graph permission for the groups overage', () => {
  const CLIENT_ID = randomUUID();
  const CLIENT_SECRET = randomBytes(24).toString('base64url');
  const TENANT = randomUUID();
  const PARTNER = randomUUID();
  let entra: EntraStandin;
  before(async () => {
    entra = await startEntraStandin({
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      users: [{ oid: randomUUID(), tid: TENANT, name: 'U', email: 'u@corp.example', groups: [] }],
    });
  });
  after(() => entra?.close());

  const cfg = (globals: string, secret = CLIENT_SECRET) =>
    parseConfig(
      config('azure', `idp_client_id: ${CLIENT_ID}\nidp_client_secret: ${secret}\n${globals}`),
      'azure.yaml',
    );

  test('consent granted: the app-only token reads Graph (a made-up user is a 404, not a 403)', async () => {
    const checks = await runProbe(
      cfg(`idp_provider_url: https://login.microsoftonline.com/${TENANT}/v2.0`),
      { fetch: entra.fetch },
    );
    const d = byName(checks, 'idp_directory');
    assert.equal(d.length, 1);
    assert.equal(d[0]!.status, 'ok', d[0]!.detail);
    assert.match(d[0]!.detail, new RegExp(TENANT));
    assert.ok(
      entra.log.some((l) => l.includes(`/${TENANT}/oauth2/v2.0/token`)),
      entra.log.join('\n'),
    );
  });

  test('consent missing: Graph 403 fails the probe and names the permission', async () => {
    entra.graphFaults.push({ status: 403, times: 1 });
    const checks = await runProbe(
      cfg(`idp_provider_url: https://login.microsoftonline.com/${TENANT}/v2.0`),
      { fetch: entra.fetch },
    );
    const d = byName(checks, 'idp_directory')[0]!;
    assert.equal(d.status, 'fail');
    assert.match(d.detail, /GroupMember\.Read\.All.*admin consent/);
  });

  test('multi-tenant: each allowed tenant is checked; "*" alone cannot be, and says so', async () => {
    const multi = await runProbe(
      cfg(
        `idp_provider_url: https://login.microsoftonline.com/organizations/v2.0\nidp_allowed_tenants: [${TENANT}, ${PARTNER}]`,
      ),
      { fetch: entra.fetch },
    );
    assert.deepEqual(
      byName(multi, 'idp_directory')
        .map((c) => [c.target.split(' tenant ')[1], c.status])
        .sort(),
      [
        [TENANT, 'ok'],
        [PARTNER, 'ok'],
      ].sort(),
    );
    const any = await runProbe(
      cfg(
        `idp_provider_url: https://login.microsoftonline.com/organizations/v2.0\nidp_allowed_tenants: ["*"]`,
      ),
      { fetch: entra.fetch },
    );
    const skip = byName(any, 'idp_directory')[0]!;
    assert.equal(skip.status, 'skip');
    assert.match(skip.detail, /every tenant must grant consent/);
  });

  test('a wrong client secret: no Graph token, the probe fails on the client too', async () => {
    const checks = await runProbe(
      cfg(`idp_provider_url: https://login.microsoftonline.com/${TENANT}/v2.0`, 'wrong-secret'),
      { fetch: entra.fetch },
    );
    assert.equal(byName(checks, 'idp_client')[0]!.status, 'fail');
    const d = byName(checks, 'idp_directory')[0]!;
    assert.equal(d.status, 'fail');
    assert.match(d.detail, /no Graph token.*invalid_client/);
  });
});

describe('probe: Google Workspace domain-wide delegation', () => {
  const ADMIN = 'admin@corp.example';
  let google: GoogleStandin;
  let keyPath: string;
  before(async () => {
    google = await startGoogleStandin({ admin: ADMIN });
    google.memberships.set(ADMIN, ['it@corp.example']);
    keyPath = join(dir, 'sa.json');
    writeFileSync(keyPath, google.keyFile, { mode: 0o600 });
  });
  after(() => google?.close());

  const googleCfg = (withAccount: boolean) =>
    parseConfig(
      config(
        'google',
        `idp_provider_url: https://accounts.google.com
idp_client_id: x.apps.googleusercontent.com
idp_client_secret: GOCSPX-abcdefghijklmnopqrstuvwxyz12
idp_directory_url: ${google.base}
${withAccount ? `idp_service_account_file: ${keyPath}\nidp_admin_email: ${ADMIN}` : ''}`,
      ),
      'google.yaml',
    );
  // Google's own discovery is not reachable from here: only the directory check is looked at.
  const offline: typeof fetch = (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (url.startsWith(google.base)) return fetch(input, init);
    return Promise.reject(new TypeError('fetch failed', { cause: { code: 'ENOTFOUND' } }));
  };

  test('delegated: the service account reads groups as the admin', async () => {
    google.delegated = true;
    const d = byName(await runProbe(googleCfg(true), { fetch: offline }), 'idp_directory')[0]!;
    assert.equal(d.status, 'ok', d.detail);
    assert.match(d.detail, /reads groups as admin@corp\.example \(1 for the admin\)/);
  });

  test('no delegation: unauthorized_client fails the probe with the Admin console step', async () => {
    google.delegated = false;
    const d = byName(await runProbe(googleCfg(true), { fetch: offline }), 'idp_directory')[0]!;
    assert.equal(d.status, 'fail');
    assert.match(d.detail, /unauthorized_client.*domain-wide delegation/);
    google.delegated = true;
  });

  test('no service account: skipped, saying group rules would deny', async () => {
    const d = byName(await runProbe(googleCfg(false), { fetch: offline }), 'idp_directory')[0]!;
    assert.equal(d.status, 'skip');
    assert.match(d.detail, /no groups/);
  });
});

describe('check: provider scopes that make rules deny everyone', () => {
  const lint = (yaml: string) => lintConfig(parseConfig(yaml, 'lint.yaml'), yaml);
  const github = (scopes: string, routes = GROUP_ROUTE) =>
    config(
      'github',
      `idp_provider_url: https://github.com\nidp_client_id: Iv1.x\nidp_client_secret: ${randomBytes(20).toString('hex')}${scopes}`,
      routes,
    );

  test('GitHub without read:org on a group route, without user:email anywhere', () => {
    const issues = lint(github('\nidp_scopes: [read:user]'));
    const org = issues.find((i) => /no read:org/.test(i.message));
    assert.ok(org, JSON.stringify(issues));
    assert.equal(org.severity, 'warning');
    assert.equal(org.key, 'idp_scopes');
    assert.equal(org.line, 9);
    assert.ok(issues.some((i) => /no user:email/.test(i.message)));
    // The preset's scopes carry both: only the organization-approval note remains.
    const preset = lint(github(''));
    assert.deepEqual(
      preset.map((i) => [i.severity, i.key]),
      [['info', 'idp_provider']],
      JSON.stringify(preset),
    );
    assert.match(preset[0]!.message, /OAuth app access restrictions/);
    // No group route: nothing about organizations at all.
    assert.deepEqual(lint(github('', '    allow_any_authenticated_user: true\n')), []);
  });

  test('Google: a groups scope is an error (invalid_scope); group rules without a directory warn', () => {
    const yaml = config(
      'google',
      `idp_provider_url: https://accounts.google.com
idp_client_id: x.apps.googleusercontent.com
idp_client_secret: GOCSPX-abcdefghijklmnopqrstuvwxyz12
idp_scopes: [openid, email, profile, groups]`,
      GROUP_ROUTE,
    );
    const issues = lint(yaml);
    const scope = issues.find((i) => /refuses the scope groups/.test(i.message));
    assert.ok(scope, JSON.stringify(issues));
    assert.equal(scope.severity, 'error');
    assert.equal(scope.line, 9);
    const groups = issues.find((i) => /carry no groups/.test(i.message));
    assert.ok(groups, JSON.stringify(issues));
    assert.equal(groups.key, 'routes[0]');
  });
});
