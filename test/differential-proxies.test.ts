// The differential fuzz, bounded for npm test: what Portcullis judged against what real nginx,
// Caddy, HAProxy (from docs/recipes) and Portcullis itself forwarded. `npm run fuzz` runs the
// same property longer; see SECURITY.md. The seed is fixed here so a red run reproduces.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startWorld, type FuzzWorld } from './fuzz/deployment.js';
import { runFuzz } from './fuzz/run.js';

const SEED = Number(process.env['PORTCULLIS_FUZZ_SEED'] ?? 20240611);
const RUNS = Number(process.env['PORTCULLIS_FUZZ_RUNS'] ?? 1000);

let world: FuzzWorld;
before(async () => {
  world = await startWorld();
});
after(async () => {
  await world?.close();
});

test(`every request that reaches an upstream is one Portcullis allowed for that user and route (seed ${SEED}, ${RUNS} per proxy)`, async () => {
  const report = await runFuzz(world, { seed: SEED, runs: RUNS, log: (s) => console.log(s) });
  // A harness that sends nothing, or whose requests never get through, proves nothing.
  for (const r of report.results) {
    assert.ok(r.requests >= RUNS, `${r.proxy}: only ${r.requests} requests`);
    assert.ok(
      r.reachedUpstream >= RUNS / 20,
      `${r.proxy}: only ${r.reachedUpstream} of ${r.requests} requests reached an upstream`,
    );
  }
  const failures = [...report.regressionFailures, ...report.results.flatMap((r) => r.failures)];
  assert.equal(failures.length, 0, report.text);
});
