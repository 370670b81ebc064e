import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { formatAccessLine, type AccessFields } from '../src/observe/access-log.js';
import { ATOMIC_WRITE_BYTES, LineSink } from '../src/observe/line-sink.js';
import { createLogger } from '../src/observe/logger.js';
import { request } from './helpers/http.js';
import { freePort } from './helpers/ports.js';

// The access line is written by hand (src/observe/access-log.ts) into a buffered sink
// (src/observe/line-sink.ts) instead of through pino's redaction and destination. These tests
// hold what a user of the log would notice: the same JSON pino wrote, no line lost when the
// process stops or reloads, no line cut or mixed with another worker's.

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'portcullis-access-log-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** What pino itself writes for logger.info(fields, 'request'), parsed. */
function viaPino(f: AccessFields): Record<string, unknown> {
  let out = '';
  const log = createLogger('info', { write: (s: string) => (out += s) });
  log.info(f, 'request');
  return JSON.parse(out) as Record<string, unknown>;
}

const hostile = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '"',
    '\\',
    '\r\n{"level":60,"msg":"forged"}',
    '\u0000',
    '\u2028',
    '\ud800',
    'ü@example.com',
    '/a/../b?x="1"&y=\\',
  ),
);
const maybe = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.option(arb, { nil: undefined });

test('the access line is the JSON pino writes, key for key, for any hostile host, path, user, method or outcome', () => {
  fc.assert(
    fc.property(
      fc.record({
        requestId: hostile,
        route: maybe(hostile),
        method: maybe(hostile),
        host: maybe(hostile),
        path: hostile,
        status: fc.integer({ min: 100, max: 599 }),
        upstreamStatus: maybe(fc.integer({ min: 100, max: 599 })),
        upstreamMs: maybe(fc.double({ min: 0, max: 1e6, noNaN: true })),
        ms: fc.double({ min: 0, max: 1e6, noNaN: true }),
        user: maybe(hostile),
        decision: hostile,
        reason: hostile,
        outcome: maybe(fc.oneof(fc.constantFrom('upstream_unavailable', 'bad_request'), hostile)),
        configuredHosts: maybe(fc.array(hostile, { maxLength: 4 })),
      }),
      (f) => {
        const expected = viaPino(f);
        const line = formatAccessLine(',"service":"portcullis"', f, String(expected.time));
        // One line: a CR/LF in a client's path cannot start a forged log line.
        assert.doesNotMatch(line, /[\r\n]/);
        const got = JSON.parse(line) as Record<string, unknown>;
        assert.deepEqual(got, expected);
        assert.deepEqual(Object.keys(got), Object.keys(expected));
      },
    ),
    { numRuns: 500 },
  );
});

test('LineSink writes whole lines in chunks of at most PIPE_BUF bytes, in order, and keeps what a full pipe refused', () => {
  const writes: string[] = [];
  let refuse = 0;
  const sink = new LineSink(99, (_fd, data) => {
    if (refuse > 0) {
      refuse--;
      throw Object.assign(new Error('would block'), { code: 'EAGAIN' });
    }
    const s = typeof data === 'string' ? data : Buffer.from(data).toString();
    writes.push(s);
    return Buffer.byteLength(s);
  });
  const lines: string[] = [];
  for (let i = 0; i < 200; i++) {
    const line = `{"n":${i},"pad":"${'é'.repeat(i % 37)}${'x'.repeat((i * 13) % 300)}"}\n`;
    lines.push(line);
    if (i === 120) refuse = 1; // the next chunk finds the pipe full once
    sink.write(line);
  }
  sink.flushSync();
  sink.close();
  assert.equal(writes.join(''), lines.join(''), 'every line, once, in order');
  for (const w of writes) {
    assert.ok(Buffer.byteLength(w) <= ATOMIC_WRITE_BYTES, `a write of ${Buffer.byteLength(w)} B`);
    assert.ok(w.endsWith('\n'), 'a write ends on a line boundary');
  }
  assert.ok(writes.length < 200 / 4, `lines share writes (${writes.length} writes)`);
});

test('LineSink finishes a line the descriptor took only part of', () => {
  let taken = '';
  const sink = new LineSink(99, (_fd, data) => {
    const buf = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
    const n = Math.min(buf.length, 7); // a descriptor that takes 7 bytes at a time
    taken += buf.subarray(0, n).toString('latin1');
    return n;
  });
  sink.write('{"user":"zoë"}\n');
  sink.close();
  assert.equal(Buffer.from(taken, 'latin1').toString('utf8'), '{"user":"zoë"}\n');
});

// ---------------------------------------------------------------------------------------------
// The real server process, stdout redirected to a file as systemd or Docker would.

async function upstream(): Promise<Server> {
  const s = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return s;
}

interface Served {
  child: ChildProcess;
  port: number;
  logFile: string;
  configFile: string;
  exited: Promise<number | null>;
  stderr: () => string;
}

async function serve(name: string, extra: string[], upstreamPort: number): Promise<Served> {
  const port = await freePort();
  const configFile = join(dir, `${name}.yaml`);
  const logFile = join(dir, `${name}.log`);
  writeFileSync(
    configFile,
    [
      `address: 127.0.0.1:${port}`,
      'insecure_server: true',
      `idp_provider_url: http://127.0.0.1:${await freePort()}`, // no IdP: public routes need none
      'idp_client_id: portcullis',
      'idp_client_secret: s3cret-s3cret-s3cret-s3cret-s3cret',
      `cookie_secret: ${Buffer.alloc(32, 7).toString('base64')}`,
      ...extra,
      'routes:',
      `  - from: http://app.example.com:${port}`,
      `    to: http://127.0.0.1:${upstreamPort}`,
      '    allow_public_unauthenticated_access: true',
      '',
    ].join('\n'),
  );
  const env = { ...process.env };
  delete env.PORTCULLIS_CONFIG;
  const out = openSync(logFile, 'w');
  const child = spawn(process.execPath, [MAIN, 'serve', '--config', configFile], {
    cwd: dir,
    env,
    stdio: ['ignore', out, 'pipe'],
  });
  closeSync(out);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  return { child, port, logFile, configFile, exited, stderr: () => stderr };
}

function lines(file: string): Array<Record<string, unknown>> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l, i) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new Error(`line ${i + 1} of ${file} is not whole JSON (cut or interleaved): ${l}`);
      }
    });
}
const accessLines = (file: string): Array<Record<string, unknown>> =>
  lines(file).filter((l) => l.msg === 'request');

async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function burst(port: number, n: number, tag: string, parallel = 16): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) {
        const i = next++;
        const r = await request(`http://app.example.com:${port}/${tag}/${i}`);
        assert.equal(r.status, 200, r.body);
      }
    }),
  );
}

test('every answered request has its access line in the file after SIGTERM, and after a SIGHUP reload in between', async (t) => {
  const up = await upstream();
  t.after(() => up.close());
  const s = await serve('single', [], (up.address() as AddressInfo).port);
  t.after(() => s.child.kill('SIGKILL'));
  await waitFor('listening', () => /"event":"listening"/.test(readFileSync(s.logFile, 'utf8')));

  await burst(s.port, 300, 'before');
  writeFileSync(s.configFile, `${readFileSync(s.configFile, 'utf8')}# changed\n`);
  s.child.kill('SIGHUP');
  await waitFor('the reload', () =>
    readFileSync(s.logFile, 'utf8').includes('"event":"config_reloaded"'),
  );
  await burst(s.port, 300, 'after');
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0, s.stderr());

  const got = accessLines(s.logFile);
  const paths = new Set(got.map((l) => l.path));
  assert.equal(got.length, 600, `${got.length} access lines for 600 answered requests`);
  assert.ok(
    got.every((l) => !('outcome' in l)),
    'a proxied answer has no outcome field',
  );
  for (let i = 0; i < 300; i++) {
    assert.ok(paths.has(`/before/${i}`), `/before/${i} is missing`);
    assert.ok(paths.has(`/after/${i}`), `/after/${i} is missing`);
  }
  // The last line is the process's own goodbye, after every access line.
  const all = lines(s.logFile);
  assert.equal(all.at(-1)!.event, 'stopped');
});

test('a page Portcullis answered itself names its outcome code in the access line (docs/operations.md)', async (t) => {
  // Nothing listens on the route's upstream: every request gets Portcullis's own 502 page.
  const s = await serve('outcome', [], await freePort());
  t.after(() => s.child.kill('SIGKILL'));
  await waitFor('listening', () => /"event":"listening"/.test(readFileSync(s.logFile, 'utf8')));
  const down = await request(`http://app.example.com:${s.port}/report`);
  assert.equal(down.status, 502);
  assert.equal(down.json<{ error: string }>().error, 'upstream_unavailable');
  const missing = await request(`http://app.example.com:${s.port}/.portcullis/no-such-page`);
  assert.equal(missing.status, 404);
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0, s.stderr());
  const byPath = new Map(accessLines(s.logFile).map((l) => [l.path, l]));
  assert.equal(byPath.get('/report')?.outcome, 'upstream_unavailable');
  assert.equal(byPath.get('/report')?.status, 502);
  assert.equal(byPath.get('/.portcullis/no-such-page')?.outcome, 'not_found');
});

test('a line reaches the file within the stated bound (50 ms) even if the process is then killed outright', async (t) => {
  const up = await upstream();
  t.after(() => up.close());
  const s = await serve('killed', [], (up.address() as AddressInfo).port);
  t.after(() => s.child.kill('SIGKILL'));
  await waitFor('listening', () => /"event":"listening"/.test(readFileSync(s.logFile, 'utf8')));
  await burst(s.port, 5, 'few', 1);
  // Far past the 50 ms bound (a busy CI machine), then no chance to flush anything.
  await new Promise((r) => setTimeout(r, 500));
  s.child.kill('SIGKILL');
  await s.exited;
  assert.equal(accessLines(s.logFile).length, 5);
});

test('workers: 2 share one stdout file: every line is whole JSON, none lost, after SIGTERM', async (t) => {
  const up = await upstream();
  t.after(() => up.close());
  const s = await serve('workers', ['workers: 2'], (up.address() as AddressInfo).port);
  t.after(() => s.child.kill('SIGKILL'));
  await waitFor(
    'two workers listening',
    () => (readFileSync(s.logFile, 'utf8').match(/"event":"listening"/g) ?? []).length >= 2,
  );
  // request() opens a connection per request: the primary deals them to both workers.
  await burst(s.port, 1500, 'w', 32);
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0, s.stderr());
  const got = accessLines(s.logFile); // throws on any cut or interleaved line
  assert.equal(got.length, 1500);
  const ids = new Set(got.map((l) => String(l.requestId).split('-')[0]));
  assert.equal(ids.size, 2, 'both workers wrote access lines');
});
