import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';

const CLI = new URL('../src/cli/main.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'portcullis-explain-'));

const BASE = `insecure_server: true
address: 127.0.0.1:0
idp_provider_url: http://127.0.0.1:1
idp_client_id: portcullis
idp_client_secret: s3cret-value-for-tests
cookie_secret: ${Buffer.alloc(32, 7).toString('base64')}
routes:
  - from: https://grafana.example.com
    prefix: /admin
    to: http://127.0.0.1:3000
    policy:
      - allow:
          or:
            - groups: { has: admins }
      - deny:
          or:
            - source_ip: 198.51.100.0/24
  - from: https://grafana.example.com
    to: http://127.0.0.1:3000
    allow_any_authenticated_user: true
`;

function run(args: string[], yaml = BASE): { status: number | null; out: string; err: string } {
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  const r = spawnSync(process.execPath, [CLI, ...args, '--config', file], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

describe('portcullis explain', () => {
  test('ALLOW with the route and the rule that allowed, exit 0', () => {
    const r = run([
      'explain',
      '--url',
      'https://grafana.example.com/admin/users?x=1',
      '--email',
      'alice@example.com',
      '--groups',
      'admins,eng',
    ]);
    assert.equal(r.status, 0, r.err);
    assert.match(r.out, /^ALLOW/);
    assert.match(r.out, /route: routes\[0\]/);
    assert.match(r.out, /admins/);
  });

  test('DENY says which group was needed and which the user has, exit 1', () => {
    const r = run([
      'explain',
      '--url',
      'https://grafana.example.com/admin',
      '--email',
      'bob@example.com',
      '--groups',
      'eng',
    ]);
    assert.equal(r.status, 1);
    assert.match(r.out, /^DENY/);
    assert.match(r.out, /needs group admins; you have eng/);
  });

  test('deny wins over allow: an admin from a blocked network is refused', () => {
    const r = run([
      'explain',
      '--url',
      'https://grafana.example.com/admin',
      '--groups',
      'admins',
      '--ip',
      '198.51.100.7',
    ]);
    assert.equal(r.status, 1);
    assert.match(r.out, /source_ip/);
  });

  test('anonymous requests need a sign-in; unknown hosts have no route', () => {
    const anon = run(['explain', '--url', 'https://grafana.example.com/']);
    assert.equal(anon.status, 1);
    assert.match(anon.out, /sign-in required/);
    const none = run(['explain', '--url', 'https://nope.example.com/']);
    assert.equal(none.status, 1);
    assert.match(none.out, /no route for host nope\.example\.com/);
  });

  test('usage and config errors exit 2', () => {
    assert.equal(run(['explain']).status, 2);
    assert.equal(run(['explain', '--url', 'not a url']).status, 2);
    assert.equal(
      run(['explain', '--url', 'https://grafana.example.com/', '--claim', 'novalue']).status,
      2,
    );
    const bad = run(
      ['explain', '--url', 'https://grafana.example.com/'],
      BASE.replace('groups: { has: admins }', 'grups: { has: admins }'),
    );
    assert.equal(bad.status, 2);
    assert.match(bad.err, /did you mean/);
  });
});

describe('policy_tests in portcullis check', () => {
  test('passing tests: exit 0', () => {
    const r = run(
      ['check'],
      `${BASE}policy_tests:
  - name: admins reach grafana admin
    request: { url: https://grafana.example.com/admin, email: alice@example.com, groups: [admins] }
    expect: allow
  - name: eng cannot
    request: { url: https://grafana.example.com/admin, email: bob@example.com, groups: [eng] }
    expect: deny
  - name: anonymous must sign in
    request: { url: https://grafana.example.com/ }
    expect: login
`,
    );
    assert.equal(r.status, 0, r.err + r.out);
  });

  test('a failing test is named with its line and why; exit 1', () => {
    const r = run(
      ['check'],
      `${BASE}policy_tests:
  - name: admins reach grafana admin
    request: { url: https://grafana.example.com/admin, email: alice@example.com, groups: [admins] }
    expect: allow
  - name: eng reaches admin (wrong on purpose)
    request: { url: https://grafana.example.com/admin, email: bob@example.com, groups: [eng] }
    expect: allow
`,
    );
    assert.equal(r.status, 1);
    assert.match(
      r.err,
      /:25:\d+: error: policy_tests\[1\]: policy test "eng reaches admin \(wrong on purpose\)" expected allow but got deny/,
    );
    assert.match(r.err, /needs group admins; you have eng/);
    assert.doesNotMatch(r.err, /admins reach grafana admin/);
  });
});
