import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { startWhoami } from '../demo/whoami.js';
import { request } from './helpers/http.js';
import { freePort, portAccepts } from './helpers/ports.js';

// The CLI as an operator runs it: the built entry point in a child process, with its own
// working directory and environment, judged by exit status and what it prints.

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The child's environment: this one minus PORTCULLIS_CONFIG, so only a test sets it. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  if (!('PORTCULLIS_CONFIG' in extra)) delete env.PORTCULLIS_CONFIG;
  return env;
}

function run(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string } = {},
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      cwd: opts.cwd ?? dir,
      env: childEnv(opts.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `portcullis ${args.join(' ')} did not exit within 15 s\nstdout: ${stdout}\nstderr: ${stderr}`,
        ),
      );
    }, 15_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const SECRET = Buffer.alloc(32, 9).toString('base64');

/** A valid config; lines are numbered for the bad variants below. */
function goodYaml(o: { port?: number; issuer?: string } = {}): string {
  return [
    `address: 127.0.0.1:${o.port ?? 0}`, // 1
    'insecure_server: true', // 2
    `idp_provider_url: ${o.issuer ?? 'https://idp.example.com'}`, // 3
    'idp_client_id: portcullis', // 4
    'idp_client_secret: s3cret', // 5
    `cookie_secret: ${SECRET}`, // 6
    'log_level: info', // 7
    'routes:', // 8
    '  - from: https://app.example.com', // 9
    '    to: http://127.0.0.1:3000', // 10
    '    allow_any_authenticated_user: true', // 11
    '  - from: http://intranet.example.com:8080', // 12
    '    to: http://127.0.0.1:3001', // 13
    '    allowed_groups: [staff]', // 14
    '',
  ].join('\n');
}

function writeConfig(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

const good = writeConfig('good.yaml', goodYaml());
// Line 10: a `to` that is not a URL.
const bad = writeConfig(
  'bad.yaml',
  goodYaml().replace('    to: http://127.0.0.1:3000', '    to: not-a-url'),
);

describe('help and usage', () => {
  test('--help prints the usage and every command, exit 0', async () => {
    const r = await run(['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: portcullis <command>/m);
    for (const c of ['serve', 'check', 'gen-secret'])
      assert.match(r.stdout, new RegExp(`^\\s+${c}\\s`, 'm'));
  });

  for (const command of ['serve', 'check', 'gen-secret']) {
    test(`${command} --help prints that command's usage, exit 0`, async () => {
      const r = await run([command, '--help']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^Usage: portcullis ${command}`));
      assert.equal(r.stderr, '');
    });
  }

  test('an unknown command exits 2 and names it', async () => {
    const r = await run(['frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command "frobnicate"/);
    assert.match(r.stderr, /Usage: portcullis <command>/);
  });

  test('no command at all exits 2 with the usage', async () => {
    const r = await run([]);
    assert.equal(r.code, 2);
    assert.match(r.stdout + r.stderr, /Usage: portcullis <command>/);
  });

  test('an unknown option exits 2 and names it', async () => {
    const r = await run(['check', '--confg', good]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--confg/);
  });

  test('an unknown --format exits 2 instead of silently printing text', async () => {
    const r = await run(['check', '--config', good, '--format', 'yaml']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--format must be text or json, got "yaml"/);
    assert.equal(r.stdout, '');
  });
});

describe('gen-secret', () => {
  test('prints base64 of exactly 32 bytes, different each run', async () => {
    const [a, b] = await Promise.all([run(['gen-secret']), run(['gen-secret'])]);
    for (const r of [a, b]) {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^[A-Za-z0-9+/]{43}=\n$/);
      assert.equal(Buffer.from(r.stdout.trim(), 'base64').length, 32);
    }
    assert.notEqual(a.stdout, b.stdout);
  });

  test('its output is accepted as cookie_secret', async () => {
    const secret = (await run(['gen-secret'])).stdout.trim();
    const file = writeConfig(
      'gen.yaml',
      goodYaml().replace(`cookie_secret: ${SECRET}`, `cookie_secret: ${secret}`),
    );
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
  });
});

describe('check', () => {
  test('a good config exits 0 and lists the exact redirect URIs to register', async () => {
    const r = await run(['check', '--config', good]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${good.replaceAll('.', '\\.')}: OK \\(2 routes\\)`));
    assert.match(r.stdout, /redirect URI:\s+https:\/\/app\.example\.com\/\.portcullis\/callback$/m);
    assert.match(
      r.stdout,
      /redirect URI:\s+http:\/\/intranet\.example\.com:8080\/\.portcullis\/callback$/m,
    );
    assert.match(
      r.stdout,
      /post-logout redirect URI:\s+https:\/\/app\.example\.com\/\.portcullis\/signed_out$/m,
    );
    // OpenID Connect Back-Channel Logout 1.0 §2.2: the RP's backchannel_logout_uri.
    assert.match(
      r.stdout,
      /back-channel logout URI:\s+https:\/\/app\.example\.com\/\.portcullis\/backchannel-logout$/m,
    );
  });

  test('a bad config exits 1 naming the file, line, key and what was expected', async () => {
    const r = await run(['check', '--config', bad]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `^${bad.replaceAll('.', '\\.')}:10:9: error: routes\\[0\\]\\.to: expected an http\\(s\\) upstream URL`,
        'm',
      ),
    );
    assert.doesNotMatch(r.stdout, /OK/);
  });

  test('a missing config file exits 1 and says it cannot be read', async () => {
    const r = await run(['check', '--config', join(dir, 'nope.yaml')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /nope\.yaml: error: cannot read the config file: ENOENT/);
  });

  test('--format json is parseable, for a good config and a bad one', async () => {
    const ok = await run(['check', '--config', good, '--format', 'json']);
    assert.equal(ok.code, 0, ok.stderr);
    const o = JSON.parse(ok.stdout) as {
      ok: boolean;
      register: {
        redirect_uris: string[];
        post_logout_redirect_uris: string[];
        backchannel_logout_uri: string;
        frontchannel_logout_uri: string;
      };
    };
    assert.equal(o.ok, true);
    assert.equal(
      o.register.backchannel_logout_uri,
      'https://app.example.com/.portcullis/backchannel-logout',
    );
    assert.equal(
      o.register.frontchannel_logout_uri,
      'https://app.example.com/.portcullis/frontchannel-logout',
    );
    assert.deepEqual(o.register.redirect_uris, [
      'https://app.example.com/.portcullis/callback',
      'http://intranet.example.com:8080/.portcullis/callback',
    ]);
    assert.deepEqual(o.register.post_logout_redirect_uris, [
      'https://app.example.com/.portcullis/signed_out',
      'http://intranet.example.com:8080/.portcullis/signed_out',
    ]);

    const no = await run(['check', '--config', bad, '--format', 'json']);
    assert.equal(no.code, 1);
    const n = JSON.parse(no.stdout) as {
      ok: boolean;
      issues: Array<{ key: string; line: number; column: number; message: string }>;
    };
    assert.equal(n.ok, false);
    assert.deepEqual(
      n.issues.map((i) => [i.key, i.line, i.column]),
      [['routes[0].to', 10, 9]],
    );
  });

  test('PORTCULLIS_CONFIG is used when --config is absent, and --config wins over it', async () => {
    const fromEnv = await run(['check'], { env: { PORTCULLIS_CONFIG: bad } });
    assert.equal(fromEnv.code, 1);
    assert.match(fromEnv.stderr, /bad\.yaml:10:9/);
    const flag = await run(['check', '--config', good], { env: { PORTCULLIS_CONFIG: bad } });
    assert.equal(flag.code, 0, flag.stderr);
  });

  test('without --config or PORTCULLIS_CONFIG, ./portcullis.yaml in the working directory is read', async () => {
    const cwd = mkdtempSync(join(dir, 'cwd-'));
    const missing = await run(['check'], { cwd });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /portcullis\.yaml: error: cannot read the config file: ENOENT/);
    writeFileSync(join(cwd, 'portcullis.yaml'), goodYaml());
    const found = await run(['check'], { cwd });
    assert.equal(found.code, 0, found.stderr);
  });
});

/** Starts `portcullis serve` and resolves once it logs that it is listening, with the port. */
function startServe(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ child: ChildProcess; port: number; output: () => string; exited: Promise<Result> }> {
  const child = spawn(process.execPath, [MAIN, 'serve', ...args], {
    cwd: dir,
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<Result>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `serve did not report listening within 15 s\nstdout: ${stdout}\nstderr: ${stderr}`,
        ),
      );
    }, 15_000);
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      for (const line of stdout.split('\n')) {
        if (!line.startsWith('{')) continue;
        const entry = JSON.parse(line) as { event?: string; address?: string };
        if (entry.event === 'listening') {
          clearTimeout(timer);
          resolve({
            child,
            port: Number(entry.address!.split(':').at(-1)),
            output: () => stdout + stderr,
            exited,
          });
        }
      }
    });
    void exited.then((r) => {
      clearTimeout(timer);
      reject(
        new Error(
          `serve exited with ${r.code} before listening\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
        ),
      );
    });
  });
}

describe('serve', () => {
  test('a bad config exits 2 naming the line, and never listens', async () => {
    const port = await freePort();
    const file = writeConfig(
      'bad-serve.yaml',
      goodYaml({ port }).replace('    to: http://127.0.0.1:3000', '    to: not-a-url'),
    );
    const r = await run(['serve', '--config', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /invalid config, not starting/);
    assert.match(r.stderr, /bad-serve\.yaml:10:9: error: routes\[0\]\.to/);
    assert.doesNotMatch(r.stdout, /"event":"listening"/);
    assert.equal(await portAccepts(port), false);
  });

  test('with the IdP down it still starts, answers /.portcullis/ping, and stops cleanly on SIGTERM', async () => {
    const idpPort = await freePort();
    const file = writeConfig('serve.yaml', goodYaml({ issuer: `http://127.0.0.1:${idpPort}` }));
    const s = await startServe([], { PORTCULLIS_CONFIG: file });
    try {
      const ping = await request(`http://127.0.0.1:${s.port}/.portcullis/ping`);
      assert.equal(ping.status, 200);
      assert.equal(ping.body, 'OK\n');
      // The IdP being down is logged, not fatal.
      for (let i = 0; i < 60 && !/identity provider discovery failed/.test(s.output()); i++)
        await new Promise((r) => setTimeout(r, 50));
      assert.match(s.output(), /identity provider discovery failed/);
      const refused = await request(`http://intranet.example.com:${s.port}/`, {
        headers: { accept: 'application/json', host: 'intranet.example.com:8080' },
      });
      assert.equal(refused.status, 401, 'a protected route still refuses without a session');
    } finally {
      s.child.kill('SIGTERM');
    }
    const r = await Promise.race([
      s.exited,
      new Promise<null>((res) => setTimeout(() => res(null), 5000)),
    ]);
    assert.ok(r, 'serve did not exit within 5 s of SIGTERM');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.signal, null);
    assert.equal(await portAccepts(s.port), false, 'still listening after exit');
  });

  test('SIGTERM with a WebSocket open ends it after shutdown_timeout instead of hanging', async () => {
    const upstream = await startWhoami({ name: 'ws-upstream' });
    let ws: Socket | undefined;
    try {
      // A WebSocket cannot be drained gently, only bounded: shutdown_timeout is that bound.
      const file = writeConfig(
        'serve-ws.yaml',
        `shutdown_timeout: 1s\n${goodYaml({ issuer: `http://127.0.0.1:${await freePort()}` })}  - from: http://ws.example.com
    to: ${upstream.url}
    allow_public_unauthenticated_access: true
    allow_websockets: true
`,
      );
      const s = await startServe(['--config', file]);
      const sock = connect(s.port, '127.0.0.1');
      ws = sock;
      const head = await new Promise<string>((resolve, reject) => {
        let buf = '';
        sock.on('data', (d: Buffer) => {
          buf += d.toString('latin1');
          if (buf.includes('\r\n\r\n')) resolve(buf);
        });
        sock.on('error', reject);
        sock.write(
          'GET /ws HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
        );
      });
      assert.match(head, /^HTTP\/1\.1 101 /);
      const closed = new Promise<void>((r) => sock.once('close', () => r()));
      const started = Date.now();
      s.child.kill('SIGTERM');
      const r = await Promise.race([
        s.exited,
        new Promise<null>((res) => setTimeout(() => res(null), 8000)),
      ]);
      if (!r) s.child.kill('SIGKILL');
      assert.ok(r, 'serve was still running 8 s after SIGTERM: the open WebSocket kept it alive');
      assert.equal(r.code, 0, r.stderr);
      assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms to stop`);
      await closed;
    } finally {
      ws?.destroy();
      await upstream.close();
    }
  });

  test('a port already in use exits 1 and says so', async () => {
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const port = (holder.address() as { port: number }).port;
    try {
      const file = writeConfig('busy.yaml', goodYaml({ port }));
      const r = await run(['serve', '--config', file]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: EADDRINUSE`));
    } finally {
      holder.close();
    }
  });
});
