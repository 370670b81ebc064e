import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { request } from './helpers/http.js';
import { freePort } from './helpers/ports.js';

// `workers: N` (node:cluster) as an operator runs it: the built CLI in a child process.

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'portcullis-cluster-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('workers: 2 without a signing_key: every worker signs with the one key the primary generated, and it warns once', async (t) => {
  const port = await freePort();
  const idpPort = await freePort(); // nothing listens there: the JWKS needs no IdP
  const file = join(dir, 'cluster.yaml');
  writeFileSync(
    file,
    [
      `address: 127.0.0.1:${port}`,
      'insecure_server: true',
      'workers: 2',
      `idp_provider_url: http://127.0.0.1:${idpPort}`,
      'idp_client_id: portcullis',
      'idp_client_secret: s3cret-s3cret-s3cret-s3cret-s3cret',
      `cookie_secret: ${Buffer.alloc(32, 7).toString('base64')}`,
      'log_level: info',
      'routes:',
      `  - from: http://app.example.com:${port}`,
      '    to: http://127.0.0.1:3000',
      '    allow_any_authenticated_user: true',
      '',
    ].join('\n'),
  );
  const env = { ...process.env };
  delete env.PORTCULLIS_CONFIG;
  const child = spawn(process.execPath, [MAIN, 'serve', '--config', file], {
    cwd: dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  t.after(async () => {
    child.kill('SIGTERM');
    await exited;
  });

  // Both workers listening (each logs it), so fresh connections are spread over both.
  const deadline = Date.now() + 20_000;
  while ((output.match(/"event":"listening"/g) ?? []).length < 2) {
    assert.ok(
      Date.now() < deadline,
      `two workers did not report listening within 20 s:\n${output}`,
    );
    await new Promise((r) => setTimeout(r, 50));
  }

  const kids = new Set<string>();
  const bodies = new Set<string>();
  for (let i = 0; i < 10; i++) {
    // request() opens a new connection every time (no agent): the primary hands each to a worker in turn.
    const r = await request(`http://app.example.com:${port}/.well-known/portcullis/jwks.json`);
    assert.equal(r.status, 200, r.body);
    const jwks = r.json<{ keys: Array<{ kid: string; kty: string }> }>();
    assert.equal(jwks.keys.length, 1);
    kids.add(jwks.keys[0]!.kid);
    bodies.add(r.body);
  }
  assert.equal(kids.size, 1, `workers published different keys: ${[...kids].join(', ')}`);
  assert.equal(bodies.size, 1);

  // One warning about the generated key, from the primary, not one per worker.
  const warnings = output.split('\n').filter((l) => /no signing_key/.test(l));
  assert.equal(warnings.length, 1, output);
  assert.match(warnings[0]!, /shared by the 2 workers/);
  // The key never reaches the logs.
  assert.doesNotMatch(output, /PRIVATE KEY/);
});
