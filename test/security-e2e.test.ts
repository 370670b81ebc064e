import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { CookieJar, request } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startStack, type Stack } from './helpers/stack.js';

// The attacks of issue 9 played against a running Portcullis: what the policy judged must be
// exactly what the upstream serves, and no method, header or encoding skips authentication.
describe('attacks through the reverse proxy', () => {
  let s: Stack;
  let base: string;
  let alice: CookieJar;
  before(async () => {
    s = await startStack({
      hosts: ['app.corp.test'],
      body: `routes:
  - from: http://app.corp.test:\${PORT}
    prefix: /public/
    to: \${UPSTREAM}
    allow_public_unauthenticated_access: true
  - from: http://app.corp.test:\${PORT}
    prefix: /admin
    to: \${UPSTREAM}
    allowed_groups: [admins]
    pass_identity_headers: true
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allowed_groups: [nobody-has-this]
`,
    });
    base = `http://app.corp.test:${s.port}`;
    alice = new CookieJar();
    await loginThroughIdp(`${base}/admin/`, { jar: alice, username: 'alice', password: 'alice' });
  });
  after(() => s.close());

  const seenPath = async (
    rawPath: string,
    jar?: CookieJar,
  ): Promise<{ status: number; path?: string }> => {
    const r = await request(`${base}/`, { rawPath, jar, headers: { accept: 'application/json' } });
    return r.status === 200 ? { status: 200, path: r.json().url } : { status: r.status };
  };

  test('dot segments are resolved before the route and policy are chosen', async () => {
    for (const p of [
      '/public/../admin',
      '/public/%2e%2e/admin',
      '/public/%2E%2E/admin/',
      '//admin',
      '/public/./../admin',
      '/admin?x=/public/',
    ]) {
      const anon = await seenPath(p);
      assert.equal(anon.status, 401, `${p} without a session must not be public`);
    }
    // With a session the upstream receives exactly the normalized path the policy judged.
    assert.deepEqual(await seenPath('/public/../admin/x', alice), {
      status: 200,
      path: '/admin/x',
    });
    assert.deepEqual(await seenPath('/public/a/./b/../c?q=/admin', undefined), {
      status: 200,
      path: '/public/a/c?q=/admin',
    });
  });

  test('ambiguous encodings are refused with 400 and never reach the upstream', async () => {
    for (const p of [
      '/public/..%2fadmin',
      '/public%2f..%2fadmin',
      '/public/..%5cadmin',
      '/admin;jsessionid=x',
      '/public/%00',
      '/public/%c0%ae%c0%ae/admin',
      '/public/%zz',
    ]) {
      const r = await request(`${base}/`, { rawPath: p, headers: BROWSER_HEADERS });
      assert.equal(r.status, 400, p);
      assert.doesNotMatch(r.body, /x-forwarded-for/i, 'the upstream was not reached');
    }
  });

  test('/ADMIN is a different path: it falls to the catch-all, not the admins route and not public', async () => {
    const r = await seenPath('/ADMIN', alice);
    assert.equal(r.status, 403);
  });

  test('no method skips authentication', async () => {
    for (const method of ['OPTIONS', 'HEAD', 'TRACE', 'PROPFIND', 'DELETE', 'PATCH']) {
      const r = await request(`${base}/admin/`, {
        method,
        headers: {
          accept: 'application/json',
          origin: 'https://evil.test',
          'access-control-request-method': 'GET',
        },
      });
      assert.equal(r.status, 401, method);
    }
  });

  test('forwarded headers from the client do not change the route or the policy', async () => {
    // 127.0.0.1 is a trusted proxy by default, but the reverse proxy routes on Host and the
    // request-target only: X-Forwarded-Uri / X-Original-URL never choose the route here.
    const r = await request(`${base}/admin/`, {
      headers: {
        accept: 'application/json',
        'x-forwarded-uri': '/public/health',
        'x-original-url': `${base}/public/health`,
        'x-forwarded-host': 'other.test',
      },
    });
    assert.equal(r.status, 401);
  });

  test('two Host headers, or a Host with userinfo, are refused', async () => {
    const raw = await new Promise<string>((resolve, reject) => {
      let got = '';
      const sock = connect(s.port, '127.0.0.1', () =>
        sock.write(
          `GET /public/x HTTP/1.1\r\nHost: app.corp.test:${s.port}\r\nHost: evil.test\r\nConnection: close\r\n\r\n`,
        ),
      );
      sock.on('data', (d: Buffer) => (got += d.toString()));
      sock.on('end', () => resolve(got));
      sock.on('error', reject);
    });
    assert.match(raw, /^HTTP\/1\.1 400 /);
    const at = await request(`${base}/public/x`, {
      headers: { host: `evil.test@app.corp.test:${s.port}` },
    });
    assert.equal(at.status, 400);
  });

  // Issue 17 item 5: frameworks that fold `_` into `-` exist (CGI's HTTP_X_FORWARDED_EMAIL), and
  // some fold `.` the same way, so a dotted spelling is the identity header under another name.
  test('identity headers spelled with `.` never reach the upstream, with or without a session', async () => {
    const forged: Record<string, string> = {
      'X.Forwarded.Email': 'mallory@evil.test',
      'x.forwarded.user': 'mallory',
      'X-Forwarded.Groups': 'admins-mallory',
      'Remote.User': 'mallory',
      'Remote.Groups': 'admins-mallory',
      'X.Auth.Request.User': 'mallory',
      'X.Auth.Request.Email': 'mallory@evil.test',
      'X.Portcullis.Jwt.Assertion': 'mallory.forged.jwt',
      'X.authentik.username': 'mallory',
      'X.Pomerium.Claim.Email': 'mallory@evil.test',
      'X_Forwarded.User': 'mallory',
      'X.Forwarded.For': '6.6.6.6',
      'X.Forwarded.Host': 'mallory.test',
      'X.Real.Ip': '6.6.6.6',
    };
    const canon = (k: string) => k.toLowerCase().replace(/[_.]/g, '-');
    for (const [path, jar] of [
      ['/admin/dots', alice],
      ['/public/dots', undefined],
    ] as const) {
      const r = await request(`${base}${path}`, {
        jar,
        headers: { accept: 'application/json', ...forged },
      });
      assert.equal(r.status, 200, path);
      const raw = r.json().rawHeaders as Array<[string, string]>;
      const leaked = raw.filter(([k, v]) => k.includes('.') || /mallory|6\.6\.6\.6/.test(v));
      assert.deepEqual(leaked, [], `${path}: forged headers reached the upstream`);
      if (jar) {
        // The real ones still arrive, once each, in their one spelling.
        const email = raw.filter(([k]) => canon(k) === 'x-forwarded-email');
        assert.deepEqual(
          email.map(([, v]) => v),
          ['alice@example.com'],
        );
        assert.deepEqual(
          raw.filter(([k]) => canon(k) === 'x-forwarded-user').map(([, v]) => v),
          ['alice'],
        );
      }
    }
  });

  // Login start limits: test/login-rate-limit.test.ts (an office behind one address, floods).
});
