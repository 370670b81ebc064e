import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { ConfigError } from '../src/config/errors.js';
import { parseConfig } from '../src/config/load.js';
import { createLogger } from '../src/observe/logger.js';
import { startPortcullis } from '../src/server.js';
import { CookieJar, request } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import { startStack, type Stack } from './helpers/stack.js';

const BASE = `insecure_server: true
address: 127.0.0.1:0
idp_provider_url: http://127.0.0.1:1
idp_client_id: x
idp_client_secret: y
cookie_secret: ${Buffer.alloc(32, 1).toString('base64')}
routes:
  - from: http://a.test
    to: http://127.0.0.1:2
`;

function mustNotCrash(text: string): void {
  try {
    parseConfig(text, 'fuzz.yaml');
  } catch (e) {
    if (!(e instanceof ConfigError))
      throw new Error(`not a ConfigError for ${JSON.stringify(text.slice(0, 200))}`, { cause: e });
    for (const i of e.issues) assert.ok(i.message.length > 0);
  }
}

describe('fuzzing the config loader and the policy compiler', () => {
  test('random text, random YAML structures and random policies give a Config or a ConfigError, never a crash', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (t) => mustNotCrash(t)),
      { numRuns: 400 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (t) => mustNotCrash(`${BASE}    policy: ${t}\n`)),
      { numRuns: 400 },
    );
    const value = fc.letrec((tie) => ({
      node: fc.oneof(
        { depthSize: 'small' },
        fc.string({ maxLength: 12 }),
        fc.integer(),
        fc.boolean(),
        fc.constant(null),
        fc.array(tie('node'), { maxLength: 4 }),
        fc.dictionary(
          fc.constantFrom(
            'allow',
            'deny',
            'and',
            'or',
            'not',
            'nor',
            'groups',
            'email',
            'has',
            'is',
            'claim/x',
            'source_ip',
            'time_of_day',
            'day_of_week',
            'date',
            'http_path',
            'starts_with',
            'in',
            'after',
            'before',
            'timezone',
            'accept',
            'x',
          ),
          tie('node'),
          { maxKeys: 4 },
        ),
      ),
    })).node;
    fc.assert(
      fc.property(value, (v) => mustNotCrash(`${BASE}    policy: ${JSON.stringify(v)}\n`)),
      { numRuns: 1500 },
    );
  });

  test('deep nesting, alias bombs and huge values are refused or loaded quickly', () => {
    let deep = '{groups: {has: admins}}';
    for (let i = 0; i < 5000; i++) deep = `{not: [${deep}]}`;
    const started = Date.now();
    assert.throws(
      () => parseConfig(`${BASE}    policy: {allow: {and: [${deep}]}}\n`, 'deep.yaml'),
      (e: unknown) => e instanceof ConfigError && /nested too deeply/.test(e.message),
    );
    const bomb = `a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n`;
    assert.throws(
      () => parseConfig(bomb, 'bomb.yaml'),
      (e: unknown) => e instanceof ConfigError && /alias/.test(e.message),
    );
    const huge = parseConfig(
      BASE.replace('idp_client_id: x', `idp_client_id: ${'a'.repeat(2_000_000)}`),
      'huge.yaml',
    );
    assert.equal(huge.idp.clientId.length, 2_000_000);
    assert.ok(Date.now() - started < 20_000, 'no pathological slowness');
  });
});

describe('connection abuse against a running Portcullis process', () => {
  let child: ReturnType<typeof spawn>;
  let port: number;
  before(async () => {
    port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-abuse-'));
    const file = join(dir, 'p.yaml');
    writeFileSync(
      file,
      BASE.replace('address: 127.0.0.1:0', `address: 127.0.0.1:${port}`).replace(
        'http://a.test',
        `http://a.test:${port}`,
      ) + '    allow_public_unauthenticated_access: true\nlog_level: silent\n',
    );
    child = spawn(
      process.execPath,
      [new URL('../src/cli/main.js', import.meta.url).pathname, 'serve', '--config', file],
      { stdio: 'ignore' },
    );
    for (let i = 0; i < 100; i++) {
      if (
        (await request(`http://a.test:${port}/.portcullis/ping`).catch(() => null))?.status === 200
      )
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  after(() => {
    child.kill('SIGKILL');
  });
  const rssKb = (): number =>
    Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]);

  test('slowloris: a client that dribbles its headers is cut off after the header timeout', async () => {
    const sock = connect(port, '127.0.0.1');
    let answer = '';
    sock.on('data', (d: Buffer) => (answer += d.toString()));
    sock.write('GET / HTTP/1.1\r\nHost: a.test\r\n');
    const dribble = setInterval(() => sock.writable && sock.write('X-Slow: 1\r\n'), 1000);
    const started = Date.now();
    await new Promise<void>((resolve) =>
      sock.on('close', () => resolve()).on('error', () => resolve()),
    );
    clearInterval(dribble);
    const took = Date.now() - started;
    assert.ok(took >= 9_000 && took < 15_000, `closed after ${took} ms`);
    assert.match(answer, /^HTTP\/1\.1 408 /);
  });

  test('10,000 idle connections: bounded memory, and real requests are still served', async () => {
    const before = rssKb();
    const socks: Socket[] = [];
    for (let i = 0; i < 10_000; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => {});
      socks.push(s);
      if (i % 500 === 499) await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 1000));
    const r = await request(`http://a.test:${port}/.portcullis/ping`);
    assert.equal(r.status, 200);
    const grown = (rssKb() - before) / 1024;
    for (const s of socks) s.destroy();
    assert.ok(grown < 150, `RSS grew by ${grown.toFixed(1)} MB for 10,000 idle connections`);
  });
});

describe('login state across tabs and deployments', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({
      hosts: ['app.corp.test'],
      body: 'routes:\n  - from: http://app.corp.test:${PORT}\n    to: ${UPSTREAM}\n    allow_any_authenticated_user: true\n',
    });
  });
  after(() => s.close());

  test('three tabs start a login at once and all three land where they started; login cookies stay capped', async () => {
    const jar = new CookieJar();
    const starts = [];
    for (const tab of ['one', 'two', 'three'])
      starts.push(
        await request(`http://app.corp.test:${s.port}/${tab}`, { jar, headers: BROWSER_HEADERS }),
      );
    for (const [i, tab] of ['one', 'two', 'three'].entries()) {
      const done = await loginThroughIdp(starts[i]!.location!, {
        jar,
        username: 'alice',
        password: 'alice',
      });
      assert.equal(done.final.status, 200, tab);
      assert.equal(done.chain.at(-1), `http://app.corp.test:${s.port}/${tab}`);
    }
    const flood = new CookieJar();
    for (let i = 0; i < 12; i++)
      await request(`http://app.corp.test:${s.port}/t${i}`, {
        jar: flood,
        headers: BROWSER_HEADERS,
      });
    const loginCookies = flood.all().filter((c) => c.name.startsWith('_portcullis_login_'));
    assert.ok(loginCookies.length <= 5, `${loginCookies.length} login cookies`);
    assert.ok(
      loginCookies.every(
        (c) => c.expires !== undefined && c.expires - Date.now() <= 10 * 60_000 + 5000,
      ),
      'they expire within minutes',
    );
  });

  test('an explicit sign-in never adopts a session planted in the browser (fixation); a cookie from another deployment is no session', async () => {
    const attacker = new CookieJar();
    await loginThroughIdp(`http://app.corp.test:${s.port}/`, {
      jar: attacker,
      username: 'alice',
      password: 'alice',
    });
    const planted = attacker.get('_portcullis')!;
    const victim = new CookieJar();
    victim.setFrom(new URL(`http://app.corp.test:${s.port}/`), [`_portcullis=${planted}; Path=/`]);
    const signedIn = await loginThroughIdp(
      `http://app.corp.test:${s.port}/.portcullis/sign_in?rd=${encodeURIComponent(`http://app.corp.test:${s.port}/.portcullis/userinfo`)}`,
      { jar: victim, username: 'bob', password: 'bob' },
    );
    assert.ok(
      signedIn.chain.some((u) => u.startsWith(s.idp.issuer)),
      'the sign-in went to the IdP',
    );
    assert.notEqual(victim.get('_portcullis'), planted);
    const me = await request(`http://app.corp.test:${s.port}/.portcullis/userinfo`, {
      jar: victim,
    });
    assert.equal(me.json().email, 'bob@example.com');
    const a = attacker;
    const port2 = await freePort();
    const other = parseConfig(
      s.yaml
        .replace(s.cookieSecret, Buffer.alloc(32, 9).toString('base64'))
        .replaceAll(`:${s.port}`, `:${port2}`),
      'other.yaml',
    );
    const p2 = await startPortcullis(other, { logger: createLogger('silent') });
    try {
      const r = await request(`http://app.corp.test:${port2}/`, {
        headers: { ...BROWSER_HEADERS, cookie: `_portcullis=${a.get('_portcullis')}` },
      });
      assert.equal(r.status, 302);
      assert.ok(
        r.setCookies.some((c) => /^_portcullis=;/.test(c)),
        'the foreign cookie is cleared',
      );
    } finally {
      await p2.close();
    }
  });
});
