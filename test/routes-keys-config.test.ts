import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../src/config/load.js';
import { transportOf } from '../src/config/upstream-url.js';
import { lintConfig } from '../src/config/lint.js';
import { issue, route } from './helpers/config-errors.js';
import { selfSigned } from './helpers/certs.js';

// `portcullis check` for the upstream connection and header keys: a Pomerium config using
// them loads, and each misuse is an error naming the key and its line. Pomerium's pages:
//  https://www.pomerium.com/docs/reference/routes/headers#rewrite-response-headers
//  https://www.pomerium.com/docs/reference/routes/cors-preflight
//  https://www.pomerium.com/docs/reference/routes/tls
//  https://www.pomerium.com/docs/reference/routes/to
//  https://www.pomerium.com/docs/reference/routes/kubernetes-service-account-token
//  https://www.pomerium.com/docs/reference/routes/timeouts
//  https://www.pomerium.com/docs/reference/routes/regex-priority-order

let dir: string;
const pem = (n: string): string => readFileSync(join(dir, n), 'utf8');
const b64 = (n: string): string => Buffer.from(pem(n)).toString('base64');

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'portcullis-keys-config-'));
  for (const name of ['client', 'other']) selfSigned(dir, name, `/CN=${name}`);
  writeFileSync(join(dir, 'token'), 'eyJhbGciOiJSUzI1NiJ9.e30.sig\n');
  writeFileSync(join(dir, 'empty-token'), '\n');
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('a Pomerium route using these keys loads as written', () => {
  test('every key together, in the spellings of Pomerium’s pages', () => {
    const cfg = parseConfig(
      route(
        'to: https://10.0.0.5:8443',
        'rewrite_response_headers:',
        '  - header: Location',
        '    prefix: http://localhost:8000/',
        '    value: http://frontend/',
        '  - header: Refresh',
        '    value: /',
        "cors_allow_preflight: 'true'",
        `tls_client_cert: ${b64('client.crt')}`,
        `tls_client_key: ${b64('client.key')}`,
        'tls_server_name: app.internal',
        'tls_upstream_server_name: app.internal',
        'kubernetes_service_account_token: eyJ0eXAiOiJKV1QiLCJhbGciOiJ...',
      ),
      'p.yaml',
      {},
    );
    const r = cfg.routes[0]!;
    assert.deepEqual(
      [...r.responseHeaderRewrites!],
      [
        ['location', [{ prefix: 'http://localhost:8000/', value: 'http://frontend/' }]],
        ['refresh', [{ prefix: '', value: '/' }]],
      ],
    );
    assert.equal(r.corsAllowPreflight, true);
    assert.match(r.tlsClientCert!.cert, /BEGIN CERTIFICATE/);
    assert.match(r.tlsClientCert!.key, /BEGIN PRIVATE KEY/);
    assert.equal(r.tlsServerName, 'app.internal');
    assert.equal(r.kubernetesToken, 'eyJ0eXAiOiJKV1QiLCJhbGciOiJ...');
  });

  test('the _file forms read their files, and a reload follows them', () => {
    const cfg = parseConfig(
      route(
        'to: https://10.0.0.5:8443',
        `tls_client_cert_file: ${join(dir, 'client.crt')}`,
        `tls_client_key_file: ${join(dir, 'client.key')}`,
        `kubernetes_service_account_token_file: ${join(dir, 'token')}`,
      ),
      'p.yaml',
      {},
    );
    assert.equal(cfg.routes[0]!.tlsClientCert!.cert, pem('client.crt'));
    assert.equal(cfg.routes[0]!.kubernetesToken, 'eyJhbGciOiJSUzI1NiJ9.e30.sig');
    for (const f of ['client.crt', 'client.key', 'token'])
      assert.ok(cfg.filesRead.includes(join(dir, f)), f);
  });

  test('h2c://, http+unix:// and https+unix:// upstreams, as on Pomerium’s `to` page', () => {
    const cfg = parseConfig(
      route(
        'to:',
        '  - h2c://grpc.internal:50051',
        '  - http+unix:///var/run/app.sock',
        '  - https+unix:///var/run/example.sock',
      ),
      'p.yaml',
      {},
    );
    const [h2c, unix, tls] = cfg.routes[0]!.to;
    assert.equal(h2c!.href, 'http://grpc.internal:50051/');
    assert.deepEqual(transportOf(h2c!), { h2c: true, socketPath: null });
    assert.equal(unix!.href, 'http://localhost/');
    assert.deepEqual(transportOf(unix!), { h2c: false, socketPath: '/var/run/app.sock' });
    assert.equal(tls!.protocol, 'https:');
    assert.deepEqual(transportOf(tls!), { h2c: false, socketPath: '/var/run/example.sock' });
  });
});

describe('timeouts of long-lived routes, as Pomerium documents them', () => {
  const timeouts = (...lines: string[]): [number, number] => {
    const r = parseConfig(route('to: http://127.0.0.1:3000', ...lines), 'p.yaml', {}).routes[0]!;
    return [r.timeoutMs, r.idleTimeoutMs];
  };
  // "websockets are long-lived connections, so both the route timeout and idle timeout are
  // automatically disabled (set to 0) unless explicitly configured."
  test('a WebSocket route has neither timeout unless it sets them', () => {
    assert.deepEqual(timeouts(), [30_000, 300_000]);
    assert.deepEqual(timeouts('allow_websockets: true'), [0, 0]);
    assert.deepEqual(timeouts('allow_websockets: true', 'timeout: 10s'), [10_000, 0]);
    assert.deepEqual(timeouts('allow_websockets: true', 'idle_timeout: 2m'), [0, 120_000]);
  });

  // Pomerium treats Kubernetes API routes the same way, so `kubectl logs -f` is not cut off.
  test('a Kubernetes route (kubernetes_service_account_token) likewise', () => {
    assert.deepEqual(timeouts('kubernetes_service_account_token: abc'), [0, 0]);
    assert.deepEqual(
      timeouts('kubernetes_service_account_token: abc', 'idle_timeout: 1h'),
      [0, 3_600_000],
    );
  });

  // "When the global setting is enabled, the per-route option will expand the set of allowed
  // groups"; "When the global setting is not enabled, the per-route option will enable groups
  // filtering for a specific route." (https://www.pomerium.com/docs/reference/routes/jwt-groups-filter)
  test('jwt_groups_filter: the route widens the global filter; either alone turns it on', () => {
    const filter = (global: string, ...lines: string[]): string[] | null => {
      const text = route('to: http://127.0.0.1:3000', ...lines).replace(
        'routes:',
        `${global}routes:`,
      );
      const f = parseConfig(text, 'p.yaml', {}).routes[0]!.jwtGroupsFilter;
      return f ? [...f].sort() : null;
    };
    assert.equal(filter(''), null);
    assert.deepEqual(filter('', 'jwt_groups_filter: [eng]'), ['eng']);
    assert.deepEqual(filter('jwt_groups_filter: admins, ops\n'), ['admins', 'ops']);
    assert.deepEqual(filter('jwt_groups_filter: [admins]\n', 'jwt_groups_filter: eng'), [
      'admins',
      'eng',
    ]);
  });

  test('regex_priority_order is kept on the route', () => {
    const r = parseConfig(
      route('to: http://127.0.0.1:3000', "regex: '^/a/.*$'", 'regex_priority_order: 3'),
      'p.yaml',
      {},
    ).routes[0]!;
    assert.equal(r.regexPriority, 3);
  });
});

describe('misused upstream keys are config errors naming the key and line', () => {
  const cases: Array<[string, () => string[], number, string, RegExp]> = [
    [
      'rewrite_response_headers as a map',
      () => ['to: http://127.0.0.1:3000', 'rewrite_response_headers: {header: Location}'],
      11,
      'routes[0].rewrite_response_headers',
      /list of \{header, prefix, value\}/,
    ],
    [
      'a rewrite without its value',
      () => [
        'to: http://127.0.0.1:3000',
        'rewrite_response_headers:',
        '  - header: Location',
        '    prefix: http://a/',
      ],
      12,
      'routes[0].rewrite_response_headers[0].value',
      /replacement value/,
    ],
    [
      'a rewrite of a framing header',
      () => [
        'to: http://127.0.0.1:3000',
        'rewrite_response_headers:',
        '  - header: Content-Length',
        "    value: '0'",
      ],
      12,
      'routes[0].rewrite_response_headers[0].header',
      /frames the response/,
    ],
    [
      'a rewrite value with a line break',
      () => [
        'to: http://127.0.0.1:3000',
        'rewrite_response_headers:',
        '  - header: Location',
        '    value: "/\\r\\nSet-Cookie: x=1"',
      ],
      13,
      'routes[0].rewrite_response_headers[0].value',
      /without CR, LF or NUL/,
    ],
    [
      'a rewrite header name with a space',
      () => [
        'to: http://127.0.0.1:3000',
        'rewrite_response_headers:',
        "  - {header: 'X Y', value: a}",
      ],
      12,
      'routes[0].rewrite_response_headers[0].header',
      /header name/,
    ],
    [
      'cors_allow_preflight: yes',
      () => ['to: http://127.0.0.1:3000', 'cors_allow_preflight: yes'],
      11,
      'routes[0].cors_allow_preflight',
      /true or false/,
    ],
    [
      'a client certificate without its key',
      () => ['to: https://127.0.0.1:3000', `tls_client_cert_file: ${join(dir, 'client.crt')}`],
      11,
      'routes[0].tls_client_cert_file',
      /needs its private key/,
    ],
    [
      'a client key without its certificate',
      () => ['to: https://127.0.0.1:3000', `tls_client_key: ${b64('client.key')}`],
      11,
      'routes[0].tls_client_key',
      /needs its certificate/,
    ],
    [
      'a client certificate both inline and as a file',
      () => [
        'to: https://127.0.0.1:3000',
        `tls_client_cert: ${b64('client.crt')}`,
        `tls_client_cert_file: ${join(dir, 'client.crt')}`,
        `tls_client_key_file: ${join(dir, 'client.key')}`,
      ],
      12,
      'routes[0].tls_client_cert_file',
      /either tls_client_cert or tls_client_cert_file/,
    ],
    [
      'a file path in tls_client_cert',
      () => [
        'to: https://127.0.0.1:3000',
        `tls_client_cert: ${join(dir, 'client.crt')}`,
        `tls_client_key: ${b64('client.key')}`,
      ],
      11,
      'routes[0].tls_client_cert',
      /base64-encoded PEM.*tls_client_cert_file/,
    ],
    [
      'an unreadable tls_client_key_file',
      () => [
        'to: https://127.0.0.1:3000',
        `tls_client_cert_file: ${join(dir, 'client.crt')}`,
        `tls_client_key_file: ${join(dir, 'missing.key')}`,
      ],
      12,
      'routes[0].tls_client_key_file',
      /cannot read .*missing\.key: ENOENT/,
    ],
    [
      'a key that belongs to another certificate',
      () => [
        'to: https://127.0.0.1:3000',
        `tls_client_cert_file: ${join(dir, 'client.crt')}`,
        `tls_client_key_file: ${join(dir, 'other.key')}`,
      ],
      12,
      'routes[0].tls_client_key_file',
      /does not belong to the certificate in tls_client_cert_file/,
    ],
    [
      'a certificate file that holds a key',
      () => [
        'to: https://127.0.0.1:3000',
        `tls_client_cert_file: ${join(dir, 'client.key')}`,
        `tls_client_key_file: ${join(dir, 'client.key')}`,
      ],
      11,
      'routes[0].tls_client_cert_file',
      /expected a PEM certificate/,
    ],
    [
      'a URL as tls_upstream_server_name',
      () => ['to: https://127.0.0.1:3000', 'tls_upstream_server_name: https://app.internal'],
      11,
      'routes[0].tls_upstream_server_name',
      /host name like app\.internal/,
    ],
    [
      'tls_server_name and tls_upstream_server_name naming different servers',
      () => [
        'to: https://127.0.0.1:3000',
        'tls_server_name: a.internal',
        'tls_upstream_server_name: b.internal',
      ],
      11,
      'routes[0].tls_server_name',
      /keep only tls_upstream_server_name/,
    ],
    [
      'a service account token both inline and as a file',
      () => [
        'to: https://127.0.0.1:6443',
        'kubernetes_service_account_token: abc',
        `kubernetes_service_account_token_file: ${join(dir, 'token')}`,
      ],
      12,
      'routes[0].kubernetes_service_account_token_file',
      /either kubernetes_service_account_token or kubernetes_service_account_token_file/,
    ],
    [
      'an unreadable service account token file',
      () => [
        'to: https://127.0.0.1:6443',
        `kubernetes_service_account_token_file: ${join(dir, 'nope')}`,
      ],
      11,
      'routes[0].kubernetes_service_account_token_file',
      /cannot read .*nope: ENOENT/,
    ],
    [
      'an empty service account token file',
      () => [
        'to: https://127.0.0.1:6443',
        `kubernetes_service_account_token_file: ${join(dir, 'empty-token')}`,
      ],
      11,
      'routes[0].kubernetes_service_account_token_file',
      /token is empty/,
    ],
    [
      'a service account token with a line break',
      () => [
        'to: https://127.0.0.1:6443',
        'kubernetes_service_account_token: "abc\\r\\nX-Evil: 1"',
      ],
      11,
      'routes[0].kubernetes_service_account_token',
      /one line of visible characters/,
    ],
    [
      'jwt_groups_filter as a map',
      () => ['to: http://127.0.0.1:3000', 'jwt_groups_filter: {eng: true}'],
      11,
      'routes[0].jwt_groups_filter',
      /string or a list of strings/,
    ],
    [
      'regex_priority_order on a route without regex',
      () => ['to: http://127.0.0.1:3000', 'prefix: /a/', 'regex_priority_order: 1'],
      12,
      'routes[0].regex_priority_order',
      /routes that match with `regex`/,
    ],
    [
      'a negative regex_priority_order',
      () => ['to: http://127.0.0.1:3000', "regex: '^/a$'", 'regex_priority_order: -1'],
      12,
      'routes[0].regex_priority_order',
      /whole number from 0/,
    ],
    [
      'http+unix with two slashes',
      () => ['to: http+unix://var/run/app.sock'],
      10,
      'routes[0].to',
      /three slashes/,
    ],
    [
      'https+unix naming a directory',
      () => ['to: https+unix:///var/run/'],
      10,
      'routes[0].to',
      /path of a socket file/,
    ],
    [
      'a scheme Pomerium does not proxy over HTTP',
      () => ['to: unix:///var/run/app.sock'],
      10,
      'routes[0].to',
      /http\(s\) upstream URL .*got "unix:\/\/\/var\/run\/app\.sock" \(h2c:\/\/app:8080, http\+unix:/,
    ],
    [
      'an h2c URL with a query',
      () => ['to: h2c://grpc.internal:50051/?x=1'],
      10,
      'routes[0].to',
      /without query or fragment/,
    ],
  ];
  for (const [what, lines, line, key, message] of cases) {
    test(what, () => {
      const got = issue(route(...lines()));
      assert.equal(got.key, key, got.message);
      assert.equal(got.line, line, `${got.key}: ${got.message}`);
      assert.match(got.message, message);
    });
  }
});

// TLS: the tls_* keys shape the TLS connection to an https upstream; h2c://, http+unix:// and
// plain http:// upstreams have none ("HTTP/2 ... without TLS (that is, in cleartext)", TO page),
// so on a route whose upstreams are all such, the keys change nothing and `check` says so.
describe('`portcullis check` warns when the upstream TLS keys have nothing to apply to', () => {
  const noEffect = (text: string): Array<[string, number, string]> =>
    lintConfig(parseConfig(text, 'p.yaml', {}), text)
      .filter((i) => /has no effect: every `to` upstream/.test(i.message))
      .map((i) => [i.key, i.line, i.severity]);

  test('each tls_* key on a plain http:// route is a warning naming the key and its line', () => {
    const text = route(
      'to: http://10.0.0.5:3000',
      `tls_client_cert_file: ${join(dir, 'client.crt')}`, // 11
      `tls_client_key_file: ${join(dir, 'client.key')}`,
      'tls_server_name: app.internal',
      'tls_skip_verify: true',
      `tls_custom_ca: ${b64('client.crt')}`, // 15
    );
    assert.deepEqual(noEffect(text), [
      ['routes[0].tls_skip_verify', 14, 'warning'],
      ['routes[0].tls_custom_ca', 15, 'warning'],
      ['routes[0].tls_client_cert_file', 11, 'warning'],
      ['routes[0].tls_client_key_file', 12, 'warning'],
      ['routes[0].tls_server_name', 13, 'warning'],
    ]);
    const issues = lintConfig(parseConfig(text, 'p.yaml', {}), text);
    assert.match(
      issues.find((i) => i.key === 'routes[0].tls_server_name')!.message,
      /reached without TLS \(http:\/\/10\.0\.0\.5:3000\)/,
    );
    // tls_skip_verify turns nothing off here: the no-effect warning replaces the usual one.
    assert.ok(!issues.some((i) => /turns off certificate checks/.test(i.message)));
  });

  test('h2c:// and http+unix:// upstreams count as plain; inline PEM and the newer name too', () => {
    const text = route(
      "to: ['h2c://10.0.0.5:9000', 'http+unix:///run/app.sock']",
      'tls_upstream_server_name: app.internal', // 11
      `tls_client_cert: ${b64('client.crt')}`,
      `tls_client_key: ${b64('client.key')}`,
      `tls_custom_ca_file: ${join(dir, 'client.crt')}`,
    );
    assert.deepEqual(noEffect(text), [
      ['routes[0].tls_custom_ca_file', 14, 'warning'],
      ['routes[0].tls_client_cert', 12, 'warning'],
      ['routes[0].tls_client_key', 13, 'warning'],
      ['routes[0].tls_upstream_server_name', 11, 'warning'],
    ]);
  });

  test('an https:// or https+unix:// upstream in `to` uses the keys: no warning', () => {
    for (const to of [
      'to: https://10.0.0.5:8443',
      "to: ['http://10.0.0.5:3000', 'https://10.0.0.6:8443']",
      'to: https+unix:///run/app.sock',
    ]) {
      const text = route(to, 'tls_upstream_server_name: app.internal', 'tls_skip_verify: true');
      assert.deepEqual(noEffect(text), [], to);
      // ...and tls_skip_verify keeps its own warning there.
      assert.ok(
        lintConfig(parseConfig(text, 'p.yaml', {}), text).some((i) =>
          /turns off certificate checks/.test(i.message),
        ),
        to,
      );
    }
  });
});
