import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { startIdp, type RunningIdp } from '../demo/idp.js';
import { startWhoami, type RunningWhoami } from '../demo/whoami.js';
import { loadConfigFile } from '../src/config/load.js';
import { createLogger } from '../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../src/server.js';
import { CookieJar, request } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';

// kubernetes_service_account_token_file names the token Kubernetes mounts in a pod
// (https://www.pomerium.com/docs/reference/routes/kubernetes-service-account-token:
// /var/run/secrets/kubernetes.io/serviceaccount/token). Projected tokens are rotated by the
// kubelet, which swaps the file: the next requests must carry the new token, with no restart.

describe('a rotated kubernetes_service_account_token_file is picked up', () => {
  let idp: RunningIdp;
  let up: RunningWhoami;
  let proxy: RunningPortcullis;
  let port: number;
  let dir: string;
  const secret = randomBytes(24).toString('base64url');

  before(async () => {
    port = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'portcullis-sa-'));
    idp = await startIdp({
      clients: [
        {
          client_id: 'portcullis',
          client_secret: secret,
          redirect_uris: [`http://k8s.corp.test:${port}/.portcullis/callback`],
        },
      ],
    });
    up = await startWhoami({ name: 'apiserver' });
    writeFileSync(join(dir, 'token'), 'first.token.value\n');
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(
      file,
      `address: 127.0.0.1:${port}
insecure_server: true
cookie_secure: false
cookie_secret: ${randomBytes(32).toString('base64')}
idp_provider_url: ${idp.issuer}
idp_client_id: portcullis
idp_client_secret: ${secret}
routes:
  - from: http://k8s.corp.test:${port}
    to: ${up.url}
    allow_any_authenticated_user: true
    kubernetes_service_account_token_file: ${join(dir, 'token')}
`,
    );
    const quiet = new Writable({ write: (_c, _e, cb) => cb() });
    proxy = await startPortcullis(loadConfigFile(file), {
      configFile: file,
      logger: createLogger('info', quiet),
    });
    await proxy.idp.start();
  });
  after(async () => {
    await proxy?.close();
    await Promise.allSettled([idp?.close(), up?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('the new token goes upstream once the file is swapped', async () => {
    const jar = new CookieJar();
    const url = `http://k8s.corp.test:${port}/api`;
    const { final, chain } = await loginThroughIdp(url, {
      jar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(final.status, 200, chain.join(' -> '));
    const authorization = async (): Promise<unknown> =>
      (await request(url, { jar, headers: { accept: 'application/json' } })).json<{
        headers: Record<string, unknown>;
      }>().headers.authorization;
    assert.equal(await authorization(), 'Bearer first.token.value');
    // As the kubelet does: a new file renamed over the old one.
    writeFileSync(join(dir, 'token.new'), 'second.token.value\n');
    renameSync(join(dir, 'token.new'), join(dir, 'token'));
    let seen: unknown;
    for (let i = 0; i < 300; i++) {
      seen = await authorization();
      if (seen === 'Bearer second.token.value') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(seen, 'Bearer second.token.value');
  });
});
