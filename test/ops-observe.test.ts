import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { requestIdFor } from '../src/observe/logger.js';
import { CookieJar, request } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startStack, type Stack } from './helpers/stack.js';

// What an operator sees: metrics on the private listener, /ping and /ready, the audit log,
// request ids across hops, and never a secret in any log line.

describe('metrics, health, audit log and logs without secrets', () => {
  let s: Stack;
  let dir: string;
  let auditFile: string;
  let metricsUrl: string;
  const chain: string[] = [];
  const cookieValues: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ops-observe-'));
    auditFile = join(dir, 'audit', 'audit.log');
    s = await startStack({
      hosts: ['app.corp.test', 'deny.corp.test'],
      body: `metrics_address: 127.0.0.1:0
audit_log_file: ${auditFile}
routes:
  - id: app
    from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
  - id: deny
    from: http://deny.corp.test:\${PORT}
    to: \${UPSTREAM}
    allowed_emails: [bob@example.com]
`,
    });
    assert.ok(s.proxy.metricsPort, 'metrics_address is listening');
    metricsUrl = `http://127.0.0.1:${s.proxy.metricsPort}`;

    // One full session: login, a proxied request, a denial, a failed callback, sign-out.
    const jar = new CookieJar();
    const login = await loginThroughIdp(`http://app.corp.test:${s.port}/hello`, {
      jar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(login.final.status, 200);
    chain.push(...login.chain);
    for (const c of jar.all()) cookieValues.push(c.value);
    const denyJar = new CookieJar();
    const denied = await loginThroughIdp(`http://deny.corp.test:${s.port}/`, {
      jar: denyJar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(denied.final.status, 403);
    chain.push(...denied.chain);
    for (const c of denyJar.all()) cookieValues.push(c.value);
    const bogus = await request(
      `http://app.corp.test:${s.port}/.portcullis/callback?code=abc&state=${'x'.repeat(24)}`,
      { headers: BROWSER_HEADERS },
    );
    assert.equal(bogus.status, 400);
    const out = await request(`http://app.corp.test:${s.port}/.portcullis/sign_out`, {
      jar,
      method: 'POST',
      headers: BROWSER_HEADERS,
    });
    assert.equal(out.status, 302);
  });
  after(() => s.close());

  test('metrics after a login and a denial show both', async () => {
    const r = await request(`${metricsUrl}/metrics`);
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const m = r.body;
    assert.match(m, /^portcullis_logins_total 2$/m, 'two completed logins (app and deny hosts)');
    assert.match(m, /^portcullis_requests_total\{route="deny",status="403",decision="deny"\} 1$/m);
    assert.match(m, /^portcullis_requests_total\{route="app",status="200",decision="allow"\} 1$/m);
    assert.match(m, /^portcullis_requests_total\{route="app",status="\d+",decision="login"\} 1$/m);
    assert.match(m, /^portcullis_login_failures_total\{reason="state_not_found"\} 1$/m);
    assert.match(m, /^portcullis_request_duration_seconds_count\{route="app"\} [1-9]/m);
    assert.match(m, /^portcullis_upstream_duration_seconds_count\{route="app"\} 1$/m);
    assert.match(
      m,
      /^portcullis_idp_request_duration_seconds_count\{operation="discovery",outcome="ok"\} 1$/m,
    );
    assert.match(
      m,
      /^portcullis_idp_request_duration_seconds_count\{operation="token",outcome="ok"\} 2$/m,
    );
    assert.match(
      m,
      /^portcullis_idp_request_duration_seconds_count\{operation="userinfo",outcome="ok"\} 2$/m,
    );
    assert.match(m, /^portcullis_config_reloads_total\{result="failure"\} 0$/m);
    assert.match(m, /^portcullis_idp_ready\{idp="default"\} 1$/m);
    assert.match(m, /^process_cpu_user_seconds_total /m);
    assert.match(m, /^nodejs_eventloop_lag_seconds /m);
  });

  test('/ping and /ready on the metrics address; /.portcullis/ping on the main listener', async () => {
    assert.equal((await request(`${metricsUrl}/ping`)).body, 'OK\n');
    const ready = await request(`${metricsUrl}/ready`);
    assert.equal(ready.status, 200);
    const body = ready.json<{ ready: boolean; checks: Array<{ name: string; ok: boolean }> }>();
    assert.equal(body.ready, true);
    assert.deepEqual(
      body.checks.map((c) => [c.name, c.ok]),
      [
        ['config', true],
        ['idp_discovery', true],
        ['session_store', true],
      ],
    );
    const main = await request(`http://app.corp.test:${s.port}/.portcullis/ping`);
    assert.equal(main.status, 200);
    // The operator endpoints are not on the user-facing listener.
    assert.equal(
      (
        await request(`http://app.corp.test:${s.port}/metrics`, {
          headers: { accept: 'application/json' },
        })
      ).status,
      401,
    );
  });

  test('the audit log file has the security events under its own logger name', async () => {
    let lines: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 50; i++) {
      try {
        lines = readFileSync(auditFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      } catch {
        // not written yet
      }
      if (lines.some((l) => l.event === 'sign_out')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(lines.every((l) => l.name === 'audit'));
    const events = lines.map((l) => l.event);
    assert.deepEqual(events.filter((e) => e === 'login').length, 2);
    const denial = lines.find((l) => l.event === 'access_denied');
    assert.equal(denial?.route, 'deny');
    assert.equal(denial?.user, 'alice@example.com');
    assert.match(String(denial?.reason), /email/);
    assert.equal(lines.find((l) => l.event === 'login_failed')?.reason, 'state_not_found');
    assert.ok(events.includes('sign_out'));
    // Audit events are not duplicated into the access log stream.
    assert.ok(!s.logs.some((l) => l.event === 'login' || l.event === 'access_denied'));
  });

  test('no secret, token, code or cookie value in any log line of the whole flow', () => {
    const text = s.logText() + readFileSync(auditFile, 'utf8');
    assert.ok(text.length > 1000);
    assert.ok(!text.includes(s.clientSecret), 'client secret');
    assert.ok(!text.includes(s.cookieSecret), 'cookie secret');
    assert.ok(
      !text.includes(Buffer.from(s.cookieSecret, 'base64').toString('base64url')),
      'cookie secret, base64url',
    );
    for (const v of cookieValues)
      if (v.length >= 16) assert.ok(!text.includes(v), `cookie value ${v.slice(0, 12)}…`);
    const callbacks = chain.filter((u) => u.includes('/.portcullis/callback?'));
    assert.equal(callbacks.length, 2);
    for (const u of callbacks) {
      const q = new URL(u).searchParams;
      assert.ok(!text.includes(q.get('code')!), 'authorization code');
      assert.ok(!text.includes(q.get('state')!), 'state');
    }
    assert.doesNotMatch(text, /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/, 'no JWT (ID token)');
    assert.doesNotMatch(
      text,
      /"(access_token|refresh_token|id_token|cookie|authorization)":"(?!\[redacted\])/i,
    );
  });

  test('the request id set by a trusted proxy is kept, anyone else gets a fresh one', () => {
    const fake = (ip: string, id: string) =>
      ({
        headers: { 'x-request-id': id },
        socket: { remoteAddress: ip },
      }) as unknown as IncomingMessage;
    const trusted = (ip: string) => ip === '10.0.0.1';
    assert.equal(requestIdFor(fake('::ffff:10.0.0.1', 'edge-7f3a-42'), trusted), 'edge-7f3a-42');
    assert.notEqual(requestIdFor(fake('10.0.0.2', 'edge-7f3a-42'), trusted), 'edge-7f3a-42');
    assert.notEqual(requestIdFor(fake('10.0.0.1', 'evil\nline'), trusted), 'evil\nline');
  });

  test("the upstream and the access log see the trusted proxy's request id", async () => {
    const jar = new CookieJar();
    await loginThroughIdp(`http://app.corp.test:${s.port}/`, {
      jar,
      username: 'bob',
      password: 'bob',
    });
    const r = await request(`http://app.corp.test:${s.port}/rid?format=json`, {
      jar,
      headers: { 'x-request-id': 'lb-0001-abc' },
    });
    assert.equal(r.status, 200);
    assert.equal(
      r.json<{ headers: Record<string, string> }>().headers['x-request-id'],
      'lb-0001-abc',
    );
    assert.ok(
      s.logs.some((l) => l.msg === 'request' && l.requestId === 'lb-0001-abc' && l.path === '/rid'),
    );
  });
});
