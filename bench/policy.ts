// Nanoseconds per policy decision, for docs/performance.md. Run: node dist/bench/policy.js
import { compileRoutePolicy } from '../src/policy/index.js';
import type { CompiledPolicy, Identity, PolicyInput, RequestContext } from '../src/decide/types.js';

const ctx: RequestContext = {
  method: 'GET',
  scheme: 'https',
  host: 'app.example.com',
  port: 443,
  path: '/reports/q3',
  query: '',
  clientIp: '10.20.30.40',
  headers: { origin: 'https://app.example.com' },
  browser: true,
  now: Date.UTC(2025, 2, 26, 10, 0), // a Wednesday, 11:00 in Berlin
};

function identity(groups: string[], claims: Record<string, unknown> = {}): Identity {
  return {
    sub: 'u-1',
    user: 'u-1',
    email: 'alice@example.com',
    emailVerified: true,
    name: 'Alice',
    preferredUsername: 'alice',
    groups,
    claims,
    via: 'session',
  };
}

const simple = compileRoutePolicy({ policy: { allow: { or: [{ groups: { has: 'admins' } }] } } });

// 50 criteria: 10 deny checks that all miss, 5 and-ed preconditions, then 35 alternatives where
// only the last one matches, so an allowed decision walks all 50.
const many = compileRoutePolicy({
  policy: [
    {
      deny: {
        or: [
          ...Array.from({ length: 4 }, (_, i) => ({
            http_path: { starts_with: `/internal${i}/` },
          })),
          ...Array.from({ length: 3 }, (_, i) => ({ email: { is: `blocked${i}@example.com` } })),
          { source_ip: ['192.0.2.0/24', '198.51.100.0/24', '2001:db8::/32'] },
          { http_method: { in: ['DELETE', 'TRACE'] } },
          { groups: { has: 'suspended' } },
        ],
      },
    },
    {
      allow: {
        and: [
          { authenticated_user: true },
          { domain: { is: 'example.com' } },
          { http_method: { in: ['GET', 'HEAD', 'POST'] } },
          { day_of_week: 'mon-fri' },
          { time_of_day: { timezone: 'Europe/Berlin', after: '7:00', before: '20:00' } },
          {
            or: [
              ...Array.from({ length: 20 }, (_, i) => ({ groups: { has: `team-${i}` } })),
              ...Array.from({ length: 14 }, (_, i) => ({ [`claim/org.unit`]: `unit-${i}` })),
              { groups: { has: 'admins' } },
            ],
          },
        ],
      },
    },
  ],
});

const member = identity(['eng', 'admins'], { org: { unit: 'none' } });
const outsider = identity(['eng'], { org: { unit: 'none' } });

function measure(policy: CompiledPolicy, input: PolicyInput, expectAllow: boolean): number {
  if (policy(input).allow !== expectAllow) throw new Error('benchmark policy decided unexpectedly');
  let allowed = 0;
  for (let i = 0; i < 200_000; i++) if (policy(input).allow) allowed++;
  const n = 1_000_000;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (policy(input).allow) allowed++;
  const ns = Number(process.hrtime.bigint() - start) / n;
  // Using the count keeps the loop from being optimized away.
  if (allowed === -1) console.log(allowed);
  return ns;
}

const rows: [string, string, number][] = [
  ['1 criterion (groups has)', 'allow', measure(simple, { ctx, identity: member }, true)],
  ['1 criterion (groups has)', 'deny', measure(simple, { ctx, identity: outsider }, false)],
  ['1 criterion (groups has)', 'anonymous', measure(simple, { ctx, identity: null }, false)],
  ['50 criteria (worst case)', 'allow', measure(many, { ctx, identity: member }, true)],
  ['50 criteria (worst case)', 'deny', measure(many, { ctx, identity: outsider }, false)],
];

console.log(`Node ${process.version}, ${process.platform}/${process.arch}\n`);
console.log('| policy | outcome | ns/decision | decisions/s |');
console.log('|---|---|---:|---:|');
for (const [name, outcome, ns] of rows) {
  console.log(
    `| ${name} | ${outcome} | ${ns.toFixed(0)} | ${Math.round(1e9 / ns).toLocaleString('en-US')} |`,
  );
}
