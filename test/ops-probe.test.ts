import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startIdp, type RunningIdp } from '../demo/idp.js';
import { startWhoami, type RunningWhoami } from '../demo/whoami.js';
import type { ProbeCheck } from '../src/cli/probe.js';
import { freePort } from './helpers/ports.js';

// `portcullis probe` against the real test IdP: the phantom-credentials failure (a deleted IdP client that health checks miss)
// that no container health check sees.

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function probe(file: string, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['dist/src/cli/main.js', 'probe', '--config', file, ...args],
      { cwd: process.cwd(), timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr });
      },
    );
  });
}

function checks(r: Run): ProbeCheck[] {
  return (JSON.parse(r.stdout) as { checks: ProbeCheck[] }).checks;
}

function byName(cs: ProbeCheck[], name: string): ProbeCheck {
  const c = cs.find((x) => x.check === name);
  assert.ok(c, `no ${name} check in ${JSON.stringify(cs)}`);
  return c;
}

describe('portcullis probe', () => {
  let idp: RunningIdp;
  let up: RunningWhoami;
  let dir: string;
  const secret = randomBytes(24).toString('base64url');

  const write = (
    name: string,
    o: { issuer?: string; secret?: string; upstream?: string } = {},
  ): string => {
    const file = join(dir, name);
    writeFileSync(
      file,
      `address: 127.0.0.1:0
insecure_server: true
cookie_secure: false
cookie_secret: ${randomBytes(32).toString('base64')}
idp_provider_url: ${o.issuer ?? idp.issuer}
idp_client_id: portcullis
idp_client_secret: ${o.secret ?? secret}
routes:
  - id: app
    from: http://app.localhost:8080
    to: ${o.upstream ?? up.url}
    allow_any_authenticated_user: true
  - id: docs
    from: http://docs.localhost:8080
    to: ${o.upstream ?? up.url}
    allow_public_unauthenticated_access: true
`,
    );
    return file;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'probe-'));
    idp = await startIdp({
      clients: [
        {
          client_id: 'portcullis',
          client_secret: secret,
          redirect_uris: ['http://app.localhost:8080/.portcullis/callback'],
        },
      ],
    });
    up = await startWhoami({ name: 'probe-upstream' });
  });
  after(async () => {
    await Promise.allSettled([idp.close(), up.close()]);
  });

  test('a healthy deployment: every check passes, exit 0, one line per check and a summary', async () => {
    const file = write('ok.yaml');
    const text = await probe(file);
    assert.equal(text.code, 0, text.stdout + text.stderr);
    const lines = text.stdout.trim().split('\n');
    assert.match(
      lines[0]!,
      /^OK +idp_discovery +[\d.]+ ms +http:\/\/127\.0\.0\.1:\d+\/\.well-known\/openid-configuration: issuer /,
    );
    assert.ok(
      lines.some((l) => /^OK +idp_client .*invalid_grant for a made-up code/.test(l)),
      text.stdout,
    );
    // Both routes share the upstream: one request, naming both routes.
    assert.ok(
      lines.some((l) =>
        /^OK +upstream .*app,docs http:\/\/127\.0\.0\.1:\d+\/: answered HTTP 200/.test(l),
      ),
      text.stdout,
    );
    assert.match(lines.at(-1)!, /^OK: 5 checks, 4 ok, 0 failed, 1 skipped in \d+ ms$/);

    const json = await probe(file, '--format', 'json');
    assert.equal(json.code, 0);
    const cs = checks(json);
    assert.deepEqual(
      cs.map((c) => [c.check, c.status]),
      [
        ['idp_discovery', 'ok'],
        ['idp_jwks', 'ok'],
        ['idp_client', 'ok'],
        ['upstream', 'ok'],
        ['session_store', 'skip'],
      ],
    );
    assert.match(byName(cs, 'idp_jwks').detail, /^\d+ signing keys?$/);
    // The test IdP has back-channel logout off: nothing to register for it.
    assert.match(byName(cs, 'idp_discovery').detail, /; no logout from the IdP advertised$/);

    const prom = await probe(file, '--format', 'prometheus');
    assert.equal(prom.code, 0);
    assert.match(
      prom.stdout,
      /^portcullis_probe_success\{check="idp_client",target="portcullis at http:\/\/127\.0\.0\.1:\d+\/token"\} 1$/m,
    );
    assert.match(prom.stdout, /^portcullis_probe_ok 1$/m);
    assert.match(prom.stdout, /^# TYPE portcullis_probe_duration_seconds gauge$/m);
  });

  test('a wrong client secret: invalid_client, exit 1', async () => {
    const r = await probe(write('wrong.yaml', { secret: `${secret}x` }), '--format', 'json');
    assert.equal(r.code, 1);
    const c = byName(checks(r), 'idp_client');
    assert.equal(c.status, 'fail');
    assert.match(c.detail, /^invalid_client: .*deleted, or the secret is wrong/);
    assert.equal(byName(checks(r), 'idp_discovery').status, 'ok', 'discovery alone cannot see it');
    assert.ok(!r.stdout.includes(secret), 'the secret is never printed');
  });

  test('an unreachable upstream fails its line', async () => {
    const port = await freePort();
    const r = await probe(
      write('noup.yaml', { upstream: `http://127.0.0.1:${port}` }),
      '--format',
      'json',
    );
    assert.equal(r.code, 1);
    const c = byName(checks(r), 'upstream');
    assert.equal(c.status, 'fail');
    assert.match(c.detail, /ECONNREFUSED/);
  });

  test('an IdP that is down: discovery fails, the IdP checks that need it are skipped, exit 1', async () => {
    const port = await freePort();
    const r = await probe(write('down.yaml', { issuer: `http://127.0.0.1:${port}` }));
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^FAIL +idp_discovery .*ECONNREFUSED/m);
    assert.match(r.stdout, /^SKIP +idp_client .*discovery failed/m);
    assert.match(r.stdout, /^FAILED: 5 checks, 1 ok, 1 failed, 3 skipped/m);
  });

  test('a client deleted at the IdP (phantom credentials): invalid_client, exit 1', async () => {
    const file = write('deleted.yaml');
    assert.equal((await probe(file)).code, 0);
    idp.removeClient('portcullis');
    const r = await probe(file, '--format', 'json');
    assert.equal(r.code, 1);
    const c = byName(checks(r), 'idp_client');
    assert.equal(c.status, 'fail');
    assert.match(c.detail, /^invalid_client: .*client was deleted/);
  });
});
