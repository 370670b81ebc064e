// deploy/compose: the compose file's wiring (image, read-only config, secrets behind the
// `_file` keys), and its parts run as compose runs them, minus the containers: the demo
// services (demo/compose.ts) and `portcullis serve` on its portcullis.yaml, with Redis
// sessions, then a sign-in and a denial through it. Only ports and the secrets' directory
// are changed. The containers themselves are built and run by `npm run test:image`.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { CookieJar, request } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { freePort, waitForPorts } from './helpers/ports.js';
import { sub } from './helpers/recipes.js';
import { startPrivateRedis, type PrivateRedis } from './helpers/session-infra.js';

const REPO = new URL('../../', import.meta.url).pathname;
const DIR = join(REPO, 'deploy/compose');
const compose = parseYaml(readFileSync(join(DIR, 'compose.yaml'), 'utf8')) as {
  services: Record<string, Record<string, unknown>>;
  secrets: Record<string, { file: string }>;
};
const configText = readFileSync(join(DIR, 'portcullis.yaml'), 'utf8');
const config = parseYaml(configText) as Record<string, unknown>;

const children: ChildProcess[] = [];
let redis: PrivateRedis;
let tmp: string;
let port: number;
let metricsPort: number;
const logs: string[] = [];

function spawnLogged(args: string[], env: Record<string, string>): ChildProcess {
  const c = spawn(process.execPath, args, { env: { ...process.env, ...env } });
  c.stdout!.on('data', (d: Buffer) => logs.push(d.toString()));
  c.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  children.push(c);
  return c;
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'portcullis-compose-'));
  writeFileSync(join(tmp, 'cookie_secret'), `${randomBytes(32).toString('base64')}\n`);
  writeFileSync(join(tmp, 'idp_client_secret'), `${randomBytes(24).toString('hex')}\n`);
  redis = await startPrivateRedis();
  [port, metricsPort] = [await freePort(), await freePort()];
  const idpPort = await freePort();
  const upstreamPort = await freePort();
  const demo = spawnLogged([join(REPO, 'dist/demo/compose.js')], {
    DEMO_PORT: String(port),
    DEMO_IDP_PORT: String(idpPort),
    DEMO_UPSTREAM_PORT: String(upstreamPort),
    DEMO_CLIENT_SECRET_FILE: join(tmp, 'idp_client_secret'),
  });
  await waitForPorts([idpPort, upstreamPort], {
    who: 'demo services',
    timeoutMs: 20_000,
    failure: () => (demo.exitCode !== null ? `exited ${demo.exitCode}` : null),
    diagnostics: () => logs.join(''),
  });
  const file = join(tmp, 'portcullis.yaml');
  writeFileSync(
    file,
    sub(configText, [
      [':8080', `:${port}`],
      [':9090', `:${metricsPort}`],
      [':9000', `:${idpPort}`],
      [':8081', `:${upstreamPort}`],
      [':6380', `:${redis.port}`],
      ['/run/secrets/', `${tmp}/`],
    ]),
  );
  const proxy = spawnLogged([join(REPO, 'dist/src/cli/main.js'), 'serve', '--config', file], {});
  await waitForPorts([port, metricsPort], {
    who: 'portcullis serve',
    timeoutMs: 20_000,
    failure: () => (proxy.exitCode !== null ? `exited ${proxy.exitCode}` : null),
    diagnostics: () => logs.join(''),
  });
  // Ready once the IdP's discovery is done and Redis answers: what compose's users wait for too.
  for (let i = 0; i < 100; i++) {
    if ((await request(`http://127.0.0.1:${metricsPort}/ready`)).status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await Promise.all(
    children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)),
  );
  await redis?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('compose runs the Containerfile image with the config read-only and secrets behind the _file keys', () => {
  const p = compose.services.portcullis!;
  assert.deepEqual(p.build, { context: '../..', dockerfile: 'Containerfile' });
  assert.ok(
    (p.volumes as string[]).includes('./portcullis.yaml:/etc/portcullis/portcullis.yaml:ro'),
  );
  assert.equal(p.read_only, true);
  for (const [key, value] of Object.entries(config).filter(([k]) => k.endsWith('_file'))) {
    const name = /^\/run\/secrets\/(\w+)$/.exec(String(value))?.[1];
    assert.ok(name, `${key} is not a compose secret`);
    assert.ok((p.secrets as string[]).includes(name), `${name} is not given to portcullis`);
    assert.ok(compose.secrets[name], `${name} is not declared`);
  }
  // The demo IdP registers the client with the very secret Portcullis reads.
  assert.ok((compose.services['demo-services']!.secrets as string[]).includes('idp_client_secret'));
  assert.match(String(config.session_storage), /^redis:\/\/127\.0\.0\.1:6380$/);
  const cmd = (compose.services.redis!.command as string[]).join(' ');
  assert.match(cmd, /--port 6380/);
  assert.match(cmd, /--bind 127\.0\.0\.1/);
});

test('alice signs in to app.localhost, bob is refused on admin.localhost, sessions are in Redis', async () => {
  const app = `http://app.localhost:${port}`;
  const jar = new CookieJar();
  const { final } = await loginThroughIdp(`${app}/hello?from=compose`, {
    jar,
    username: 'alice',
    password: 'alice',
  });
  assert.equal(final.status, 200, logs.join(''));
  assert.match(final.body, /Signed in as <strong id="user">alice<\/strong>/);

  const bob = new CookieJar();
  const denied = await loginThroughIdp(`http://admin.localhost:${port}/`, {
    jar: bob,
    username: 'bob',
    password: 'bob',
  });
  assert.equal(denied.final.status, 403);

  const ready = await request(`http://127.0.0.1:${metricsPort}/ready`);
  assert.equal(ready.status, 200, ready.body);
  assert.match(ready.body, /"name":"session_store","ok":true,"detail":"redis"/);
});
