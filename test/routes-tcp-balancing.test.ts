import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../src/config/load.js';
import { Upstreams } from '../src/proxy/upstreams.js';
import { CookieJar, request } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { startIdentityStack, startLoopback, type IdentityStack } from './helpers/identity-stack.js';
import { startLoggedPortcullis, type LoggedPortcullis } from './helpers/logged-portcullis.js';
import { freePort } from './helpers/ports.js';
import { HEAD, issue } from './helpers/config-errors.js';

// Load balancing of TCP routes' tunnels. The specification is Pomerium's documentation:
//  TCP  https://www.pomerium.com/docs/capabilities/non-http/tcp (from: tcp+https://host:port,
//       to: tcp://host:port; a client CONNECTs through the proxy)
//  TO   https://www.pomerium.com/docs/reference/routes/to (`to` schemes include tcp; "Multiple
//       upstream resources can be targeted by using a list"; ",[weight]" after a URL)
//  LB   https://www.pomerium.com/docs/reference/routes/load-balancing (load_balancing_policy,
//       ROUND_ROBIN by default; RING_HASH / MAGLEV; health_checks with tcp_health_check:
//       "unhealthy upstream servers won't serve traffic")
//  PASSIVE https://www.pomerium.com/docs/capabilities/load-balancing (outlier_detection: {})
// Pomerium hands all of these to Envoy, whose TCP proxy balances connections the way its HTTP
// router balances requests, and counts a failed upstream connection as an error for outlier
// detection (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier).

/** A TCP service that greets with its name (a protocol banner, like SSH's) and echoes lines. */
interface Named {
  name: string;
  port: number;
  /** Connections accepted, health checks included. */
  connections: number;
  kill(): Promise<void>;
  revive(): Promise<void>;
}

async function named(name: string): Promise<Named> {
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  const listen = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = createServer((sock) => {
        u.connections++;
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
        sock.on('error', () => sock.destroy());
        sock.write(`hello from ${name}\n`);
        sock.on('data', (c: Buffer) => sock.write(`${name}: ${c.toString()}`));
        sock.on('end', () => sock.end());
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        server = s;
        u.port = (s.address() as AddressInfo).port;
        resolve();
      });
    });
  const u: Named = {
    name,
    port: 0,
    connections: 0,
    kill: () =>
      new Promise<void>((resolve) => {
        const s = server;
        server = null;
        if (!s) return resolve();
        for (const sock of sockets) sock.destroy();
        s.close(() => resolve());
      }),
    revive: () => listen(u.port),
  };
  await listen(0);
  return u;
}

const BANNER = Buffer.from('hello from ').toString('hex');

/** Opens a tunnel, reads the upstream's banner and closes: the upstream's name, or the refusal. */
function tunnel(
  port: number,
  target: string,
  headers: string,
): Promise<{ status: number; name: string | null; answer: string }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = '';
    const done = (): void => {
      s.destroy();
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0);
      resolve({ status, name: /hello from (\w+)\n/.exec(got)?.[1] ?? null, answer: got });
    };
    s.setTimeout(20_000, done);
    s.on('data', (c: Buffer) => {
      got += c.toString('utf8');
      if (/hello from \w+\n/.test(got)) done();
    });
    s.on('error', reject);
    s.on('close', done);
    s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${headers}\r\n`);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, ok: () => boolean | Promise<boolean>, ms = 30_000) {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('TCP routes balance tunnels with the HTTP routes’ balancer and health state', () => {
  let s: IdentityStack;
  let p: LoggedPortcullis;
  let metricsPort: number;
  let deadPort: number;
  const ups: Record<string, Named> = {};
  let auth = '';

  before(async () => {
    for (const n of ['a', 'b', 'w1', 'w2', 'c', 'd', 'e', 'f', 'g', 'h']) ups[n] = await named(n);
    // The identity stack signs users in (its authenticate service); the tunnels go through a
    // second Portcullis on the same secrets whose log the tests read.
    s = await startIdentityStack({
      hosts: ['127.0.0.1'],
      body: `authenticate_service_url: http://127.0.0.1:\${PORT}
routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true`,
    });
    // Asked for only now: servers started on port 0 (the IdP's) cannot have taken them since.
    deadPort = await freePort();
    metricsPort = await freePort();
    const t = (n: string, w = ''): string => `tcp://127.0.0.1:${ups[n]!.port}${w}`;
    const yaml = `${s.yaml}
  - from: tcp+https://rr.corp.test:2222
    to: [${t('a')}, ${t('b')}]
    allow_any_authenticated_user: true
  - from: tcp+https://weighted.corp.test:2222
    to: ['${t('w1', ',3')}', '${t('w2', ',1')}']
    allow_any_authenticated_user: true
  - id: checked
    from: tcp+https://checked.corp.test:2222
    to: [${t('c')}, ${t('d')}]
    allow_any_authenticated_user: true
    health_checks:
      - timeout: 1s
        interval: 300ms
        unhealthy_threshold: 1
        healthy_threshold: 1
        tcp_health_check:
          receive: [{ text: '${BANNER}' }]
  - id: retried
    from: tcp+https://retry.corp.test:2222
    to: [tcp://127.0.0.1:${deadPort}, ${t('e')}]
    allow_any_authenticated_user: true
    outlier_detection: { consecutive_5xx: 2, max_ejection_percent: 50 }
  - from: tcp+https://sticky.corp.test:2222
    to: [${t('f')}, ${t('g')}, ${t('h')}]
    load_balancing_policy: RING_HASH
    allow_any_authenticated_user: true
  - from: tcp+https://public-hash.corp.test:2222
    to: [${t('f')}, ${t('g')}, ${t('h')}]
    load_balancing_policy: MAGLEV
    allow_public_unauthenticated_access: true
metrics_address: 127.0.0.1:${metricsPort}
trusted_proxies: [127.0.0.1/32]
`;
    p = await startLoggedPortcullis(parseConfig(yaml, 'tcp-lb.yaml'), {
      listen: { host: '127.0.0.1', port: 0 },
      level: 'info',
    });
    auth = `Proxy-Authorization: Portcullis ${await tokenFor('alice')}\r\n`;
  });
  after(async () => {
    await p?.proxy.close();
    await s?.close();
    await Promise.allSettled(Object.values(ups).map((u) => u.kill()));
  });

  /** A CLI token, through the loopback login `portcullis tcp` performs. */
  async function tokenFor(username: string): Promise<string> {
    const loopback = await startLoopback();
    try {
      const start = await request(
        `http://127.0.0.1:${s.port}/.portcullis/api/v1/login?redirect_uri=${encodeURIComponent(`${loopback.url}/cb`)}`,
      );
      assert.equal(start.status, 200, start.body);
      await loginThroughIdp(start.body, { jar: new CookieJar(), username, password: username });
      const token = loopback.hits.at(-1)?.searchParams.get('portcullis_token');
      assert.ok(token, 'the login handed a token to the loopback port');
      return token;
    } finally {
      await loopback.close();
    }
  }

  const open = (target: string, headers = auth) => tunnel(p.proxy.port, target, headers);

  type Status = { upstream: string; route: string; healthy: boolean; ejected: boolean };
  const upstreams = async (): Promise<Status[]> =>
    (await request(`http://127.0.0.1:${metricsPort}/upstreams`)).json<{ upstreams: Status[] }>()
      .upstreams;
  const failedOn = (port: number): number =>
    p.logs.filter(
      (l) => l.event === 'tunnel_upstream_failed' && l.upstream === `tcp://127.0.0.1:${port}`,
    ).length;

  test('LB ROUND_ROBIN (the default): two upstreams get alternate tunnels', async () => {
    const names: string[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await open('rr.corp.test:2222');
      assert.equal(r.status, 200, r.answer);
      names.push(r.name!);
    }
    assert.deepEqual(names, ['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']);
  });

  test('TO: `,weight` after a tcp:// URL: the weight-3 upstream gets 3 of every 4 tunnels', async () => {
    const seen: Record<string, number> = { w1: 0, w2: 0 };
    for (let i = 0; i < 16; i++) seen[(await open('weighted.corp.test:2222')).name!]!++;
    assert.deepEqual(seen, { w1: 12, w2: 4 });
  });

  test('LB health_checks: one upstream killed; once its check fails it is never tried, and no tunnel fails', async () => {
    const [c, d] = [ups.c!, ups.d!];
    const cUrl = `tcp://127.0.0.1:${c.port}`;
    // TCP routes' upstreams are in the /upstreams view, named as configured.
    const before = await upstreams();
    assert.deepEqual(
      before.filter((u) => u.route === 'checked').map((u) => [u.upstream, u.healthy]),
      [
        [cUrl, true],
        [`tcp://127.0.0.1:${d.port}`, true],
      ],
    );
    const failures: string[] = [];
    const landed: string[] = [];
    let running = true;
    // Tunnels open one after another from before the kill until C is known down: the ones
    // that meet C dead before its check fails are retried on D (nothing was sent yet).
    const load = (async () => {
      while (running) {
        const r = await open('checked.corp.test:2222');
        if (r.status !== 200 || !r.name) failures.push(r.answer);
        else landed.push(r.name);
      }
    })();
    try {
      await waitFor('tunnels on both', () => landed.includes('c') && landed.includes('d'));
      await c.kill();
      await waitFor('the TCP check to mark c down', async () =>
        (await upstreams()).some((u) => u.upstream === cUrl && !u.healthy),
      );
      const failedBefore = failedOn(c.port);
      const from = landed.length;
      await waitFor('20 more tunnels', () => landed.length >= from + 20);
      assert.deepEqual(new Set(landed.slice(from)), new Set(['d']));
      assert.equal(failedOn(c.port), failedBefore, 'a tunnel tried the upstream known down');
      assert.ok(p.logs.some((l) => l.event === 'upstream_unhealthy' && l.upstream === cUrl));
      // Back in rotation once it answers its check again.
      await c.revive();
      await waitFor('a tunnel on c again', () => landed.slice(from).includes('c'));
    } finally {
      running = false;
      await load;
    }
    assert.deepEqual(failures, []);
  });

  test('a dead upstream first in the list: the tunnel opens on the next, the failure counts toward ejection', async () => {
    const e = ups.e!;
    const dead = `tcp://127.0.0.1:${deadPort}`;
    // Round robin tries the dead one on the 1st and 3rd tunnels: both are retried on e, and
    // the second failure in a row (consecutive_5xx: 2) ejects it.
    for (let i = 0; i < 3; i++) {
      const r = await open('retry.corp.test:2222');
      assert.equal(r.status, 200, r.answer);
      assert.equal(r.name, 'e');
    }
    assert.equal(failedOn(deadPort), 2);
    assert.ok(p.logs.some((l) => l.event === 'upstream_ejected' && l.upstream === dead));
    const state = (await upstreams()).find((u) => u.upstream === dead);
    assert.deepEqual([state?.route, state?.ejected], ['retried', true]);
    // Ejected: not tried any more, every tunnel goes straight to e.
    for (let i = 0; i < 6; i++) assert.equal((await open('retry.corp.test:2222')).name, 'e');
    assert.equal(failedOn(deadPort), 2);
    const opened = p.logs.filter((l) => l.event === 'tunnel_open' && l.route === 'retried');
    assert.ok(opened.every((l) => l.upstream === `127.0.0.1:${e.port}`));
  });

  test('LB RING_HASH: each signed-in user keeps one upstream for every tunnel', async () => {
    const bob = `Proxy-Authorization: Portcullis ${await tokenFor('bob')}\r\n`;
    for (const [user, headers] of [
      ['alice', auth],
      ['bob', bob],
    ] as const) {
      const seen = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const r = await open('sticky.corp.test:2222', headers);
        assert.equal(r.status, 200, r.answer);
        seen.add(r.name!);
      }
      assert.equal(seen.size, 1, `${user}'s tunnels went to ${[...seen].join(', ')}`);
    }
  });

  test('LB MAGLEV on a public TCP route: the client address is the key (each sticks, they spread)', async () => {
    const byAddress = new Map<string, Set<string>>();
    for (let a = 1; a <= 16; a++) {
      const ip = `203.0.113.${a}`;
      const seen = new Set<string>();
      for (let i = 0; i < 3; i++) {
        const r = await open('public-hash.corp.test:2222', `X-Forwarded-For: ${ip}\r\n`);
        assert.equal(r.status, 200, r.answer);
        seen.add(r.name!);
      }
      byAddress.set(ip, seen);
    }
    for (const [ip, seen] of byAddress) assert.equal(seen.size, 1, `${ip}: ${[...seen]}`);
    const used = new Set([...byAddress.values()].map((x) => [...x][0]));
    assert.ok(used.size >= 2, `16 addresses all went to ${[...used]}`);
  });
});

// A reload must keep what was learnt of a TCP upstream, as for HTTP ones (Upstreams.configure):
// the same tcp://host:port, not merely the same route, since a tcp:// URL has no web origin.
describe('a reload keeps the health verdict and the ejection of TCP upstreams', () => {
  const yaml = (to: string[], extra: string): string =>
    `${HEAD.slice(0, 7).join('\n')}
  - from: tcp+https://db.corp.example.com:5432
    allow_any_authenticated_user: true
    to: [${to.join(', ')}]
${extra}`;

  test('an ejected tcp:// upstream stays ejected; its neighbour stays in', async () => {
    const x = 'tcp://10.0.0.1:5432';
    const y = 'tcp://10.0.0.2:5432';
    const od = '    outlier_detection: { consecutive_5xx: 1, max_ejection_percent: 50 }\n';
    const ups = new Upstreams(null);
    try {
      const first = parseConfig(yaml([x, y], od), 'r.yaml').routes[0]!;
      ups.configure([first]);
      // One failed connection to y, as the tunnel reports it (src/proxy/tunnel.ts).
      const { balancer } = ups.pickTunnel(first, null);
      balancer!.started(1);
      balancer!.ended(1, true);
      const ejected = (): Record<string, boolean> =>
        Object.fromEntries(ups.status().map((u) => [u.upstream, u.ejected]));
      assert.deepEqual(ejected(), { [x]: false, [y]: true });
      ups.configure([parseConfig(yaml([x, y], od), 'r.yaml').routes[0]!]);
      assert.deepEqual(ejected(), { [x]: false, [y]: true }, 'the reload mixed up the upstreams');
      ups.configure([parseConfig(yaml([y, x], od), 'r.yaml').routes[0]!]);
      assert.deepEqual(ejected(), { [x]: false, [y]: true }, 'the reload followed the index');
    } finally {
      await ups.close();
    }
  });

  test('a tcp:// upstream whose check failed is still down right after a reload', async () => {
    const live = await named('live');
    const deadPort = await freePort();
    const check = `    health_checks:
      - { timeout: 1s, interval: 200ms, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {} }
`;
    const to = [`tcp://127.0.0.1:${live.port}`, `tcp://127.0.0.1:${deadPort}`];
    const ups = new Upstreams(null);
    try {
      ups.configure([parseConfig(yaml(to, check), 'r.yaml').routes[0]!]);
      const healthy = (): boolean[] => ups.status().map((u) => u.healthy);
      await waitFor('the dead port marked down', () => healthy()[1] === false);
      ups.configure([parseConfig(yaml(to, check), 'r.yaml').routes[0]!]);
      // Checked at once: the new checks have not run yet, so this is the carried verdict.
      assert.deepEqual(healthy(), [true, false]);
    } finally {
      await ups.close();
      await live.kill();
    }
  });
});

describe('TCP route balancing keys: errors name the key and the line', () => {
  // HEAD: globals on lines 1-6, `routes:` on 7; the TCP route starts on line 8.
  const tcpRoute = (...lines: string[]): string =>
    `${[
      ...HEAD.slice(0, 7),
      '  - from: tcp+https://db.corp.example.com:5432',
      '    allow_any_authenticated_user: true',
      ...lines.map((l) => `    ${l}`),
    ].join('\n')}\n`;

  test('an http_health_check on a TCP route is refused: its upstreams do not speak HTTP', () => {
    const e = issue(
      tcpRoute(
        "to: ['tcp://10.0.0.1:5432', 'tcp://10.0.0.2:5432']", // 10
        'health_checks:', // 11
        '  - timeout: 1s', // 12
        '    interval: 10s',
        '    unhealthy_threshold: 2',
        '    healthy_threshold: 1',
        '    http_health_check: { path: /healthz }', // 16
      ),
    );
    assert.equal(e.line, 16);
    assert.equal(e.key, 'routes[0].health_checks[0].http_health_check');
    assert.match(e.message, /TCP route .* tcp_health_check/);
  });

  test('a bad weight on a tcp:// upstream names the entry and shows a TCP example', () => {
    const e = issue(tcpRoute('to:', "  - 'tcp://10.0.0.1:5432,0'", "  - 'tcp://10.0.0.2:5432'"));
    assert.equal(e.line, 11);
    assert.equal(e.key, 'routes[0].to[0]');
    assert.match(e.message, /weight from 1 to 10000 .* like tcp:\/\/10\.0\.0\.5:5432,10/);
  });

  test('balancing keys on a TCP route load, with the weights and Envoy defaults', () => {
    const cfg = parseConfig(
      tcpRoute(
        "to: ['tcp://10.0.0.1:5432,2', 'tcp://10.0.0.2:5432']",
        'load_balancing_policy: MAGLEV',
        'outlier_detection: {}',
        'health_checks:',
        '  - { timeout: 1s, interval: 5s, unhealthy_threshold: 2, healthy_threshold: 1, tcp_health_check: {} }',
      ),
      'ok.yaml',
    );
    const r = cfg.routes[0]!;
    assert.deepEqual(
      r.to.map((u) => u.href),
      ['tcp://10.0.0.1:5432', 'tcp://10.0.0.2:5432'],
    );
    assert.deepEqual(r.weights, [2, 1]);
    assert.equal(r.lbPolicy, 'MAGLEV');
    assert.equal(r.outlierDetection?.consecutive5xx, 5);
    assert.equal(r.healthChecks.length, 1);
  });
});
