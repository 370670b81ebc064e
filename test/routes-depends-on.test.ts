import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ConfigError } from '../src/config/errors.js';
import { parseConfig } from '../src/config/load.js';
import { CookieJar, request } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { startStack, type Stack } from './helpers/stack.js';

// depends_on, Pomerium's "Additional Login Redirect Hosts"
// (https://www.pomerium.com/docs/reference/routes/additional-login-redirect-hosts): "chaining
// login redirects across the specified domains, ensuring a session cookie is issued for each
// domain. This avoids the need for a user to manually visit each domain." Type: "array of
// strings (host or host:port)"; "Up to five additional domains"; "cannot be used in
// combination with the Cookie Domain setting".

const JSON_ACCEPT = { accept: 'application/json' };

function routesFor(port: string): string {
  return `  - from: http://app.corp.test:${port}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    depends_on: [api.other.test:${port}, 'static.third.test:${port}']
  - from: http://api.other.test:${port}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
  - from: http://static.third.test:${port}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
  - from: http://solo.other.test:${port}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
`;
}

/** Signs in on app.corp.test and checks where the browser has a session afterwards. */
async function signInAndCheck(s: Stack): Promise<void> {
  const url = (host: string, path: string): string => `http://${host}:${s.port}${path}`;
  const jar = new CookieJar();
  for (const host of ['api.other.test', 'static.third.test']) {
    const r = await request(url(host, '/x'), { jar, headers: JSON_ACCEPT });
    assert.equal(r.status, 401, `${host} before the sign-in`);
  }
  const { final, chain } = await loginThroughIdp(url('app.corp.test', '/start?q=1'), {
    jar,
    username: 'alice',
    password: 'alice',
  });
  assert.equal(final.status, 200, chain.join('\n'));
  // The chain went through both hosts and ended where it started.
  assert.equal(chain.at(-1), url('app.corp.test', '/start?q=1'), chain.join('\n'));
  assert.ok(
    chain.some((u) => u.startsWith(url('api.other.test', '/'))),
    chain.join('\n'),
  );
  assert.ok(
    chain.some((u) => u.startsWith(url('static.third.test', '/'))),
    chain.join('\n'),
  );
  for (const host of ['api.other.test', 'static.third.test']) {
    const r = await request(url(host, '/x'), { jar, headers: JSON_ACCEPT });
    assert.equal(r.status, 200, `${host} after the sign-in: ${r.body}`);
    assert.equal(
      r.json<{ headers: Record<string, string> }>().headers['x-portcullis-jwt-assertion'] !==
        undefined,
      true,
    );
  }
  // A host the route does not name got nothing.
  const solo = await request(url('solo.other.test', '/x'), { jar, headers: JSON_ACCEPT });
  assert.equal(solo.status, 401);
}

describe('depends_on: each host signs in for itself', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({
      hosts: ['app.corp.test', 'api.other.test', 'static.third.test', 'solo.other.test'],
      body: `routes:\n${routesFor('${PORT}')}`,
    });
  });
  after(() => s?.close());

  test('one sign-in on the route gives a session on every depends_on host, then lands back', () =>
    signInAndCheck(s));
});

describe('depends_on: with authenticate_service_url (hosts of other parent domains)', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({
      hosts: ['auth.corp.test'],
      body: `authenticate_service_url: http://auth.corp.test:\${PORT}
routes:\n${routesFor('${PORT}')}`,
    });
  });
  after(() => s?.close());

  test('the session is handed to every depends_on host, then the browser lands back', () =>
    signInAndCheck(s));
});

describe('misused depends_on is a config error naming the key and line', () => {
  const SECRET = Buffer.alloc(32, 7).toString('base64');
  const config = (global: string, dependsOn: string): string => `address: 127.0.0.1:8080
insecure_server: true
idp_provider_url: https://idp.example.com
idp_client_id: portcullis
idp_client_secret: s3cret
cookie_secret: ${SECRET}
${global}routes:
  - from: https://app.example.com
    to: http://127.0.0.1:3000
    allow_any_authenticated_user: true
    depends_on: ${dependsOn}
  - from: https://api.example.com
    to: http://127.0.0.1:3001
    allow_any_authenticated_user: true
  - from: https://*.apps.example.com
    to: http://127.0.0.1:3002
    allow_any_authenticated_user: true
`;
  const issue = (text: string): { key: string; line: number; message: string } => {
    try {
      parseConfig(text, 'p.yaml', {});
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      assert.equal(e.issues.length, 1, e.message);
      return e.issues[0]!;
    }
    return assert.fail('expected a config error');
  };

  test('hosts of this config load; the default port is the scheme’s, wildcard routes count', () => {
    const cfg = parseConfig(
      config('', '[api.example.com, "api.example.com:443", x.apps.example.com]'),
      'p.yaml',
      {},
    );
    assert.deepEqual(cfg.routes[0]!.dependsOn, [
      'https://api.example.com',
      'https://x.apps.example.com',
    ]);
  });

  const cases: Array<[string, string, string, string, RegExp]> = [
    [
      'a host no route serves',
      '',
      '[db.example.com]',
      'routes[0].depends_on[0]',
      /no route serves https:\/\/db\.example\.com/,
    ],
    [
      'another port than the route serves',
      '',
      '["api.example.com:8443"]',
      'routes[0].depends_on[0]',
      /no route serves/,
    ],
    [
      'a URL instead of a host',
      '',
      '["https://api.example.com/x"]',
      'routes[0].depends_on[0]',
      /host or host:port/,
    ],
    [
      'the route’s own host',
      '',
      '[app.example.com]',
      'routes[0].depends_on[0]',
      /this route's own host/,
    ],
    [
      'six hosts',
      '',
      '[a.apps.example.com, b.apps.example.com, c.apps.example.com, d.apps.example.com, e.apps.example.com, f.apps.example.com]',
      'routes[0].depends_on',
      /at most 5 hosts/,
    ],
    [
      'with cookie_domain',
      'cookie_domain: example.com\n',
      '[api.example.com]',
      'routes[0].depends_on',
      /cannot be used with cookie_domain/,
    ],
  ];
  for (const [what, global, dependsOn, key, message] of cases)
    test(what, () => {
      const got = issue(config(global, dependsOn));
      assert.equal(got.key, key, got.message);
      assert.equal(got.line, global ? 12 : 11);
      assert.match(got.message, message);
    });
});
