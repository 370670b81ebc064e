// Hot reload from a mounted Kubernetes ConfigMap (and Secret). The kubelet never writes the
// mounted file: it writes a new timestamped directory, points a temporary symlink at it,
// renames that symlink over `..data` (one atomic rename), then removes the old directory. The
// file the config names, portcullis.yaml, is itself a symlink to ..data/portcullis.yaml, so its
// own inode never changes. Layout and steps: kubernetes/kubernetes
// pkg/volume/util/atomic_writer.go (AtomicWriter.Write, the `..data` / `..data_tmp` names).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { startIdp, type RunningIdp } from '../demo/idp.js';
import { startWhoami, type RunningWhoami } from '../demo/whoami.js';
import { loadConfigFile } from '../src/config/load.js';
import { createLogger } from '../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../src/server.js';
import { CookieJar, request } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';

/** A volume as the kubelet lays it out: name -> ..data/name, ..data -> ..<timestamp>. */
class ProjectedVolume {
  private generation = 0;
  private current: string | null = null;
  constructor(readonly dir: string) {}

  write(files: Record<string, string>): void {
    const ts = `..2026_12_06_11_00_00.${++this.generation}`;
    mkdirSync(join(this.dir, ts));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(this.dir, ts, name), text);
    symlinkSync(ts, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    if (this.generation === 1)
      for (const name of Object.keys(files))
        symlinkSync(join('..data', name), join(this.dir, name));
    if (this.current) rmSync(join(this.dir, this.current), { recursive: true });
    this.current = ts;
  }
}

let idp: RunningIdp;
let up: RunningWhoami;
let proxy: RunningPortcullis;
let port: number;
let config: ProjectedVolume;
let secrets: ProjectedVolume;
let logText = '';
const clientSecret = randomBytes(24).toString('base64url');

const yaml = (hosts: string[]): string => `address: 127.0.0.1:${port}
insecure_server: true
cookie_secure: false
cookie_secret_file: ${secrets.dir}/cookie-secret
idp_provider_url: ${idp.issuer}
idp_client_id: portcullis
idp_client_secret_file: ${secrets.dir}/idp-client-secret
routes:
  - from: http://private.corp.test:${port}
    to: ${up.url}
    allow_any_authenticated_user: true
${hosts
  .map(
    (h) => `  - from: http://${h}.corp.test:${port}
    to: ${up.url}
    allow_public_unauthenticated_access: true
`,
  )
  .join('')}`;

const status = async (host: string): Promise<number> =>
  (
    await request(`http://${host}.corp.test:${port}/`, {
      headers: { accept: 'application/json' },
    })
  ).status;

async function eventually(host: string, want: number): Promise<number> {
  let got = await status(host);
  for (let i = 0; i < 60 && got !== want; i++) {
    await new Promise((r) => setTimeout(r, 100));
    got = await status(host);
  }
  return got;
}

before(async () => {
  port = await freePort();
  idp = await startIdp({
    clients: [
      {
        client_id: 'portcullis',
        client_secret: clientSecret,
        redirect_uris: [
          `http://one.corp.test:${port}/.portcullis/callback`,
          `http://private.corp.test:${port}/.portcullis/callback`,
        ],
      },
    ],
  });
  up = await startWhoami({ name: 'configmap-upstream' });
  const root = mkdtempSync(join(tmpdir(), 'configmap-'));
  config = new ProjectedVolume(join(root, 'config'));
  secrets = new ProjectedVolume(join(root, 'secrets'));
  mkdirSync(config.dir);
  mkdirSync(secrets.dir);
  secrets.write({
    'cookie-secret': `${randomBytes(32).toString('base64')}\n`,
    'idp-client-secret': `${clientSecret}\n`,
  });
  config.write({ 'portcullis.yaml': yaml(['one']) });
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      logText += c.toString();
      cb();
    },
  });
  const file = join(config.dir, 'portcullis.yaml');
  proxy = await startPortcullis(loadConfigFile(file), {
    configFile: file,
    logger: createLogger('info', sink),
  });
  await proxy.idp.start();
});

after(async () => {
  await proxy?.close();
  await Promise.allSettled([idp?.close(), up?.close()]);
});

test('a ConfigMap update (the ..data symlink swapped) is reloaded, every time, without a signal', async () => {
  assert.equal(await status('one'), 200);
  assert.equal(await status('two'), 404);

  config.write({ 'portcullis.yaml': yaml(['one', 'two']) });
  assert.equal(await eventually('two', 200), 200, 'the first swap is picked up');

  // The watch survives the old directory's removal: a second update is seen too.
  config.write({ 'portcullis.yaml': yaml(['two']) });
  assert.equal(await eventually('one', 404), 404, 'the second swap is picked up');
  assert.equal(await status('two'), 200);
  assert.equal(logText.match(/"event":"config_reloaded"/g)?.length, 2);
});

test('a broken ConfigMap update is refused and the running config stays', async () => {
  const before = logText.match(/"event":"config_reload_failed"/g)?.length ?? 0;
  config.write({ 'portcullis.yaml': `${yaml(['two'])}    too: nowhere\n` });
  for (let i = 0; i < 60; i++) {
    if ((logText.match(/"event":"config_reload_failed"/g)?.length ?? 0) > before) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(logText, /routes\[\d+\]\.too: unknown key; did you mean `to`\?/);
  assert.equal(await status('two'), 200, 'the previous config is still in force');
  // And the next good update still goes through.
  config.write({ 'portcullis.yaml': yaml(['two', 'three']) });
  assert.equal(await eventually('three', 200), 200);
});

test('a Secret update (its own ..data swapped) is followed too: a rotated cookie_secret signs everyone out', async () => {
  const jar = new CookieJar();
  const app = `http://private.corp.test:${port}/`;
  const login = await loginThroughIdp(app, { jar, username: 'alice', password: 'alice' });
  assert.equal(login.final.status, 200);
  const signedIn = async () =>
    (await request(app, { jar, headers: { accept: 'application/json' } })).status;
  assert.equal(await signedIn(), 200);
  const reloads = logText.match(/"event":"config_reloaded"/g)?.length ?? 0;

  secrets.write({
    'cookie-secret': `${randomBytes(32).toString('base64')}\n`,
    'idp-client-secret': `${clientSecret}\n`,
  });
  let status = await signedIn();
  for (let i = 0; i < 60 && status === 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    status = await signedIn();
  }
  assert.equal(status, 401, 'the session sealed with the old cookie_secret still opens');
  assert.equal(logText.match(/"event":"config_reloaded"/g)?.length, reloads + 1);

  // The same secrets again (a resync that changes nothing) is no reload.
  secrets.write({
    'cookie-secret': readFileSync(join(secrets.dir, 'cookie-secret'), 'utf8'),
    'idp-client-secret': `${clientSecret}\n`,
  });
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(logText.match(/"event":"config_reloaded"/g)?.length, reloads + 1);
});
