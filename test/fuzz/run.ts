// Runs the differential fuzz and the regression cases; shared by the bounded test in npm test
// and by `npm run fuzz -- --seed N --runs N [--proxy nginx,caddy]`.
import type { ProxyName } from './deployment.js';
import type { FuzzWorld } from './deployment.js';
import {
  check,
  formatFailure,
  statuses,
  fuzzDeployment,
  type Failure,
  type RunResult,
} from './property.js';
import { REGRESSIONS, SEEDED_BY_HAND, type RegressionCase } from './regressions.js';

export interface FuzzReport {
  seed: number;
  runs: number;
  results: RunResult[];
  regressionFailures: Failure[];
  regressionsReplayed: number;
  text: string;
}

export async function replayRegressions(
  world: FuzzWorld,
  only?: ProxyName[],
): Promise<{ failures: Failure[]; replayed: number }> {
  const failures: Failure[] = [];
  let replayed = 0;
  const cases: RegressionCase[] = [...SEEDED_BY_HAND, ...REGRESSIONS];
  for (const d of world.deployments) {
    if (only && !only.includes(d.name)) continue;
    for (const c of cases) {
      if (c.proxies !== 'all' && !c.proxies.includes(d.name)) continue;
      replayed++;
      const { failure } = await check(world, d, c);
      if (failure)
        failures.push({ ...failure, problem: `${failure.problem} [regression: ${c.found}]` });
    }
  }
  return { failures, replayed };
}

export async function runFuzz(
  world: FuzzWorld,
  o: { seed: number; runs: number; proxies?: ProxyName[]; log?: (s: string) => void },
): Promise<FuzzReport> {
  const log = o.log ?? (() => undefined);
  const lines: string[] = [];
  const say = (s: string) => {
    lines.push(s);
    log(s);
  };
  const reg = await replayRegressions(world, o.proxies);
  say(`regression cases: ${reg.replayed} replayed, ${reg.failures.length} failed`);
  for (const f of reg.failures) say(formatFailure(f));
  const results: RunResult[] = [];
  for (const d of world.deployments) {
    if (o.proxies && !o.proxies.includes(d.name)) continue;
    const r = await fuzzDeployment(world, d, o.seed, o.runs);
    results.push(r);
    const answers = [...(statuses.get(d.name) ?? new Map<number, number>())]
      .sort(([a], [b]) => a - b)
      .map(([s, n]) => `${s || 'none'}×${n}`)
      .join(' ');
    say(
      `${d.name}: ${r.requests} requests (${r.reachedUpstream} reached an upstream) in ${(r.ms / 1000).toFixed(1)} s, seed ${o.seed}, ${r.failures.length} failure class(es); answers ${answers}`,
    );
    for (const f of r.failures) say(formatFailure(f));
  }
  return {
    seed: o.seed,
    runs: o.runs,
    results,
    regressionFailures: reg.failures,
    regressionsReplayed: reg.replayed,
    text: lines.join('\n'),
  };
}
