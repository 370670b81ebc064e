import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { CookieJar, request } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';

// `npm start` runs exactly this file; the test runs it as a user would and logs in as alice.
test('the demo starts, alice logs in, lands on the page she asked for and sees her identity headers', async () => {
  const [port, idpPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, [new URL('../demo/run.js', import.meta.url).pathname], {
    env: { ...process.env, DEMO_PORT: String(port), DEMO_IDP_PORT: String(idpPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  try {
    for (let i = 0; i < 100 && !out.includes('demo is running'); i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.match(out, /Open {2}http:\/\/app\.localhost:\d+\/hello\?from=demo/);
    const jar = new CookieJar();
    const { final, chain } = await loginThroughIdp(`http://app.localhost:${port}/hello?from=demo`, {
      jar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(final.status, 200);
    assert.equal(chain.at(-1), `http://app.localhost:${port}/hello?from=demo`);
    assert.match(final.body, /alice@example\.com/);
    assert.match(final.body, /admins,eng/);
    const bob = new CookieJar();
    const denied = await loginThroughIdp(`http://admin.localhost:${port}/`, {
      jar: bob,
      username: 'bob',
      password: 'bob',
    });
    assert.equal(denied.final.status, 403);
    const pub = await request(`http://public.localhost:${port}/`);
    assert.equal(pub.status, 200);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
});
