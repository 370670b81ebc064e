import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { startIdp, type RunningIdp } from '../demo/idp.js';
import { startWhoami, wsFrame, WsParser, type RunningWhoami } from '../demo/whoami.js';
import { loadConfigFile } from '../src/config/load.js';
import { createLogger } from '../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../src/server.js';
import { CookieJar, request } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { freePort, portAccepts } from './helpers/ports.js';

// Changing the config without downtime: reloads (good and bad) under load with a WebSocket
// open, and SIGHUP / graceful SIGTERM on the real `portcullis serve` process.

interface Ws {
  send(text: string): Promise<string>;
  close(): void;
}

async function openWs(port: number, host: string, cookie: string): Promise<Ws> {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(
    `GET /ws HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nCookie: ${cookie}\r\n\r\n`,
  );
  const parser = new WsParser();
  const messages: string[] = [];
  const waiters: Array<() => void> = [];
  let head = Buffer.alloc(0);
  let status = '';
  socket.on('data', (d: Buffer) => {
    if (!status) {
      head = Buffer.concat([head, d]);
      const i = head.indexOf('\r\n\r\n');
      if (i < 0) return;
      status = head.subarray(0, head.indexOf('\r\n')).toString();
      d = head.subarray(i + 4);
      waiters.splice(0).forEach((f) => f());
    }
    for (const f of parser.push(d)) messages.push(f.payload.toString());
    waiters.splice(0).forEach((f) => f());
  });
  const wait = async (cond: () => boolean): Promise<void> => {
    const deadline = Date.now() + 5000;
    while (!cond()) {
      if (Date.now() > deadline || socket.destroyed)
        throw new Error(
          `websocket: ${status || 'no answer'}${socket.destroyed ? ' (closed)' : ''}`,
        );
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
  };
  await wait(() => !!status);
  assert.match(status, /^HTTP\/1\.1 101/);
  return {
    async send(text) {
      socket.write(wsFrame(0x1, Buffer.from(text), true));
      await wait(() => messages.length > 0);
      return messages.shift()!;
    },
    close: () => socket.destroy(),
  };
}

describe('hot reload under load', () => {
  let idp: RunningIdp;
  let up: RunningWhoami;
  let proxy: RunningPortcullis;
  let port: number;
  let file: string;
  let logText = '';
  const secret = randomBytes(24).toString('base64url');
  const cookieSecret = randomBytes(32).toString('base64');

  const yaml = (extra = ''): string => `address: 127.0.0.1:${port}
insecure_server: true
cookie_secure: false
cookie_secret: ${cookieSecret}
idp_provider_url: ${idp.issuer}
idp_client_id: portcullis
idp_client_secret: ${secret}
metrics_address: 127.0.0.1:0
routes:
  - id: app
    from: http://app.corp.test:${port}
    to: ${up.url}
    allow_any_authenticated_user: true
    allow_websockets: true
${extra}`;

  before(async () => {
    port = await freePort();
    idp = await startIdp({
      clients: [
        {
          client_id: 'portcullis',
          client_secret: secret,
          redirect_uris: [`http://app.corp.test:${port}/.portcullis/callback`],
        },
      ],
    });
    up = await startWhoami({ name: 'reload-upstream' });
    file = join(mkdtempSync(join(tmpdir(), 'reload-')), 'portcullis.yaml');
    writeFileSync(file, yaml());
    const sink = new Writable({
      write(c: Buffer, _e, cb) {
        logText += c.toString();
        cb();
      },
    });
    proxy = await startPortcullis(loadConfigFile(file), {
      configFile: file,
      logger: createLogger('info', sink),
    });
    await proxy.idp.start();
  });
  after(async () => {
    await proxy?.close();
    await Promise.allSettled([idp.close(), up.close()]);
  });

  test('a good reload (file change) and a bad one (SIGHUP-style) cut no request, no WebSocket and no session', async () => {
    const jar = new CookieJar();
    const login = await loginThroughIdp(`http://app.corp.test:${port}/`, {
      jar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(login.final.status, 200);
    const cookie = jar.header(new URL(`http://app.corp.test:${port}/`));
    const ws = await openWs(port, `app.corp.test:${port}`, cookie);
    assert.equal(await ws.send('before'), 'before');

    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const worker = async (n: number): Promise<void> => {
      while (!stop) {
        try {
          const r = await request(`http://app.corp.test:${port}/load/${n}?format=json`, { jar });
          if (r.status === 200) ok++;
          else failures.push(`HTTP ${r.status}`);
        } catch (e) {
          failures.push((e as Error).message);
        }
      }
    };
    const load = Promise.all([0, 1, 2, 3].map(worker));
    await new Promise((r) => setTimeout(r, 300));

    // 1. A new route, picked up from the file change alone.
    writeFileSync(
      file,
      yaml(`  - id: extra
    from: http://extra.corp.test:${port}
    to: ${up.url}
    allow_public_unauthenticated_access: true
`),
    );
    let extra = 0;
    for (let i = 0; i < 50 && extra !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      extra = (
        await request(`http://extra.corp.test:${port}/`, {
          headers: { accept: 'application/json' },
        })
      ).status;
    }
    assert.equal(extra, 200, 'the new route is served after the file changed');
    assert.equal(await ws.send('after good reload'), 'after good reload');

    // 2. A broken config: refused, counted, logged; the running one stays.
    writeFileSync(file, `${yaml()}  - from: http://broken.corp.test:${port}\n    too: ${up.url}\n`);
    const bad = await proxy.reload('test');
    assert.equal(bad.ok, false);
    assert.match(bad.errors.join('\n'), /routes\[1\]\.too: unknown key; did you mean `to`\?/);
    assert.equal(
      (
        await request(`http://extra.corp.test:${port}/`, {
          headers: { accept: 'application/json' },
        })
      ).status,
      200,
      'the previous config is still in force',
    );
    assert.equal(await ws.send('after bad reload'), 'after bad reload');

    // 3. A config that parses but fails its own policy_tests: refused just the same.
    writeFileSync(
      file,
      `${yaml()}policy_tests:
  - name: strangers are kept out
    request: { url: http://app.corp.test:${port}/, email: mallory@evil.test }
    expect: deny
`,
    );
    const untested = await proxy.reload('test');
    assert.equal(untested.ok, false);
    assert.match(
      untested.errors.join('\n'),
      /policy test "strangers are kept out" expected deny, got allow/,
    );
    assert.equal(
      (
        await request(`http://extra.corp.test:${port}/`, {
          headers: { accept: 'application/json' },
        })
      ).status,
      200,
      'still the config from step 1',
    );

    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await load;
    assert.deepEqual(failures, []);
    assert.ok(ok > 50, `${ok} requests under load`);
    // Same cookie_secret: the session from before both reloads is still good.
    assert.equal(
      (await request(`http://app.corp.test:${port}/me?format=json`, { jar })).status,
      200,
    );
    ws.close();

    const metrics = (await request(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).body;
    assert.match(metrics, /^portcullis_config_reloads_total\{result="success"\} 1$/m);
    assert.match(metrics, /^portcullis_config_reloads_total\{result="failure"\} [1-9]$/m);
    assert.match(metrics, /^portcullis_config_last_reload_successful 0$/m);
    assert.match(logText, /"event":"config_reloaded".*"trigger":"file change"/);
    assert.match(logText, /"event":"config_reload_failed".*routes\[1\]\.too/);
  });
});

describe('portcullis serve: SIGHUP and graceful SIGTERM', () => {
  let idp: RunningIdp;
  let up: RunningWhoami;
  let child: ChildProcess | null = null;

  before(async () => {
    idp = await startIdp({
      clients: [
        {
          client_id: 'portcullis',
          client_secret: 'x'.repeat(32),
          redirect_uris: ['http://a.localhost/.portcullis/callback'],
        },
      ],
    });
    up = await startWhoami({ name: 'serve-upstream' });
  });
  after(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await Promise.allSettled([idp.close(), up.close()]);
  });

  test('SIGHUP reloads; SIGTERM stops accepting, finishes the request in flight, exits 0', async () => {
    const port = await freePort();
    const file = join(mkdtempSync(join(tmpdir(), 'serve-')), 'portcullis.yaml');
    const cfg = (host: string) => `address: 127.0.0.1:${port}
insecure_server: true
cookie_secure: false
cookie_secret: ${randomBytes(32).toString('base64')}
idp_provider_url: ${idp.issuer}
idp_client_id: portcullis
idp_client_secret: ${'x'.repeat(32)}
watch_config: false
shutdown_timeout: 10s
routes:
  - from: http://${host}:${port}
    to: ${up.url}
    allow_public_unauthenticated_access: true
`;
    writeFileSync(file, cfg('one.localhost'));
    let out = '';
    const c = spawn(process.execPath, ['dist/src/cli/main.js', 'serve', '--config', file], {
      cwd: process.cwd(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    c.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    c.stderr!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((r) => c.on('exit', (code) => r(code)));
    for (let i = 0; i < 100 && !(await portAccepts(port)); i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal(
      (await request(`http://one.localhost:${port}/`, { headers: { accept: 'application/json' } }))
        .status,
      200,
      out,
    );

    writeFileSync(file, cfg('two.localhost'));
    assert.equal(
      (await request(`http://two.localhost:${port}/`, { headers: { accept: 'application/json' } }))
        .status,
      404,
      'watch_config: false waits for the signal',
    );
    c.kill('SIGHUP');
    let two = 0;
    for (let i = 0; i < 50 && two !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      two = (
        await request(`http://two.localhost:${port}/`, { headers: { accept: 'application/json' } })
      ).status;
    }
    assert.equal(two, 200, out);

    const slow = request(`http://two.localhost:${port}/slow?ms=1500`, {
      headers: { accept: 'application/json' },
    });
    await new Promise((r) => setTimeout(r, 300));
    const t = Date.now();
    c.kill('SIGTERM');
    // The listener closes once the signal is handled, while the slow request is still in flight
    // (it ends 1.5 s after it began): waited for as that order of events, not a fixed time.
    let settled = false;
    void slow.then(
      () => (settled = true),
      () => (settled = true),
    );
    while ((await portAccepts(port)) && !settled) await new Promise((r) => setTimeout(r, 20));
    assert.equal(settled, false, 'new connections were accepted until the request in flight ended');
    assert.equal(await portAccepts(port), false, 'no new connections once stopping');
    const r = await slow;
    assert.equal(r.status, 200, 'the request in flight finished');
    assert.equal(r.json<{ slept: number }>().slept, 1500);
    assert.equal(await exited, 0, out);
    assert.ok(Date.now() - t < 5000, 'exits as soon as the work is done, not at the bound');
    assert.match(out, /"event":"config_reloaded".*"trigger":"SIGHUP"/);
    assert.match(out, /"event":"stopped"/);
  });
});
