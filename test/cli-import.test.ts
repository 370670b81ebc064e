import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CfgSyntaxError, parseCfg } from '../src/cli/import/cfg-parser.js';
import { checkOk, dir, importOk, notCarried, routesOf, run, write } from './helpers/import-cli.js';

// `portcullis import` as an operator runs it (test/helpers/import-cli.ts): the built CLI fed the
// peers' own documented example configs (written here from the documented facts, each cited),
// judged by what it writes, what it prints, its exit status, and whether `portcullis check`
// and a real sign-in accept the result.

describe('the oauth2-proxy.cfg reader', () => {
  test('reads the shapes of oauth2-proxy contrib/oauth2-proxy.cfg.example: quoted strings, booleans, lists over several lines, comments', () => {
    // oauth2-proxy contrib/oauth2-proxy.cfg.example (v7.x, commit 2202bd7): `key = "value"`,
    // `key = true`, lists like `upstreams = [\n "http://127.0.0.1:8080/"\n]`, `#` comments.
    const entries = parseCfg(
      [
        '## OAuth2 Proxy Config File',
        'http_address = "127.0.0.1:4180"',
        'reverse_proxy = true',
        'upstreams = [',
        '    "http://127.0.0.1:8080/",  # the app',
        "    'http://127.0.0.1:8081/api/'",
        ']',
        'logging_max_size = 100',
        'cookie_name = "_oauth2_\\u0070roxy" # escapes as TOML has them',
        'email_domains = [ "yourcompany.com", ]',
        '',
      ].join('\n'),
      'x.cfg',
    );
    assert.deepEqual(entries.get('http_address'), { value: '127.0.0.1:4180', line: 2 });
    assert.deepEqual(entries.get('reverse_proxy'), { value: true, line: 3 });
    assert.deepEqual(entries.get('upstreams'), {
      value: ['http://127.0.0.1:8080/', 'http://127.0.0.1:8081/api/'],
      line: 4,
    });
    assert.deepEqual(entries.get('logging_max_size'), { value: 100, line: 8 });
    assert.equal(entries.get('cookie_name')?.value, '_oauth2_proxy');
    assert.deepEqual(entries.get('email_domains')?.value, ['yourcompany.com']);
  });

  const bad: Array<[string, string, number, RegExp]> = [
    ['no "="', 'client_id = "a"\nprovider oidc\n', 2, /expected key = value/],
    ['an unquoted word', 'cookie_secure = $OAUTH2_COOKIE_SECURE\n', 1, /put text in double quotes/],
    ['an unterminated string', 'client_id = "abc\n', 1, /no closing quote/],
    [
      'an unterminated list',
      'upstreams = [\n "http://a",\n',
      1,
      /the list that starts here has no closing "\]"/,
    ],
    ['a table', '[providers]\nid = "x"\n', 1, /tables like \[providers\]/],
    ['a repeated key', 'client_id = "a"\n\nclient_id = "b"\n', 3, /set twice \(first on line 1\)/],
    ['an unknown escape', 'banner = "C:\\path"\n', 1, /unknown escape \\p/],
    ['two values on a line', 'client_id = "a" "b"\n', 1, /after the value/],
    ['a nested list', 'upstreams = [["a"]]\n', 1, /list inside a list/],
  ];
  for (const [what, text, line, message] of bad) {
    test(`refuses ${what}, naming the line`, () => {
      assert.throws(
        () => parseCfg(text, 'bad.cfg'),
        (e: unknown) =>
          e instanceof CfgSyntaxError &&
          e.line === line &&
          message.test(e.message) &&
          e.message.startsWith(`bad.cfg:${line}: `),
      );
    });
  }
});

describe('import oauth2-proxy: the documented example configs', () => {
  test('oauth2-proxy contrib/local-environment/oauth2-proxy-nginx.cfg (auth_request behind nginx, cookie and redirect domain for every subdomain) passes check', async () => {
    // oauth2-proxy v7, contrib/local-environment/oauth2-proxy-nginx.cfg (commit 558c571), as
    // documented; only the issuer moves from dex.localtest.me:4190 to this machine, because
    // Portcullis accepts a plain-http issuer only on loopback.
    const cfgFile = write(
      'nginx.cfg',
      [
        'http_address="0.0.0.0:4180"',
        'cookie_secret="OQINaROshtE9TcZkNAm-5Zs2Pv3xaWytBmc5W7sPX7w="',
        'provider="oidc"',
        'email_domains="example.com"',
        'oidc_issuer_url="http://127.0.0.1:4190/dex"',
        'client_secret="b2F1dGgyLXByb3h5LWNsaWVudC1zZWNyZXQK"',
        'client_id="oauth2-proxy"',
        'cookie_secure="false"',
        '',
        'redirect_url="http://oauth2-proxy.oauth2-proxy.localhost/oauth2/callback"',
        'cookie_domains=".oauth2-proxy.localhost" # Required so cookie can be read on all subdomains.',
        'whitelist_domains=".oauth2-proxy.localhost" # Required to allow redirection back.',
        'reverse_proxy="true"',
        '',
      ].join('\n'),
    );
    const { cfg, stderr, file, yaml } = await importOk(['oauth2-proxy', '--config', cfgFile]);
    assert.equal(cfg.address, '0.0.0.0:4180');
    assert.equal(cfg.insecure_server, true);
    assert.equal(cfg.idp_provider_url, 'http://127.0.0.1:4190/dex');
    assert.equal(cfg.idp_client_id, 'oauth2-proxy');
    // The cookie secret is base64url of 32 bytes: the same 32 bytes, as Portcullis writes base64.
    assert.equal(
      Buffer.from(cfg.cookie_secret as string, 'base64').toString('base64url'),
      'OQINaROshtE9TcZkNAm-5Zs2Pv3xaWytBmc5W7sPX7w',
    );
    assert.equal(cfg.cookie_secure, false); // viper reads "false" as false
    assert.equal(cfg.cookie_domain, 'oauth2-proxy.localhost');
    // oauth2-proxy's default cookie lifetime is 168h (overview page, Cookie Options, v7.6.x).
    assert.equal(cfg.cookie_expire, '7d');
    // The redirect URI registered at the IdP stays the same.
    assert.equal(cfg.authenticate_callback_path, '/oauth2/callback');
    assert.equal(cfg.authenticate_service_url, 'http://oauth2-proxy.oauth2-proxy.localhost');
    assert.deepEqual(cfg.compat, ['oauth2-proxy']);
    assert.deepEqual(routesOf(cfg), [
      {
        from: 'http://*.oauth2-proxy.localhost',
        policy: [{ allow: { and: [{ domain: { is: 'example.com' } }] } }],
      },
    ]);
    assert.deepEqual(
      notCarried(stderr).map((l) => l.split(' — ')[0]),
      ['not carried over: reverse_proxy'],
    );
    const checked = await checkOk(file);
    assert.match(
      checked,
      /redirect URI: +http:\/\/oauth2-proxy\.oauth2-proxy\.localhost\/oauth2\/callback/,
    );
    for (const secret of ['b2F1dGgyLXByb3h5LWNsaWVudC1zZWNyZXQK', 'OQINaROshtE9TcZkNAm']) {
      assert.ok(!stderr.includes(secret), 'no secret in what the import prints');
      assert.ok(
        yaml.includes(secret) || secret === 'OQINaROshtE9TcZkNAm',
        'the secret itself is in the file',
      );
    }
    assert.equal(statSync(file).mode & 0o777, 0o600, 'the written config holds secrets: mode 600');
  });

  test('oauth2-proxy contrib/local-environment/oauth2-proxy-redis.cfg: sessions in Redis, one upstream behind the redirect host', async () => {
    // oauth2-proxy v7, contrib/local-environment/oauth2-proxy-redis.cfg (commit 6c5901d); the
    // issuer moved to loopback as above.
    const cfgFile = write(
      'redis.cfg',
      [
        'http_address="0.0.0.0:4180"',
        'cookie_secret="OQINaROshtE9TcZkNAm-5Zs2Pv3xaWytBmc5W7sPX7w="',
        'provider="oidc"',
        'email_domains="example.com"',
        'oidc_issuer_url="http://127.0.0.1:4190/dex"',
        'client_secret="b2F1dGgyLXByb3h5LWNsaWVudC1zZWNyZXQK"',
        'client_id="oauth2-proxy"',
        'cookie_secure="false"',
        '',
        'redirect_url="http://localhost:4180/oauth2/callback"',
        'upstreams="http://httpbin"',
        '',
        'session_store_type="redis"',
        'redis_connection_url="redis://redis:6379"',
      ].join('\n'),
    );
    const { cfg, file } = await importOk(['oauth2-proxy', '--config', cfgFile]);
    assert.equal(cfg.session_storage, 'redis://redis:6379');
    assert.equal(
      cfg.authenticate_service_url,
      undefined,
      'the one route host is the callback host',
    );
    const [route] = routesOf(cfg);
    // pass_host_header and proxy_websockets default to true; pass_user_headers too, which sends
    // X-Forwarded-User/-Email/-Groups/-Preferred-Username (legacy_options.go, v7).
    assert.deepEqual(route, {
      from: 'http://localhost:4180',
      to: 'http://httpbin',
      identity_headers: 'portcullis',
      preserve_host_header: true,
      allow_websockets: true,
      policy: [{ allow: { and: [{ domain: { is: 'example.com' } }] } }],
    });
    await checkOk(file);
  });

  test("oauth2-proxy contrib/oauth2-proxy.cfg.example's documented values: skip_auth_routes become public routes, by method where one is given", async () => {
    // oauth2-proxy contrib/oauth2-proxy.cfg.example (commit 2202bd7), its commented-out values
    // switched on; the secrets it leaves empty ("") are filled, since oauth2-proxy refuses to
    // start without them. skip_auth_routes format "method=path_regex OR path_regex" (same file).
    const cookieSecret = randomBytes(32).toString('base64url');
    const cfgFile = write(
      'example.cfg',
      [
        'http_address = "127.0.0.1:4180"',
        'reverse_proxy = true',
        'redirect_url = "https://internalapp.yourcompany.com/oauth2/callback"',
        'upstreams = [',
        '    "http://127.0.0.1:8080/"',
        ']',
        'request_logging = true',
        'pass_basic_auth = true',
        'pass_user_headers = true',
        'pass_host_header = true',
        'email_domains = [',
        '    "yourcompany.com"',
        ']',
        'client_id = "123456.apps.googleusercontent.com"',
        'client_secret = "not-empty-here"',
        'scope = "openid email profile"',
        'pass_access_token = false',
        'skip_auth_routes = [',
        '  "GET=^/probe",',
        '  "^/metrics"',
        ']',
        'api_routes = [',
        '  "^/api"',
        ']',
        'ssl_insecure_skip_verify = false',
        'cookie_name = "_oauth2_proxy"',
        `cookie_secret = "${cookieSecret}"`,
        'cookie_expire = "168h"',
        'cookie_secure = true',
        'cookie_httponly = true',
        'session_store_type = "cookie"',
      ].join('\n'),
    );
    const { cfg, file, stderr } = await importOk(['oauth2-proxy', '--config', cfgFile]);
    // The default provider is google (overview page, General Provider Options).
    assert.equal(cfg.idp_provider, 'google');
    assert.equal(cfg.idp_provider_url, 'https://accounts.google.com');
    assert.deepEqual(cfg.idp_scopes, ['openid', 'email', 'profile']);
    assert.equal(cfg.cookie_name, '_oauth2_proxy');
    const routes = routesOf(cfg);
    assert.equal(routes.length, 3);
    assert.ok(routes.every((r) => r.from === 'https://internalapp.yourcompany.com'));
    for (const line of ['request_logging', 'api_routes'])
      assert.ok(
        notCarried(stderr).some((l) => l.startsWith(`not carried over: ${line} — `)),
        line,
      );
    await checkOk(file);

    const explain = async (path: string, method = 'GET', email?: string) =>
      run([
        'explain',
        '--config',
        file,
        '--url',
        `https://internalapp.yourcompany.com${path}`,
        '--method',
        method,
        ...(email ? ['--email', email] : []),
      ]);
    // "^/metrics": every method, no sign-in; the path is searched, as Go's MatchString does.
    for (const [path, method] of [
      ['/metrics', 'GET'],
      ['/metrics/x', 'POST'],
    ] as const) {
      const r = await explain(path, method);
      assert.equal(r.code, 0, `${method} ${path}: ${r.stdout}`);
      assert.match(r.stdout, /^ALLOW/);
    }
    // "GET=^/probe": GET without a sign-in; another method needs one, and then the normal policy.
    assert.equal((await explain('/probe')).code, 0);
    const post = await explain('/probe', 'POST');
    assert.notEqual(post.code, 0, post.stdout);
    assert.equal((await explain('/probe', 'POST', 'ann@yourcompany.com')).code, 0);
    assert.notEqual((await explain('/probe', 'POST', 'eve@elsewhere.com')).code, 0);
    // Everything else: signed in, with an address at yourcompany.com.
    assert.notEqual((await explain('/app')).code, 0);
    assert.equal((await explain('/app', 'GET', 'ann@yourcompany.com')).code, 0);
    assert.notEqual((await explain('/app', 'GET', 'eve@yourcompany.com.evil.test')).code, 0);
    // The query string is not part of the match (oauth2-proxy 7.11 fixed the same bypass, CVE-2025-54576).
    assert.notEqual((await explain('/app?x=/metrics')).code, 0);
  });

  test('oauth2-proxy contrib/local-environment/oauth2-proxy-keycloak.cfg writes cookie_domain and whitelist_domain, which oauth2-proxy v7 refuses: so does the import, naming the line', async () => {
    // The file (commit 1e07538) uses the singular names; v7 reads the file with viper's
    // UnmarshalExact (pkg/apis/options/load.go), so an unknown key stops oauth2-proxy.
    const cfgFile = write(
      'keycloak.cfg',
      [
        'http_address="0.0.0.0:4180"',
        'cookie_secret="OQINaROshtE9TcZkNAm-5Zs2Pv3xaWytBmc5W7sPX7w="',
        'email_domains="example.com"',
        'cookie_secure="false"',
        'upstreams="http://httpbin"',
        'cookie_domain=".localtest.me" # Required so cookie can be read on all subdomains.',
        'whitelist_domain=".localtest.me" # Required to allow redirection back.',
        'client_secret="72341b6d-7065-4518-a0e4-50ee15025608"',
        'client_id="oauth2-proxy"',
        'redirect_url="http://oauth2-proxy.localtest.me/oauth2/callback"',
        'oidc_issuer_url="http://127.0.0.1:8080/auth/realms/master"',
        'provider="oidc"',
        'provider_display_name="Keycloak"',
      ].join('\n'),
    );
    const out = join(dir, 'keycloak.yaml');
    const r = await run(['import', 'oauth2-proxy', '--config', cfgFile, '--out', out]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /keycloak\.cfg:6: cookie_domain is not an oauth2-proxy setting \(did you mean cookie_domains\?\)/,
    );
    assert.match(
      r.stderr,
      /keycloak\.cfg:7: whitelist_domain is not an oauth2-proxy setting \(did you mean whitelist_domains\?\)/,
    );
    assert.throws(() => statSync(out), 'nothing written');
    assert.ok(!r.stderr.includes('72341b6d'), 'no secret printed');

    // With the plural names v7 reads, it imports; provider_display_name has no page to show on.
    const fixed = write(
      'keycloak-fixed.cfg',
      readFileSync(cfgFile, 'utf8')
        .replace('cookie_domain=', 'cookie_domains=')
        .replace('whitelist_domain=', 'whitelist_domains='),
    );
    const { cfg, file, stderr } = await importOk(['oauth2-proxy', '--config', fixed]);
    assert.equal(cfg.cookie_domain, 'localtest.me');
    assert.match(stderr, /not carried over: provider_display_name — /);
    await checkOk(file);
  });
});

describe('import oauth2-proxy: flags and OAUTH2_PROXY_* variables, with oauth2-proxy precedence', () => {
  // Overview page (v7.6.x): "command line options will overwrite environment variables and
  // environment variables will overwrite configuration file settings"; a repeatable flag is
  // singular (--email-domain), its variable plural (OAUTH2_PROXY_EMAIL_DOMAINS), comma-separated.
  // base64url: oauth2-proxy decodes the secret with RawURLEncoding (pkg/encryption SecretBytes).
  const secret = randomBytes(32).toString('base64url');
  const flags = [
    '--provider=oidc',
    '--oidc-issuer-url=https://idp.example.com/realms/corp',
    '--client-id=app',
    '--client-secret',
    'flag-client-secret',
    `--cookie-secret=${secret}`,
    '--email-domain=example.com',
    '--email-domain=*.example.org',
    '--upstream=http://127.0.0.1:3000',
    '--redirect-url=https://app.example.com/oauth2/callback',
    '--allowed-group=admins',
    '--pass-access-token',
  ];

  test('the settings given only as flags after --', async () => {
    const { cfg, file } = await importOk(['oauth2-proxy', '--', ...flags]);
    assert.equal(cfg.idp_provider_url, 'https://idp.example.com/realms/corp');
    assert.equal(cfg.idp_client_secret, 'flag-client-secret');
    // allowed_groups without scope adds `groups` for the generic OIDC provider (overview page).
    assert.deepEqual(cfg.idp_scopes, ['openid', 'email', 'profile', 'groups']);
    const [route] = routesOf(cfg);
    assert.equal(route!.from, 'https://app.example.com');
    assert.equal(route!.pass_access_token, 'X-Forwarded-Access-Token');
    // The email check AND the group check (oauth2-proxy applies both).
    assert.deepEqual(route!.policy, [
      {
        allow: {
          and: [
            { or: [{ domain: { is: 'example.com' } }, { domain: { ends_with: '.example.org' } }] },
            { groups: { has: 'admins' } },
          ],
        },
      },
    ]);
    await checkOk(file);
  });

  test('set_xauthrequest with pass_access_token: auth only, /oauth2/auth hands the token out as X-Auth-Request-Access-Token; with an upstream it goes there, and a whitelist_domains entry no route covers becomes allowed_redirect_domains', async () => {
    // Command-line flags page (v7.6.x): --set-xauthrequest "When used with --pass-access-token,
    // X-Auth-Request-Access-Token is added to response headers"; --whitelist-domain "prefix
    // domain with a . or a *. to allow subdomains".
    const authOnly = flags.filter((f) => !f.startsWith('--upstream='));
    const only = await importOk([
      'oauth2-proxy',
      '--',
      ...authOnly,
      '--set-xauthrequest',
      '--whitelist-domain=app.example.com',
    ]);
    const [route] = routesOf(only.cfg);
    assert.equal(route!.from, 'https://app.example.com');
    assert.equal(route!.pass_access_token, 'X-Auth-Request-Access-Token');
    assert.deepEqual(
      notCarried(only.stderr).filter((l) => /whitelist_domains|set_xauthrequest/.test(l)),
      [],
    );
    await checkOk(only.file);
    const proxied = await importOk([
      'oauth2-proxy',
      '--',
      ...flags,
      '--set-xauthrequest',
      '--whitelist-domain=.partner.example.net',
    ]);
    assert.equal(routesOf(proxied.cfg)[0]!.pass_access_token, 'X-Forwarded-Access-Token');
    assert.deepEqual(proxied.cfg.allowed_redirect_domains, ['.partner.example.net']);
    assert.match(proxied.stderr, /not carried over: set_xauthrequest — with upstreams/);
    assert.doesNotMatch(proxied.stderr, /not carried over: whitelist_domains/);
    await checkOk(proxied.file);
  });

  test('the same settings as OAUTH2_PROXY_* variables', async () => {
    const env: Record<string, string> = {
      OAUTH2_PROXY_PROVIDER: 'oidc',
      OAUTH2_PROXY_OIDC_ISSUER_URL: 'https://idp.example.com/realms/corp',
      OAUTH2_PROXY_CLIENT_ID: 'app',
      OAUTH2_PROXY_CLIENT_SECRET: 'env-client-secret',
      OAUTH2_PROXY_COOKIE_SECRET: secret,
      OAUTH2_PROXY_EMAIL_DOMAINS: 'example.com,*.example.org',
      OAUTH2_PROXY_UPSTREAMS: 'http://127.0.0.1:3000',
      OAUTH2_PROXY_REDIRECT_URL: 'https://app.example.com/oauth2/callback',
      OAUTH2_PROXY_ALLOWED_GROUPS: 'admins',
      OAUTH2_PROXY_PASS_ACCESS_TOKEN: 'true',
      OAUTH2_PROXY_NOT_A_SETTING: 'x',
    };
    const viaEnv = await importOk(['oauth2-proxy'], env);
    const viaFlags = await importOk(['oauth2-proxy', '--', ...flags]);
    assert.equal(viaEnv.cfg.idp_client_secret, 'env-client-secret');
    assert.deepEqual(
      { ...viaEnv.cfg, idp_client_secret: null },
      { ...viaFlags.cfg, idp_client_secret: null },
      'the same setup, whichever way it is given',
    );
    assert.match(
      viaEnv.stderr,
      /not carried over: OAUTH2_PROXY_NOT_A_SETTING — not an oauth2-proxy setting/,
    );
    assert.ok(!viaEnv.stderr.includes('env-client-secret'));
  });

  test('a flag beats a variable, which beats the file; a list given again is replaced, not merged', async () => {
    const base = write(
      'precedence.cfg',
      [
        'provider = "oidc"',
        'oidc_issuer_url = "https://idp.example.com"',
        'client_id = "file-client"',
        'client_secret = "file-secret"',
        `cookie_secret = "${secret}"`,
        'cookie_name = "from_file"',
        'email_domains = ["file.example"]',
        'upstreams = ["http://127.0.0.1:3000"]',
        'redirect_url = "https://app.example.com/oauth2/callback"',
      ].join('\n'),
    );
    const env = { OAUTH2_PROXY_COOKIE_NAME: 'from_env', OAUTH2_PROXY_EMAIL_DOMAINS: 'env.example' };
    const fileOnly = await importOk(['oauth2-proxy', '--config', base]);
    assert.equal(fileOnly.cfg.cookie_name, 'from_file');
    const withEnv = await importOk(['oauth2-proxy', '--config', base], env);
    assert.equal(withEnv.cfg.cookie_name, 'from_env');
    assert.deepEqual(routesOf(withEnv.cfg)[0]!.policy, [
      { allow: { and: [{ domain: { is: 'env.example' } }] } },
    ]);
    const withFlag = await importOk(
      [
        'oauth2-proxy',
        '--config',
        base,
        '--',
        '--cookie-name=from_flag',
        '--email-domain',
        'flag.example',
      ],
      env,
    );
    assert.equal(withFlag.cfg.cookie_name, 'from_flag');
    assert.deepEqual(routesOf(withFlag.cfg)[0]!.policy, [
      { allow: { and: [{ domain: { is: 'flag.example' } }] } },
    ]);
    assert.equal(withFlag.cfg.idp_client_id, 'file-client', 'what only the file sets still counts');
  });

  test('--from names the public hosts when oauth2-proxy was reached under several', async () => {
    const { cfg, file } = await importOk([
      'oauth2-proxy',
      '--from',
      'https://a.example.com',
      '--from',
      'https://b.example.com',
      '--',
      ...flags,
    ]);
    assert.deepEqual(
      routesOf(cfg).map((r) => r.from),
      ['https://a.example.com', 'https://b.example.com'],
    );
    // Both finish their sign-in at the one registered redirect URI.
    assert.equal(cfg.authenticate_service_url, 'https://app.example.com');
    await checkOk(file);
  });
});
