import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startStack, type Stack } from './helpers/stack.js';
import { HEAD, issue, route } from './helpers/config-errors.js';

// Pomerium's route keys for redirects, direct responses and path/host rewrites, with Pomerium's
// names and meaning. The specification is Pomerium's documentation (current docs, v0.30 era):
//  REDIRECT   https://www.pomerium.com/docs/reference/routes/redirect
//  RESPONSE   https://www.pomerium.com/docs/reference/routes/direct-response
//  PATHS      https://www.pomerium.com/docs/reference/routes/path-rewriting
//  HOSTS      https://www.pomerium.com/docs/reference/routes/headers#host-rewrite
// Pomerium passes these to Envoy; where its page is silent, Envoy's RedirectAction /
// RegexMatchAndSubstitute semantics (envoyproxy.io route_components.proto) fill in.

const JSON_ACCEPT = { accept: 'application/json' };

/** An upstream that records every request: proof that a refused one went no further. */
async function startCanary(): Promise<{ url: string; seen: string[]; close(): Promise<void> }> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url} host=${req.headers.host}`);
    res.end('canary');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

interface Seen {
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

describe('redirect, response and rewrite routes through a running Portcullis', () => {
  let s: Stack;
  let canary: Awaited<ReturnType<typeof startCanary>>;
  const url = (host: string, path: string): string => `http://${host}:${s.port}${path}`;
  const seen = (r: Resp): Seen => r.json<Seen>();

  before(async () => {
    canary = await startCanary();
    s = await startStack({
      hosts: ['old.corp.test', 'hello.corp.test', 'app.corp.test', 'secret.corp.test'],
      body: `routes:
  # REDIRECT: scheme, host, port and path swapped; response_code; strip_query.
  - from: http://moved.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    redirect:
      https_redirect: true
      host_redirect: new.example.com
  - from: http://keep.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    redirect:
      scheme_redirect: http
      path_redirect: /landing
      response_code: 308
      strip_query: true
  - from: http://pathq.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    redirect:
      path_redirect: /search?q=fixed
  - from: http://docs.corp.test:\${PORT}
    prefix: /v1/
    allow_public_unauthenticated_access: true
    redirect:
      prefix_rewrite: /v2/
      response_code: 302
  - from: http://old.corp.test:\${PORT}
    allowed_emails: [alice@example.com]
    redirect:
      host_redirect: hello.corp.test
      port_redirect: \${PORT}
      response_code: 302
  # RESPONSE
  - from: http://hello.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    response:
      status: 200
      body: 'plain text'
  - from: http://teapot.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    response:
      status: 418
      body: '{"short":"stout"}'
    set_response_headers:
      Content-Type: application/json
  - from: http://secret.corp.test:\${PORT}
    allow_any_authenticated_user: true
    response:
      body: 'for members'
  # PATHS
  - from: http://app.corp.test:\${PORT}
    prefix: /admin
    to: \${UPSTREAM}
    allow_public_unauthenticated_access: true
    prefix_rewrite: /
  - from: http://app.corp.test:\${PORT}
    prefix: /service/
    to: \${UPSTREAM}
    allow_public_unauthenticated_access: true
    regex_rewrite_pattern: '^/service/([^/]+)(/.*)$'
    regex_rewrite_substitution: "\\\\2/instance/\\\\1"
  - from: http://app.corp.test:\${PORT}
    prefix: /v/
    to: ${canary.url}
    allow_public_unauthenticated_access: true
    regex_rewrite_pattern: '^/v/([a-z.]*)-([a-z.]*)$'
    regex_rewrite_substitution: '/\\1\\2/secret'
  - from: http://app.corp.test:\${PORT}
    prefix: /a/
    to: ${canary.url}
    allow_public_unauthenticated_access: true
    regex_rewrite_pattern: '^/a/([^/]*)(.*)$'
    regex_rewrite_substitution: '/\\1/\\2'
  # HOSTS
  - from: http://app.corp.test:\${PORT}
    prefix: /fixed/
    to: \${UPSTREAM}
    allow_public_unauthenticated_access: true
    host_rewrite: internal.example.com
  - from: http://app.corp.test:\${PORT}
    prefix: /byheader/
    to: \${UPSTREAM}
    allow_public_unauthenticated_access: true
    host_rewrite_header: X-My-Host
  - from: http://app.corp.test:\${PORT}
    prefix: /bypath/
    to: \${UPSTREAM}
    allow_public_unauthenticated_access: true
    host_path_regex_rewrite_pattern: '^/bypath/(.+)/.+$'
    host_path_regex_rewrite_substitution: '\\1.internal'
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_public_unauthenticated_access: true
`,
    });
  });
  after(async () => {
    await s?.close();
    await canary?.close();
  });

  // REDIRECT: "https_redirect: The incoming scheme will be swapped with https";
  // "host_redirect: The incoming host will be swapped"; "response_code ... Defaults to 301".
  test('https_redirect + host_redirect: 301 to https on the new host, path and query kept', async () => {
    const r = await request(url('moved.corp.test', '/deep/page?x=1&y=2'));
    assert.equal(r.status, 301);
    assert.equal(r.location, 'https://new.example.com/deep/page?x=1&y=2');
    assert.equal(r.body, '');
  });

  // REDIRECT: scheme_redirect, path_redirect ("the incoming path ... swapped"), strip_query.
  test('scheme_redirect + path_redirect + strip_query with response_code 308', async () => {
    const r = await request(url('keep.corp.test', '/anything/here?token=abc'));
    assert.equal(r.status, 308);
    // The request's own non-default port stays: only the scheme and path were swapped.
    assert.equal(r.location, `http://keep.corp.test:${s.port}/landing`);
  });

  // Envoy RedirectAction.path_redirect: a query written there replaces the request's.
  test('a query in path_redirect replaces the request query', async () => {
    const r = await request(url('pathq.corp.test', '/x?q=mine'));
    assert.equal(r.location, `http://pathq.corp.test:${s.port}/search?q=fixed`);
  });

  // REDIRECT: "prefix_rewrite: The incoming matched prefix will be swapped with the given value."
  test('redirect prefix_rewrite swaps only the matched prefix', async () => {
    const r = await request(url('docs.corp.test', '/v1/guide/intro?lang=en'));
    assert.equal(r.status, 302);
    assert.equal(r.location, `http://docs.corp.test:${s.port}/v2/guide/intro?lang=en`);
  });

  // The route's policy decides first: Pomerium users make a redirect public with
  // allow_public_unauthenticated_access (github.com/pomerium/pomerium/issues/1907).
  test('a redirect route behind a policy: signed-out users are sent to sign in, not to the target', async () => {
    const browser = await request(url('old.corp.test', '/x'), { headers: BROWSER_HEADERS });
    assert.equal(browser.status, 302);
    assert.doesNotMatch(browser.location ?? '', /hello\.corp\.test/);
    const api = await request(url('old.corp.test', '/x'), { headers: JSON_ACCEPT });
    assert.equal(api.status, 401);
    assert.equal(api.location, undefined);

    const jar = new CookieJar();
    const { final, chain } = await loginThroughIdp(url('old.corp.test', '/x?y=1'), {
      jar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(final.status, 200, chain.join(' -> '));
    assert.equal(final.body, 'plain text');
    assert.equal(chain.at(-1), url('hello.corp.test', '/x?y=1'));
  });

  test('bob, signed in but not allowed, gets a 403 and no redirect', async () => {
    const jar = new CookieJar();
    const { final } = await loginThroughIdp(url('old.corp.test', '/x'), {
      jar,
      username: 'bob',
      password: 'bob',
    });
    assert.equal(final.status, 403);
    assert.equal(final.location, undefined);
  });

  // RESPONSE: "send a static HTTP response"; headers such as Content-Type via set_response_headers.
  test('a response route answers its status and body without an upstream', async () => {
    const r = await request(url('hello.corp.test', '/any/path'));
    assert.equal(r.status, 200);
    assert.equal(r.body, 'plain text');
    assert.match(String(r.headers['content-type']), /^text\/plain/);
    assert.equal(r.headers['content-length'], '10');
    assert.ok(r.headers['x-request-id']);
    const head = await request(url('hello.corp.test', '/'), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  test('a response route with set_response_headers keeps that Content-Type', async () => {
    const r = await request(url('teapot.corp.test', '/'));
    assert.equal(r.status, 418);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.deepEqual(r.json(), { short: 'stout' });
  });

  test('a response route behind a policy asks to sign in first', async () => {
    const r = await request(url('secret.corp.test', '/'), { headers: JSON_ACCEPT });
    assert.equal(r.status, 401);
    assert.doesNotMatch(r.body, /for members/);
  });

  // PATHS: prefix /admin + prefix_rewrite / : "https://from.example.com/admin would be
  // forwarded to https://to.example.com/".
  test('prefix_rewrite: /admin goes to /, /admin/x to /x (one slash, not Envoy’s //x)', async () => {
    const root = await request(url('app.corp.test', '/admin'), { headers: JSON_ACCEPT });
    assert.equal(seen(root).url, '/');
    const deep = await request(url('app.corp.test', '/admin/users?page=2'), {
      headers: JSON_ACCEPT,
    });
    assert.equal(seen(deep).url, '/users?page=2');
  });

  // PATHS: regex_rewrite_pattern '^/service/([^/]+)(/.*)$', substitution "\\2/instance/\\1".
  test("regex_rewrite: Pomerium's own example", async () => {
    const r = await request(url('app.corp.test', '/service/foo/v1/api?x=1'), {
      headers: JSON_ACCEPT,
    });
    assert.equal(seen(r).url, '/v1/api/instance/foo?x=1');
  });

  test('a rewrite that would produce .. is refused and nothing reaches the upstream', async () => {
    const before = canary.seen.length;
    const r = await request(url('app.corp.test', '/v/.-.'), { headers: JSON_ACCEPT });
    assert.equal(r.status, 400);
    assert.match(r.body, /not a plain path/);
    assert.equal(canary.seen.length, before, canary.seen.join('\n'));
  });

  test('a rewrite that would produce // is refused and nothing reaches the upstream', async () => {
    const before = canary.seen.length;
    const r = await request(url('app.corp.test', '/a/'), { headers: JSON_ACCEPT });
    assert.equal(r.status, 400);
    assert.equal(canary.seen.length, before, canary.seen.join('\n'));
    // The same route with a harmless path is forwarded: the refusal is about the result.
    const ok = await request(url('app.corp.test', '/a/b'), { headers: JSON_ACCEPT });
    assert.equal(ok.status, 200);
    assert.match(canary.seen.at(-1)!, /^GET \/b\/ /);
  });

  test('hostile request paths never reach the upstream as a traversal, whatever the rewrite makes of them', async () => {
    const before = canary.seen.length;
    const raws = [
      '/v/%2e%2e-%2e%2e', // decoded, then `/v/..-..` -> `/....` is one harmless segment
      '/v/%2e-%2e', // `/v/.-.` -> `/../secret`: refused
      '/a/..%2f..%2fetc',
      '/v/a%0d%0aX:1-b',
      '/a/\\..\\x',
      '/a//x',
      '/a/./',
    ];
    const status: Record<string, number> = {};
    for (const raw of raws) {
      const r = await request(url('app.corp.test', '/'), { rawPath: raw, headers: JSON_ACCEPT });
      assert.ok([200, 400, 404].includes(r.status), `${raw}: ${r.status}`);
      status[raw] = r.status;
    }
    // The two whose rewrite would be `/../secret` and `//`: refused, not cleaned up and sent.
    assert.equal(status['/v/%2e-%2e'], 400);
    assert.equal(status['/a/./'], 400);
    for (const line of canary.seen.slice(before)) {
      const path = line.split(' ')[1]!;
      assert.doesNotMatch(path, /(^|\/)\.\.?(\/|$)|\/\/|%2e|%2f|\\|[\r\n]/i, line);
    }
  });

  // HOSTS: "host_rewrite rewrites the Host header to a fixed value".
  test('host_rewrite: the upstream sees the fixed Host and the original in X-Portcullis-Original-Host', async () => {
    const r = await request(url('app.corp.test', '/fixed/x'), {
      headers: {
        ...JSON_ACCEPT,
        'X-Portcullis-Original-Host': 'forged.example',
        x_portcullis_original_host: 'f2',
      },
    });
    const h = seen(r).headers;
    assert.equal(h.host, 'internal.example.com');
    assert.equal(h['x-portcullis-original-host'], `app.corp.test:${s.port}`);
    assert.equal(h['x_portcullis_original_host'], undefined);
    assert.equal(seen(r).url, '/fixed/x');
  });

  // HOSTS: "X-My-Host: foo.example.com ... would rewrite the Host header to foo.example.com".
  test('host_rewrite_header: the named header sets Host; a hostile or missing one does not', async () => {
    const good = await request(url('app.corp.test', '/byheader/'), {
      headers: { ...JSON_ACCEPT, 'X-My-Host': 'foo.example.com' },
    });
    assert.equal(seen(good).headers.host, 'foo.example.com');
    const client = `app.corp.test:${s.port}`;
    for (const bad of ['evil.com/x', 'a@evil.com', 'a b', 'evil.com:99999', '']) {
      const r = await request(url('app.corp.test', '/byheader/'), {
        headers: { ...JSON_ACCEPT, 'X-My-Host': bad },
      });
      assert.equal(seen(r).headers.host, client, JSON.stringify(bad));
    }
    const twice = await request(url('app.corp.test', '/byheader/'), {
      headers: { ...JSON_ACCEPT, 'X-My-Host': ['a.example.com', 'b.example.com'] },
    });
    assert.equal(seen(twice).headers.host, client);
    const none = await request(url('app.corp.test', '/byheader/'), { headers: JSON_ACCEPT });
    assert.equal(seen(none).headers.host, client);
  });

  // HOSTS: host_path_regex_rewrite_pattern/_substitution rewrite Host from the URL path.
  test('host_path_regex_rewrite: the Host comes from the path', async () => {
    const r = await request(url('app.corp.test', '/bypath/tenant1/page'), {
      headers: JSON_ACCEPT,
    });
    assert.equal(seen(r).headers.host, 'tenant1.internal');
    assert.equal(seen(r).url, '/bypath/tenant1/page');
  });

  // Kubernetes acts as whoever Impersonate-* names (kubernetes.io/docs/reference/access-authn-authz/
  // authentication/#user-impersonation): a client must never be able to send them through.
  test('client-sent Impersonate-* headers never reach the upstream, in any spelling', async () => {
    const r = await request(url('app.corp.test', '/plain'), {
      headers: {
        ...JSON_ACCEPT,
        'Impersonate-User': 'system:admin',
        'impersonate-group': 'system:masters',
        Impersonate_Uid: '0',
        'Impersonate-Extra-Scopes': 'all',
        'Impersonate.User': 'x',
      },
    });
    assert.equal(r.status, 200);
    const names = Object.keys(seen(r).headers);
    assert.deepEqual(
      names.filter((n) => /^impersonate/i.test(n)),
      [],
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Misuse: each key's error names the key and its line.

describe('misused rewrite and redirect keys are config errors naming the key and line', () => {
  const cases: Array<[string, string[], number, string, RegExp]> = [
    [
      'a regex_rewrite_pattern that does not compile',
      [
        'to: http://127.0.0.1:3000',
        "regex_rewrite_pattern: '^/(unclosed'",
        "regex_rewrite_substitution: '/x'",
      ],
      11,
      'routes[0].regex_rewrite_pattern',
      /invalid regular expression/,
    ],
    [
      'a host_path_regex_rewrite_pattern that does not compile',
      [
        'to: http://127.0.0.1:3000',
        "host_path_regex_rewrite_pattern: '[z-a]'",
        "host_path_regex_rewrite_substitution: 'x'",
      ],
      11,
      'routes[0].host_path_regex_rewrite_pattern',
      /invalid regular expression/,
    ],
    [
      'a substitution naming a group the pattern lacks',
      [
        'to: http://127.0.0.1:3000',
        "regex_rewrite_pattern: '^/(a)$'",
        "regex_rewrite_substitution: '/\\2'",
      ],
      12,
      'routes[0].regex_rewrite_substitution',
      /capture group 2, but the pattern has 1 group/,
    ],
    [
      'a substitution with a lone backslash',
      [
        'to: http://127.0.0.1:3000',
        "regex_rewrite_pattern: '^/(a)$'",
        "regex_rewrite_substitution: '/\\x'",
      ],
      12,
      'routes[0].regex_rewrite_substitution',
      /lone \\ is ambiguous/,
    ],
    [
      'a pattern without its substitution',
      ['to: http://127.0.0.1:3000', "regex_rewrite_pattern: '^/a$'"],
      11,
      'routes[0].regex_rewrite_pattern',
      /together/,
    ],
    [
      'prefix_rewrite and regex_rewrite_pattern together',
      [
        'to: http://127.0.0.1:3000',
        'prefix_rewrite: /',
        "regex_rewrite_pattern: '^/a$'",
        "regex_rewrite_substitution: '/b'",
      ],
      12,
      'routes[0].regex_rewrite_pattern',
      /either prefix_rewrite or regex_rewrite_pattern/,
    ],
    [
      'prefix_rewrite on a regex route',
      ['to: http://127.0.0.1:3000', "regex: '/a.*'", 'prefix_rewrite: /'],
      12,
      'routes[0].prefix_rewrite',
      /use it with prefix or path/,
    ],
    [
      'prefix_rewrite with CR LF in it',
      ['to: http://127.0.0.1:3000', 'prefix_rewrite: "/a\\r\\nX-Evil: 1"'],
      11,
      'routes[0].prefix_rewrite',
      /no query, spaces or control characters/,
    ],
    [
      'to and redirect on one route',
      ['to: http://127.0.0.1:3000', 'redirect: {https_redirect: true}'],
      11,
      'routes[0].redirect',
      /only one of to, redirect and response/,
    ],
    [
      'redirect and response on one route',
      ['redirect: {https_redirect: true}', 'response: {status: 200}'],
      11,
      'routes[0].response',
      /only one of to, redirect and response/,
    ],
    [
      'https_redirect with scheme_redirect',
      ['redirect:', '  https_redirect: true', '  scheme_redirect: http'],
      12,
      'routes[0].redirect.scheme_redirect',
      /either https_redirect or scheme_redirect/,
    ],
    [
      'path_redirect with prefix_rewrite',
      ['redirect:', '  path_redirect: /a', '  prefix_rewrite: /b'],
      12,
      'routes[0].redirect.prefix_rewrite',
      /either path_redirect or prefix_rewrite/,
    ],
    [
      'a host_redirect that is not a host',
      ['redirect:', '  host_redirect: evil.com/x@y'],
      11,
      'routes[0].redirect.host_redirect',
      /expected a host name/,
    ],
    [
      'a response_code that is not a redirect',
      ['redirect:', '  host_redirect: a.example.com', '  response_code: 200'],
      12,
      'routes[0].redirect.response_code',
      /301, 302, 303, 307 or 308/,
    ],
    [
      'a misspelt redirect option',
      ['redirect:', '  host_redirct: a.example.com'],
      11,
      'routes[0].redirect.host_redirct',
      /unknown key/,
    ],
    [
      'allow_websockets on a response route',
      ['response: {body: hi}', 'allow_websockets: true'],
      11,
      'routes[0].allow_websockets',
      /WebSockets need a `to` upstream/,
    ],
    [
      'a response status out of range',
      ['response:', '  status: 99'],
      11,
      'routes[0].response.status',
      /200 to 599/,
    ],
    [
      'host_rewrite with preserve_host_header',
      ['to: http://127.0.0.1:3000', 'preserve_host_header: true', 'host_rewrite: a.internal'],
      12,
      'routes[0].host_rewrite',
      /only one of preserve_host_header and host_rewrite/,
    ],
    [
      'a host_rewrite that is not a host',
      ['to: http://127.0.0.1:3000', 'host_rewrite: "a.internal\\r\\nX: y"'],
      11,
      'routes[0].host_rewrite',
      /expected a host name/,
    ],
    [
      'a host_rewrite_header that is not a header name',
      ['to: http://127.0.0.1:3000', "host_rewrite_header: 'X My Host'"],
      11,
      'routes[0].host_rewrite_header',
      /header name/,
    ],
  ];
  for (const [name, lines, line, key, message] of cases) {
    test(name, () => {
      const i = issue(route(...lines));
      assert.equal(i.key, key, i.message);
      assert.equal(i.line, line, i.message);
      assert.match(i.message, message);
    });
  }
});

// A Pomerium user's route block pasted as is: `portcullis check` accepts it.
describe('portcullis check on a Pomerium config using these keys', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-routes-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

  test('exits 0 and counts every route', async () => {
    const file = join(dir, 'pomerium.yaml');
    writeFileSync(
      file,
      `${HEAD.slice(0, 7).join('\n')}
  - from: https://from.example.com
    to: https://to.example.com
    prefix: /admin
    prefix_rewrite: /
    allowed_groups: [admins]
  - from: https://svc.example.com
    to: https://to.example.com
    regex_rewrite_pattern: '^/service/([^/]+)(/.*)$'
    regex_rewrite_substitution: "\\\\2/instance/\\\\1"
    host_rewrite: 'example.com'
    allow_any_authenticated_user: true
  - from: https://hdr.example.com
    to: https://to.example.com
    host_rewrite_header: X-My-Host
    allow_any_authenticated_user: true
  - from: https://tenant.example.com
    to: https://to.example.com
    host_path_regex_rewrite_pattern: '^/(.+)/.+$'
    host_path_regex_rewrite_substitution: '\\1'
    allow_any_authenticated_user: true
  - from: https://old.example.com
    allow_public_unauthenticated_access: true
    redirect: {'host_redirect': 'example.com'}
  - from: https://www.example.com
    allow_public_unauthenticated_access: true
    redirect:
      https_redirect: true
      port_redirect: 8443
      path_redirect: /welcome
      response_code: 302
      strip_query: true
  - from: https://example.com
    allow_public_unauthenticated_access: true
    response:
      status: 200
      body: "plain text"
    set_response_headers:
      Content-Type: "text/plain; charset=us-ascii"
`,
    );
    const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (resolve) => {
        const child = spawn(process.execPath, [MAIN, 'check', '--config', file], {
          cwd: dir,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      },
    );
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /OK \(7 routes\)/);
  });
});
