// The differential property. For every request that reaches an upstream:
//   1. Portcullis allowed it (its access log line for this request says allow, and for which route);
//   2. the route judged belongs to the application that received it;
//   3. every reading an application could make of what it received (raw target, dot-removed,
//      decoded, ...; its Host, or the host it serves) is allowed by decide() for the same user
//      and selects that same route;
//   4. identity headers received are the user's (or empty), never a client's own.
import fc from 'fast-check';
import { decide } from '../../src/decide/decide.js';
import type { RequestContext } from '../../src/decide/types.js';
import type { Deployment, FuzzWorld, ProxyName } from './deployment.js';
import { describeBytes, fuzzRequest, toBytes, type FuzzRequest, type User } from './generate.js';
import { hostReadings, pathReadings, splitTarget } from './interpret.js';
import { sendRaw, type Received } from './wire.js';

export interface Failure {
  /** Stable class of the failure, used to look for other classes once one is found. */
  signature: string;
  proxy: ProxyName;
  request: FuzzRequest;
  bytes: string;
  judged: string;
  received: string;
  problem: string;
}

const IDENTITY: Record<string, (u: User) => string> = {
  'x-forwarded-user': (u) => u,
  'x-forwarded-email': (u) => `${u}@example.com`,
  'x-forwarded-groups': (u) => (u === 'alice' ? 'admins,eng' : 'eng'),
  'x-forwarded-preferred-username': (u) => u,
};

function hostServed(host: string, patterns: string[]): boolean {
  return patterns.some((p) =>
    p.startsWith('*.') ? host.length > p.length - 1 && host.endsWith(p.slice(1)) : host === p,
  );
}

function routeHost(
  id: string,
  world: FuzzWorld,
): { host: string; port: number; wildcard: boolean } | null {
  const r = world.portcullis.state.runtime.routes.routes.find((x) => x.id === id);
  return r
    ? {
        host: r.from.wildcard ? `*${r.from.host}` : r.from.host,
        port: r.from.port,
        wildcard: r.from.wildcard,
      }
    : null;
}

/** Sends one request through one deployment and checks the property; null when it holds. */
export async function checkOne(
  world: FuzzWorld,
  d: Deployment,
  req: FuzzRequest,
): Promise<Failure | null> {
  return (await check(world, d, req)).failure;
}

/** Answers the client saw, per deployment: what the fuzz actually exercised. */
export const statuses = new Map<string, Map<number, number>>();

export async function check(
  world: FuzzWorld,
  d: Deployment,
  req: FuzzRequest,
): Promise<{ failure: Failure | null; reached: boolean }> {
  const failure = await judge(world, d, req);
  return { failure, reached: d.upstreams.some((u) => u.recorder.received.length > 0) };
}

async function judge(world: FuzzWorld, d: Deployment, req: FuzzRequest): Promise<Failure | null> {
  const others = world.deployments.filter((x) => x !== d);
  const bytes = toBytes(req, { port: d.port, other: others[0]!.port }, world.cookies);
  for (const u of d.upstreams) u.recorder.clear();
  const mark = world.logs.length;
  const reply = await sendRaw(d.port, bytes);
  const seen = statuses.get(d.name) ?? new Map<number, number>();
  seen.set(reply.status, (seen.get(reply.status) ?? 0) + 1);
  statuses.set(d.name, seen);
  // Access log lines are written after the answer; give the event loop a turn to flush them.
  await new Promise((r) => setImmediate(r));
  const lines = world.logs.slice(mark);
  const fail = (signature: string, judged: string, received: string, problem: string): Failure => ({
    signature: `${d.name}|${signature}`,
    proxy: d.name,
    request: req,
    bytes: describeBytes(bytes),
    judged,
    received,
    problem,
  });

  const crash = lines.find((l) => Number(l['level']) >= 50);
  if (crash)
    return fail(
      'portcullis-error',
      String(crash['msg']),
      `client got ${reply.status}`,
      `Portcullis logged an error: ${JSON.stringify(crash).slice(0, 400)}`,
    );

  const reached: Array<{ up: Deployment['upstreams'][number]; r: Received }> = [];
  for (const up of d.upstreams) for (const r of up.recorder.received) reached.push({ up, r });
  if (!reached.length) return null;
  if (reached.length > 1)
    return fail(
      'several-upstream-requests',
      '-',
      reached.map((x) => x.up.recorder.name).join(', '),
      'one client request became several upstream requests',
    );

  const { up, r } = reached[0]!;
  const got = `${up.recorder.name} received ${r.method} ${r.url}\n${r.rawHeaders.map(([k, v]) => `  ${k}: ${v}`).join('\n')}`;
  const allows = lines.filter(
    (l) => l['msg'] === 'request' && /(^|:)allow$/.test(String(l['decision'])),
  );
  const judgedLine = allows.at(-1);
  if (!judgedLine) {
    const seen =
      lines
        .filter((l) => l['msg'] === 'request')
        .map((l) => `${l['decision']} ${l['host']} ${l['path']} (${l['reason']})`)
        .join('; ') || 'nothing';
    return fail(
      'reached-without-allow',
      seen,
      got,
      'the upstream received a request Portcullis did not allow',
    );
  }
  const routeId = String(judgedLine['route']);
  const judged = `${judgedLine['decision']} route ${routeId} for ${judgedLine['host']} ${judgedLine['path']} (${judgedLine['reason']})`;
  const rh = routeHost(routeId, world);
  if (
    !rh ||
    rh.port !== d.port ||
    !(up.hosts.includes(rh.host) || (!rh.wildcard && hostServed(rh.host, up.hosts)))
  ) {
    return fail(
      'route-of-another-application',
      judged,
      got,
      `Portcullis judged route ${routeId} (${rh ? `${rh.host}:${rh.port}` : '?'}), but ${up.recorder.name} serves ${up.hosts.join(', ') || 'no route host'} on port ${d.port}`,
    );
  }

  // Which site the application believes it is serving.
  const hostValues = r.rawHeaders.filter(([k]) => k.toLowerCase() === 'host').map(([, v]) => v);
  const { authority, path } = splitTarget(r.url);
  if (authority !== null) hostValues.push(authority);
  let hosts: string[];
  if (up.byHost) {
    hosts = [...new Set(hostValues.flatMap((v) => hostReadings(v).map((x) => x.host)))].filter(
      (h) => hostServed(h, up.hosts),
    );
  } else {
    hosts = [up.hosts[0]!];
  }
  if (path === null)
    return fail(
      'target-without-path',
      judged,
      got,
      `the upstream received a request-target that is not a path (${JSON.stringify(r.url)})`,
    );

  const rt = world.portcullis.state.runtime;
  const cookie = world.cookies[req.user];
  for (const host of hosts) {
    for (const reading of pathReadings(path)) {
      const ctx: RequestContext = {
        method: r.method.toUpperCase(),
        scheme: 'http',
        host,
        port: d.port,
        path: reading.path,
        query: '',
        clientIp: '127.0.0.2',
        headers: cookie ? { cookie } : {},
        browser: false,
        now: Date.now(),
      };
      const dd = await decide(ctx, rt);
      const routeOf = 'route' in dd && dd.route ? dd.route.id : '(none)';
      if (dd.kind !== 'allow' || routeOf !== routeId) {
        return fail(
          `reading:${reading.how}:${dd.kind === 'allow' ? 'other-route' : dd.kind}`,
          judged,
          got,
          `an application reading the path as "${reading.how}" sees ${host} ${JSON.stringify(reading.path)}: decide() says ${dd.kind} on route ${routeOf}, not allow on ${routeId}`,
        );
      }
    }
  }

  const publicRoute = rt.routes.routes.find((x) => x.id === routeId)?.isPublic ?? false;
  for (const [name, value] of r.rawHeaders) {
    const canonical = name.toLowerCase().replace(/_/g, '-');
    const expected = IDENTITY[canonical];
    if (!expected) continue;
    const ok =
      value === '' || (!publicRoute && req.user !== 'anonymous' && value === expected(req.user));
    if (!ok)
      return fail(
        `identity:${canonical}`,
        judged,
        got,
        `the upstream received ${name}: ${value} for ${publicRoute ? 'a public route' : req.user}`,
      );
  }
  return null;
}

export function formatFailure(f: Failure): string {
  return [
    `FAILURE through ${f.proxy}: ${f.problem}`,
    '--- raw request sent ---',
    f.bytes.replace(/\r\n/g, '\\r\\n\n'),
    `--- Portcullis judged ---\n${f.judged}`,
    `--- the upstream got ---\n${f.received}`,
    `--- as a regression case ---\n${JSON.stringify({ proxy: f.proxy, ...f.request })}`,
  ].join('\n');
}

export interface RunResult {
  proxy: ProxyName;
  requests: number;
  reachedUpstream: number;
  ms: number;
  failures: Failure[];
}

/**
 * Fuzzes one deployment with `runs` requests from `seed`. After a failure is found and shrunk,
 * the search goes on (same seed, next pass) ignoring that class, so one run reports every class
 * it can reach, each as its smallest reproduction. Passes are capped so a broken build ends.
 */
export async function fuzzDeployment(
  world: FuzzWorld,
  d: Deployment,
  seed: number,
  runs: number,
  maxClasses = 6,
): Promise<RunResult> {
  const started = performance.now();
  const failures: Failure[] = [];
  const known = new Set<string>();
  let requests = 0;
  let reached = 0;
  for (let pass = 0; pass < maxClasses; pass++) {
    let last: Failure | null = null;
    const prop = fc.asyncProperty(fuzzRequest, async (req) => {
      requests++;
      const { failure: f, reached: got } = await check(world, d, req);
      if (got) reached++;
      if (f && !known.has(f.signature)) {
        last = f;
        throw new Error(f.signature);
      }
    });
    const out = await fc.check(prop, {
      seed: seed + pass,
      numRuns: runs,
      endOnFailure: false,
      interruptAfterTimeLimit: 10 * 60_000,
    });
    if (!out.failed || !last) break;
    // fast-check reports the smallest counterexample; run it once more to describe exactly it.
    const smallest = out.counterexample![0] as FuzzRequest;
    const again = (await checkOne(world, d, smallest)) ?? last;
    failures.push(again);
    known.add((last as Failure).signature);
    known.add(again.signature);
  }
  return {
    proxy: d.name,
    requests,
    reachedUpstream: reached,
    ms: performance.now() - started,
    failures,
  };
}
