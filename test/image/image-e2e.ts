// `npm run test:image`: builds the Containerfile, starts Portcullis from the image with its
// config and secrets mounted read-only, signs a user in through it against the test IdP, and
// stops it with SIGTERM while a request is in flight. Not part of `npm test`: the build takes
// minutes (docs/container.md gives the figures). Needs root, buildah, podman and the base image
// that test/image/base.sh makes (the npm script runs it first).
//
// Podman's own `run` cannot set rlimits in the sandbox these tests run in; `buildah run
// --isolation chroot` starts the image's entrypoint on the host network instead, as the image's
// user, with the same mounts.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startIdp, type RunningIdp } from '../../demo/idp.js';
import { startWhoami, type RunningWhoami } from '../../demo/whoami.js';
import { CookieJar, request } from '../helpers/http.js';
import { loginThroughIdp } from '../helpers/login.js';
import { freePort, waitForPorts } from '../helpers/ports.js';

const REPO = new URL('../../../', import.meta.url).pathname;
const BASE = process.env.PORTCULLIS_BASE_IMAGE ?? 'localhost/portcullis-base:node24-bookworm';
const HOST_CA = process.env.NODE_EXTRA_CA_CERTS ?? '/etc/ssl/certs/ca-certificates.crt';
const IMAGE = process.env.PORTCULLIS_TEST_IMAGE ?? 'localhost/portcullis:image-test';

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stderr}\n${r.stdout}`);
  return r.stdout.trim();
}

interface ImageConfig {
  User?: string;
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  ExposedPorts?: Record<string, unknown>;
  StopSignal?: string;
}

let idp: RunningIdp;
let upstream: RunningWhoami;
let dir: string;
let config: ImageConfig;
let container: string | null = null;
let mountPoint: string | null = null;
const children: ChildProcess[] = [];

before(async () => {
  const started = performance.now();
  // --layers keeps the dependency layers between runs; a change to src/ rebuilds only the
  // compile stage and the final copy.
  run('buildah', [
    'bud',
    '--isolation',
    'chroot',
    '--layers',
    '--build-arg',
    `BASE_IMAGE=${BASE}`,
    // The registry is reached through whatever CA this machine trusts (a TLS-intercepting
    // proxy's, here): handed to npm in the build stages only.
    ...(existsSync(HOST_CA)
      ? [
          '--volume',
          `${HOST_CA}:/run/build-ca.pem:ro`,
          '--build-arg',
          'NODE_EXTRA_CA_CERTS=/run/build-ca.pem',
        ]
      : []),
    '-t',
    IMAGE,
    '-f',
    join(REPO, 'Containerfile'),
    REPO,
  ]);
  const seconds = (performance.now() - started) / 1000;
  const size = Number(run('podman', ['image', 'inspect', '--format', '{{.Size}}', IMAGE]));
  const baseSize = Number(run('podman', ['image', 'inspect', '--format', '{{.Size}}', BASE]));
  console.log(
    `# image ${IMAGE}: built in ${seconds.toFixed(1)} s, ${(size / 1e6).toFixed(1)} MB ` +
      `(base ${(baseSize / 1e6).toFixed(1)} MB, Portcullis layers ${((size - baseSize) / 1e6).toFixed(1)} MB)`,
  );
  config = (
    JSON.parse(run('buildah', ['inspect', '--type', 'image', IMAGE])) as {
      OCIv1: { config: ImageConfig };
    }
  ).OCIv1.config;
  container = run('buildah', ['from', '--pull-never', IMAGE]);
  mountPoint = run('buildah', ['mount', container]);

  upstream = await startWhoami({ name: 'upstream' });
});

after(async () => {
  // A failed test leaves the container running: end buildah's whole tree, not just buildah.
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    for (const pid of descendants(c.pid!).reverse()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    c.kill('SIGKILL');
  }
  if (container) spawnSync('buildah', ['rm', container]);
  if (dir) rmSync(dir, { recursive: true, force: true });
  await Promise.allSettled([idp?.close(), upstream?.close()]);
});

test('the image runs as a non-root user, with `portcullis serve` as its entrypoint', () => {
  assert.equal(config.User, '1000:1000');
  assert.deepEqual(config.Entrypoint, ['node', '/app/dist/src/cli/main.js']);
  assert.deepEqual(config.Cmd, ['serve']);
  assert.ok(config.Env?.includes('PORTCULLIS_CONFIG=/etc/portcullis/portcullis.yaml'));
  assert.ok(config.Env?.includes('NODE_ENV=production'));
  assert.equal(config.StopSignal, 'SIGTERM');
});

test('the image holds production dependencies and compiled src/ only', () => {
  const app = join(mountPoint!, 'app');
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
  };
  for (const dep of Object.keys(pkg.dependencies))
    assert.ok(existsSync(join(app, 'node_modules', dep, 'package.json')), `${dep} is missing`);
  for (const dev of Object.keys(pkg.devDependencies))
    assert.ok(!existsSync(join(app, 'node_modules', dev)), `devDependency ${dev} is in the image`);
  for (const absent of ['src', 'test', 'demo', 'bench', 'dist/test', 'dist/demo', '.git'])
    assert.ok(!existsSync(join(app, absent)), `${absent} is in the image`);
  assert.ok(existsSync(join(app, 'dist/src/cli/main.js')));
});

test('signs a user in through Portcullis started from the image, with config and secrets mounted read-only', async () => {
  const port = await freePort();
  const metricsPort = await freePort();
  const clientSecret = randomBytes(24).toString('base64url');
  const origin = `http://app.localhost:${port}`;
  idp = await startIdp({
    clients: [
      {
        client_id: 'portcullis',
        client_secret: clientSecret,
        redirect_uris: [`${origin}/.portcullis/callback`],
        post_logout_redirect_uris: [`${origin}/.portcullis/signed_out`],
      },
    ],
  });
  dir = mkdtempSync(join(tmpdir(), 'portcullis-image-'));
  const secrets = join(dir, 'secrets');
  const conf = join(dir, 'config');
  for (const d of [secrets, conf]) spawnSync('mkdir', ['-p', d]);
  writeFileSync(join(secrets, 'idp-client-secret'), `${clientSecret}\n`);
  writeFileSync(join(secrets, 'cookie-secret'), `${randomBytes(32).toString('base64')}\n`);
  // Readable by the image's uid only through the group/other bits, as a Secret volume with
  // defaultMode 0440 and fsGroup would make them.
  for (const f of ['idp-client-secret', 'cookie-secret']) chmodSync(join(secrets, f), 0o444);
  writeFileSync(
    join(conf, 'portcullis.yaml'),
    `address: 127.0.0.1:${port}
metrics_address: 127.0.0.1:${metricsPort}
insecure_server: true
cookie_secure: false
cookie_secret_file: /run/secrets/portcullis/cookie-secret
idp_provider_url: ${idp.issuer}
idp_client_id: portcullis
idp_client_secret_file: /run/secrets/portcullis/idp-client-secret
idp_scopes: [openid, profile, email, groups]
shutdown_timeout: 10s
log_level: info
routes:
  - from: ${origin}
    to: ${upstream.url}
    allow_any_authenticated_user: true
    pass_identity_headers: true
`,
  );
  chmodSync(join(conf, 'portcullis.yaml'), 0o444);

  const logs: string[] = [];
  const child = spawn(
    'buildah',
    [
      'run',
      '--isolation',
      'chroot',
      '--network',
      'host',
      '--volume',
      `${conf}:/etc/portcullis:ro`,
      '--volume',
      `${secrets}:/run/secrets/portcullis:ro`,
      container!,
      '--',
      ...config.Entrypoint!,
      ...config.Cmd!,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  child.stdout!.on('data', (d: Buffer) => logs.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const t0 = performance.now();
  await waitForPorts([port, metricsPort], {
    who: 'portcullis (from the image)',
    timeoutMs: 30_000,
    failure: () => (child.exitCode !== null ? `exited ${child.exitCode}` : null),
    diagnostics: () => logs.join(''),
  });
  console.log(
    `# container listening ${((performance.now() - t0) / 1000).toFixed(1)} s after start`,
  );

  const ping = await request(`http://127.0.0.1:${metricsPort}/ping`);
  assert.equal(ping.status, 200);
  let ready = await request(`http://127.0.0.1:${metricsPort}/ready`);
  for (let i = 0; i < 50 && ready.status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    ready = await request(`http://127.0.0.1:${metricsPort}/ready`);
  }
  assert.equal(ready.status, 200, ready.body);

  const jar = new CookieJar();
  const { final } = await loginThroughIdp(`${origin}/hello?from=image`, {
    jar,
    username: 'alice',
    password: 'alice',
  });
  assert.equal(final.status, 200, final.body);
  assert.match(final.body, /Signed in as <strong id="user">alice<\/strong>/);
  const echo = await request(`${origin}/hello?from=image`, {
    jar,
    headers: { accept: 'application/json' },
  });
  const echoed = JSON.parse(echo.body) as { url: string; headers: Record<string, string> };
  assert.equal(echoed.url, '/hello?from=image');
  assert.equal(echoed.headers['x-forwarded-user'], 'alice');

  // The process runs as the image's user, not root.
  const pid = portcullisPid(child.pid!);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  assert.match(status, /^Uid:\s+1000\s/m);

  // SIGTERM (what the kubelet and `docker stop` send) with a request in flight: the request
  // finishes, new connections are refused, /ready says 503 while draining, the process exits 0.
  const inflight = request(`${origin}/slow?ms=1500`, { jar });
  await new Promise((r) => setTimeout(r, 300));
  const stopAt = performance.now();
  // To the container's process, as the runtime delivers it (runc signals the container's
  // init); `buildah run` itself answers SIGTERM by killing its command, which is no test.
  process.kill(pid, 'SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  const draining = await request(`http://127.0.0.1:${metricsPort}/ready`);
  assert.equal(draining.status, 503);
  assert.match(draining.body, /shutting down/);
  await assert.rejects(request(`${origin}/hello`, { jar }), /ECONNREFUSED/);
  const answered = await inflight;
  assert.equal(answered.status, 200);
  assert.equal((JSON.parse(answered.body) as { slept: number }).slept, 1500);
  assert.equal(await exited, 0, logs.join(''));
  const drainMs = performance.now() - stopAt;
  assert.ok(drainMs < 10_000, `stopped after ${drainMs} ms, beyond shutdown_timeout`);
  console.log(`# SIGTERM to exit with a 1.5 s request in flight: ${(drainMs / 1000).toFixed(1)} s`);
  assert.match(logs.join(''), /"event":"shutting_down"/);
  assert.match(logs.join(''), /"event":"stopped"/);
  assert.doesNotMatch(logs.join(''), new RegExp(clientSecret));
});

/** Processes under `root` (buildah's Go threads fork the runtime, which forks the command). */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // pid (comm) state ppid ...: comm may hold spaces, so read after its closing parenthesis.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited meanwhile
    }
  }
  const under = (pid: number): boolean => {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p))
      if (p === root) return true;
    return false;
  };
  return [...parent.keys()].filter(under);
}

/** The Portcullis process itself (Node 24 names its main thread, so match the command line). */
function portcullisPid(root: number): number {
  for (const pid of descendants(root)) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (/(^|\/)node$/.test(argv[0]!) && argv[1] === '/app/dist/src/cli/main.js') return pid;
    } catch {
      // exited meanwhile
    }
  }
  throw new Error('no portcullis process under buildah run');
}
