// npm run fuzz -- [--seed N] [--runs N] [--proxy nginx,caddy,haproxy,portcullis]
// The nightly-style run: many more requests than the bounded one in npm test. Exit code 1 on
// any failure; every failure is printed shrunk, ready to paste into regressions.ts.
import { PROXIES, startWorld, type ProxyName } from './deployment.js';
import { runFuzz } from './run.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i !== -1) return process.argv[i + 1];
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
}

const seed = Number(arg('seed') ?? Date.now() % 2 ** 31);
const runs = Number(arg('runs') ?? 2000);
const proxies = arg('proxy')?.split(',') as ProxyName[] | undefined;
if (!Number.isInteger(seed) || !Number.isInteger(runs) || runs < 1) {
  console.error(
    'usage: npm run fuzz -- [--seed N] [--runs N] [--proxy nginx,caddy,haproxy,portcullis]',
  );
  process.exit(2);
}
for (const p of proxies ?? [])
  if (!PROXIES.includes(p)) {
    console.error(`unknown proxy ${p}; one of ${PROXIES.join(', ')}`);
    process.exit(2);
  }

const started = Date.now();
console.log(
  `differential fuzz: seed ${seed}, ${runs} requests per proxy and pass${proxies ? `, proxies ${proxies.join(',')}` : ''}`,
);
const world = await startWorld();
let failed: boolean;
try {
  const report = await runFuzz(world, {
    seed,
    runs,
    ...(proxies ? { proxies } : {}),
    log: (s) => console.log(s),
  });
  failed =
    report.regressionFailures.length > 0 || report.results.some((r) => r.failures.length > 0);
  console.log(
    `total ${report.results.reduce((n, r) => n + r.requests, 0)} requests + ${report.regressionsReplayed} regression replays in ${((Date.now() - started) / 1000).toFixed(1)} s; reproduce with --seed ${seed}`,
  );
} finally {
  await world.close();
}
process.exit(failed ? 1 : 0);
