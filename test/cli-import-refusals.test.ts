import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { checkOk, dir, importOk, notCarried, routesOf, run, write } from './helpers/import-cli.js';

// `portcullis import` as an operator runs it (test/helpers/import-cli.ts): the built CLI fed the
// peers' own documented example configs (written here from the documented facts, each cited),
// judged by what it writes, what it prints, its exit status, and whether `portcullis check`
// and a real sign-in accept the result.

describe('import oauth2-proxy: what cannot be carried over', () => {
  const base = [
    '--provider=oidc',
    '--oidc-issuer-url=https://idp.example.com',
    '--client-id=app',
    '--client-secret=s3cret-value-xyz',
    `--cookie-secret=${randomBytes(32).toString('base64url')}`,
    '--email-domain=example.com',
    '--upstream=http://127.0.0.1:3000',
    '--redirect-url=https://app.example.com/oauth2/callback',
  ];
  const refused = async (args: string[], message: RegExp, env: Record<string, string> = {}) => {
    const out = join(dir, `refused-${randomBytes(4).toString('hex')}.yaml`);
    const dash = args.indexOf('--');
    const r = await run(['import', ...args.slice(0, dash), '--out', out, ...args.slice(dash)], env);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, message);
    assert.throws(() => statSync(out), 'nothing written');
    assert.ok(!r.stderr.includes('s3cret-value-xyz'), 'the client secret is never printed');
    assert.ok(!/at .*\.js:\d+/.test(r.stderr), 'no stack trace');
    return r;
  };

  test('GitHub: github_org / github_team become group rules; a repository check is refused', async () => {
    // Command-line flags (https://oauth2-proxy.github.io/oauth2-proxy/configuration/overview,
    // v7.x): --github-org "restrict logins to members of this
    // organisation", --github-team "restrict logins to members of any of these teams (slug),
    // separated by a comma", --github-repo "restrict logins to collaborators of this repository".
    // Portcullis's github groups are `org` and `org:team-slug` (docs/identity-providers.md).
    const gh = base.filter((a) => !a.startsWith('--oidc-issuer-url'));
    const { cfg, file } = await importOk([
      'oauth2-proxy',
      '--',
      ...gh,
      '--provider=github',
      '--github-org=acme',
      '--github-team=sre,ops',
    ]);
    assert.equal(cfg.idp_provider, 'github');
    assert.equal(cfg.idp_provider_url, 'https://github.com');
    assert.equal(cfg.idp_scopes, undefined, "the github provider's own scopes");
    assert.deepEqual(routesOf(cfg)[0]!.policy, [
      {
        allow: {
          and: [
            { domain: { is: 'example.com' } },
            { or: [{ groups: { has: 'acme:sre' } }, { groups: { has: 'acme:ops' } }] },
          ],
        },
      },
    ]);
    await checkOk(file);
    await refused(
      ['oauth2-proxy', '--', ...gh, '--provider=github', '--github-repo=acme/app'],
      /cannot import: github_repo — a provider-specific membership check/,
    );
  });

  test('an unknown provider is refused, listing the known ones', async () => {
    await refused(
      ['oauth2-proxy', '--', ...base, '--provider=okta-classic'],
      /"okta-classic" is not an oauth2-proxy provider Portcullis knows \(expected one of oidc, keycloak-oidc, google/,
    );
  });

  test('a membership check Portcullis cannot make (github_org) is refused: dropping it would let more people in', async () => {
    await refused(
      ['oauth2-proxy', '--', ...base, '--provider=oidc'],
      /cannot import: github_org — a provider-specific membership check/,
      { OAUTH2_PROXY_GITHUB_ORG: 'acme' },
    );
  });

  test('no email_domains and no authenticated_emails_file: oauth2-proxy would not start, the import does not guess', async () => {
    await refused(
      ['oauth2-proxy', '--', ...base.filter((a) => !a.startsWith('--email-domain'))],
      /cannot import: email_domains — oauth2-proxy refuses to start without email_domains/,
    );
  });

  test('an unknown flag, a flag without its value and a stray word are each named', async () => {
    const r = await refused(
      ['oauth2-proxy', '--', ...base, '--upstreams=http://x', 'oops', '-provider=oidc', '--scope'],
      /--upstreams is not an oauth2-proxy flag \(did you mean --upstream\?\)/,
    );
    assert.match(r.stderr, /unexpected argument "oops"/);
    assert.match(r.stderr, /"-provider=oidc": oauth2-proxy flags are written --name=value/);
    assert.match(r.stderr, /--scope needs a value/);
    await refused(
      ['oauth2-proxy', '--', ...base, '--alpha-config=/etc/oauth2-proxy/alpha.yaml'],
      /give the alpha config as `portcullis import oauth2-proxy --alpha-config FILE`, before `--`/,
    );
  });

  test('a value of the wrong kind names where it came from, without echoing a secret', async () => {
    const r = await refused(
      ['oauth2-proxy', '--', ...base, '--cookie-expire=7d'],
      /command line --cookie-expire: cookie_expire expects a duration like "168h"/,
    );
    assert.match(r.stderr, /got "7d"/);
    await refused(
      ['oauth2-proxy', '--', ...base],
      /environment OAUTH2_PROXY_COOKIE_SECURE: cookie_secure expects true or false/,
      {
        OAUTH2_PROXY_COOKIE_SECURE: 'sometimes',
      },
    );
  });

  test('a malformed config file line stops the import with file and line', async () => {
    const f = write('broken.cfg', 'provider = "oidc"\nclient_id = oauth2-proxy\n');
    const r = await run(['import', 'oauth2-proxy', '--config', f]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /broken\.cfg:2: expected a quoted string, true\/false, a number or a \[list\], got "oauth2-proxy"/,
    );
    assert.equal(r.stdout, '');
    // The same mistake on a secret describes the value without quoting it.
    const s = await run([
      'import',
      'oauth2-proxy',
      '--config',
      write('broken-secret.cfg', 'client_secret = Sup3rS3cretValue\n'),
    ]);
    assert.equal(s.code, 1);
    assert.match(s.stderr, /broken-secret\.cfg:1: .*got 16 characters \(not shown: a secret\)/);
    assert.ok(!s.stderr.includes('Sup3rS3cret'), s.stderr);
    const tail = await run([
      'import',
      'oauth2-proxy',
      '--config',
      write('tail.cfg', 'cookie_secret = "x" Tail3rS3cret\n'),
    ]);
    assert.match(
      tail.stderr,
      /tail\.cfg:1: unexpected 12 characters \(not shown: a secret\) after the value/,
    );
    assert.ok(!tail.stderr.includes('Tail3rS3cret'));
  });

  test('upstreams Portcullis cannot serve (static://, file://, credentials in the URL) are reported without the credentials', async () => {
    const { cfg, stderr } = await importOk([
      'oauth2-proxy',
      '--',
      ...base,
      '--upstream=static://202',
      '--upstream=file:///var/www/static/#/static/',
      '--upstream=http://svc:pa55w0rd@127.0.0.1:4000/api/',
      '--upstream=http://127.0.0.1:5000/status',
    ]);
    assert.match(
      stderr,
      /not carried over: upstreams — static:\/\/ upstream "static:\/\/202\/?": Portcullis proxies to http\(s\) upstreams only/,
    );
    assert.match(
      stderr,
      /not carried over: upstreams — file:\/\/ upstream "file:\/\/\/var\/www\/static\/"/,
    );
    assert.match(
      stderr,
      /not carried over: upstreams — http:\/\/127\.0\.0\.1:4000\/api\/: the user name and password in the URL are not sent upstream/,
    );
    assert.ok(!stderr.includes('pa55w0rd'));
    // oauth2-proxy pkg/upstream/proxy.go (commit 065c944): upstreams sorted longest path first
    // (sortByPathLongest); a path ending in "/" serves everything under it, any other only
    // itself (registerSimpleHandler); http.go sends the original request path.
    assert.deepEqual(
      routesOf(cfg).map((r) => [r.prefix ?? r.path ?? '/', r.path ? 'exact' : 'prefix', r.to]),
      [
        ['/status', 'exact', 'http://127.0.0.1:5000'],
        ['/api/', 'prefix', 'http://127.0.0.1:4000'],
        ['/', 'prefix', 'http://127.0.0.1:3000'],
      ],
    );
  });

  test('a host-less setup without --from is refused with the flag to give', async () => {
    await refused(
      ['oauth2-proxy', '--', ...base.filter((a) => !a.startsWith('--redirect-url'))],
      /cannot import: upstreams — oauth2-proxy answers any Host; .* --from https:\/\/app\.example\.com/,
    );
  });

  test('insecure_oidc_* and ssl_insecure_skip_verify are refused with the reason, and the rest still imports (stricter, not wider)', async () => {
    const { cfg, stderr, file } = await importOk([
      'oauth2-proxy',
      '--',
      ...base,
      '--insecure-oidc-allow-unverified-email',
      '--insecure-oidc-skip-issuer-verification=true',
      '--ssl-insecure-skip-verify',
    ]);
    assert.match(
      stderr,
      /not carried over: insecure_oidc_allow_unverified_email — refused: an unverified address proves nothing/,
    );
    assert.match(
      stderr,
      /not carried over: insecure_oidc_skip_issuer_verification — refused: Portcullis always checks/,
    );
    assert.match(
      stderr,
      /not carried over: ssl_insecure_skip_verify — refused: .*NODE_EXTRA_CA_CERTS/,
    );
    assert.equal(cfg.idp_allow_unverified_email, undefined);
    await checkOk(file);
  });

  test('a 16-byte cookie secret (AES-128 in oauth2-proxy) is replaced by 32 fresh bytes, said without showing either', async () => {
    const short = 'sixteen-byte-key';
    const { cfg, stderr } = await importOk([
      'oauth2-proxy',
      '--',
      ...base.filter((a) => !a.startsWith('--cookie-secret')),
      `--cookie-secret=${short}`,
    ]);
    assert.equal(Buffer.from(cfg.cookie_secret as string, 'base64').length, 32);
    assert.match(
      stderr,
      /not carried over: cookie_secret — it keys 128-bit AES and Portcullis needs 32 random bytes/,
    );
    assert.ok(!stderr.includes(short));
  });

  test('a skip_auth_regex in Go syntax JavaScript cannot run is reported, and the path then needs a sign-in', async () => {
    const { cfg, stderr } = await importOk([
      'oauth2-proxy',
      '--',
      ...base,
      '--skip-auth-regex=(?i)^/health',
    ]);
    assert.match(
      stderr,
      /not carried over: skip_auth_regex — "\(\?i\)\^\/health": Go's inline flags/,
    );
    assert.equal(routesOf(cfg).length, 1);
  });

  test('authenticated_emails_file is read into the policy; an unreadable one is refused', async () => {
    const emails = write('emails.csv', '# staff\nann@partner.test\nBob@Partner.test, extra\n');
    const { cfg, stderr } = await importOk([
      'oauth2-proxy',
      '--',
      ...base,
      `--authenticated-emails-file=${emails}`,
    ]);
    assert.deepEqual(routesOf(cfg)[0]!.policy, [
      {
        allow: {
          and: [
            {
              or: [
                { domain: { is: 'example.com' } },
                { email: { in: ['ann@partner.test', 'bob@partner.test'] } },
              ],
            },
          ],
        },
      },
    ]);
    assert.match(
      stderr,
      /not carried over: authenticated_emails_file — its 2 addresses are written into the policy/,
    );
    await refused(
      ['oauth2-proxy', '--', ...base, `--authenticated-emails-file=${join(dir, 'missing.csv')}`],
      /cannot import: authenticated_emails_file — cannot read .*missing\.csv \(ENOENT\)/,
    );
  });

  test('the rest of the mapping table in docs/recipes/migrating.md', async () => {
    const { cfg, stderr } = await importOk([
      'oauth2-proxy',
      '--',
      ...base.filter((a) => !a.startsWith('--provider') && !a.startsWith('--oidc-issuer-url')),
      '--provider=keycloak-oidc',
      '--oidc-issuer-url=https://kc.example.com/realms/corp',
      '--allowed-role=admin',
      '--allowed-role=grafana:editor',
      '--user-id-claim=mail',
      '--trusted-ip=10.0.0.0/8',
      '--skip-auth-preflight',
      '--skip-jwt-bearer-tokens',
      '--oidc-extra-audience=api',
      '--cookie-samesite=strict',
      '--cookie-refresh=1h',
      '--tls-cert-file=/etc/tls/cert.pem',
      '--tls-key-file=/etc/tls/key.pem',
      '--https-address=:8443',
      '--session-store-type=redis',
      '--redis-use-sentinel',
      '--redis-sentinel-master-name=mymaster',
      '--redis-sentinel-connection-urls=redis://s1:26379,redis://s2:26379',
      '--redis-password=r3dis-pass',
      '--skip-provider-button',
      '--scope=email profile groups',
    ]);
    assert.deepEqual(cfg.idp_scopes, ['openid', 'email', 'profile', 'groups']);
    assert.match(stderr, /not carried over: scope — openid was added/);
    assert.equal(cfg.idp_provider, 'keycloak');
    assert.equal(cfg.idp_email_claim, 'mail', 'user_id_claim is the old name of oidc_email_claim');
    assert.equal(cfg.address, ':8443');
    assert.equal(cfg.certificate_file, '/etc/tls/cert.pem');
    assert.equal(cfg.insecure_server, undefined);
    assert.equal(cfg.cookie_same_site, 'strict');
    assert.equal(cfg.idp_refresh_directory_interval, '1h');
    assert.equal(cfg.allow_bearer_tokens, true);
    assert.deepEqual(cfg.bearer_audiences, ['app', 'api']);
    // Portcullis's Sentinel form (docs/configuration.md): the sentinels as hosts, ?sentinel=.
    assert.equal(cfg.session_storage, 'redis://:r3dis-pass@s1:26379,s2:26379?sentinel=mymaster');
    assert.deepEqual(routesOf(cfg)[0]!.policy, [
      {
        allow: {
          and: [
            { domain: { is: 'example.com' } },
            {
              or: [
                { 'claim/realm_access/roles': { has: 'admin' } },
                { 'claim/resource_access/grafana/roles': { has: 'editor' } },
              ],
            },
          ],
        },
      },
      { allow: { or: [{ http_method: { is: 'OPTIONS' } }, { source_ip: ['10.0.0.0/8'] }] } },
    ]);
    assert.ok(!stderr.includes('r3dis-pass'), 'no secret printed');
    assert.ok(!/skip_provider_button/.test(stderr), 'true is what Portcullis does anyway');
    assert.match(stderr, /not carried over: trusted_ips — carried over as a source_ip allow rule/);

    // Azure: the tenant's v2.0 issuer; the multi-tenant "common" cannot be verified.
    const azureArgs = base.filter(
      (a) => !a.startsWith('--provider') && !a.startsWith('--oidc-issuer-url'),
    );
    const azure = await importOk([
      'oauth2-proxy',
      '--',
      ...azureArgs,
      '--provider=azure',
      '--azure-tenant=contoso.onmicrosoft.com',
    ]);
    assert.equal(
      azure.cfg.idp_provider_url,
      'https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0',
    );
    await refused(
      ['oauth2-proxy', '--', ...azureArgs, '--provider=azure'],
      /cannot import: azure_tenant — "common" signs in users of any tenant/,
    );
  });

  test('usage errors exit 2: an unknown peer, --from that is not an origin', async () => {
    const help = await run(['import', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: portcullis import oauth2-proxy/);
    assert.match((await run(['--help'])).stdout, /^ {2}import {6}write a Portcullis config from/m);
    const peer = await run(['import', 'traefik']);
    assert.equal(peer.code, 2);
    assert.match(peer.stderr, /unknown peer "traefik": expected oauth2-proxy or pomerium/);
    const from = await run(['import', 'oauth2-proxy', '--from', 'https://a.example.com/path']);
    assert.equal(from.code, 2);
    assert.match(from.stderr, /--from expects an origin like https:\/\/app\.example\.com/);
  });
});

describe('import pomerium', () => {
  test("Pomerium's documented config.example.yaml passes check; cors_allow_preflight becomes a cors_preflight allow", async () => {
    // pomerium/documentation content/examples/config/config.example.yaml (commit 8531027), with
    // the documented IdP block for Google switched on and insecure_server (its documented
    // alternative to certificate files).
    const file = write(
      'pomerium.yaml',
      [
        'authenticate_service_url: https://authenticate.localhost.pomerium.io',
        'insecure_server: true',
        'shared_secret: hsJIQsx9KKx4qVlggg/T3AuLTmVu0uHhwTQgMPlVs7U=',
        'cookie_secret: WwMtDXWaRDMBQCylle8OJ+w4kLIDIGd8W3cB4/zFFtg=',
        'idp_provider: "google"',
        'idp_client_id: "REPLACEME"',
        'idp_client_secret: "REPLACEME"',
        'routes:',
        '  - from: https://verify.localhost.pomerium.io',
        '    to: http://localhost:8000',
        '    policy:',
        '      - allow:',
        '          or:',
        '            - domain:',
        '                is: pomerium.io',
        '    cors_allow_preflight: true',
        '    timeout: 30s',
        '  - from: https://external-verify.localhost.pomerium.io',
        '    to: https://verify.pomerium.com',
        '    policy:',
        '      - allow:',
        '          or:',
        '            - domain:',
        '                is: gmail.com',
        '  - from: https://weirdlyssl.localhost.pomerium.io',
        '    to: http://neverssl.com',
        '    policy:',
        '      - allow:',
        '          or:',
        '            - email:',
        '                is: user@example.com',
        '  - from: https://hello.localhost.pomerium.io',
        '    to: http://localhost:8080',
        '    policy:',
        '      - allow:',
        '          or:',
        '            - claim/groups: "admins@pomerium.io"',
      ].join('\n'),
    );
    const { cfg, stderr, file: out } = await importOk(['pomerium', file]);
    assert.equal(cfg.idp_provider_url, 'https://accounts.google.com', "Google's issuer is implied");
    // Pomerium reference, "Authenticate Callback Path": default /oauth2/callback; the IdP keeps
    // the redirect URI registered for Pomerium.
    assert.equal(cfg.authenticate_callback_path, '/oauth2/callback');
    assert.equal(routesOf(cfg).length, 4);
    assert.deepEqual(routesOf(cfg)[0]!.policy, [
      { allow: { or: [{ domain: { is: 'pomerium.io' } }] } },
      { allow: { or: [{ cors_preflight: true }] } },
    ]);
    assert.deepEqual(
      notCarried(stderr).map((l) => l.split(' — ')[0]),
      ['not carried over: shared_secret'],
    );
    assert.ok(!stderr.includes('hsJIQsx9'), 'no secret printed');
    const checked = await checkOk(out);
    assert.match(
      checked,
      /redirect URI: +https:\/\/authenticate\.localhost\.pomerium\.io\/oauth2\/callback/,
    );
  });

  test('the documented Docker config (certificate files, pass_identity_headers): files missing here are reported, and the config checks where they exist', async () => {
    // pomerium/documentation content/examples/config/config.docker.yaml.md (commit 0aaadb8).
    const text = (certDir: string) =>
      [
        'authenticate_service_url: https://authenticate.localhost.pomerium.io',
        `certificate_file: ${certDir}/cert.pem`,
        `certificate_key_file: ${certDir}/privkey.pem`,
        'idp_provider: google',
        'idp_client_id: REPLACE_ME',
        'idp_client_secret: REPLACE_ME',
        'cookie_secret: V2JBZk0zWGtsL29UcFUvWjVDWWQ2UHExNXJ0b2VhcDI=',
        'routes:',
        '  - from: https://verify.localhost.pomerium.io',
        '    to: http://verify:8000',
        '    policy:',
        '      - allow:',
        '          or:',
        '            - email:',
        '                is: user@example.com',
        '    pass_identity_headers: true',
      ].join('\n');
    const r = await importOk(['pomerium', write('docker.yaml', text('/pomerium'))]);
    assert.match(
      r.stderr,
      /not carried over: certificate_file — cannot read \/pomerium\/cert\.pem: ENOENT here: it must exist where Portcullis runs/,
    );
    assert.match(
      r.stderr,
      /not carried over: pass_identity_headers — carried, under Portcullis's names: .*X-Portcullis-Jwt-Assertion/,
    );
    assert.equal(r.cfg.certificate_file, '/pomerium/cert.pem', 'the reference is kept');
    assert.equal(routesOf(r.cfg)[0]!.pass_identity_headers, true);

    // Where the files exist (here: a self-signed pair in place of /pomerium), it checks clean.
    const certDir = mkdtempSync(join(dir, 'certs-'));
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
        .concat(['-keyout', 'privkey.pem', '-out', 'cert.pem', '-days', '2'])
        .concat(['-subj', '/CN=authenticate.localhost.pomerium.io']),
      { cwd: certDir, stdio: 'ignore' },
    );
    const there = await importOk(['pomerium', write('docker-here.yaml', text(certDir))]);
    assert.ok(!/certificate_file/.test(there.stderr), there.stderr);
    await checkOk(there.file);
  });

  test('what Portcullis lacks (TCP routes, rewrites, redirects, device policies, ${pomerium.*} headers) is reported; a route whose policy cannot load is dropped, not loosened', async () => {
    const file = write(
      'pomerium-extra.yaml',
      [
        'insecure_server: true',
        'idp_provider: oidc',
        'idp_provider_url: https://idp.example.com',
        'idp_client_id: app',
        'idp_client_secret: app-secret-value',
        `cookie_secret: ${randomBytes(32).toString('base64')}`,
        'databroker_storage_type: postgres',
        'databroker_storage_connection_string: postgres://pomerium:pw@db.internal:5432/pomerium',
        'autocert: true',
        'routes:',
        '  - from: tcp+https://redis.example.com:6379',
        '    to: tcp://redis:6379',
        '  - from: udp+https://dns.example.com:53',
        '    to: udp://dns:53',
        '  - from: https://docs.example.com',
        '    redirect: { host_redirect: example.org }',
        '  - from: https://app.example.com',
        '    to: http://app:8080',
        '    prefix_rewrite: /v2',
        '    load_balancing_policy: LEAST_REQUEST',
        '    set_request_headers:',
        '      X-Token: ${pomerium.access_token}',
        '      X-Static: hello',
        '    allowed_domains: [example.com]',
        '  - from: https://admin.example.com',
        '    to: http://admin:8080',
        '    allowed_groups: [admins]',
        '    policy:',
        '      - deny:',
        '          or:',
        '            - device: { is: unapproved }',
      ].join('\n'),
    );
    const { cfg, stderr, file: out } = await importOk(['pomerium', file]);
    const lines = notCarried(stderr);
    for (const m of [
      /^not carried over: autocert — no ACME/,
      /^not carried over: routes\[1\] — udp\+https:\/\/dns\.example\.com:53: UDP routes are not implemented/,
      /^not carried over: routes\[3\]\.set_request_headers\.X-Token — Pomerium's \$\{pomerium\.…\} values are not expanded/,
      /^not carried over: routes \(https:\/\/admin\.example\.com\) — dropped, so its host is not served: .*device/,
    ])
      assert.ok(
        lines.some((l) => m.test(l)),
        `${m}\n${lines.join('\n')}`,
      );
    assert.equal(cfg.session_storage, 'postgres://pomerium:pw@db.internal:5432/pomerium');
    // The admin route's deny could not load: without it, allowed_groups alone would let admins
    // in from unapproved devices, so the whole route goes.
    assert.deepEqual(
      routesOf(cfg).map((r) => r.from),
      ['tcp+https://redis.example.com:6379', 'https://docs.example.com', 'https://app.example.com'],
    );
    // TCP routes (https://www.pomerium.com/docs/capabilities/non-http/tcp) carry over as written.
    assert.equal(routesOf(cfg)[0]!.to, 'tcp://redis:6379');
    // Redirect routes and path rewrites are Portcullis keys now: carried as written.
    assert.deepEqual(routesOf(cfg)[1]!.redirect, { host_redirect: 'example.org' });
    assert.equal(routesOf(cfg)[2]!.prefix_rewrite, '/v2');
    assert.ok(!lines.some((l) => /redirect|prefix_rewrite/.test(l)), lines.join('\n'));
    // So is load_balancing_policy (test/routes-load-balancing.test.ts).
    assert.equal(routesOf(cfg)[2]!.load_balancing_policy, 'LEAST_REQUEST');
    assert.ok(!lines.some((l) => /load_balancing_policy/.test(l)), lines.join('\n'));
    assert.deepEqual(routesOf(cfg)[2]!.set_request_headers, { 'X-Static': 'hello' });
    assert.deepEqual(routesOf(cfg)[2]!.allowed_email_domains, ['example.com']);
    assert.ok(
      !stderr.includes('app-secret-value') && !stderr.includes(':pw@'),
      'no secret printed',
    );
    await checkOk(out);
  });

  test('bad input: invalid YAML names the line; GitHub as IdP is refused; a config that cannot load stops the import', async () => {
    const yamlErr = await run(['import', 'pomerium', write('bad.yaml', 'routes:\n  - from: [\n')]);
    assert.equal(yamlErr.code, 1);
    assert.match(yamlErr.stderr, /bad\.yaml:\d+: invalid YAML/);
    const gh = await run([
      'import',
      'pomerium',
      write(
        'gh.yaml',
        'idp_provider: github\nidp_client_id: a\nidp_client_secret: b\nroutes:\n  - from: https://a.example.com\n    to: http://a\n',
      ),
    ]);
    assert.equal(gh.code, 1);
    assert.match(
      gh.stderr,
      /cannot import: idp_provider — "github": Portcullis signs users in with OpenID Connect/,
    );
    const invalid = await run([
      'import',
      'pomerium',
      write(
        'invalid.yaml',
        `insecure_server: true\nidp_provider_url: https://idp.example.com\nidp_client_id: a\nidp_client_secret: b\ncookie_secret: too-short\nroutes:\n  - from: https://a.example.com\n    to: http://a\n`,
      ),
    ]);
    assert.equal(invalid.code, 1);
    assert.match(
      invalid.stderr,
      /cannot import: cookie_secret — expected 32 bytes encoded as base64/,
    );
    assert.equal(invalid.stdout, '', 'nothing written');
    const hosted = await run([
      'import',
      'pomerium',
      write('hosted.yaml', 'routes:\n  - from: https://a.example.com\n    to: http://a\n'),
    ]);
    assert.equal(hosted.code, 1);
    assert.match(
      hosted.stderr,
      /cannot import: idp_provider — none set: Pomerium then signs users in through its hosted authenticate service/,
    );
  });
});
