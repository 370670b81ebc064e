import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError } from '../src/config/errors.js';
import { parseConfig } from '../src/config/load.js';

// Every config below is built from numbered lines so each asserted line number can be checked
// by eye against the text: an operator fixing a config goes to exactly that line.

const SECRET = Buffer.alloc(32, 7).toString('base64');
const FILE = 'portcullis.yaml';

/** Lines 1-6: the globals. */
const HEAD = [
  'address: 127.0.0.1:8080', // 1
  'insecure_server: true', // 2
  'idp_provider_url: https://idp.example.com', // 3
  'idp_client_id: portcullis', // 4
  'idp_client_secret: s3cret', // 5
  `cookie_secret: ${SECRET}`, // 6
];
/** Lines 7-10 when placed right after HEAD. */
const ROUTES = [
  'routes:', // 7
  '  - from: https://app.example.com', // 8
  '    to: http://127.0.0.1:3000', // 9
  '    allow_any_authenticated_user: true', // 10
];

const yaml = (...lines: string[]): string => `${lines.join('\n')}\n`;
/** HEAD + ROUTES with line n (1-based) replaced by `text`. */
const withLine = (n: number, text: string): string => {
  const lines = [...HEAD, ...ROUTES];
  lines[n - 1] = text;
  return yaml(...lines);
};

function configError(text: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseConfig(text, FILE, env);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  return assert.fail(`expected a ConfigError for:\n${text}`);
}

interface Expected {
  line: number;
  column?: number;
  key: string;
  message: RegExp;
}

/** Exactly one problem, at that place, with that key path, and the printed form an operator reads. */
function expectIssue(text: string, want: Expected, env: NodeJS.ProcessEnv = {}): ConfigError {
  const e = configError(text, env);
  assert.equal(e.issues.length, 1, `exactly one problem expected, got:\n${e.message}`);
  const i = e.issues[0]!;
  assert.equal(i.line, want.line, e.message);
  if (want.column !== undefined) assert.equal(i.column, want.column, e.message);
  assert.equal(i.key, want.key, e.message);
  assert.match(i.message, want.message);
  assert.equal(
    e.message,
    `${FILE}:${want.line}:${i.column}: error: ${want.key ? `${want.key}: ` : ''}${i.message}`,
  );
  return e;
}

const tmp = mkdtempSync(join(tmpdir(), 'portcullis-config-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('a valid config', () => {
  test('the minimal config loads with its defaults', () => {
    const cfg = parseConfig(
      yaml(
        'insecure_server: true',
        'idp_provider_url: https://idp.example.com',
        'idp_client_id: portcullis',
        'idp_client_secret: s3cret',
        `cookie_secret: ${SECRET}`,
        'routes:',
        '  - from: https://app.example.com',
        '    to: http://10.0.0.5:3000',
        '    allow_any_authenticated_user: true',
      ),
      FILE,
      {},
    );
    assert.deepEqual(cfg.listen, { host: '0.0.0.0', port: 80 });
    assert.equal(cfg.tls, null);
    assert.equal(cfg.idp.issuer.href, 'https://idp.example.com/');
    assert.equal(cfg.idp.clientSecret, 's3cret');
    assert.deepEqual(cfg.cookie.secret, Buffer.alloc(32, 7));
    assert.equal(cfg.cookie.name, '_portcullis');
    assert.equal(cfg.cookie.expireMs, 14 * 3_600_000);
    assert.equal(cfg.routes.length, 1);
    const r = cfg.routes[0]!;
    assert.deepEqual(
      { host: r.from.host, port: r.from.port, scheme: r.from.scheme },
      { host: 'app.example.com', port: 443, scheme: 'https' },
    );
    assert.deepEqual(
      r.to.map((u) => u.href),
      ['http://10.0.0.5:3000/'],
    );
    assert.equal(r.timeoutMs, 30_000);
    assert.equal(r.allowWebsockets, false);
    assert.ok(cfg.isTrustedProxy('127.0.0.1'), 'loopback is a trusted proxy by default');
    assert.ok(!cfg.isTrustedProxy('10.1.2.3'));
  });

  test('an http:// issuer is accepted on this machine', () => {
    for (const issuer of ['http://127.0.0.1:9000', 'http://localhost:9000/realms/x']) {
      const cfg = parseConfig(withLine(3, `idp_provider_url: ${issuer}`), FILE, {});
      assert.equal(cfg.idp.issuer.protocol, 'http:');
    }
  });
});

describe('session_cache_size', () => {
  test('defaults to 10,000 decoded sessions and takes a whole number from 100 to 1,000,000', () => {
    assert.equal(parseConfig(yaml(...HEAD, ...ROUTES), FILE, {}).sessionCacheSize, 10_000);
    assert.equal(
      parseConfig(yaml(...HEAD, 'session_cache_size: 50000', ...ROUTES), FILE, {}).sessionCacheSize,
      50_000,
    );
  });

  test('a bad size names the key, the line and the range', () => {
    expectIssue(yaml(...HEAD, 'session_cache_size: 10', ...ROUTES), {
      line: 7,
      column: 21,
      key: 'session_cache_size',
      message: /at least 100/,
    });
    expectIssue(yaml(...HEAD, 'session_cache_size: 2000000', ...ROUTES), {
      line: 7,
      column: 21,
      key: 'session_cache_size',
      message: /at most 1000000/,
    });
    expectIssue(yaml(...HEAD, 'session_cache_size: 12.5', ...ROUTES), {
      line: 7,
      column: 21,
      key: 'session_cache_size',
      message: /whole number/,
    });
    expectIssue(yaml(...HEAD, 'session_cache_size: lots', ...ROUTES), {
      line: 7,
      column: 21,
      key: 'session_cache_size',
      message: /whole number/,
    });
  });
});

describe('bearer_token_cache_size', () => {
  test('defaults to 10,000 tokens and takes a whole number from 100 to 1,000,000', () => {
    assert.equal(parseConfig(yaml(...HEAD, ...ROUTES), FILE, {}).bearer.cacheSize, 10_000);
    assert.equal(
      parseConfig(yaml(...HEAD, 'bearer_token_cache_size: 50000', ...ROUTES), FILE, {}).bearer
        .cacheSize,
      50_000,
    );
  });

  test('a bad size names the key, the line and the range', () => {
    const at = { line: 7, column: 26, key: 'bearer_token_cache_size' };
    expectIssue(yaml(...HEAD, 'bearer_token_cache_size: 10', ...ROUTES), {
      ...at,
      message: /at least 100/,
    });
    expectIssue(yaml(...HEAD, 'bearer_token_cache_size: 2000000', ...ROUTES), {
      ...at,
      message: /at most 1000000/,
    });
    expectIssue(yaml(...HEAD, 'bearer_token_cache_size: 12.5', ...ROUTES), {
      ...at,
      message: /whole number/,
    });
    expectIssue(yaml(...HEAD, 'bearer_token_cache_size: lots', ...ROUTES), {
      ...at,
      message: /whole number/,
    });
  });
});

describe('login_rate_limit and login_rate_limit_global', () => {
  test('default to 10,000 starts per address per hour and 200 a second in all; 0 turns either off', () => {
    assert.deepEqual(parseConfig(yaml(...HEAD, ...ROUTES), FILE, {}).loginRateLimit, {
      perAddressPerHour: 10_000,
      globalPerSecond: 200,
    });
    const off = parseConfig(
      yaml(...HEAD, 'login_rate_limit: 0', 'login_rate_limit_global: 0', ...ROUTES),
      FILE,
      {},
    );
    assert.deepEqual(off.loginRateLimit, { perAddressPerHour: 0, globalPerSecond: 0 });
  });

  test('a bad limit names the key, the line and the range', () => {
    for (const [key, max] of [
      ['login_rate_limit', 1_000_000],
      ['login_rate_limit_global', 100_000],
    ] as const) {
      const message = new RegExp(
        `whole number of sign-in starts .* from 0 \\(no limit\\) to ${max}`,
      );
      const column = key.length + 3;
      for (const bad of ['-1', '2.5', 'lots', String(max + 1), 'true']) {
        expectIssue(yaml(...HEAD, `${key}: ${bad}`, ...ROUTES), { line: 7, column, key, message });
      }
    }
  });
});

describe('unknown keys', () => {
  test('a misspelled top-level key names the line and suggests the right spelling', () => {
    expectIssue(yaml(...HEAD, 'cookie_secert: x', ...ROUTES), {
      line: 7,
      column: 1,
      key: 'cookie_secert',
      message: /^unknown key; did you mean `cookie_secret`\?$/,
    });
  });

  test('a misspelled route key names the route and suggests the right spelling', () => {
    expectIssue(yaml(...HEAD, ...ROUTES, '    allow_public_unauthenticated_acess: true'), {
      line: 11,
      column: 5,
      key: 'routes[0].allow_public_unauthenticated_acess',
      message: /^unknown key; did you mean `allow_public_unauthenticated_access`\?$/,
    });
  });

  test('a key that resembles nothing gets no suggestion', () => {
    expectIssue(yaml(...HEAD, 'frobnicate_everything: 1', ...ROUTES), {
      line: 7,
      column: 1,
      key: 'frobnicate_everything',
      message: /^unknown key$/,
    });
  });
});

describe('wrong types', () => {
  test('a string where a boolean belongs says what was expected, not that the key is missing', () => {
    const e = expectIssue(withLine(2, 'insecure_server: yes please'), {
      line: 2,
      column: 18,
      key: 'insecure_server',
      message: /expected boolean, received string/,
    });
    assert.doesNotMatch(e.message, /required/);
  });

  test('a string where a route boolean belongs', () => {
    const e = expectIssue(yaml(...HEAD, ...ROUTES, '    allow_websockets: "yes"'), {
      line: 11,
      column: 23,
      key: 'routes[0].allow_websockets',
      message: /expected boolean, received string/,
    });
    assert.doesNotMatch(e.message, /required/);
  });

  test('a number where a string belongs', () => {
    expectIssue(withLine(4, 'idp_client_id: 42'), {
      line: 4,
      column: 16,
      key: 'idp_client_id',
      message: /expected string, received number/,
    });
  });

  test('routes that are not a list', () => {
    expectIssue(yaml(...HEAD, 'routes: everything'), {
      line: 7,
      column: 9,
      key: 'routes',
      message: /expected `routes` as a list of routes/,
    });
  });

  test('a route without `from` points at that route and says what `from` is', () => {
    const lines = [...HEAD, ...ROUTES];
    lines[7] = '  - to: http://127.0.0.1:3000';
    lines.splice(8, 1);
    expectIssue(yaml(...lines), {
      line: 8,
      column: 5,
      key: 'routes[0].from',
      message: /^is required: expected `from` as a URL like https:\/\/app\.example\.com/,
    });
  });

  test('an empty routes list is refused', () => {
    expectIssue(yaml(...HEAD, 'routes: []'), {
      line: 7,
      column: 9,
      key: 'routes',
      message: /expected at least one route/,
    });
  });

  test('a missing required key is reported as missing', () => {
    const lines = [...HEAD, ...ROUTES];
    lines.splice(3, 1); // idp_client_id
    const e = configError(yaml(...lines));
    assert.equal(e.issues.length, 1, e.message);
    assert.equal(e.issues[0]!.key, 'idp_client_id');
    assert.match(e.issues[0]!.message, /^is required/);
  });
});

describe('URLs', () => {
  test('a `to` that is not a URL', () => {
    expectIssue(withLine(9, '    to: not a url'), {
      line: 9,
      column: 9,
      key: 'routes[0].to',
      message: /expected an http\(s\) upstream URL like http:\/\/10\.0\.0\.5:3000, got "not a url"/,
    });
  });

  test('a `to` in a list names its index', () => {
    expectIssue(withLine(9, '    to: [http://10.0.0.1:80, "ftp://10.0.0.2"]'), {
      line: 9,
      column: 30,
      key: 'routes[0].to[1]',
      message: /expected an http\(s\) upstream URL/,
    });
  });

  test('a `from` without a scheme', () => {
    expectIssue(withLine(8, '  - from: app.example.com'), {
      line: 8,
      column: 11,
      key: 'routes[0].from',
      message: /expected a URL like https:\/\/app\.example\.com, got "app\.example\.com"/,
    });
  });

  test('a `from` with a path, which would silently never match', () => {
    expectIssue(withLine(8, '  - from: https://app.example.com/admin'), {
      line: 8,
      column: 11,
      key: 'routes[0].from',
      message:
        /expected only scheme, host and port in `from` \(use prefix\/path\/regex for paths\)/,
    });
  });

  test('an idp_provider_url that is not a URL', () => {
    expectIssue(withLine(3, 'idp_provider_url: idp.example.com'), {
      line: 3,
      column: 19,
      key: 'idp_provider_url',
      message: /expected idp_provider_url \(the issuer\) as an absolute http\(s\) URL/,
    });
  });

  test('an http:// issuer on another host is refused', () => {
    expectIssue(withLine(3, 'idp_provider_url: http://idp.example.com'), {
      line: 3,
      column: 19,
      key: 'idp_provider_url',
      message: /expected an https:\/\/ issuer/,
    });
  });
});

describe('secrets', () => {
  test('a cookie_secret of the wrong length says how many bytes it has', () => {
    expectIssue(withLine(6, `cookie_secret: ${Buffer.alloc(16).toString('base64')}`), {
      line: 6,
      column: 16,
      key: 'cookie_secret',
      message: /expected 32 bytes encoded as base64 .*got 16 bytes/,
    });
  });

  test('a cookie_secret that is not base64', () => {
    expectIssue(withLine(6, 'cookie_secret: "correct horse battery staple, not base64!!"'), {
      line: 6,
      column: 16,
      key: 'cookie_secret',
      message: /expected 32 bytes encoded as base64 .*not base64/,
    });
  });

  test('idp_client_secret and idp_client_secret_file together are refused', () => {
    const file = join(tmp, 'client-secret');
    writeFileSync(file, 'from-file\n');
    expectIssue(yaml(...HEAD, `idp_client_secret_file: ${file}`, ...ROUTES), {
      line: 5,
      column: 20,
      key: 'idp_client_secret',
      message: /set either idp_client_secret or idp_client_secret_file, not both/,
    });
  });

  test('a *_file that does not exist is the one problem reported', () => {
    const missing = join(tmp, 'no-such-secret');
    expectIssue(withLine(5, `idp_client_secret_file: ${missing}`), {
      line: 5,
      column: 25,
      key: 'idp_client_secret_file',
      message: new RegExp(`cannot read ${missing}: ENOENT`),
    });
  });

  test('a secret from a *_file is kept byte for byte: no $ substitution, no quote handling, only the final newline dropped', () => {
    const value = 'p$a`ss"w\'o${HOME}rd$$ \\n #not-a-comment';
    const file = join(tmp, 'tricky-secret');
    writeFileSync(file, `${value}\n`);
    const cookieFile = join(tmp, 'cookie-secret');
    writeFileSync(cookieFile, `${SECRET}\n`);
    const lines = [...HEAD, ...ROUTES];
    lines[4] = `idp_client_secret_file: ${file}`;
    lines[5] = `cookie_secret_file: ${cookieFile}`;
    const cfg = parseConfig(yaml(...lines), FILE, { HOME: '/home/x' });
    assert.equal(cfg.idp.clientSecret, value);
    assert.deepEqual(cfg.cookie.secret, Buffer.alloc(32, 7));
  });
});

describe('${VAR} substitution', () => {
  test('a set variable is substituted, and its value is not parsed as YAML', () => {
    const cfg = parseConfig(withLine(5, 'idp_client_secret: ${CLIENT_SECRET}'), FILE, {
      CLIENT_SECRET: 'abc: def # [x] ${OTHER}',
    });
    assert.equal(cfg.idp.clientSecret, 'abc: def # [x] ${OTHER}');
  });

  test('several variables in one value', () => {
    const cfg = parseConfig(withLine(9, '    to: http://${UP_HOST}:${UP_PORT}'), FILE, {
      UP_HOST: '10.1.1.1',
      UP_PORT: '8081',
    });
    assert.equal(cfg.routes[0]!.to[0]!.href, 'http://10.1.1.1:8081/');
  });

  test('an unset variable names the variable, the key and the line', () => {
    expectIssue(withLine(5, 'idp_client_secret: ${NOT_SET_ANYWHERE}'), {
      line: 5,
      column: 20,
      key: 'idp_client_secret',
      message: /environment variable NOT_SET_ANYWHERE is not set .*write \$\$ for a literal \$/,
    });
  });

  test('an unset variable inside a route names the route key', () => {
    expectIssue(withLine(9, '    to: ${UPSTREAM_URL}'), {
      line: 9,
      column: 9,
      key: 'routes[0].to',
      message: /environment variable UPSTREAM_URL is not set/,
    });
  });

  test('$$ is a literal $, and a lone $ is left alone', () => {
    const cfg = parseConfig(withLine(5, 'idp_client_secret: "pa$$${NAME}$$word$x"'), FILE, {
      NAME: 'ss',
    });
    assert.equal(cfg.idp.clientSecret, 'pa$ss$word$x');
  });
});

describe('durations', () => {
  const cases: Array<[string, number]> = [
    ['30s', 30_000],
    ['15m', 900_000],
    ['12h', 43_200_000],
    ['14d', 1_209_600_000],
    ['1h30m', 5_400_000],
  ];
  for (const [text, ms] of cases) {
    test(`${text} is ${ms} ms`, () => {
      const cfg = parseConfig(
        yaml(
          ...HEAD,
          `cookie_expire: ${text}`,
          ...ROUTES,
          `    timeout: ${text}`,
          `    idle_timeout: ${text}`,
        ),
        FILE,
        {},
      );
      assert.equal(cfg.cookie.expireMs, ms);
      assert.equal(cfg.routes[0]!.timeoutMs, ms);
      assert.equal(cfg.routes[0]!.idleTimeoutMs, ms);
    });
  }

  test('an unknown unit is refused with examples of what works', () => {
    expectIssue(yaml(...HEAD, ...ROUTES, '    timeout: 12x'), {
      line: 11,
      column: 14,
      key: 'routes[0].timeout',
      message: /expected a duration for timeout like 30s, 15m, 12h or 14d, got "12x"/,
    });
  });

  test('a bad cookie_expire at the top level', () => {
    expectIssue(yaml(...HEAD, 'cookie_expire: soon', ...ROUTES), {
      line: 7,
      column: 16,
      key: 'cookie_expire',
      message: /expected a duration for cookie_expire .*got "soon"/,
    });
  });
});

describe('YAML itself', () => {
  test('a syntax error names its line', () => {
    const e = configError(withLine(9, '    to: http://127.0.0.1:3000: extra: colon'));
    assert.ok(e.issues.length >= 1);
    assert.deepEqual(new Set(e.issues.map((i) => i.line)), new Set([9]), e.message);
    assert.match(
      e.message,
      /^portcullis\.yaml:9:\d+: error: invalid YAML: Nested mappings are not allowed/,
    );
  });

  test('a tab used for indentation names its line', () => {
    const lines = [...HEAD, ...ROUTES];
    lines[9] = '\tallow_any_authenticated_user: true';
    const e = configError(yaml(...lines));
    assert.ok(e.issues.length >= 1);
    assert.equal(e.issues[0]!.line, 10, e.message);
    assert.match(e.message, /^portcullis\.yaml:10:\d+: error: invalid YAML: /);
  });

  test('a duplicate key names the key and the line of the second one', () => {
    expectIssue(yaml(...HEAD, 'idp_client_id: again', ...ROUTES), {
      line: 7,
      column: 1,
      key: 'idp_client_id',
      message: /duplicate key/,
    });
  });

  test('a duplicate key inside a route names the route', () => {
    expectIssue(yaml(...HEAD, ...ROUTES, '    to: http://127.0.0.1:4000'), {
      line: 11,
      column: 5,
      key: 'routes[0].to',
      message: /duplicate key/,
    });
  });

  test('a document that is not a mapping', () => {
    const e = configError('- just\n- a list\n');
    assert.match(e.message, /expected a YAML mapping of settings/);
  });
});

describe('routes', () => {
  test('two of prefix, path and regex are refused', () => {
    expectIssue(yaml(...HEAD, ...ROUTES, '    prefix: /a', '    path: /b'), {
      line: 12,
      column: 11,
      key: 'routes[0].path',
      message: /use only one of prefix, path and regex on a route \(found prefix and path\)/,
    });
  });

  test('an invalid regex says why', () => {
    expectIssue(yaml(...HEAD, ...ROUTES, '    regex: "/a("'), {
      line: 11,
      column: 12,
      key: 'routes[0].regex',
      message: /invalid regular expression: .*Unterminated group/,
    });
  });

  test('the second route is named by its index', () => {
    expectIssue(
      yaml(
        ...HEAD,
        ...ROUTES,
        '  - from: https://b.example.com',
        '    to: http://127.0.0.1:3001',
        '    regex: "[z-a]"',
      ),
      { line: 13, column: 12, key: 'routes[1].regex', message: /invalid regular expression/ },
    );
  });
});

describe('trusted_proxies', () => {
  test('an invalid CIDR is refused', () => {
    expectIssue(yaml(...HEAD, 'trusted_proxies: [10.0.0.0/33]', ...ROUTES), {
      line: 7,
      column: 18,
      key: 'trusted_proxies',
      message: /10\.0\.0\.0\/33.*prefix length/,
    });
  });

  test('something that is not an address at all is refused', () => {
    expectIssue(yaml(...HEAD, 'trusted_proxies: [lan]', ...ROUTES), {
      line: 7,
      column: 18,
      key: 'trusted_proxies',
      message: /lan/,
    });
  });

  test('a valid list replaces the loopback default', () => {
    const cfg = parseConfig(yaml(...HEAD, 'trusted_proxies: [10.0.0.0/8]', ...ROUTES), FILE, {});
    assert.ok(cfg.isTrustedProxy('10.200.0.1'));
    assert.ok(!cfg.isTrustedProxy('127.0.0.1'));
  });
});

test('every problem in a file is reported at once, each with its own line', () => {
  const lines = [...HEAD, ...ROUTES];
  lines[2] = 'idp_provider_url: http://idp.example.com';
  lines[8] = '    to: nope';
  const e = configError(yaml(...lines));
  assert.deepEqual(
    e.issues.map((i) => [i.line, i.key]),
    [
      [3, 'idp_provider_url'],
      [9, 'routes[0].to'],
    ],
  );
});

// oauth2-proxy's --whitelist-domain carried over (its docs, configuration/overview, v7.13.x,
// footnote 2: a leading `.` or `*.` allows subdomains; no port means the default one only;
// `:8080` one port, `:*` any).
describe('allowed_redirect_domains', () => {
  test('hosts, domains and ports are accepted as oauth2-proxy writes them', () => {
    const cfg = parseConfig(
      yaml(
        ...HEAD,
        'allowed_redirect_domains: [.example.org, "*.example.net", wiki.example.com:8443, Docs.Example.com, "old.example.com:*"]',
        ...ROUTES,
      ),
      FILE,
      {},
    );
    assert.deepEqual(cfg.allowedRedirects, {
      allowedHosts: ['wiki.example.com:8443', 'docs.example.com', 'old.example.com:*'],
      allowedDomains: ['.example.org', '*.example.net'],
    });
  });
  for (const [entry, why] of [
    ['https://evil.test', /is not a host name \(no scheme, path or user\)/],
    ['app.example.com@evil.test', /is not a host name/],
    ['.example.com:99999', /invalid port/],
    ['.10.0.0.1', /IP address/],
    ['ex ample.com', /is not a host name/],
    ['Bücher.example', /not a canonical host name \(did you mean "xn--bcher-kva.example"\?\)/],
    ['.', /not a canonical host name/],
    ['evil.test/path', /is not a host name/],
  ] as const)
    test(`"${entry}" is refused with the key, line and what is expected`, () => {
      expectIssue(yaml(...HEAD, `allowed_redirect_domains: ["${entry}"]`, ...ROUTES), {
        line: 7,
        key: 'allowed_redirect_domains[0]',
        message: new RegExp(`${why.source}.*expected a host \\(app\\.example\\.com\\)`),
      });
    });
});

describe('authenticate_callback_path', () => {
  test('a query as the IdP registered it is kept apart from the path', () => {
    const cfg = parseConfig(
      yaml(
        ...HEAD,
        'authenticate_callback_path: /outpost.goauthentik.io/callback?X-authentik-auth-callback=true',
        ...ROUTES,
      ),
      FILE,
      {},
    );
    assert.equal(cfg.callbackPath, '/outpost.goauthentik.io/callback');
    assert.equal(cfg.callbackQuery, '?X-authentik-auth-callback=true');
  });
  for (const bad of ['/cb?a=b c', '/cb?a', '/cb?=x', '/cb#frag', 'cb', '/cb?a=%0d%0a', '/c b'])
    test(`${JSON.stringify(bad)} is refused, naming the key and the expected shape`, () => {
      expectIssue(yaml(...HEAD, `authenticate_callback_path: "${bad}"`, ...ROUTES), {
        line: 7,
        key: 'authenticate_callback_path',
        message: /expected a path like \/oauth2\/callback, optionally with a query/,
      });
    });
});
