// Issue 17 item 1: a sign-in start keeps no state on our side (the login state is a sealed
// cookie), so its limits guard the IdP, not our memory. They must let a whole office behind one
// NAT address sign in on a Monday morning, and still turn a flood into 429s (never a 5xx) with
// the limiter's own table bounded.
import assert from 'node:assert/strict';
import { Agent, request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../src/config/load.js';
import { Idp } from '../src/identity/oidc.js';
import { createLogger } from '../src/observe/logger.js';
import { addressBucket, RateLimiter } from '../src/security/rate-limit.js';
import { buildRuntime } from '../src/server.js';
import { CookieJar, request } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { globalYaml, startStack, type Stack } from './helpers/stack.js';

const ROUTES = `routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_identity_headers: true
`;

interface Sample {
  body: string;
  headers: Record<string, unknown>;
}

/**
 * `n` sign-in starts sent as fast as one keep-alive pool allows (`xff(i)`: the i-th client):
 * how many got each status, and the first answer of each status.
 */
async function flood(
  port: number,
  n: number,
  xff?: (i: number) => string,
): Promise<{ counts: Map<number, number>; first: Map<number, Sample> }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  const counts = new Map<number, number>();
  const first = new Map<number, Sample>();
  let next = 0;
  const one = (i: number) =>
    new Promise<number>((resolve, reject) => {
      const headers: Record<string, string> = {
        host: `app.corp.test:${port}`,
        accept: 'text/html',
      };
      if (xff) headers['x-forwarded-for'] = xff(i);
      const req = httpRequest(
        { host: '127.0.0.1', port, path: `/flood/${i}`, agent, headers },
        (res) => {
          const st = res.statusCode ?? 0;
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => {
            if (!first.has(st)) first.set(st, { body, headers: res.headers });
            resolve(st);
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
  const worker = async () => {
    while (next < n) {
      const st = await one(next++);
      counts.set(st, (counts.get(st) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  agent.destroy();
  return { counts, first };
}

describe('sign-in starts with the default limits', () => {
  let s: Stack;
  let app: string;
  let started: number;
  before(async () => {
    started = Date.now();
    s = await startStack({ hosts: ['app.corp.test'], body: ROUTES });
    app = `http://app.corp.test:${s.port}`;
  });
  after(() => s.close());

  test('300 browsers behind one address all start signing in, and those who finish land on their page', async () => {
    // Before issue 17: 20 at once, then one every 2 s per address; 280 of these got a 429.
    const starts = await Promise.all(
      Array.from({ length: 300 }, (_, i) => {
        const jar = new CookieJar();
        return request(`${app}/desk/${i}`, { jar, headers: BROWSER_HEADERS }).then((r) => ({
          r,
          jar,
        }));
      }),
    );
    const refused = starts.filter(({ r }) => r.status !== 302);
    assert.deepEqual(
      refused.map(({ r }) => r.status),
      [],
      'every browser is sent to the IdP',
    );
    for (const { r, jar } of starts) {
      assert.ok(r.location?.startsWith(`${s.idp.issuer}/`), `to the IdP: ${r.location}`);
      assert.equal(
        jar.all().filter((c) => c.name.startsWith('_portcullis')).length,
        1,
        'its own sealed login state',
      );
    }
    // A subset finish at the real IdP, in parallel, from the same address.
    const users = ['alice', 'bob'] as const;
    for (let batch = 0; batch < 4; batch++) {
      await Promise.all(
        Array.from({ length: 6 }, async (_, j) => {
          const user = users[j % 2]!;
          const jar = new CookieJar();
          const { final, chain } = await loginThroughIdp(`${app}/desk/${batch}-${j}?format=json`, {
            jar,
            username: user,
            password: user,
          });
          assert.equal(final.status, 200, final.body.slice(0, 300));
          assert.equal(chain.at(-1), `${app}/desk/${batch}-${j}?format=json`);
          const seen = final.json().rawHeaders as Array<[string, string]>;
          assert.ok(
            seen.some(([k, v]) => k.toLowerCase() === 'x-forwarded-user' && v === user),
            `${user} is signed in`,
          );
        }),
      );
    }
    assert.ok(
      !s.logs.some((l) => String(l.event).startsWith('login_rate_limited')),
      'nobody was refused',
    );
  });

  test('a flood of 15,500 starts from one address and from many is answered 302 or 429, never 5xx, in bounded memory', async () => {
    const rt = s.proxy.state.runtime;
    const one = await flood(s.port, 10_500);
    assert.deepEqual(
      [...one.counts.keys()].sort(),
      [302, 429],
      `one address: ${JSON.stringify([...one.counts])}`,
    );
    // The address already spent ~325 on the office test: the rest of its 10,000 goes, no more.
    const oneOk = one.counts.get(302)!;
    assert.ok(oneOk <= 10_000 && oneOk > 9_000, `one address gets its budget only: ${oneOk}`);
    const own = one.first.get(429)!;
    assert.match(own.body, /Too many sign-ins were started from your address/);
    assert.equal(own.headers['retry-after'], '60');
    assert.doesNotMatch(own.body, /at .*\.js:\d+/, 'no stack trace');
    assert.ok(
      !String(own.headers['set-cookie'] ?? '').includes('_login'),
      'a refused start leaves no login state',
    );
    // Many addresses through a trusted proxy (127.0.0.1): each has its own budget, but together
    // they meet the global rate (200/s, a minute's worth at once; refused below, 'global').
    const many = await flood(s.port, 5_000, (i) =>
      i % 2 ? `198.18.${i >> 8}.${i & 255}` : `2001:db8:${i.toString(16)}::1`,
    );
    const statuses = [...many.counts.keys()];
    assert.ok(
      statuses.every((st) => st === 302 || st === 429),
      `many addresses: ${JSON.stringify([...many.counts])}`,
    );
    const elapsed = (Date.now() - started) / 1000;
    const passed = 300 + 24 + oneOk + (many.counts.get(302) ?? 0);
    assert.ok(
      passed <= 12_000 + 200 * elapsed,
      `${passed} starts in ${elapsed} s: the global burst plus its rate, no more`,
    );
    assert.ok(rt.loginStarts !== null && rt.loginStartsGlobal !== null);
    assert.ok(
      rt.loginStarts.size <= 5_001,
      `one entry per client address at most: ${rt.loginStarts.size}`,
    );
    assert.equal(rt.loginStartsGlobal.size, 1);
    assert.ok(
      s.logs.some((l) => l.event === 'login_rate_limited' && l.client === '127.0.0.1'),
      'audited',
    );
  });
});

describe('login_rate_limit and login_rate_limit_global are settings', () => {
  let s: Stack;
  let app: string;
  before(async () => {
    s = await startStack({
      hosts: ['app.corp.test'],
      body: `login_rate_limit: 30\nlogin_rate_limit_global: 0\n${ROUTES}`,
    });
    app = `http://app.corp.test:${s.port}`;
  });
  after(() => s.close());

  const start = (xff: string) =>
    request(`${app}/x`, { headers: { ...BROWSER_HEADERS, 'x-forwarded-for': xff } });

  test('an IPv6 client counts by its /64: rotating the interface id buys no fresh budget', async () => {
    for (let i = 1; i <= 30; i++)
      assert.equal((await start(`2001:db8:1:2::${i.toString(16)}`)).status, 302, `start ${i}`);
    const refused = await start('2001:0db8:0001:0002:ffff:ffff:ffff:ffff');
    assert.equal(refused.status, 429);
    assert.match(refused.body, /Too many sign-in attempts/);
    assert.match(refused.body, /from your address/);
    assert.equal(refused.headers['retry-after'], '60');
    assert.ok(
      s.logs.some(
        (l) =>
          l.event === 'login_rate_limited' &&
          l.client === '2001:0db8:0001:0002:ffff:ffff:ffff:ffff',
      ),
    );
    assert.equal((await start('2001:db8:1:3::1')).status, 302, 'the next /64 is another client');
    assert.equal((await start('198.18.0.1')).status, 302);
    assert.equal(s.proxy.state.runtime.loginStartsGlobal, null, '0 turns the global limit off');
  });
});

describe('login_rate_limit_global: all clients together', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({
      hosts: ['app.corp.test'],
      body: `login_rate_limit: 0\nlogin_rate_limit_global: 5\n${ROUTES}`,
    });
  });
  after(() => s.close());

  test("a flood from many addresses meets the global rate (a minute's worth at once), with a 429 saying so", async () => {
    const t0 = Date.now();
    const r = await flood(s.port, 600, (i) => `198.18.${i >> 8}.${i & 255}`);
    const secs = (Date.now() - t0) / 1000;
    assert.deepEqual([...r.counts.keys()].sort(), [302, 429], JSON.stringify([...r.counts]));
    const ok = r.counts.get(302)!;
    assert.ok(ok >= 300 && ok <= 300 + 5 * secs + 1, `${ok} starts in ${secs} s`);
    const refused = r.first.get(429)!;
    assert.match(refused.body, /Too many sign-ins are starting right now/);
    assert.equal(refused.headers['retry-after'], '5');
    assert.ok(
      s.logs.some((l) => l.event === 'login_rate_limited_global'),
      'audited',
    );
    assert.equal(s.proxy.state.runtime.loginStarts, null, '0 turns the per-address limit off');
  });
});

describe('the limiter itself', () => {
  test('its table never holds more than its bound, the idlest going first', () => {
    const l = new RateLimiter(2, 0, 1_000);
    assert.equal(l.take('busy', 0), true);
    for (let i = 0; i < 100_000; i++) l.take(`k${i}`, i);
    assert.equal(l.size, 1_000);
    // Touching a key keeps it: the busy key, refreshed, survives a second wave.
    const m = new RateLimiter(2, 0, 1_000);
    for (let i = 0; i < 5_000; i++) {
      m.take('busy', i);
      m.take(`k${i}`, i);
    }
    assert.equal(m.size, 1_000);
    assert.equal(m.take('busy', 5_001), false, 'the busy key kept its spent budget');
  });

  test('client keys: IPv4 as is, IPv6 by its /64 in every spelling', () => {
    assert.equal(addressBucket('203.0.113.7'), '203.0.113.7');
    for (const a of [
      '2001:db8::1',
      '2001:0db8:0:0::ffff',
      '2001:db8:0:0:1:2:3:4',
      '2001:db8::1.2.3.4',
    ]) {
      assert.equal(addressBucket(a), '2001:db8:0:0::/64', a);
    }
    assert.equal(addressBucket('2001:db8:1:2:3::'), '2001:db8:1:2::/64');
    assert.equal(addressBucket('1:2:3::4:5:6:7'), '1:2:3:0::/64');
    assert.equal(addressBucket('1::2:3:4:5:6:7'), '1:0:2:3::/64');
    assert.equal(addressBucket('::1'), '0:0:0:0::/64');
    assert.equal(addressBucket('fe80::1'), 'fe80:0:0:0::/64');
  });

  test('0 turns a limit off; a reload keeps the budgets it did not change and applies new ones', () => {
    const yaml = (
      extra: string,
    ) => `${globalYaml({ port: 8080, cookieSecret: Buffer.alloc(32, 7).toString('base64'), issuer: 'http://127.0.0.1:1', clientSecret: 'x', logLevel: 'silent' })}
${extra}
routes:
  - from: http://app.corp.test:8080
    to: http://127.0.0.1:9
    allow_any_authenticated_user: true
`;
    const log = createLogger('silent');
    const build = (extra: string, prev?: ReturnType<typeof buildRuntime>) => {
      const cfg = parseConfig(yaml(extra), 'test.yaml');
      return buildRuntime(cfg, new Idp(cfg.idp), log, prev);
    };
    const off = build('login_rate_limit: 0\nlogin_rate_limit_global: 0');
    assert.equal(off.loginStarts, null);
    assert.equal(off.loginStartsGlobal, null);
    const a = build('');
    assert.deepEqual([a.loginStarts?.burst, a.loginStarts?.perSecond], [10_000, 10_000 / 3600]);
    assert.deepEqual([a.loginStartsGlobal?.burst, a.loginStartsGlobal?.perSecond], [12_000, 200]);
    const same = build('', a);
    assert.equal(
      same.loginStarts,
      a.loginStarts,
      'a reload does not hand a flooding client a fresh budget',
    );
    const changed = build('login_rate_limit: 50', a);
    assert.equal(changed.loginStarts?.burst, 50, 'a new limit applies at once');
  });
});
