import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { DEMO_USERS, startIdp, type RunningIdp } from '../demo/idp.js';
import { startWhoami } from '../demo/whoami.js';
import { CfgSyntaxError, parseCfg } from '../src/cli/import/cfg-parser.js';
import { parseConfig } from '../src/config/load.js';
import { createLogger } from '../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../src/server.js';
import { CookieJar, request } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startNginx, type StartedNginx } from './helpers/nginx.js';
import { freePort } from './helpers/ports.js';

// `portcullis import` as an operator runs it: the built CLI in a child process, fed the peers'
// own documented example configs (written here from the documented facts, each cited), judged
// by what it writes, what it prints, its exit status, and whether `portcullis check` and a real
// sign-in accept the result.

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'portcullis-import-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** This environment minus every OAUTH2_PROXY_* and PORTCULLIS_CONFIG: only a test sets them. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('OAUTH2_PROXY_') && k !== 'PORTCULLIS_CONFIG') env[k] = v;
  return { ...env, ...extra };
}

function run(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      cwd: dir,
      env: childEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`portcullis ${args.join(' ')} did not exit\n${stdout}\n${stderr}`));
    }, 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function write(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Imports, asserts exit 0, and returns the written config (parsed) and the printed notes. */
async function importOk(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ cfg: Record<string, unknown>; yaml: string; stderr: string; file: string }> {
  const out = join(dir, `out-${randomBytes(4).toString('hex')}.yaml`);
  const dash = args.indexOf('--');
  const withOut =
    dash < 0
      ? [...args, '--out', out]
      : [...args.slice(0, dash), '--out', out, ...args.slice(dash)];
  const r = await run(['import', ...withOut], env);
  assert.equal(r.code, 0, r.stderr);
  const yaml = readFileSync(out, 'utf8');
  return { cfg: parse(yaml) as Record<string, unknown>, yaml, stderr: r.stderr, file: out };
}

async function checkOk(file: string): Promise<string> {
  const r = await run(['check', '--config', file]);
  assert.equal(r.code, 0, `portcullis check failed:\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /OK \(\d+ routes?\)/);
  return r.stdout;
}

/** Every line the importer prints about a setting it did not carry over. */
const notCarried = (stderr: string): string[] =>
  stderr.split('\n').filter((l) => l.startsWith('not carried over: '));

type Route = Record<string, unknown>;
const routesOf = (cfg: Record<string, unknown>): Route[] => cfg.routes as Route[];

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

  test('GitHub (plain OAuth 2.0) is refused with the way forward', async () => {
    await refused(
      ['oauth2-proxy', '--', ...base, '--provider=github'],
      /cannot import: provider — "github": GitHub signs users in with plain OAuth 2.0, not OpenID Connect; .*Dex/,
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

  test('usage errors exit 2: an unknown peer, --from that is not an origin', async () => {
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
    await checkOk(out);
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
      /^not carried over: routes\[0\] — tcp\+https:\/\/redis\.example\.com:6379: TCP and UDP routes are not implemented yet/,
      /^not carried over: routes\[1\] — https:\/\/docs\.example\.com: redirect routes are not implemented yet/,
      /^not carried over: routes\[2\]\.prefix_rewrite — path rewriting is not implemented yet/,
      /^not carried over: routes\[2\]\.load_balancing_policy — /,
      /^not carried over: routes\[2\]\.set_request_headers\.X-Token — Pomerium's \$\{pomerium\.…\} values are not expanded/,
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
      ['https://app.example.com'],
    );
    assert.deepEqual(routesOf(cfg)[0]!.set_request_headers, { 'X-Static': 'hello' });
    assert.deepEqual(routesOf(cfg)[0]!.allowed_email_domains, ['example.com']);
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
  });
});

describe('a sign-in through an imported oauth2-proxy config', () => {
  let idp: RunningIdp;
  let upstream: Awaited<ReturnType<typeof startWhoami>>;
  let proxy: RunningPortcullis;
  let port: number;
  let imported: string;
  const clientSecret = randomBytes(24).toString('base64url');

  before(async () => {
    port = await freePort();
    upstream = await startWhoami({ name: 'upstream' });
    // The IdP keeps the redirect URI oauth2-proxy had registered.
    idp = await startIdp({
      clients: [
        {
          client_id: 'oauth2-proxy',
          client_secret: clientSecret,
          redirect_uris: [`http://app.corp.test:${port}/oauth2/callback`],
          post_logout_redirect_uris: [`http://app.corp.test:${port}/.portcullis/signed_out`],
        },
      ],
    });
    // A reverse-proxy oauth2-proxy setup as the recipes describe it: one upstream, the
    // redirect URL on the app's host, X-Forwarded-* to the upstream (the default), the access
    // token passed (pass_access_token), X-Auth-Request-* for an auth_request caller.
    const cfgFile = write(
      'signin.cfg',
      [
        `http_address = "127.0.0.1:${port}"`,
        'provider = "oidc"',
        `oidc_issuer_url = "${idp.issuer}"`,
        'client_id = "oauth2-proxy"',
        `client_secret_file = "${write('client-secret', `${clientSecret}\n`)}"`,
        `cookie_secret = "${randomBytes(32).toString('base64url')}"`,
        'cookie_secure = false',
        'email_domains = ["example.com"]',
        'allowed_groups = ["admins"]',
        `upstreams = ["${upstream.url}/"]`,
        `redirect_url = "http://app.corp.test:${port}/oauth2/callback"`,
        'scope = "openid email profile groups"',
        'set_xauthrequest = true',
        'pass_access_token = true',
        'skip_auth_routes = ["GET=^/healthz$"]',
      ].join('\n'),
    );
    const r = await importOk(['oauth2-proxy', '--config', cfgFile]);
    imported = r.file;
    await checkOk(imported);
    proxy = await startPortcullis(parseConfig(readFileSync(imported, 'utf8'), imported), {
      logger: createLogger('silent'),
    });
    await proxy.idp.start();
  });
  after(async () => {
    await Promise.allSettled([proxy?.close(), upstream?.close(), idp?.close()]);
  });

  test('alice signs in at the IdP, returns to her URL with its query, and the upstream gets X-Forwarded-* and the access token', async () => {
    const jar = new CookieJar();
    const start = `http://app.corp.test:${port}/reports?format=json&q=a%20b`;
    const r = await loginThroughIdp(start, { jar, username: 'alice', password: 'alice' });
    assert.equal(r.final.status, 200, r.chain.join('\n'));
    assert.equal(r.chain.at(-1), start);
    assert.ok(
      r.chain.some((u) => u.startsWith(`http://app.corp.test:${port}/oauth2/callback?`)),
      'the IdP returns to the redirect URI oauth2-proxy had registered',
    );
    const seen = JSON.parse(r.final.body) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/reports?format=json&q=a%20b');
    assert.equal(seen.headers['x-forwarded-user'], 'alice');
    assert.equal(seen.headers['x-forwarded-email'], 'alice@example.com');
    assert.equal(seen.headers['x-forwarded-groups'], 'admins,eng');
    assert.ok(seen.headers['x-forwarded-access-token'], 'pass_access_token');
    assert.equal(seen.headers.host, `app.corp.test:${port}`, 'pass_host_header (default true)');

    // The same session answers an auth_request subrequest on /oauth2/auth as oauth2-proxy did.
    const auth = await request(`http://app.corp.test:${port}/oauth2/auth`, {
      jar,
      headers: { 'x-forwarded-uri': '/reports' },
    });
    assert.equal(auth.status, 202);
    assert.equal(auth.headers['x-auth-request-email'], 'alice@example.com');
    assert.equal(auth.headers['x-auth-request-groups'], 'admins,eng');
  });

  test('bob (not in admins) is refused; the skipped health path needs nobody; a client cannot forge X-Forwarded-User', async () => {
    const jar = new CookieJar();
    const r = await loginThroughIdp(`http://app.corp.test:${port}/reports`, {
      jar,
      username: 'bob',
      password: 'bob',
    });
    assert.equal(r.final.status, 403);
    const health = await request(`http://app.corp.test:${port}/healthz?format=json`, {
      headers: { 'x-forwarded-user': 'admin' },
    });
    assert.equal(health.status, 200);
    const seen = JSON.parse(health.body) as { headers: Record<string, string> };
    assert.equal(seen.headers['x-forwarded-user'], undefined, 'the forged header is stripped');
    const post = await request(`http://app.corp.test:${port}/healthz`, {
      method: 'POST',
      headers: { ...BROWSER_HEADERS },
    });
    assert.equal(post.status, 302, 'another method on the skipped path still needs a sign-in');
  });
});

describe("real nginx with oauth2-proxy's auth_request snippet, in front of an imported auth-only oauth2-proxy config", () => {
  // The nginx side is oauth2-proxy's documented integration (Integration page, "Configuring for
  // use with the Nginx auth_request directive", versions 7.10.x to 7.13.x): a /oauth2/ location,
  // an exact /oauth2/auth location with X-Forwarded-Uri $request_uri and no body, a named
  // location answering 302 to /oauth2/sign_in?rd=..., and auth_request_set copying
  // X-Auth-Request-User / -Email into the upstream request. $host becomes $http_host because
  // the test cannot listen on port 80. The oauth2-proxy side is the shape that setup needs
  // (auth only: no upstreams, set_xauthrequest, the app host in whitelist_domains), imported.
  let idp: RunningIdp;
  let upstream: Awaited<ReturnType<typeof startWhoami>>;
  let proxy: RunningPortcullis;
  let nginx: StartedNginx;
  let app: string;

  before(async () => {
    const port = await freePort();
    const pcPort = await freePort();
    app = `http://app.corp.test:${port}`;
    const clientSecret = randomBytes(24).toString('base64url');
    idp = await startIdp({
      clients: [
        {
          client_id: 'oauth2-proxy',
          client_secret: clientSecret,
          redirect_uris: [`${app}/oauth2/callback`],
          post_logout_redirect_uris: [`${app}/`],
        },
      ],
      users: [
        ...DEMO_USERS,
        { id: 'carol', password: 'carol', email: 'carol@partner.test', name: 'Carol', groups: [] },
      ],
    });
    upstream = await startWhoami({ name: 'upstream' });
    const cfgFile = write(
      'auth-only.cfg',
      [
        `http_address = "127.0.0.1:${pcPort}"`,
        'provider = "oidc"',
        `oidc_issuer_url = "${idp.issuer}"`,
        'client_id = "oauth2-proxy"',
        `client_secret = "${clientSecret}"`,
        // 32 hex characters, which oauth2-proxy decodes as base64url to 24 bytes (AES-192).
        `cookie_secret = "${randomBytes(16).toString('hex')}"`,
        'cookie_secure = false',
        'email_domains = ["example.com"]',
        'scope = "openid email profile groups"',
        `redirect_url = "${app}/oauth2/callback"`,
        `whitelist_domains = ["app.corp.test:${port}"]`,
        'set_xauthrequest = true',
        'reverse_proxy = true',
      ].join('\n'),
    );
    const r = await importOk(['oauth2-proxy', '--config', cfgFile]);
    assert.deepEqual(
      routesOf(r.cfg).map((x) => x.from),
      [app],
      'the whitelisted host is the route',
    );
    assert.match(r.stderr, /not carried over: cookie_secret — it keys 192-bit AES/);
    await checkOk(r.file);
    proxy = await startPortcullis(parseConfig(readFileSync(r.file, 'utf8'), r.file), {
      logger: createLogger('silent'),
    });
    await proxy.idp.start();
    const authServer = `http://127.0.0.1:${pcPort}`;
    nginx = await startNginx(`
server {
  listen 127.0.0.1:${port};
  server_name app.corp.test;
  location /oauth2/ {
    proxy_pass ${authServer};
    proxy_set_header Host $http_host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Auth-Request-Redirect $request_uri;
  }
  location = /oauth2/auth {
    proxy_pass ${authServer};
    proxy_set_header Host $http_host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-Uri $request_uri;
    proxy_set_header Content-Length "";
    proxy_pass_request_body off;
  }
  location @oauth2_signin {
    return 302 /oauth2/sign_in?rd=$scheme://$http_host$request_uri;
  }
  location / {
    auth_request /oauth2/auth;
    error_page 401 = @oauth2_signin;
    auth_request_set $user $upstream_http_x_auth_request_user;
    auth_request_set $email $upstream_http_x_auth_request_email;
    proxy_set_header X-User $user;
    proxy_set_header X-Email $email;
    auth_request_set $auth_cookie $upstream_http_set_cookie;
    add_header Set-Cookie $auth_cookie;
    proxy_pass http://127.0.0.1:${upstream.port};
  }
}
`);
  });
  after(async () => {
    await nginx?.close();
    await Promise.allSettled([proxy?.close(), upstream?.close(), idp?.close()]);
  });

  test('alice signs in through /oauth2/sign_in and /oauth2/callback, lands on her URL, and nginx passes her identity upstream', async () => {
    const jar = new CookieJar();
    const wanted = `${app}/reports/q3?team=eng`;
    const { final, chain } = await loginThroughIdp(wanted, {
      jar,
      username: 'alice',
      password: 'alice',
      headers: { 'X-User': 'mallory' },
    });
    assert.equal(final.status, 200, `${chain.join('\n')}\n${nginx.errorLog()}`);
    assert.equal(chain.at(-1), wanted);
    assert.ok(chain.some((u) => u.startsWith(`${app}/oauth2/sign_in?rd=`)));
    assert.ok(chain.some((u) => u.startsWith(`${app}/oauth2/callback?`)));
    const r = await request(`${app}/reports/q3?format=json`, {
      jar,
      headers: { ...BROWSER_HEADERS, 'X-User': 'mallory' },
    });
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.body) as { headers: Record<string, string> };
    assert.equal(seen.headers['x-user'], 'alice');
    assert.equal(seen.headers['x-email'], 'alice@example.com');
  });

  test('carol (outside email_domains) signs in at the IdP and is refused; without a session the snippet redirects to sign-in', async () => {
    const carol = new CookieJar();
    const r = await loginThroughIdp(`${app}/x`, {
      jar: carol,
      username: 'carol',
      password: 'carol',
    });
    assert.equal(r.final.status, 403, r.chain.join('\n'));
    const anon = await request(`${app}/secret?a=1`, { headers: { accept: 'application/json' } });
    assert.equal(anon.status, 302, 'the snippet turns the 401 into its sign-in redirect');
    assert.equal(anon.location, `${app}/oauth2/sign_in?rd=${app}/secret?a=1`);
  });
});
