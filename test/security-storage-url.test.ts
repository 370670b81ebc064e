import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { ConfigError } from '../src/config/errors.js';
import { parseConfig } from '../src/config/load.js';
import { createLogger } from '../src/observe/logger.js';
import { createSessionStore } from '../src/session/create.js';
import { Sealer } from '../src/session/seal.js';
import { parseSessionStorage } from '../src/session/storage-url.js';
import { CookieJar, request } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { createTempDatabase, startTcpProxy } from './helpers/session-infra.js';
import { startStack } from './helpers/stack.js';

// Issue 15, Low 6: a password in session_storage reached log lines whenever it was anywhere
// but the user info (`postgres://...?password=...` was logged as written), and config errors
// quoted pieces of the URL. Every place a URL can carry a secret is tried here, against the
// logger, `portcullis check`, `portcullis probe` and config errors.
//
// What the clients accept, which is why a query parameter can hold a credential at all:
// pg-connection-string copies every query parameter into the client config (so ?password= is
// the password, and ?sslkey= names a key file it reads); ioredis takes any of its options
// from the query (?password=, ?sentinelPassword=), which Portcullis refuses for Redis.

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'portcullis-storage-url-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A secret and every spelling of it a leak could take. */
function spellings(secret: string): string[] {
  return [...new Set([secret, encodeURIComponent(secret), secret.replace(/@/g, '%40')])];
}

function assertNoSecret(text: string, secrets: string[], where: string): void {
  for (const s of secrets)
    for (const form of spellings(s))
      assert.ok(
        !text.includes(form),
        `${where} holds the secret ${JSON.stringify(form)}:\n${text}`,
      );
}

function run(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

function yaml(storage: string): string {
  return `address: 127.0.0.1:0
insecure_server: true
cookie_secret: ${Buffer.alloc(32, 7).toString('base64')}
idp_provider_url: http://127.0.0.1:1
idp_client_id: c
idp_client_secret: s
session_storage: ${JSON.stringify(storage)}
routes:
  - from: http://app.test
    to: http://127.0.0.1:2
    allow_any_authenticated_user: true
`;
}

describe('displayed session_storage URLs hold no credential', () => {
  test('PostgreSQL: the user-info password and every non-harmless query value are masked; the rest stays readable', () => {
    const secrets = [
      'Uinfo@-7c1f',
      'Qpass-9d2e',
      'SslPw-4b8a',
      'Pfile-2e6d',
      'Tok-5a3c',
      'Sec-8f1b',
      'Auth-3c7e',
      'Api-6d4f',
      'Upper-1a9b',
      'EncKey-0e2c',
      'Dup-7b3d',
      'Opt-2f5a',
      'Key-8a1e',
    ];
    const url =
      `postgres://portcullis:${encodeURIComponent(secrets[0]!)}@db.internal:5432/sessions?sslmode=verify-full` +
      `&password=${secrets[1]}&sslpassword=${secrets[2]}&passfile=${secrets[3]}&token=${secrets[4]}&secret=${secrets[5]}` +
      `&auth=${secrets[6]}&api_key=${secrets[7]}&PASSWORD=${secrets[8]}&pass%77ord=${secrets[9]}&token=${secrets[10]}` +
      `&options=-c%20x%3D${secrets[11]}&sslkey=/etc/${secrets[12]}.pem&application_name=portcullis`;
    const p = parseSessionStorage(url);
    assert.ok(typeof p === 'object' && p.kind === 'postgres');
    assert.equal(p.url, url, 'the client still gets the URL as written');
    assertNoSecret(p.display, secrets, 'display');
    assert.equal(
      p.display,
      'postgres://portcullis:***@db.internal:5432/sessions?sslmode=verify-full&password=***&sslpassword=***' +
        '&passfile=***&token=***&secret=***&auth=***&api_key=***&PASSWORD=***&pass%77ord=***&token=***&options=***&sslkey=***' +
        '&application_name=portcullis',
    );
    // A Unix socket directory in ?host= is not a secret and stays.
    const socket = parseSessionStorage('postgresql:///portcullis?host=/var/run/postgresql');
    assert.ok(typeof socket === 'object' && socket.kind === 'postgres');
    assert.equal(socket.display, 'postgresql:///portcullis?host=/var/run/postgresql');
    // An unencoded '@' in the password: WHATWG splits at the last one, and it is still masked.
    const at = parseSessionStorage('postgres://u:Raw@At-4c2b@db/x');
    assert.ok(typeof at === 'object' && at.kind === 'postgres');
    assertNoSecret(at.display, ['Raw@At-4c2b', 'Raw'], 'display');
  });

  test('Redis: the user-info password and sentinel_password, however often and however spelled, are masked', () => {
    const secrets = ['RPass@-5e1d', 'Sent-1b7c', 'Sent2-9c4e', 'SentEnc-3d8f'];
    const url =
      `redis://app:${encodeURIComponent(secrets[0]!)}@s1:26379,s2:26379/1?sentinel=main&sentinel_password=${secrets[1]}` +
      `&sentinel_password=${secrets[2]}&sentinel%5Fpassword=${secrets[3]}&key_prefix=iap:`;
    const r = parseSessionStorage(url);
    assert.ok(typeof r === 'object' && r.kind === 'redis');
    assert.equal(r.password, secrets[0]);
    assert.equal(r.sentinelPassword, secrets[1]);
    assertNoSecret(r.display, secrets, 'display');
    assert.equal(
      r.display,
      'redis://app:***@s1:26379,s2:26379/1?sentinel=main&sentinel_password=***&sentinel_password=***' +
        '&sentinel%5Fpassword=***&key_prefix=iap:',
    );
    const pwOnly = parseSessionStorage('rediss://:Only-6a2d@redis.internal:6380');
    assert.ok(typeof pwOnly === 'object' && pwOnly.kind === 'redis');
    assert.equal(pwOnly.display, 'rediss://:***@redis.internal:6380');
  });

  test('config errors about session_storage never quote the secret, however the URL is broken', () => {
    const cases: Array<[string, string, RegExp]> = [
      // Unencoded '/', '?', '#' or a second '@' push part of the password out of the user info.
      ['redis://:Slash/Pw-1a2b@redis.internal:6379', 'Slash', /percent-encode/],
      ['redis://:Slash/Pw-1a2b@redis.internal:6379', 'Pw-1a2b', /percent-encode/],
      ['redis://:Quest?Pw-3c4d@redis.internal:6379', 'Quest', /percent-encode/],
      ['redis://:Hash#Pw-5e6f@redis.internal:6379', 'Hash', /percent-encode/],
      ['redis://:Two@At-7a8b@redis.internal:6379', 'At-7a8b', /percent-encode/],
      ['redis://:Bad%zzEnc-9c0d@redis.internal:6379', 'Bad%zzEnc-9c0d', /percent-encoding/],
      ['redis://:ok@redis.internal:6379?password=Query-1e2f', 'Query-1e2f', /user info/],
      [
        'redis://redis.internal:6379?Weird%20Key-3a4b=1',
        'Weird Key-3a4b',
        /unknown Redis URL option/,
      ],
      ['redis://:Host-5c6d@redis.internal:99999', 'Host-5c6d', /host:port/],
      ['postgres://u:1234/Pg-7e8f@db.internal/x', 'Pg-7e8f', /percent-encode/],
      ['postgres://u:1234?Pg-9a0b@db.internal/x', 'Pg-9a0b', /percent-encode/],
      ['postgres://u:1234#Pg-1c2d@db.internal/x', 'Pg-1c2d', /percent-encode/],
      ['postgres://u:Pg/Slash-3e4f@db.internal/x', 'Slash-3e4f', /PostgreSQL URL/],
      ['mysql://u:My/Sql-5a6b@db.internal/x', 'Sql-5a6b', /expected cookie, memory/],
      ['mysql://u:MySql-7c8d@db.internal/x', 'MySql-7c8d', /got a mysql: URL/],
    ];
    for (const [url, secret, expected] of cases) {
      let err: unknown;
      try {
        parseConfig(yaml(url), 'leak.yaml');
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof ConfigError, `${url} is a config error`);
      assertNoSecret(err.message, [secret], `the error for ${url}`);
      assert.match(err.message, /leak\.yaml:7:\d+: error: session_storage: /);
      assert.match(err.message, expected, url);
    }
  });
});

describe('no secret of a real session_storage URL reaches a log line, check or probe', () => {
  const secrets = [
    'Uinfo@-2b7e',
    'Qpass-6c1a',
    'SslPw-8e3f',
    'Pfile-4d9b',
    'Tok-1f6c',
    'Sec-3a8d',
    'Auth-7b2e',
    'Api-9c5f',
  ];
  test('startup, an outage and its recovery, portcullis check and portcullis probe (PostgreSQL, trust auth)', async () => {
    const db = await createTempDatabase();
    const proxy = await startTcpProxy(5432);
    const url =
      `postgres://postgres:${encodeURIComponent(secrets[0]!)}@127.0.0.1:${proxy.port}/${db.name}?sslmode=disable` +
      `&password=${secrets[1]}&sslpassword=${secrets[2]}&passfile=${secrets[3]}&token=${secrets[4]}&secret=${secrets[5]}` +
      `&auth=${secrets[6]}&api_key=${secrets[7]}&application_name=portcullis-leak-test`;
    const s = await startStack({
      hosts: ['app.corp.test'],
      body: `session_storage: ${JSON.stringify(url)}
routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
`,
    });
    try {
      const jar = new CookieJar();
      const login = await loginThroughIdp(`http://app.corp.test:${s.port}/`, {
        jar,
        username: 'alice',
        password: 'alice',
      });
      assert.equal(login.final.status, 200, 'the store works with this URL');
      assert.equal((await db.query('SELECT id FROM portcullis_sessions')).length, 1);

      await proxy.cut();
      await db.terminateConnections();
      // With the store's channel down, a decoded session is trusted for UNWATCHED_MS (1 s) at most.
      await new Promise((r) => setTimeout(r, 2_100));
      const down = await request(`http://app.corp.test:${s.port}/`, {
        jar,
        headers: BROWSER_HEADERS,
      });
      assert.equal(down.status, 503);
      const outage = s.logs.find((l) => l.event === 'session_store_unavailable');
      assert.ok(outage, 'the outage is logged');
      assert.equal(
        outage.at,
        `postgres://postgres:***@127.0.0.1:${proxy.port}/${db.name}?sslmode=disable&password=***&sslpassword=***` +
          '&passfile=***&token=***&secret=***&auth=***&api_key=***&application_name=portcullis-leak-test',
      );
      await proxy.restore();
      let back = 0;
      for (let i = 0; i < 60 && back !== 200; i++) {
        back = (await request(`http://app.corp.test:${s.port}/`, { jar, headers: BROWSER_HEADERS }))
          .status;
        if (back !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(back, 200);
      assert.ok(
        s.logs.some(
          (l) =>
            l.event === 'session_store_recovered' &&
            typeof l.at === 'string' &&
            l.at.includes('password=***'),
        ),
      );
      assertNoSecret(s.logText(), secrets, 'the log');

      const file = join(dir, 'portcullis.yaml');
      writeFileSync(file, s.yaml);
      const check = await run(['check', '--config', file]);
      assert.match(check.out, /OK/);
      assertNoSecret(check.out, secrets, 'portcullis check');
      const probe = await run(['probe', '--config', file, '--format', 'json']);
      assert.match(probe.out, /"session_store"/);
      assertNoSecret(probe.out, secrets, 'portcullis probe');
    } finally {
      await s.close();
      await proxy.close();
      await db.drop();
    }
  });

  test('a client error that quotes the URL (pg reading a missing ?sslkey= file) is logged with the path blanked out', async () => {
    const keyPath = `/nonexistent/${randomBytes(4).toString('hex')}-SslKey-5e9a.pem`;
    const cfg = parseConfig(
      yaml(`postgres://postgres@127.0.0.1:5432/postgres?sslmode=require&sslkey=${keyPath}`),
      'key.yaml',
    );
    let text = '';
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        text += chunk.toString();
        for (const l of chunk.toString().split('\n'))
          if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const store = createSessionStore(
      cfg,
      new Sealer(cfg.cookie.secret),
      createLogger('debug', sink),
    );
    try {
      await store.start?.();
      const outage = lines.find((l) => l.event === 'session_store_unavailable');
      assert.ok(outage, 'startup logs the store as unavailable');
      assertNoSecret(text, [keyPath, keyPath.slice(1)], 'the log');
      assert.match(String(outage.detail), /ENOENT/, 'the cause is still named');
      assert.match(String(outage.at), /sslkey=\*\*\*/);
    } finally {
      await store.close();
    }
  });
});
