import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startIdp, type RunningIdp } from '../demo/idp.js';
import { startWhoami } from '../demo/whoami.js';
import { parseConfig } from '../src/config/load.js';
import { createLogger } from '../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../src/server.js';
import { CookieJar } from './helpers/http.js';
import { checkOk, dir, importOk, notCarried, routesOf, run, write } from './helpers/import-cli.js';
import { loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';

// `portcullis import oauth2-proxy --alpha-config` as an operator runs it (helpers/import-cli.ts).
// Facts about oauth2-proxy's alpha config, each from its "Alpha Configuration" page
// (https://oauth2-proxy.github.io/oauth2-proxy/configuration/alpha-config) and the Go structs it
// is generated from (https://github.com/oauth2-proxy/oauth2-proxy/tree/master/pkg/apis/options:
// providers.go, upstreams.go, header.go, server.go):
// - the root keys are upstreamConfig, injectRequestHeaders, injectResponseHeaders, server,
//   metricsServer and providers; it is used beside the legacy config (--alpha-config together
//   with --config), and the "Removed options" (provider, upstream and header settings) are then
//   refused by oauth2-proxy;
// - the file is read with yaml.UnmarshalStrict and DisallowUnknownFields (pkg/apis/options/load.go);
// - every provider needs a unique id, a clientID and a secret
//   (https://github.com/oauth2-proxy/oauth2-proxy/blob/master/pkg/validation/providers.go).

const cookieSecret = randomBytes(32).toString('base64url');
const legacy = (extra: string[] = []): string =>
  write(
    `legacy-${randomBytes(3).toString('hex')}.cfg`,
    [
      `cookie_secret = "${cookieSecret}"`,
      'email_domains = ["example.com"]',
      'redirect_url = "https://app.example.com/oauth2/callback"',
      ...extra,
    ].join('\n'),
  );
const alphaFile = (text: string): string =>
  write(`alpha-${randomBytes(3).toString('hex')}.yaml`, text);

const TWO_PROVIDERS = `server:
  BindAddress: 127.0.0.1:4180
metricsServer:
  BindAddress: 127.0.0.1:9100
upstreamConfig:
  upstreams:
    - id: app
      path: /
      uri: http://127.0.0.1:3000
providers:
  - id: corp
    name: Corp SSO
    provider: oidc
    clientID: corp-client
    clientSecret: corp-s3cret-value
    scope: openid email profile groups
    allowedGroups: [admins]
    oidcConfig:
      issuerURL: https://idp.corp.example.com
      groupsClaim: roles
      emailClaim: mail
  - id: contractors
    name: GitHub
    provider: github
    clientID: gh-client
    clientSecret: gh-s3cret-value
    githubConfig:
      org: acme
      team: sre,ops
`;

describe('import oauth2-proxy --alpha-config: providers', () => {
  test('two providers become idps; each keeps its own restriction; portcullis check accepts it', async () => {
    const { cfg, file, stderr } = await importOk([
      'oauth2-proxy',
      '--config',
      legacy(),
      '--alpha-config',
      alphaFile(TWO_PROVIDERS),
    ]);
    // Provider fields: id, name, provider, clientID, clientSecret, scope, allowedGroups,
    // oidcConfig.issuerURL/groupsClaim/emailClaim, githubConfig.org/team (providers.go).
    assert.deepEqual(cfg.idps, [
      {
        id: 'corp',
        name: 'Corp SSO',
        idp_provider: 'oidc',
        idp_provider_url: 'https://idp.corp.example.com',
        idp_client_id: 'corp-client',
        idp_client_secret: 'corp-s3cret-value',
        idp_scopes: ['openid', 'email', 'profile', 'groups'],
        idp_groups_claim: 'roles',
        idp_email_claim: 'mail',
      },
      {
        id: 'contractors',
        name: 'GitHub',
        idp_provider: 'github',
        idp_provider_url: 'https://github.com',
        idp_client_id: 'gh-client',
        idp_client_secret: 'gh-s3cret-value',
      },
    ]);
    assert.equal(cfg.idp_client_id, undefined, 'no top-level IdP beside idps');
    assert.equal(cfg.address, '127.0.0.1:4180');
    assert.equal(cfg.metrics_address, '127.0.0.1:9100');
    const [route] = routesOf(cfg);
    assert.equal(route!.from, 'https://app.example.com');
    assert.equal(route!.to, 'http://127.0.0.1:3000');
    // The email check for everyone AND each provider's own check for its own users. GitHub
    // teams are Portcullis groups "org:team" (docs/identity-providers.md).
    assert.deepEqual(route!.policy, [
      {
        allow: {
          and: [
            { domain: { is: 'example.com' } },
            {
              or: [
                { and: [{ idp: { is: 'corp' } }, { groups: { has: 'admins' } }] },
                {
                  and: [
                    { idp: { is: 'contractors' } },
                    { or: [{ groups: { has: 'acme:sre' } }, { groups: { has: 'acme:ops' } }] },
                  ],
                },
              ],
            },
          ],
        },
      },
    ]);
    assert.ok(!stderr.includes('s3cret-value'), 'no secret printed');
    await checkOk(file);
    for (const [email, idp, groups, ok] of [
      ['ann@example.com', 'corp', 'admins', true],
      ['ann@example.com', 'corp', 'eng', false],
      ['bob@example.com', 'contractors', 'acme:sre', true],
      ['bob@example.com', 'contractors', 'admins', false],
    ] as const) {
      const r = await run([
        'explain',
        '--config',
        file,
        '--url',
        'https://app.example.com/x',
        '--email',
        email,
        '--idp',
        idp,
        '--groups',
        groups,
      ]);
      assert.equal(r.code === 0, ok, `${idp} ${groups}: ${r.stdout}${r.stderr}`);
    }
  });

  test('one provider becomes the top-level idp_* keys, as the legacy import writes them', async () => {
    const { cfg, file } = await importOk([
      'oauth2-proxy',
      '--config',
      legacy(),
      '--alpha-config',
      alphaFile(
        [
          'upstreamConfig:',
          '  upstreams:',
          '    - {id: app, path: /, uri: "http://127.0.0.1:3000"}',
          'providers:',
          '  - id: entra',
          '    provider: azure',
          '    clientID: app-id',
          `    clientSecretFile: ${write('entra-secret', 'x'.repeat(20))}`,
          '    azureConfig:',
          '      tenant: 0d8b6a1e-1111-4222-8333-944445555666',
        ].join('\n'),
      ),
    ]);
    assert.equal(cfg.idps, undefined);
    assert.equal(cfg.idp_provider, 'azure');
    // azureConfig.tenant "directs to a tenant-specific ... endpoint" (providers.go).
    assert.equal(
      cfg.idp_provider_url,
      'https://login.microsoftonline.com/0d8b6a1e-1111-4222-8333-944445555666/v2.0',
    );
    assert.match(String(cfg.idp_client_secret_file), /entra-secret$/);
    await checkOk(file);
  });
});

describe('import oauth2-proxy --alpha-config: upstreams, headers, servers', () => {
  test('upstreamConfig.upstreams become routes, with their own keys', async () => {
    const { cfg, file, stderr } = await importOk([
      'oauth2-proxy',
      '--config',
      legacy(),
      '--alpha-config',
      alphaFile(
        [
          'upstreamConfig:',
          '  upstreams:',
          '    - id: app',
          '      path: /',
          '      uri: http://127.0.0.1:3000',
          '    - id: exact',
          '      path: /status',
          '      uri: http://127.0.0.1:3002/base',
          '      passHostHeader: false',
          '      proxyWebSockets: false',
          '      timeout: 5s',
          '      flushInterval: 2s',
          '    - id: api',
          '      path: ^/api/(.*)$',
          '      rewriteTarget: /v2/$1',
          '      uri: https://127.0.0.1:3001',
          '      insecureSkipTLSVerify: true',
          '    - id: ok',
          '      path: /healthz/',
          '      static: true',
          '      staticCode: 204',
          'providers:',
          '  - {id: corp, provider: oidc, clientID: c, clientSecret: s, oidcConfig: {issuerURL: "https://idp.example.com"}}',
        ].join('\n'),
      ),
    ]);
    const routes = routesOf(cfg);
    const by = (k: string, v: string) => routes.find((r) => r[k] === v)!;
    // A path ending in "/" is a prefix, any other only itself (pkg/upstream/proxy.go); the uri's
    // own path goes in front ("/base" + "/dir", Upstream.uri); passHostHeader and
    // proxyWebSockets default to true (upstreams.go).
    assert.deepEqual(
      { ...by('path', '/status'), policy: undefined },
      {
        from: 'https://app.example.com',
        to: 'http://127.0.0.1:3002',
        path: '/status',
        timeout: '5s',
        prefix_rewrite: '/base/status',
        policy: undefined,
      },
    );
    const api = by('regex_rewrite_pattern', '^/api/(.*)$');
    assert.equal(api.regex_rewrite_substitution, '/v2/\\1', 'Go $1 is the group \\1');
    assert.equal(api.tls_skip_verify, true);
    // Static: body "Authenticated", status staticCode (Upstream.static / staticCode).
    assert.deepEqual(by('prefix', '/healthz/').response, { status: 204, body: 'Authenticated' });
    const root = routes.at(-1)!;
    assert.equal(root.to, 'http://127.0.0.1:3000');
    assert.equal(root.preserve_host_header, true);
    assert.equal(root.allow_websockets, true);
    assert.match(
      stderr,
      /upstreamConfig\.upstreams\[1\]\.flushInterval \(\S*alpha-\w+\.yaml:12\) — /,
    );
    assert.match(stderr, /upstreamConfig\.upstreams\[2\]\.insecureSkipTLSVerify/);
    await checkOk(file);
  });

  test('injectRequestHeaders / injectResponseHeaders: the nearest keys, and what has none is named', async () => {
    const { cfg, file, stderr } = await importOk(
      [
        'oauth2-proxy',
        '--config',
        legacy(),
        '--alpha-config',
        alphaFile(
          [
            'upstreamConfig:',
            '  upstreams: [{id: app, path: /, uri: "http://127.0.0.1:3000"}]',
            'injectRequestHeaders:',
            '  - name: X-Forwarded-User',
            '    values: [{claim: user}]',
            '  - name: X-Forwarded-Email',
            '    values: [{claimSource: {claim: email}}]', // the v7.14 nested form
            '  - name: Authorization',
            '    values: [{claim: id_token, prefix: "Bearer "}]',
            '  - name: X-Access',
            '    values: [{claim: access_token}]',
            '  - name: X-Team',
            '    values: [{claim: team}]',
            '  - name: X-Static',
            `    values: [{value: ${Buffer.from('static-value').toString('base64')}}]`, // up to v7.13: base64
            '  - name: X-Nested',
            '    values: [{secretSource: {value: plain-value}}]',
            '  - name: X-From-Env',
            '    values: [{secretSource: {fromEnv: APP_KEY}}]',
            '  - name: X-Basic',
            '    values: [{claim: user, basicAuthPassword: {value: cGFzcw==}}]',
            '  - name: X-Kept',
            '    preserveRequestValue: true',
            '    values: [{claim: email}]',
            'injectResponseHeaders:',
            '  - name: X-Auth-Request-Email',
            '    values: [{claim: email}]',
            '  - name: X-Custom',
            '    values: [{claim: email}]',
            'providers:',
            '  - {id: corp, provider: oidc, clientID: c, clientSecret: s, oidcConfig: {issuerURL: "https://idp.example.com"}}',
          ].join('\n'),
        ),
      ],
      { APP_KEY: 'k' },
    );
    const [route] = routesOf(cfg);
    assert.equal(route!.identity_headers, 'portcullis');
    assert.equal(route!.pass_id_token, true);
    assert.equal(route!.pass_access_token, 'X-Access');
    assert.deepEqual(route!.set_request_headers, {
      'X-Static': 'static-value',
      'X-Nested': 'plain-value',
      'X-From-Env': '${APP_KEY}',
    });
    assert.deepEqual(cfg.jwt_claims_headers, { 'X-Team': 'team', 'X-Kept': 'email' });
    assert.match(stderr, /X-From-Env is read from the environment variable APP_KEY/);
    const skipped = notCarried(stderr).map((l) => l.split(' — ')[0]);
    for (const k of [
      'injectRequestHeaders[8].values[0].basicAuthPassword',
      'injectRequestHeaders[9].preserveRequestValue',
      'injectResponseHeaders[1]',
    ])
      assert.ok(
        skipped.some((s) => s.startsWith(`not carried over: ${k} (`)),
        `${k}: ${skipped.join('\n')}`,
      );
    // The variable must be set where Portcullis loads the config, as oauth2-proxy's fromEnv.
    const checked = await run(['check', '--config', file], { APP_KEY: 'k' });
    assert.equal(checked.code, 0, checked.stdout + checked.stderr);
    const unset = await run(['check', '--config', file]);
    assert.match(unset.stderr, /environment variable APP_KEY is not set/);
  });

  test('server / metricsServer: addresses and the certificate files', async () => {
    const { cfg, stderr } = await importOk([
      'oauth2-proxy',
      '--from',
      'https://app.example.com',
      '--config',
      legacy(),
      '--alpha-config',
      alphaFile(
        [
          'server:',
          '  BindAddress: "-"',
          '  SecureBindAddress: 0.0.0.0:8443',
          '  TLS:',
          '    Cert: {fromFile: /etc/tls/tls.crt}',
          '    Key: {fromFile: /etc/tls/tls.key}',
          '    MinVersion: TLS1.3',
          'metricsServer:',
          '  BindAddress: 127.0.0.1:9100',
          'providers:',
          '  - {id: corp, provider: oidc, clientID: c, clientSecret: s, oidcConfig: {issuerURL: "https://idp.example.com"}}',
        ].join('\n'),
      ),
    ]);
    assert.equal(cfg.address, '0.0.0.0:8443');
    assert.equal(cfg.certificate_file, '/etc/tls/tls.crt');
    assert.equal(cfg.certificate_key_file, '/etc/tls/tls.key');
    assert.equal(cfg.insecure_server, undefined);
    assert.equal(cfg.metrics_address, '127.0.0.1:9100');
    assert.match(stderr, /not carried over: server\.TLS\.MinVersion \(\S*alpha-\w+\.yaml:7\) — /);
  });
});

describe('import oauth2-proxy --alpha-config: refusals', () => {
  const refused = async (alpha: string, message: RegExp, extra: string[] = []) => {
    const out = join(dir, `refused-${randomBytes(4).toString('hex')}.yaml`);
    const r = await run([
      'import',
      'oauth2-proxy',
      '--config',
      legacy(extra),
      '--alpha-config',
      alphaFile(alpha),
      '--out',
      out,
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, message);
    assert.throws(() => statSync(out), 'nothing written');
    assert.ok(!r.stderr.includes('s3cret-value'), 'no secret printed');
    assert.ok(!/at .*\.js:\d+/.test(r.stderr), 'no stack trace');
    return r;
  };
  const provider =
    'providers:\n  - {id: corp, provider: oidc, clientID: c, clientSecret: s3cret-value, oidcConfig: {issuerURL: "https://idp.example.com"}}\n';

  test('an unknown key names its path and line, with a near name', async () => {
    const r = await refused(
      `${provider}upstreamConfig:\n  upstreams:\n    - id: a\n      path: /\n      url: http://x\n`,
      /alpha-\w+\.yaml:7: upstreamConfig\.upstreams\[0\]\.url is not an oauth2-proxy alpha setting/,
    );
    await refused(
      'providers:\n  - id: corp\n    clientSecrt: s3cret-value\n',
      /:3: providers\[0\]\.clientSecrt is not an oauth2-proxy alpha setting \(did you mean clientSecret\?\)/,
    );
    await refused(
      `${provider}cookie:\n  secret: x\n`,
      /:3: cookie is not an oauth2-proxy alpha setting/,
    );
    assert.match(r.stderr, /nothing written/);
  });

  test('a legacy provider or upstream setting beside the alpha config names both places', async () => {
    await refused(
      provider,
      /legacy-\w+\.cfg:4: client_id — oauth2-proxy refuses it beside --alpha-config .*move it into .*alpha-\w+\.yaml \(providers\)/,
      ['client_id = "legacy"'],
    );
    await refused(provider, /legacy-\w+\.cfg:4: upstreams — .*\(upstreamConfig\)/, [
      'upstreams = ["http://127.0.0.1:3000"]',
    ]);
  });

  test('an address set differently in both places names both', async () => {
    await refused(
      `${provider}server:\n  BindAddress: 127.0.0.1:4180\n`,
      /http_address is set twice, differently: \S*legacy-\w+\.cfg:4 and server\.BindAddress \(\S*alpha-\w+\.yaml:4\)/,
      ['http_address = "0.0.0.0:4180"'],
    );
  });

  test('providers without ids, with the same id, or no providers at all', async () => {
    await refused(
      'providers:\n  - {provider: oidc, clientID: c, clientSecret: s}\n',
      /providers\[0\]\.id — oauth2-proxy requires an id for every provider/,
    );
    await refused(
      `${provider}  - {id: corp, provider: oidc, clientID: d, clientSecret: t, oidcConfig: {issuerURL: "https://b.example.com"}}\n`,
      /:3: providers\[1\]\.id "corp" is also the id of providers\[0\]/,
    );
    await refused('server:\n  BindAddress: 127.0.0.1:4180\n', /at least one provider/);
  });

  test('what Portcullis cannot do: an inline certificate, a repository check, a wrong type, bad YAML', async () => {
    await refused(
      `${provider}server:\n  SecureBindAddress: :443\n  TLS:\n    Cert: {value: abc}\n    Key: {fromFile: /k}\n`,
      /:6: server\.TLS\.Cert — Portcullis reads certificates and keys from files/,
    );
    await refused(
      'providers:\n  - {id: gh, provider: github, clientID: c, clientSecret: s3cret-value, githubConfig: {repo: acme/app}}\n',
      /cannot import: providers\[0\]\.githubConfig\.repo \(\S*alpha-\w+\.yaml:2\) — a provider-specific membership check/,
    );
    await refused(
      `${provider}upstreamConfig:\n  upstreams:\n    - {id: a, path: /, uri: "http://x", timeout: 7d}\n`,
      /:5: upstreamConfig\.upstreams\[0\]\.timeout: expected a duration like "30s"/,
    );
    await refused('providers:\n  - id: [\n', /alpha-\w+\.yaml:\d+: /);
  });

  test('several providers with skip_provider_button: oauth2-proxy refuses the pair, and so does the import', async () => {
    // pkg/validation/providers.go: "SkipProviderButton and multiple providers are mutually
    // exclusive".
    await refused(
      `${provider}  - {id: b, provider: oidc, clientID: d, clientSecret: t, oidcConfig: {issuerURL: "https://b.example.com"}}\n`,
      /legacy-\w+\.cfg:4: skip_provider_button — oauth2-proxy refuses it with several providers/,
      ['skip_provider_button = true'],
    );
  });

  test('a provider id Portcullis cannot take is rewritten, and the rewrite is reported', async () => {
    const { cfg, stderr, file } = await importOk([
      'oauth2-proxy',
      '--config',
      legacy(),
      '--alpha-config',
      alphaFile(
        [
          'upstreamConfig:',
          '  upstreams: [{id: app, path: /, uri: "http://127.0.0.1:3000"}]',
          'providers:',
          '  - {id: Corp SSO, provider: oidc, clientID: c, clientSecret: s, oidcConfig: {issuerURL: "https://a.example.com"}}',
          '  - {id: default, provider: oidc, clientID: d, clientSecret: t, oidcConfig: {issuerURL: "https://b.example.com"}}',
        ].join('\n'),
      ),
    ]);
    assert.deepEqual(
      (cfg.idps as Array<{ id: string }>).map((i) => i.id),
      ['corp-sso', 'idp-1'],
    );
    assert.match(
      stderr,
      /providers\[0\]\.id \(\S*:4\) — "Corp SSO" is written as the IdP id "corp-sso"/,
    );
    assert.match(
      stderr,
      /providers\[1\]\.id \(\S*:5\) — "default" is written as the IdP id "idp-1"/,
    );
    await checkOk(file);
  });

  test('--alpha-config among the oauth2-proxy flags points to the import option', async () => {
    const r = await run([
      'import',
      'oauth2-proxy',
      '--config',
      legacy(),
      '--',
      '--alpha-config=/etc/alpha.yaml',
    ]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /give the alpha config as `portcullis import oauth2-proxy --alpha-config FILE`/,
    );
  });
});

describe('a sign-in through an imported alpha config with two providers', () => {
  // Two real OpenID providers (demo/idp.ts), as two entries of oauth2-proxy's `providers:`; the
  // corp one keeps allowedGroups [admins] (Provider.allowedGroups: "restrict logins to members
  // of this group"), the partner one has no restriction.
  let corp: RunningIdp;
  let partner: RunningIdp;
  let upstream: Awaited<ReturnType<typeof startWhoami>>;
  let proxy: RunningPortcullis;
  let app: string;

  before(async () => {
    const port = await freePort();
    app = `http://app.corp.test:${port}`;
    upstream = await startWhoami({ name: 'upstream' });
    const client = (id: string, secret: string) => ({
      client_id: id,
      client_secret: secret,
      redirect_uris: [`${app}/oauth2/callback`],
      post_logout_redirect_uris: [`${app}/.portcullis/signed_out`],
    });
    const corpSecret = randomBytes(24).toString('base64url');
    const partnerSecret = randomBytes(24).toString('base64url');
    corp = await startIdp({ clients: [client('corp-client', corpSecret)] });
    partner = await startIdp({
      clients: [client('partner-client', partnerSecret)],
      users: [
        { id: 'pat', password: 'pat', email: 'pat@example.com', name: 'Pat', groups: ['vendors'] },
      ],
    });
    const r = await importOk([
      'oauth2-proxy',
      '--config',
      write(
        'alpha-signin.cfg',
        [
          `cookie_secret = "${cookieSecret}"`,
          'cookie_secure = false',
          'email_domains = ["example.com"]',
          `redirect_url = "${app}/oauth2/callback"`,
        ].join('\n'),
      ),
      '--alpha-config',
      alphaFile(
        [
          'server:',
          `  BindAddress: 127.0.0.1:${port}`,
          'upstreamConfig:',
          `  upstreams: [{id: app, path: /, uri: "${upstream.url}"}]`,
          'injectRequestHeaders:',
          '  - {name: X-Forwarded-Email, values: [{claim: email}]}',
          'providers:',
          '  - id: corp',
          '    name: Corp SSO',
          '    provider: oidc',
          '    clientID: corp-client',
          `    clientSecret: ${corpSecret}`,
          '    scope: openid email profile groups',
          '    allowedGroups: [admins]',
          `    oidcConfig: {issuerURL: "${corp.issuer}"}`,
          '  - id: partner',
          '    name: Partner',
          '    provider: oidc',
          '    clientID: partner-client',
          `    clientSecret: ${partnerSecret}`,
          `    oidcConfig: {issuerURL: "${partner.issuer}"}`,
        ].join('\n'),
      ),
    ]);
    await checkOk(r.file);
    proxy = await startPortcullis(parseConfig(readFileSync(r.file, 'utf8'), r.file), {
      logger: createLogger('silent'),
    });
    await proxy.idp.start();
  });
  after(async () => {
    await Promise.allSettled([proxy?.close(), upstream?.close(), corp?.close(), partner?.close()]);
  });

  /** Signs in through the chooser at `idp`; returns the final answer and the chain. */
  const signIn = async (idp: string, user: string) => {
    const jar = new CookieJar();
    const start = `${app}/reports?format=json`;
    const first = await loginThroughIdp(start, { jar, username: user, password: user });
    const m = new RegExp(`<a class="button" id="idp-${idp}" href="([^"]+)"`).exec(first.final.body);
    assert.ok(m, `the chooser offers ${idp}:\n${first.final.body}`);
    const link = new URL(m[1]!.replaceAll('&amp;', '&'), first.chain.at(-1)).href;
    const r = await loginThroughIdp(link, { jar, username: user, password: user });
    return { ...r, start };
  };

  test('alice (admins) signs in with Corp SSO from the chooser and reaches the upstream with her email', async () => {
    const r = await signIn('corp', 'alice');
    assert.equal(r.final.status, 200, r.chain.join('\n'));
    assert.equal(r.chain.at(-1), r.start);
    assert.ok(
      r.chain.some((u) => u.startsWith(corp.issuer)),
      'signed in at the corp IdP',
    );
    const seen = JSON.parse(r.final.body) as { headers: Record<string, string> };
    assert.equal(seen.headers['x-forwarded-email'], 'alice@example.com');
  });

  test('bob (not in admins) is refused after Corp SSO; pat gets in through the partner, whose users the corp group rule does not bind', async () => {
    const bob = await signIn('corp', 'bob');
    assert.equal(bob.final.status, 403, bob.chain.join('\n'));
    const pat = await signIn('partner', 'pat');
    assert.equal(pat.final.status, 200, pat.chain.join('\n'));
    assert.ok(
      pat.chain.some((u) => u.startsWith(partner.issuer)),
      'signed in at the partner IdP',
    );
    const seen = JSON.parse(pat.final.body) as { headers: Record<string, string> };
    assert.equal(seen.headers['x-forwarded-email'], 'pat@example.com');
  });
});
