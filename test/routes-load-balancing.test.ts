import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { lintConfig } from '../src/config/lint.js';
import { parseConfig } from '../src/config/load.js';
import { createLogger } from '../src/observe/logger.js';
import { Upstreams } from '../src/proxy/upstreams.js';
import { startPortcullis, type RunningPortcullis } from '../src/server.js';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import { startStack, type Stack } from './helpers/stack.js';
import { issue, route } from './helpers/config-errors.js';

// Load balancing over a route's `to` list, with Pomerium's names and meaning. The
// specification is Pomerium's documentation, which hands these settings to Envoy:
//  TO        https://www.pomerium.com/docs/reference/routes/to (",[weight]" after a URL)
//  LB        https://www.pomerium.com/docs/reference/routes/load-balancing
//            (load_balancing_policy: ROUND_ROBIN default, LEAST_REQUEST, RING_HASH, RANDOM,
//            MAGLEV; health_checks: timeout, interval, unhealthy_threshold, healthy_threshold,
//            http_health_check / tcp_health_check)
//  PASSIVE   https://www.pomerium.com/docs/capabilities/load-balancing (outlier_detection: {})
// Where Pomerium's pages defer to Envoy (HealthCheck and OutlierDetection fields, their
// defaults), Envoy's cluster documentation fills in.

/** An upstream that answers with its name, counts what it got, and can die and come back on its port. */
interface Upstream {
  name: string;
  port: number;
  url: string;
  /** Proxied requests (health checks excluded) since the last reset. */
  hits: number;
  /** Health-check requests, by path. */
  checks: Map<string, number>;
  bodies: string[];
  /** Requests to /hold wait until this is called. */
  release(): void;
  /** While true, health checks get no answer (they time out) but proxied requests still do. */
  sick: boolean;
  held: number;
  kill(): Promise<void>;
  revive(): Promise<void>;
  close(): Promise<void>;
}

async function startUpstream(name: string, status = 200, port = 0): Promise<Upstream> {
  const sockets = new Set<Socket>();
  let waiting: Array<() => void> = [];
  let server: http.Server | null = null;
  const u: Upstream = {
    name,
    port,
    url: '',
    hits: 0,
    checks: new Map(),
    bodies: [],
    held: 0,
    sick: false,
    release() {
      for (const w of waiting) w();
      waiting = [];
    },
    async kill() {
      const s = server;
      server = null;
      if (!s) return;
      await new Promise<void>((r) => {
        s.close(() => r());
        for (const sock of sockets) sock.destroy();
      });
    },
    async revive() {
      await listen(u.port);
    },
    async close() {
      u.release();
      await u.kill();
    },
  };
  const listen = async (p: number): Promise<void> => {
    const s = http.createServer((req, res) => {
      if (req.headers['user-agent'] === 'portcullis-health-check') {
        u.checks.set(req.url ?? '', (u.checks.get(req.url ?? '') ?? 0) + 1);
        if (u.sick) return;
        res.writeHead(req.url === '/down' ? 503 : 200).end('ok');
        return;
      }
      u.hits++;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (chunks.length) u.bodies.push(Buffer.concat(chunks).toString());
        const answer = (): void => {
          res.writeHead(status, { 'content-type': 'text/plain' }).end(name);
        };
        if (req.url === '/hold') {
          u.held++;
          waiting.push(answer);
        } else answer();
      });
    });
    s.keepAliveTimeout = 60_000;
    s.on('connection', (sock: Socket) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
    });
    await new Promise<void>((r, reject) => {
      s.once('error', reject);
      s.listen(p, '127.0.0.1', () => r());
    });
    server = s;
    u.port = (s.address() as AddressInfo).port;
    u.url = `http://127.0.0.1:${u.port}`;
  };
  await listen(port);
  return u;
}

/** A TCP service that answers PONG to PING: what a tcp_health_check with send/receive expects. */
async function startPong(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    sock.on('data', (d) => {
      if (d.toString().includes('PING')) sock.write('PO');
      setTimeout(() => sock.writable && sock.write('NG'), 20);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const sock of sockets) sock.destroy();
      }),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, ok: () => boolean | Promise<boolean>, ms = 30_000) {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('load-balanced routes through a running Portcullis', () => {
  let s: Stack;
  let metricsPort: number;
  let pong: Awaited<ReturnType<typeof startPong>>;
  let closedPort: number;
  let sockDir = '';
  let sockUp: http.Server | null = null;
  const ups: Record<string, Upstream> = {};
  const url = (host: string, path = '/'): string => `http://${host}:${s.port}${path}`;
  const get = (host: string, path = '/', o: Parameters<typeof request>[1] = {}): Promise<Resp> =>
    request(url(host, path), o);

  before(async () => {
    for (const n of ['w1', 'w2', 'r1', 'r2', 's1', 's2', 's3', 'l1', 'l2', 'k1', 'k2', 'k3'])
      ups[n] = await startUpstream(n);
    ups.p1 = await startUpstream('p1', 500);
    ups.p2 = await startUpstream('p2');
    ups.b1 = await startUpstream('b1');
    ups.h1 = await startUpstream('h1');
    ups.h2 = await startUpstream('h2');
    pong = await startPong();
    // An upstream on a Unix socket (Pomerium's http+unix://, docs/reference/routes/to), and a
    // socket path nothing listens on: the checks must connect the way the proxy's pools do.
    sockDir = mkdtempSync(join(tmpdir(), 'portcullis-lb-sock-'));
    sockUp = http.createServer((req, res) => res.end(req.url === '/healthz' ? 'ok' : 'sock'));
    await new Promise<void>((r) => sockUp!.listen(join(sockDir, 'up.sock'), r));
    closedPort = await freePort();
    const dead1 = await freePort();
    const dead2 = await freePort();
    const dead3 = await freePort();
    metricsPort = await freePort();
    const u = (n: string): string => ups[n]!.url;
    s = await startStack({
      hosts: ['sticky.corp.test', 'maglev.corp.test'],
      body: `metrics_address: 127.0.0.1:${metricsPort}
trusted_proxies: [127.0.0.1/32]
routes:
  - from: http://weights.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    to: ['${u('w1')},3', '${u('w2')},1']
  - from: http://random.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    load_balancing_policy: RANDOM
    to: ['${u('r1')},1', '${u('r2')},3']
  - from: http://sticky.corp.test:\${PORT}
    allow_any_authenticated_user: true
    load_balancing_policy: RING_HASH
    to: ['${u('s1')}', '${u('s2')}', '${u('s3')}']
  - from: http://maglev.corp.test:\${PORT}
    allow_any_authenticated_user: true
    lb_policy: MAGLEV
    to: ['${u('s1')}', '${u('s2')}', '${u('s3')}']
  - from: http://public-hash.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    load_balancing_policy: RING_HASH
    to: ['${u('s1')}', '${u('s2')}', '${u('s3')}']
  - from: http://least.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    load_balancing_policy: LEAST_REQUEST
    to: ['${u('l1')}', '${u('l2')}']
  - from: http://kill.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    to: ['${u('k1')}', '${u('k2')}', '${u('k3')}']
    health_checks:
      - timeout: 1s
        interval: 500ms
        unhealthy_threshold: 1
        healthy_threshold: 2
        http_health_check:
          path: /healthz
  - from: http://passive.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    to: ['${u('p1')}', '${u('p2')}']
    outlier_detection:
      consecutive_5xx: 3
      base_ejection_time: 60s
  - from: http://retry.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    to: ['http://127.0.0.1:${dead1}', '${u('b1')}']
  - from: http://alldown.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    to: ['http://127.0.0.1:${dead2}', 'http://127.0.0.1:${dead3}']
  - from: http://tcp.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    to: ['http://127.0.0.1:${pong.port}', 'http://127.0.0.1:${closedPort}']
    health_checks:
      - timeout: 1s
        interval: 300ms
        unhealthy_threshold: 1
        healthy_threshold: 1
        tcp_health_check:
          send: { text: '50494e47' }
          receive: [{ text: '504f' }, { text: '4e47' }]
  - from: http://unix.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    to: ['http+unix://${join(sockDir, 'up.sock')}', 'http+unix://${join(sockDir, 'none.sock')}']
    health_checks:
      - timeout: 1s
        interval: 300ms
        unhealthy_threshold: 1
        healthy_threshold: 1
        http_health_check:
          path: /healthz
  - from: http://panic.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
    to: ['${u('h1')}', '${u('h2')}']
    health_checks:
      - timeout: 1s
        interval: 300ms
        unhealthy_threshold: 1
        healthy_threshold: 1
        http_health_check:
          path: /down
          expected_statuses: [{ start: 200, end: 300 }]
`,
    });
  });
  after(async () => {
    await s?.close();
    await Promise.allSettled([...Object.values(ups).map((x) => x.close()), pong?.close()]);
    await new Promise((r) => (sockUp ? sockUp.close(r) : r(undefined)));
    if (sockDir) rmSync(sockDir, { recursive: true, force: true });
  });

  type State = { upstreams: Array<{ upstream: string; healthy: boolean; ejected: boolean }> };
  const upstreamState = async (): Promise<State['upstreams']> =>
    (await request(`http://127.0.0.1:${metricsPort}/upstreams`)).json<State>().upstreams;

  test('LB tcp_health_check: connects, sends its payload and finds the expected blocks in order', async () => {
    const pongUrl = `http://127.0.0.1:${pong.port}`;
    const closedUrl = `http://127.0.0.1:${closedPort}`;
    await waitFor('the TCP checks to mark the closed port down', async () => {
      const st = await upstreamState();
      return st.find((x) => x.upstream === closedUrl)?.healthy === false;
    });
    // PONG arrives in two writes: the blocks are found across them, in order.
    assert.equal((await upstreamState()).find((x) => x.upstream === pongUrl)?.healthy, true);
  });

  test('LB health_checks reach Unix-socket upstreams as the proxy does; /upstreams names each socket', async () => {
    const up = `http+unix://${join(sockDir, 'up.sock')}`;
    const none = `http+unix://${join(sockDir, 'none.sock')}`;
    await waitFor('the missing socket marked down', async () => {
      const st = await upstreamState();
      return st.find((x) => x.upstream === none)?.healthy === false;
    });
    assert.equal((await upstreamState()).find((x) => x.upstream === up)?.healthy, true);
    for (let i = 0; i < 4; i++) assert.equal((await get('unix.corp.test')).body, 'sock');
  });

  test('LB: when every upstream fails its health checks, requests still go to them (Envoy panic mode)', async () => {
    await waitFor('both panic upstreams marked down', async () => {
      const st = await upstreamState();
      return [ups.h1!.url, ups.h2!.url].every(
        (u) => st.find((x) => x.upstream === u)?.healthy === false,
      );
    });
    assert.ok(s.logs.some((l) => l.event === 'upstream_unhealthy' && l.upstream === ups.h1!.url));
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await get('panic.corp.test');
      assert.equal(r.status, 200);
      seen.add(r.body);
    }
    assert.deepEqual([...seen].sort(), ['h1', 'h2']);
  });

  test('TO: `,weight` after a URL: ROUND_ROBIN sends 3 of every 4 requests to the weight-3 upstream', async () => {
    const seen = { w1: 0, w2: 0 } as Record<string, number>;
    for (let i = 0; i < 200; i++) {
      const r = await get('weights.corp.test');
      assert.equal(r.status, 200);
      seen[r.body]!++;
    }
    // Weighted round robin is exact over whole rounds; the tolerance is only for safety.
    assert.ok(Math.abs(seen.w1! / 200 - 0.75) <= 0.05, JSON.stringify(seen));
  });

  test('LB: RANDOM honours weights over many requests (ratio within a generous tolerance)', async () => {
    const seen = { r1: 0, r2: 0 } as Record<string, number>;
    for (let i = 0; i < 400; i++) seen[(await get('random.corp.test')).body]!++;
    const share = seen.r2! / 400;
    assert.ok(share > 0.62 && share < 0.88, `r2 got ${share} of the requests, expected ~0.75`);
  });

  test('LB: RING_HASH and MAGLEV keep each signed-in user on one upstream', async () => {
    for (const host of ['sticky.corp.test', 'maglev.corp.test']) {
      const landed: Record<string, Set<string>> = {};
      for (const user of ['alice', 'bob']) {
        const jar = new CookieJar();
        const { final, chain } = await loginThroughIdp(url(host, '/'), {
          jar,
          username: user,
          password: user,
          headers: BROWSER_HEADERS,
        });
        assert.equal(final.status, 200, chain.join(' -> '));
        const seen = new Set<string>([final.body]);
        for (let i = 0; i < 30; i++) {
          const r = await get(host, `/page/${i}`, { jar });
          assert.equal(r.status, 200);
          seen.add(r.body);
        }
        landed[user] = seen;
      }
      for (const [user, seen] of Object.entries(landed))
        assert.equal(seen.size, 1, `${host}: ${user} went to ${[...seen].join(', ')}`);
    }
  });

  test('LB: on a public RING_HASH route the client address is the key (each address sticks, addresses spread)', async () => {
    const byAddress = new Map<string, Set<string>>();
    for (let a = 1; a <= 24; a++) {
      const ip = `203.0.113.${a}`;
      const seen = new Set<string>();
      for (let i = 0; i < 5; i++)
        seen.add(
          (await get('public-hash.corp.test', '/', { headers: { 'x-forwarded-for': ip } })).body,
        );
      byAddress.set(ip, seen);
    }
    for (const [ip, seen] of byAddress) assert.equal(seen.size, 1, `${ip}: ${[...seen]}`);
    const used = new Set([...byAddress.values()].map((x) => [...x][0]));
    assert.ok(used.size >= 2, `24 addresses all went to ${[...used]}`);
  });

  test('LB: LEAST_REQUEST sends new requests to the upstream with fewer in flight', async () => {
    const held = get('least.corp.test', '/hold');
    await waitFor('the held request to arrive', () => ups.l1!.held + ups.l2!.held === 1);
    const busy = ups.l1!.held === 1 ? 'l1' : 'l2';
    const idle = busy === 'l1' ? 'l2' : 'l1';
    for (let i = 0; i < 10; i++) assert.equal((await get('least.corp.test')).body, idle);
    ups[busy]!.release();
    assert.equal((await held).body, busy);
    // With nothing in flight, the two share again.
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) seen.add((await get('least.corp.test')).body);
    assert.deepEqual([...seen].sort(), ['l1', 'l2']);
  });

  test('a connection refused before any byte was sent is retried on another upstream, POST bodies included', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await get('retry.corp.test', '/submit', { method: 'POST', body: `payload-${i}` });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.body, 'b1');
    }
    assert.deepEqual(
      ups.b1!.bodies.slice(-6),
      [0, 1, 2, 3, 4, 5].map((i) => `payload-${i}`),
    );
  });

  test('every upstream down: a 503 no_healthy_upstream answer (JSON for APIs, a page for browsers), never a stack trace', async () => {
    const api = await get('alldown.corp.test', '/x', { headers: { accept: 'application/json' } });
    assert.equal(api.status, 503);
    const body = api.json<{ error: string; message: string }>();
    assert.equal(body.error, 'no_healthy_upstream');
    assert.match(body.message, /None of the 2 upstreams/);
    const page = await get('alldown.corp.test', '/x', { headers: BROWSER_HEADERS });
    assert.equal(page.status, 503);
    assert.match(String(page.headers['content-type']), /text\/html/);
    assert.match(page.body, /The application is unavailable/);
    assert.doesNotMatch(page.body, /\n\s+at \S+ \(|Error:/);
    const post = await get('alldown.corp.test', '/x', {
      method: 'POST',
      body: 'data',
      headers: { accept: 'application/json' },
    });
    assert.equal(post.status, 503);
  });

  test('PASSIVE: outlier_detection ejects an upstream after consecutive_5xx failures', async () => {
    let failures = 0;
    for (let i = 0; i < 8; i++) if ((await get('passive.corp.test')).status === 500) failures++;
    assert.equal(failures, 3, 'p1 answers 500 three times in a row before it is ejected');
    for (let i = 0; i < 20; i++) {
      const r = await get('passive.corp.test');
      assert.equal(r.status, 200);
      assert.equal(r.body, 'p2');
    }
    assert.ok(s.logs.some((l) => l.event === 'upstream_ejected' && l.upstream === ups.p1!.url));
    const state = await request(`http://127.0.0.1:${metricsPort}/upstreams`);
    const p1 = state
      .json<{ upstreams: Array<{ upstream: string; ejected: boolean }> }>()
      .upstreams.find((x) => x.upstream === ups.p1!.url);
    assert.equal(p1?.ejected, true);
  });

  test('LB health_checks: one upstream killed and brought back under load: after the first interval no request fails', async () => {
    const [k1, k2, k3] = [ups.k1!, ups.k2!, ups.k3!];
    const failures: string[] = [];
    let countFrom = 0;
    let running = true;
    let done = 0;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const once = (): Promise<void> =>
      new Promise((resolve) => {
        const started = Date.now();
        const req = http.request(
          {
            host: '127.0.0.1',
            port: s.port,
            path: '/load',
            agent,
            headers: { host: `kill.corp.test:${s.port}`, accept: 'application/json' },
          },
          (res) => {
            res.resume();
            res.on('end', () => {
              done++;
              if (res.statusCode !== 200 && countFrom && started >= countFrom)
                failures.push(`status ${res.statusCode}`);
              resolve();
            });
          },
        );
        req.on('error', (e) => {
          if (countFrom && started >= countFrom) failures.push(e.message);
          resolve();
        });
        req.end();
      });
    const loops = Array.from({ length: 16 }, async () => {
      while (running) await once();
    });
    try {
      await waitFor('load on every upstream', () => k1.hits > 20 && k2.hits > 20 && k3.hits > 20);
      await k2.kill();
      // The health check interval is 500 ms: from 1 s after the kill, nothing may fail.
      await sleep(1000);
      countFrom = Date.now();
      const hitsAfter = k2.hits;
      const doneAtKill = done;
      await waitFor('more load while k2 is down', () => done > doneAtKill + 200);
      assert.equal(k2.hits, hitsAfter, 'a dead upstream got requests');
      await waitFor('the health check to report k2 down', async () => {
        const r = await request(`http://127.0.0.1:${metricsPort}/upstreams`);
        return r
          .json<{ upstreams: Array<{ upstream: string; healthy: boolean }> }>()
          .upstreams.some((x) => x.upstream === k2.url && !x.healthy);
      });
      const metrics = await request(`http://127.0.0.1:${metricsPort}/metrics`);
      assert.match(
        metrics.body,
        new RegExp(`portcullis_upstream_healthy\\{route="routes\\[6\\]",upstream="${k2.url}"\\} 0`),
      );
      await k2.revive();
      // Back after healthy_threshold (2) passed checks.
      await waitFor('k2 back in rotation', () => k2.hits > hitsAfter + 20);
      const doneAtRevive = done;
      await waitFor('more load with k2 back', () => done > doneAtRevive + 200);
    } finally {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    }
    assert.deepEqual(failures, []);
    assert.ok(s.logs.some((l) => l.event === 'upstream_unhealthy' && l.upstream === k2.url));
    assert.ok(s.logs.some((l) => l.event === 'upstream_healthy' && l.upstream === k2.url));
    assert.ok((k2.checks.get('/healthz') ?? 0) >= 2);
  });
});

describe('a reload stops the old config health checks; shutdown stops them all', () => {
  let dir: string;
  let s: Stack;
  let a: Upstream;
  let b: Upstream;
  let p: RunningPortcullis | null = null;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lb-reload-'));
    a = await startUpstream('a');
    b = await startUpstream('b');
    s = await startStack({
      hosts: ['x.corp.test'],
      body: 'routes:\n  - from: http://x.corp.test:${PORT}\n    to: ${UPSTREAM}',
    });
  });
  after(async () => {
    await p?.close();
    await s?.close();
    await a?.close();
    await b?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const withChecks = (path: string): string =>
    `${s.yaml.slice(0, s.yaml.indexOf('\nroutes:'))}
routes:
  - from: http://lb.corp.test:${s.port}
    allow_public_unauthenticated_access: true
    to: ['${a.url}', '${b.url}']
    health_checks:
      - timeout: 1s
        interval: 200ms
        unhealthy_threshold: 2
        healthy_threshold: 1
        http_health_check: { path: ${path} }
`;

  test('the old checks end at the reload; the new ones run; none after shutdown', async () => {
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(file, withChecks('/old'));
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    p = await startPortcullis(parseConfig(withChecks('/old'), file), {
      configFile: file,
      logger: createLogger('info', sink),
      listen: { host: '127.0.0.1', port: 0 },
    });
    const count = (u: Upstream, path: string): number => u.checks.get(path) ?? 0;
    await waitFor('checks on /old', () => count(a, '/old') >= 2 && count(b, '/old') >= 2);
    writeFileSync(file, withChecks('/new'));
    const result = await p.reload('test');
    assert.equal(result.ok, true, JSON.stringify(result));
    await waitFor('checks on /new', () => count(a, '/new') >= 2 && count(b, '/new') >= 2);
    // A check already on its way when the snapshot is taken still arrives after it (the
    // upstream counts on receipt, a tick later): one more is allowed. Checks that kept running
    // would add five in the five intervals slept.
    const oldA = count(a, '/old');
    const oldB = count(b, '/old');
    await sleep(1000); // five intervals
    assert.ok(count(a, '/old') <= oldA + 1, 'the old config still checks a');
    assert.ok(count(b, '/old') <= oldB + 1, 'the old config still checks b');
    assert.equal(p.state.upstreams.checksRunning(), 1);
    await p.close();
    p = null;
    const newA = count(a, '/new');
    await sleep(1000);
    assert.ok(count(a, '/new') <= newA + 1, 'checks still run after shutdown');
  });
});

// A reload must not forget what the checks learnt: a config reload used to start every upstream
// healthy again, so a known-dead one got traffic until its first check after each reload.
describe('a reload keeps the health verdict and the ejection of upstreams it keeps', () => {
  let dir: string;
  let s: Stack;
  let a: Upstream;
  let b: Upstream;
  let c: Upstream;
  let p: RunningPortcullis | null = null;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lb-carry-'));
    [a, b, c] = await Promise.all([startUpstream('a'), startUpstream('b'), startUpstream('c')]);
    s = await startStack({
      hosts: ['x.corp.test'],
      body: 'routes:\n  - from: http://x.corp.test:${PORT}\n    to: ${UPSTREAM}',
    });
  });
  after(async () => {
    await p?.close();
    await s?.close();
    await Promise.all([a?.close(), b?.close(), c?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  // A check answered by nothing fails only when its timeout ends (LB: `timeout`), so a reload
  // that forgot the verdict would leave b in rotation for a whole second: long enough for the
  // requests below to reach it.
  const config = (to: Upstream[], header: string): string =>
    `${s.yaml.slice(0, s.yaml.indexOf('\nroutes:'))}
routes:
  - from: http://lb.corp.test:${s.port}
    allow_public_unauthenticated_access: true
    to: [${to.map((u) => `'${u.url}'`).join(', ')}]
    set_response_headers: { X-Config: ${header} }
    health_checks:
      - timeout: 1s
        interval: 200ms
        unhealthy_threshold: 1
        healthy_threshold: 1
        http_health_check: { path: /healthz }
`;

  test('an upstream marked unhealthy gets no request after a reload; a new upstream gets traffic', async () => {
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(file, config([a, b], 'one'));
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    p = await startPortcullis(parseConfig(config([a, b], 'one'), file), {
      configFile: file,
      logger: createLogger('info', sink),
      listen: { host: '127.0.0.1', port: 0 },
    });
    const running = p;
    const get = (): Promise<Resp> =>
      request(`http://127.0.0.1:${running.port}/`, { headers: { host: `lb.corp.test:${s.port}` } });
    b.sick = true;
    await waitFor('b marked unhealthy', () =>
      running.state.upstreams.status().some((u) => u.upstream === b.url && !u.healthy),
    );
    const before = b.hits;
    const reloaded = await running.reload('test');
    assert.equal(reloaded.ok, true, JSON.stringify(reloaded));
    const bodies: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await get();
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-config'], 'one');
      bodies.push(r.body);
    }
    assert.deepEqual(new Set(bodies), new Set(['a']));
    assert.equal(b.hits, before, 'the dead upstream got requests after the reload');
    // A reload that adds c: b is still known to be down, c starts healthy, as before.
    writeFileSync(file, config([a, b, c], 'two'));
    const again = await running.reload('test');
    assert.equal(again.ok, true, JSON.stringify(again));
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = await get();
      assert.equal(r.headers['x-config'], 'two');
      seen.add(r.body);
    }
    assert.deepEqual(seen, new Set(['a', 'c']));
    assert.equal(b.hits, before);
    // The verdict is carried, not frozen: b recovers through the new config's checks.
    b.sick = false;
    await waitFor('b back in rotation', async () => (await get()).body === 'b');
  });

  test('an ejected upstream stays ejected across a reload; a route without outlier_detection drops it', async () => {
    const text = (od: boolean, header: string): string =>
      `${s.yaml.slice(0, s.yaml.indexOf('\nroutes:'))}
routes:
  - from: http://lb.corp.test:${s.port}
    allow_public_unauthenticated_access: true
    to: ['${a.url}', '${b.url}']
    set_response_headers: { X-Config: ${header} }
${od ? '    outlier_detection: { consecutive_5xx: 2, max_ejection_percent: 50 }\n' : ''}`;
    const ups = new Upstreams(null);
    try {
      const first = parseConfig(text(true, 'one'), 'carry.yaml').routes[0]!;
      ups.configure([first]);
      // Two 5xx answers in a row from b, as the proxy reports them (src/proxy/forward.ts).
      const balancer = ups.pick(first)!.balancer!;
      for (let i = 0; i < 2; i++) {
        balancer.started(1);
        balancer.ended(1, true);
      }
      const ejected = (): boolean | undefined =>
        ups.status().find((u) => u.upstream === b.url)?.ejected;
      assert.equal(ejected(), true);
      ups.configure([parseConfig(text(true, 'two'), 'carry.yaml').routes[0]!]);
      assert.equal(ejected(), true, 'the reload forgot the ejection');
      ups.configure([parseConfig(text(false, 'three'), 'carry.yaml').routes[0]!]);
      assert.equal(ejected(), false);
    } finally {
      await ups.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Misuse: each key's error names the key and its line.

const TO2 = "to: ['http://10.0.0.1:80', 'http://10.0.0.2:80']";
const CHECK = [
  'health_checks:',
  '  - timeout: 1s', // 12
  '    interval: 10s',
  '    unhealthy_threshold: 2',
  '    healthy_threshold: 1',
];

describe('misused load-balancing keys are config errors naming the key and line', () => {
  const cases: Array<[string, string[], number, string, RegExp]> = [
    [
      'a weight of 0',
      ['to:', "  - 'http://10.0.0.1:80,0'"],
      11,
      'routes[0].to[0]',
      /weight from 1 to 10000/,
    ],
    [
      'a weight that is not a number',
      ['to:', '  - http://10.0.0.1:80', "  - 'http://10.0.0.2:80,heavy'"],
      12,
      'routes[0].to[1]',
      /weight from 1 to 10000 after the comma/,
    ],
    [
      'an unknown load_balancing_policy',
      [TO2, 'load_balancing_policy: ROUND_ROBINN'],
      11,
      'routes[0].load_balancing_policy',
      /ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM, MAGLEV/,
    ],
    [
      'both load_balancing_policy and lb_policy',
      [TO2, 'load_balancing_policy: RANDOM', 'lb_policy: MAGLEV'],
      12,
      'routes[0].lb_policy',
      /either load_balancing_policy or lb_policy/,
    ],
    [
      'a load_balancing_policy on a route without `to`',
      ['load_balancing_policy: LEAST_REQUEST'],
      10,
      'routes[0].load_balancing_policy',
      /has none/,
    ],
    [
      'a health check without its interval',
      [
        TO2,
        'health_checks:',
        '  - timeout: 1s',
        '    unhealthy_threshold: 2',
        '    healthy_threshold: 1',
        '    tcp_health_check: {}',
      ],
      12,
      'routes[0].health_checks[0].interval',
      /expected a duration for interval/,
    ],
    [
      'an unhealthy_threshold of 0',
      [
        TO2,
        'health_checks:',
        '  - timeout: 1s',
        '    interval: 10s',
        '    unhealthy_threshold: 0',
        '    healthy_threshold: 1',
        '    tcp_health_check: {}',
      ],
      14,
      'routes[0].health_checks[0].unhealthy_threshold',
      /whole number from 1 to 1000/,
    ],
    [
      'a healthy_threshold that is not a number',
      [
        TO2,
        'health_checks:',
        '  - timeout: 1s',
        '    interval: 10s',
        '    unhealthy_threshold: 2',
        '    healthy_threshold: many',
        '    tcp_health_check: {}',
      ],
      15,
      'routes[0].health_checks[0].healthy_threshold',
      /whole number from 1 to 1000/,
    ],
    [
      'a timeout that is not a duration',
      [
        TO2,
        'health_checks:',
        '  - timeout: soon',
        '    interval: 10s',
        '    unhealthy_threshold: 2',
        '    healthy_threshold: 1',
        '    tcp_health_check: {}',
      ],
      12,
      'routes[0].health_checks[0].timeout',
      /expected a duration for timeout/,
    ],
    [
      'neither http_health_check nor tcp_health_check',
      [TO2, ...CHECK],
      12,
      'routes[0].health_checks[0]',
      /exactly one of http_health_check and tcp_health_check/,
    ],
    [
      'both http_health_check and tcp_health_check',
      [TO2, ...CHECK, '    http_health_check: { path: /healthz }', '    tcp_health_check: {}'],
      12,
      'routes[0].health_checks[0]',
      /exactly one of http_health_check and tcp_health_check/,
    ],
    [
      'an http_health_check path without its leading /',
      [TO2, ...CHECK, '    http_health_check: { path: healthz }'],
      16,
      'routes[0].health_checks[0].http_health_check.path',
      /start with \//,
    ],
    [
      'an http_health_check without path',
      [TO2, ...CHECK, '    http_health_check: { host: app.internal }'],
      16,
      'routes[0].health_checks[0].http_health_check.path',
      /expected path as a path like \/healthz/,
    ],
    [
      'expected_statuses with end not above start',
      [
        TO2,
        ...CHECK,
        '    http_health_check:',
        '      path: /healthz',
        '      expected_statuses: [{ start: 300, end: 200 }]',
      ],
      18,
      'routes[0].health_checks[0].http_health_check.expected_statuses[0]',
      /end \(excluded\) above start/,
    ],
    [
      'a health-check host that is not a host name',
      [TO2, ...CHECK, '    http_health_check: { path: /h, host: "a b/c" }'],
      16,
      'routes[0].health_checks[0].http_health_check.host',
      /host name/,
    ],
    [
      'codec_client_type HTTP2 (the checks speak HTTP/1.1)',
      [TO2, ...CHECK, '    http_health_check: { path: /h, codec_client_type: HTTP2 }'],
      16,
      'routes[0].health_checks[0].http_health_check.codec_client_type',
      /HTTP1/,
    ],
    [
      'a tcp_health_check payload that is not hex',
      [TO2, ...CHECK, '    tcp_health_check: { send: { text: PING } }'],
      16,
      'routes[0].health_checks[0].tcp_health_check.send.text',
      /hex bytes/,
    ],
    [
      'an Envoy health check Portcullis does not run (grpc_health_check)',
      [TO2, ...CHECK, '    grpc_health_check: {}'],
      16,
      'routes[0].health_checks[0].grpc_health_check',
      /unknown key/,
    ],
    [
      'health_checks that are not a list',
      [TO2, 'health_checks: { timeout: 1s }'],
      11,
      'routes[0].health_checks',
      /list of health checks/,
    ],
    [
      'a negative consecutive_5xx',
      [TO2, 'outlier_detection:', '  consecutive_5xx: -1'],
      12,
      'routes[0].outlier_detection.consecutive_5xx',
      /whole number from 1 to 1000/,
    ],
    [
      'a max_ejection_percent over 100',
      [TO2, 'outlier_detection: { max_ejection_percent: 150 }'],
      11,
      'routes[0].outlier_detection.max_ejection_percent',
      /from 0 to 100/,
    ],
    [
      'a base_ejection_time that is not a duration',
      [TO2, 'outlier_detection:', '  base_ejection_time: forever'],
      12,
      'routes[0].outlier_detection.base_ejection_time',
      /duration for base_ejection_time/,
    ],
    [
      'outlier_detection that is not a map',
      [TO2, 'outlier_detection: true'],
      11,
      'routes[0].outlier_detection',
      /outlier_detection as a map/,
    ],
  ];
  for (const [name, lines, line, key, message] of cases)
    test(name, () => {
      const i = issue(route(...lines));
      assert.equal(i.key, key, `${i.key}: ${i.message}`);
      assert.equal(i.line, line, `${i.key}: ${i.message}`);
      assert.match(i.message, message);
    });

  test('an http_health_check on an h2c:// upstream is refused (the checks speak HTTP/1.1)', () => {
    const i = issue(
      route(
        "to: ['h2c://10.0.0.5:9000', 'h2c://10.0.0.6:9000']",
        'health_checks:',
        '  - timeout: 1s',
        '    interval: 5s',
        '    unhealthy_threshold: 2',
        '    healthy_threshold: 2',
        '    http_health_check:',
        '      path: /healthz',
      ),
    );
    assert.equal(i.key, 'routes[0].health_checks[0].http_health_check', i.message);
    assert.equal(i.line, 17, i.message);
    assert.match(i.message, /h2c.*tcp_health_check/);
  });

  test('`portcullis check` warns that balancing keys on a single `to` change nothing', () => {
    const text = route(
      'to: http://10.0.0.1:80',
      'load_balancing_policy: RING_HASH',
      'outlier_detection: {}',
    );
    const found = lintConfig(parseConfig(text, 'lb.yaml', {}), text).filter((i) =>
      /has no effect/.test(i.message),
    );
    assert.deepEqual(
      found.map((i) => [i.key, i.line, i.severity]),
      [
        ['routes[0].load_balancing_policy', 11, 'warning'],
        ['routes[0].outlier_detection', 12, 'warning'],
      ],
    );
    const two = route(TO2, 'load_balancing_policy: RING_HASH');
    assert.ok(
      !lintConfig(parseConfig(two, 'lb.yaml', {}), two).some((i) =>
        /has no effect/.test(i.message),
      ),
    );
  });

  test('valid settings load with Envoy defaults filled in', () => {
    const cfg = parseConfig(
      route(
        "to: ['http://10.0.0.1:80,5', 'http://10.0.0.2:80']",
        'load_balancing_policy: MAGLEV',
        ...CHECK,
        '    http_health_check: { path: /healthz }',
        '  - timeout: 2s',
        '    interval: 5s',
        '    unhealthy_threshold: 3',
        '    healthy_threshold: 2',
        '    tcp_health_check: { send: { text: "50494e47" }, receive: [{ text: "504f4e47" }] }',
        'outlier_detection: {}',
      ),
      'lb.yaml',
      {},
    );
    const r = cfg.routes[0]!;
    assert.deepEqual(r.weights, [5, 1]);
    assert.deepEqual(
      r.to.map((u) => u.href),
      ['http://10.0.0.1/', 'http://10.0.0.2/'],
    );
    assert.equal(r.lbPolicy, 'MAGLEV');
    assert.deepEqual(r.healthChecks[0]!.http, {
      host: null,
      path: '/healthz',
      expected: [[200, 201]],
    });
    assert.equal(r.healthChecks[1]!.tcp!.send!.toString(), 'PING');
    assert.deepEqual(r.outlierDetection, {
      consecutive5xx: 5,
      baseEjectionMs: 30_000,
      maxEjectionMs: 300_000,
      maxEjectionPercent: 10,
    });
    // ROUND_ROBIN is the default.
    assert.equal(parseConfig(route(TO2), 'lb.yaml', {}).routes[0]!.lbPolicy, 'ROUND_ROBIN');
  });
});
