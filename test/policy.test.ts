import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parse } from 'yaml';
import {
  compileRoutePolicy,
  PolicyError,
  type RoutePolicySource,
  type PolicyOptions,
} from '../src/policy/index.js';
import type { Identity, PolicyResult, RequestContext } from '../src/decide/types.js';

// 2025-03-28 is a Friday; the EU switch to summer time is Sunday 2025-03-30 at 01:00 UTC.
const FRI = Date.UTC(2025, 2, 28, 12, 0);
const SAT = Date.UTC(2025, 2, 29, 12, 0);

function ctx(over: Partial<RequestContext> = {}): RequestContext {
  return {
    method: 'GET',
    scheme: 'https',
    host: 'app.example.com',
    port: 443,
    path: '/',
    query: '',
    clientIp: '203.0.113.7',
    headers: {},
    browser: true,
    now: FRI,
    ...over,
  };
}

function user(over: Partial<Identity> = {}): Identity {
  return {
    sub: 'u-1',
    user: 'u-1',
    email: 'alice@example.com',
    emailVerified: true,
    name: 'Alice',
    preferredUsername: 'alice',
    groups: [],
    claims: {},
    via: 'session',
    ...over,
  };
}

function route(yamlText: string, opts?: PolicyOptions) {
  const policy = compileRoutePolicy(parse(yamlText) as RoutePolicySource, opts);
  return (identity: Identity | null, c: Partial<RequestContext> = {}): PolicyResult =>
    policy({ ctx: ctx(c), identity, trace: true });
}

function allows(
  yamlText: string,
  identity: Identity | null,
  c: Partial<RequestContext> = {},
  opts?: PolicyOptions,
): boolean {
  return route(yamlText, opts)(identity, c).allow;
}

function compileError(src: unknown): PolicyError {
  try {
    compileRoutePolicy(src as RoutePolicySource);
  } catch (e) {
    assert.ok(e instanceof PolicyError, `expected PolicyError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the policy to be rejected');
}

function compileErrorYaml(yamlText: string): PolicyError {
  return compileError(parse(yamlText));
}

// ---------------------------------------------------------------- accept / reject / authenticated_user

test('accept lets everyone in, signed in or not; reject lets nobody in', () => {
  assert.equal(allows('policy: {allow: {or: [{accept: true}]}}', null), true);
  assert.equal(allows('policy: {allow: {or: [{reject: true}]}}', user()), false);
});

test('accept: false is refused because PPL ignores the value and would still accept', () => {
  const e = compileErrorYaml('policy: {allow: {or: [{accept: false}]}}');
  assert.deepEqual(e.path, ['policy', 'allow', 'or', 0, 'accept']);
  assert.match(e.message, /reject/);
});

test('authenticated_user admits any identity and asks anonymous users to sign in', () => {
  const r = route('policy: {allow: {and: [{authenticated_user: true}]}}');
  assert.equal(r(user({ via: 'bearer' })).allow, true);
  const anon = r(null);
  assert.equal(anon.allow, false);
  assert.equal(anon.needsIdentity, true);
  assert.equal(anon.reason, 'sign-in required');
});

// ---------------------------------------------------------------- user / email / domain

test('user compares the configured user id exactly', () => {
  const y = 'policy: {allow: {or: [{user: {is: u-1}}]}}';
  assert.equal(allows(y, user()), true);
  assert.equal(allows(y, user({ user: 'U-1' })), false);
});

test('email matches case-insensitively with every string operator', () => {
  const id = user({ email: 'Alice.Smith@Example.COM' });
  assert.equal(allows('policy: {allow: {or: [{email: {is: alice.smith@example.com}}]}}', id), true);
  assert.equal(
    allows('policy: {allow: {or: [{email: ALICE.smith@example.com}]}}', id),
    true,
    'bare string is "is"',
  );
  assert.equal(allows('policy: {allow: {or: [{email: {starts_with: alice.}}]}}', id), true);
  assert.equal(allows('policy: {allow: {or: [{email: {ends_with: "@example.com"}}]}}', id), true);
  assert.equal(allows('policy: {allow: {or: [{email: {contains: smith}}]}}', id), true);
  assert.equal(
    allows(
      'policy: {allow: {or: [{email: {in: [bob@example.com, ALICE.SMITH@example.com]}}]}}',
      id,
    ),
    true,
  );
  assert.equal(
    allows('policy: {allow: {or: [{email: {not_in: [alice.smith@example.com]}}]}}', id),
    false,
  );
  assert.equal(allows('policy: {allow: {or: [{email: {is: bob@example.com}}]}}', id), false);
});

test('several operators in one string matcher must all hold', () => {
  const y = 'policy: {allow: {or: [{email: {starts_with: admin, ends_with: "@example.com"}}]}}';
  assert.equal(allows(y, user({ email: 'admin@example.com' })), true);
  assert.equal(allows(y, user({ email: 'admin@evil.com' })), false);
  assert.equal(allows(y, user({ email: 'alice@example.com' })), false);
});

test('domain is example.com does not match subdomains, look-alikes or double-@ addresses', () => {
  const y = 'policy: {allow: {or: [{domain: {is: example.com}}]}}';
  assert.equal(allows(y, user({ email: 'alice@example.com' })), true);
  assert.equal(allows(y, user({ email: 'alice@EXAMPLE.com' })), true);
  assert.equal(allows(y, user({ email: 'alice@sub.example.com' })), false);
  assert.equal(allows(y, user({ email: 'alice@evilexample.com' })), false);
  const r = route(y)(user({ email: 'attacker@evil.com@example.com' }));
  assert.equal(r.allow, false);
  assert.match(r.reason, /has no valid domain/);
  assert.equal(allows(y, user({ email: '' })), false);
  assert.equal(allows(y, user({ email: 'example.com' })), false);
  assert.equal(allows(y, user({ email: '@example.com' })), false);
});

test('an address without a valid domain satisfies no domain operator, not even not_in', () => {
  assert.equal(
    allows(
      'policy: {allow: {or: [{domain: {not_in: [evil.com]}}]}}',
      user({ email: 'a@b@evil.org' }),
    ),
    false,
  );
  assert.equal(
    allows(
      'policy: {allow: {or: [{domain: {not_in: [evil.com]}}]}}',
      user({ email: 'a@good.org' }),
    ),
    true,
  );
  // ...while a deny on "not our domain" catches it.
  assert.equal(
    allows(
      'policy: {allow: {or: [{accept: true}]}, deny: {not: [{domain: {is: example.com}}]}}',
      user({ email: 'x@evil.com@example.com' }),
    ),
    false,
  );
});

// ---------------------------------------------------------------- groups

test('groups has / is / exclude', () => {
  const eng = user({ groups: ['eng', 'ops'] });
  assert.equal(allows('policy: {allow: {or: [{groups: {has: ops}}]}}', eng), true);
  assert.equal(allows('policy: {allow: {or: [{groups: ops}]}}', eng), true, 'bare value means has');
  assert.equal(allows('policy: {allow: {or: [{groups: {has: admins}}]}}', eng), false);
  assert.equal(
    allows('policy: {allow: {or: [{groups: {is: eng}}]}}', eng),
    false,
    'is means exactly one group',
  );
  assert.equal(
    allows('policy: {allow: {or: [{groups: {is: eng}}]}}', user({ groups: ['eng'] })),
    true,
  );
  assert.equal(allows('policy: {allow: {or: [{groups: {exclude: contractors}}]}}', eng), true);
  assert.equal(allows('policy: {allow: {or: [{groups: {exclude: ops}}]}}', eng), false);
});

test('a group denial explains what was needed and what the session has', () => {
  const r = route('policy: {allow: {or: [{groups: {has: admins}}]}}')(user({ groups: ['eng'] }));
  assert.equal(r.allow, false);
  assert.equal(r.reason, 'needs group admins; you have eng');
  assert.deepEqual(r.trace, [
    {
      at: 'policy.allow.or[0]',
      criterion: 'groups has admins',
      result: false,
      detail: 'needs group admins; you have eng',
    },
  ]);
  assert.equal(r.needsIdentity, false);
});

test('an empty or missing group list is reported as such and matches nothing', () => {
  const y = 'policy: {allow: {or: [{groups: {has: admins}}]}}';
  const empty = route(y)(user({ groups: [] }));
  assert.equal(empty.allow, false);
  assert.match(empty.reason, /no groups claim in your session/);
  const missing = route(y)(user({ groups: undefined as unknown as string[] }));
  assert.equal(missing.allow, false);
  assert.match(missing.reason, /no groups claim in your session/);
  assert.equal(
    allows('policy: {allow: {or: [{groups: {exclude: admins}}]}}', user({ groups: [] })),
    true,
  );
});

test('groups delivered as one string are one group, never split on commas', () => {
  const single = user({ groups: 'admins' as unknown as string[] });
  assert.equal(allows('policy: {allow: {or: [{groups: {has: admins}}]}}', single), true);
  assert.equal(allows('policy: {allow: {or: [{groups: {is: admins}}]}}', single), true);
  const commas = user({ groups: 'admins,eng' as unknown as string[] });
  assert.equal(allows('policy: {allow: {or: [{groups: {has: admins}}]}}', commas), false);
  assert.equal(allows('policy: {allow: {or: [{groups: {has: "admins,eng"}}]}}', commas), true);
});

test('groups compares names exactly (case matters, as in PPL)', () => {
  assert.equal(
    allows('policy: {allow: {or: [{groups: {has: Admins}}]}}', user({ groups: ['admins'] })),
    false,
  );
});

// ---------------------------------------------------------------- claim/<name>

test('claim/<name> matches string and array claims', () => {
  const y = 'policy: {allow: {or: [{claim/family_name: Smith}]}}';
  assert.equal(allows(y, user({ claims: { family_name: 'Smith' } })), true);
  assert.equal(allows(y, user({ claims: { family_name: 'Smithers' } })), false);
  assert.equal(allows(y, user({ claims: { family_name: ['Jones', 'Smith'] } })), true);
  assert.equal(
    allows(
      'policy: {allow: {or: [{claim/roles: {is: viewer}}]}}',
      user({ claims: { roles: ['viewer', 'editor'] } }),
    ),
    false,
  );
  assert.equal(
    allows(
      'policy: {allow: {or: [{claim/roles: {exclude: editor}}]}}',
      user({ claims: { roles: ['viewer'] } }),
    ),
    true,
  );
});

test('a missing claim matches nothing and says so', () => {
  const r = route('policy: {allow: {or: [{claim/department: engineering}]}}')(user({ claims: {} }));
  assert.equal(r.allow, false);
  assert.equal(r.reason, 'needs claim department engineering; no department claim in your session');
  assert.equal(
    allows(
      'policy: {allow: {or: [{claim/department: engineering}]}}',
      user({ claims: { department: null } }),
    ),
    false,
  );
});

test('claim names with dots or slashes reach into nested claims; a literal dotted key wins', () => {
  const nested = user({ claims: { org: { team: 'platform', units: ['a', 'b'] } } });
  assert.equal(allows('policy: {allow: {or: [{claim/org.team: platform}]}}', nested), true);
  assert.equal(allows('policy: {allow: {or: [{claim/org/team: platform}]}}', nested), true);
  assert.equal(allows('policy: {allow: {or: [{claim/org.units: b}]}}', nested), true);
  assert.equal(allows('policy: {allow: {or: [{claim/org.missing: platform}]}}', nested), false);
  const literal = user({ claims: { 'org.team': 'literal', org: { team: 'nested' } } });
  assert.equal(allows('policy: {allow: {or: [{claim/org.team: literal}]}}', literal), true);
  assert.equal(allows('policy: {allow: {or: [{claim/org.team: nested}]}}', literal), false);
  // Keycloak-style realm_access.roles and lists of objects.
  assert.equal(
    allows(
      'policy: {allow: {or: [{claim/realm_access.roles: admin}]}}',
      user({ claims: { realm_access: { roles: ['user', 'admin'] } } }),
    ),
    true,
  );
  assert.equal(
    allows(
      'policy: {allow: {or: [{claim/orgs.name: acme}]}}',
      user({ claims: { orgs: [{ name: 'other' }, { name: 'acme' }] } }),
    ),
    true,
  );
});

test('claim values compare with JSON equality: numbers and booleans are not strings', () => {
  assert.equal(
    allows('policy: {allow: {or: [{claim/level: 3}]}}', user({ claims: { level: 3 } })),
    true,
  );
  assert.equal(
    allows('policy: {allow: {or: [{claim/level: 3}]}}', user({ claims: { level: '3' } })),
    false,
  );
  assert.equal(
    allows('policy: {allow: {or: [{claim/level: "3"}]}}', user({ claims: { level: '3' } })),
    true,
  );
  assert.equal(
    allows(
      'policy: {allow: {or: [{claim/email_verified: true}]}}',
      user({ claims: { email_verified: true } }),
    ),
    true,
  );
  assert.equal(
    allows(
      'policy: {allow: {or: [{claim/email_verified: true}]}}',
      user({ claims: { email_verified: 'true' } }),
    ),
    false,
  );
});

test('claim/<groups claim> works even when groups came from outside the token claims', () => {
  assert.equal(
    allows(
      'policy: {allow: {or: [{claim/groups: admins}]}}',
      user({ groups: ['admins'], claims: {} }),
    ),
    true,
  );
  const opts = { groupsClaim: 'roles' };
  assert.equal(
    allows(
      'policy: {allow: {or: [{claim/roles: admins}]}}',
      user({ groups: ['admins'], claims: {} }),
      {},
      opts,
    ),
    true,
  );
  assert.equal(
    allows(
      'policy: {allow: {or: [{claim/roles: admins}]}}',
      user({ groups: [], claims: { roles: 'admins' } }),
      {},
      opts,
    ),
    true,
  );
  assert.equal(
    allows(
      'policy: {allow: {or: [{claim/roles: admins}]}}',
      user({ groups: ['admins'], claims: {} }),
    ),
    false,
    'roles is not the groups claim by default',
  );
});

// ---------------------------------------------------------------- http_method / http_path / cors_preflight

test('http_method and http_path', () => {
  assert.equal(
    allows('policy: {allow: {or: [{http_method: {is: get}}]}}', null),
    true,
    'method names are compared upper-case',
  );
  assert.equal(
    allows('policy: {allow: {or: [{http_method: {in: [GET, HEAD]}}]}}', null, { method: 'POST' }),
    false,
  );
  assert.equal(
    allows('policy: {allow: {or: [{http_path: {starts_with: /public/}}]}}', null, {
      path: '/public/x.css',
    }),
    true,
  );
  assert.equal(
    allows('policy: {allow: {or: [{http_path: {starts_with: /public/}}]}}', null, {
      path: '/Public/x.css',
    }),
    false,
  );
  assert.equal(
    allows('policy: {allow: {or: [{http_path: /health}]}}', null, {
      path: '/health',
      query: '?x=1',
    }),
    true,
  );
});

test('cors_preflight needs OPTIONS with both Origin and Access-Control-Request-Method', () => {
  const y = 'policy: {allow: {or: [{cors_preflight: true}]}}';
  const headers = { origin: 'https://a.example', 'access-control-request-method': 'POST' };
  assert.equal(allows(y, null, { method: 'OPTIONS', headers }), true);
  assert.equal(
    allows(y, null, { method: 'OPTIONS', headers: { origin: 'https://a.example' } }),
    false,
  );
  assert.equal(allows(y, null, { method: 'GET', headers }), false);
});

// ---------------------------------------------------------------- source_ip

test('source_ip accepts one CIDR, a list, bare addresses and IPv6', () => {
  assert.equal(
    allows('policy: {allow: {or: [{source_ip: 10.0.0.0/8}]}}', null, { clientIp: '10.20.30.40' }),
    true,
  );
  assert.equal(
    allows('policy: {allow: {or: [{source_ip: 10.0.0.0/8}]}}', null, { clientIp: '11.0.0.1' }),
    false,
  );
  assert.equal(
    allows('policy: {allow: {or: [{source_ip: [192.168.0.0/16, 203.0.113.7]}]}}', null, {
      clientIp: '203.0.113.7',
    }),
    true,
  );
  assert.equal(
    allows('policy: {allow: {or: [{source_ip: [192.168.0.0/16, 203.0.113.7]}]}}', null, {
      clientIp: '203.0.113.8',
    }),
    false,
  );
  assert.equal(
    allows('policy: {allow: {or: [{source_ip: "2001:db8::/32"}]}}', null, {
      clientIp: '2001:db8:1::5',
    }),
    true,
  );
  assert.equal(
    allows('policy: {allow: {or: [{source_ip: "2001:db8::/32"}]}}', null, {
      clientIp: '2001:db9::5',
    }),
    false,
  );
});

test('source_ip treats IPv4-mapped IPv6 as the IPv4 address', () => {
  assert.equal(
    allows('policy: {allow: {or: [{source_ip: 10.0.0.0/8}]}}', null, {
      clientIp: '::ffff:10.1.2.3',
    }),
    true,
  );
  assert.equal(
    allows('policy: {allow: {or: [{source_ip: "::ffff:10.0.0.0/104"}]}}', null, {
      clientIp: '10.9.9.9',
    }),
    true,
  );
  assert.equal(
    allows('policy: {allow: {or: [{source_ip: 10.0.0.0/8}]}}', null, {
      clientIp: '::ffff:11.1.2.3',
    }),
    false,
  );
});

test('source_ip rejects bad addresses with the index of the bad entry', () => {
  const e = compileErrorYaml('policy: {allow: {or: [{source_ip: [10.0.0.0/8, 10.0.0.0/33]}]}}');
  assert.deepEqual(e.path, ['policy', 'allow', 'or', 0, 'source_ip', 1]);
  assert.match(e.message, /prefix length/);
  const e2 = compileErrorYaml('policy: {allow: {or: [{source_ip: not-an-ip}]}}');
  assert.deepEqual(e2.path, ['policy', 'allow', 'or', 0, 'source_ip']);
  assert.match(e2.message, /not an IP address or CIDR/);
});

// ---------------------------------------------------------------- date / day_of_week / time_of_day

test('date after/before; a date-time without offset is UTC', () => {
  const y =
    'policy: {allow: {or: [{date: {after: "2025-03-28T11:00:00", before: "2025-03-28T13:00:00"}}]}}';
  assert.equal(allows(y, null, { now: FRI }), true);
  assert.equal(allows(y, null, { now: Date.UTC(2025, 2, 28, 10, 59) }), false);
  assert.equal(allows(y, null, { now: Date.UTC(2025, 2, 28, 13, 0) }), false);
  assert.equal(
    allows('policy: {allow: {or: [{date: {after: "2025-03-28T13:30:00+02:00"}}]}}', null, {
      now: FRI,
    }),
    true,
  );
  assert.equal(
    allows('policy: {allow: {or: [{date: {before: 2025-03-28}}]}}', null, { now: FRI }),
    false,
  );
});

test('date rejects impossible dates instead of rolling them over', () => {
  const e = compileErrorYaml('policy: {allow: {or: [{date: {after: "2030-02-30"}}]}}');
  assert.deepEqual(e.path, ['policy', 'allow', 'or', 0, 'date', 'after']);
  const e2 = compileErrorYaml('policy: {allow: {or: [{date: {aftr: "2030-01-01"}}]}}');
  assert.match(e2.message, /did you mean "after"\?/);
});

test('day_of_week: single days, lists, ranges, full names, *, and ranges that wrap', () => {
  const on = (spec: string, now: number) =>
    allows(`policy: {allow: {or: [{day_of_week: "${spec}"}]}}`, null, { now });
  assert.equal(on('mon-fri', FRI), true);
  assert.equal(on('mon-fri', SAT), false);
  assert.equal(on('tue-fri', Date.UTC(2025, 2, 24, 12)), false, 'Monday is outside tue-fri');
  assert.equal(on('sat,sun', SAT), true);
  assert.equal(on('Saturday', SAT), true);
  assert.equal(on('mon-wed,fri', FRI), true);
  assert.equal(on('mon-wed,fri', Date.UTC(2025, 2, 27, 12)), false, 'Thursday');
  assert.equal(on('fri-mon', SAT), true);
  assert.equal(on('fri-mon', Date.UTC(2025, 2, 25, 12)), false, 'Tuesday');
  assert.equal(on('*', SAT), true);
  assert.equal(on('fri', Date.UTC(2025, 2, 28, 23, 59, 59)), true, 'days are UTC days');
  assert.equal(on('fri', Date.UTC(2025, 2, 29, 0, 0, 0)), false);
});

test('day_of_week rejects unknown day names', () => {
  const e = compileErrorYaml('policy: {allow: {or: [{day_of_week: mon-fryday}]}}');
  assert.deepEqual(e.path, ['policy', 'allow', 'or', 0, 'day_of_week']);
  assert.match(e.message, /"fryday"/);
});

test('time_of_day follows Europe/Berlin across the March DST change', () => {
  const y =
    'policy: {allow: {or: [{time_of_day: {timezone: Europe/Berlin, after: "9:00", before: "17:00"}}]}}';
  // Same UTC wall clock, different local time once summer time starts.
  assert.equal(allows(y, null, { now: Date.UTC(2025, 2, 29, 7, 30) }), false, '08:30 CET');
  assert.equal(allows(y, null, { now: Date.UTC(2025, 2, 30, 7, 30) }), true, '09:30 CEST');
  assert.equal(allows(y, null, { now: Date.UTC(2025, 2, 29, 15, 30) }), true, '16:30 CET');
  assert.equal(allows(y, null, { now: Date.UTC(2025, 2, 30, 15, 30) }), false, '17:30 CEST');
  // The skipped hour: 00:59:59Z is 01:59:59 CET, one second later it is 03:00 CEST.
  const early = 'policy: {allow: {or: [{time_of_day: {timezone: Europe/Berlin, before: "2:30"}}]}}';
  assert.equal(allows(early, null, { now: Date.UTC(2025, 2, 30, 0, 59, 59) }), true);
  assert.equal(allows(early, null, { now: Date.UTC(2025, 2, 30, 1, 0, 0) }), false);
  // And back in October.
  assert.equal(allows(y, null, { now: Date.UTC(2025, 9, 25, 7, 30) }), true, '09:30 CEST');
  assert.equal(allows(y, null, { now: Date.UTC(2025, 9, 27, 7, 30) }), false, '08:30 CET');
});

test('time_of_day accepts Pomerium time formats and windows across midnight', () => {
  const at = (after: string, before: string, h: number, m = 0) =>
    allows(
      `policy: {allow: {or: [{time_of_day: {timezone: UTC, after: "${after}", before: "${before}"}}]}}`,
      null,
      { now: Date.UTC(2025, 2, 28, h, m) },
    );
  assert.equal(at('2:20:00', '4:30PM', 16, 29), true);
  assert.equal(at('2:20:00', '4:30PM', 16, 30), false);
  assert.equal(at('2:20:00', '4:30 PM', 2, 19), false);
  assert.equal(at('3 PM', '15:04:05.5', 15, 4), true);
  assert.equal(at('12 AM', '12PM', 0, 0), true);
  assert.equal(at('12 AM', '12PM', 12, 0), false);
  assert.equal(at('22:00', '06:00', 23), true);
  assert.equal(at('22:00', '06:00', 5, 59), true);
  assert.equal(at('22:00', '06:00', 12), false);
  assert.equal(
    allows(
      'policy: {allow: {or: [{time_of_day: {timezone: America/New_York, after: "9:00"}}]}}',
      null,
      { now: Date.UTC(2025, 2, 28, 12, 59) },
    ),
    false,
    '08:59 EDT',
  );
});

test('time_of_day errors: missing or unknown timezone, bad time, unknown operator', () => {
  const noTz = compileErrorYaml('policy: {allow: {or: [{time_of_day: {after: "9:00"}}]}}');
  assert.deepEqual(noTz.path, ['policy', 'allow', 'or', 0, 'time_of_day', 'timezone']);
  const badTz = compileErrorYaml(
    'policy: {allow: {or: [{time_of_day: {timezone: Europe/Berln, after: "9:00"}}]}}',
  );
  assert.deepEqual(badTz.path, ['policy', 'allow', 'or', 0, 'time_of_day', 'timezone']);
  assert.match(badTz.message, /unknown time zone "Europe\/Berln"/);
  const badTime = compileErrorYaml(
    'policy: {allow: {or: [{time_of_day: {timezone: UTC, after: "25:00"}}]}}',
  );
  assert.deepEqual(badTime.path, ['policy', 'allow', 'or', 0, 'time_of_day', 'after']);
  const badOp = compileErrorYaml(
    'policy: {allow: {or: [{time_of_day: {timezone: UTC, befor: "9:00"}}]}}',
  );
  assert.match(badOp.message, /did you mean "before"\?/);
});

// ---------------------------------------------------------------- client_certificate

const FP = '17859273e8a980631d367b2d5a6a6635412b0f22835f69e47b3f65624546a704';
const FP_LONG = FP.toUpperCase().match(/../g)!.join(':');

test('client_certificate fingerprint in short or long form, one or many', () => {
  const cert = {
    fingerprint256: FP_LONG,
    subject: { CN: 'alice' },
    san: ['DNS:alice.example.com', 'email:alice@yourdomain.com'],
  };
  assert.equal(
    allows(`policy: {allow: {and: [{client_certificate: {fingerprint: "${FP}"}}]}}`, null, {
      clientCert: cert,
    }),
    true,
  );
  assert.equal(
    allows(
      `policy: {allow: {and: [{client_certificate: {fingerprint: ["${'0'.repeat(64)}", "${FP_LONG}"]}}]}}`,
      null,
      { clientCert: cert },
    ),
    true,
  );
  assert.equal(
    allows(
      `policy: {allow: {and: [{client_certificate: {fingerprint: "${'0'.repeat(64)}"}}]}}`,
      null,
      { clientCert: cert },
    ),
    false,
  );
  assert.equal(
    allows(`policy: {allow: {and: [{client_certificate: {fingerprint: "${FP}"}}]}}`, null),
    false,
    'no certificate presented',
  );
  assert.equal(
    allows(
      'policy: {allow: {and: [{client_certificate: {san_email: {ends_with: "@yourdomain.com"}}}]}}',
      null,
      { clientCert: cert },
    ),
    true,
  );
  assert.equal(
    allows(
      'policy: {allow: {and: [{client_certificate: {san_dns: {is: bob.example.com}}}]}}',
      null,
      { clientCert: cert },
    ),
    false,
  );
});

test('client_certificate rejects malformed fingerprints and unsupported spki_hash', () => {
  const bad = compileErrorYaml(
    'policy: {allow: {and: [{client_certificate: {fingerprint: [abc]}}]}}',
  );
  assert.deepEqual(bad.path, ['policy', 'allow', 'and', 0, 'client_certificate', 'fingerprint', 0]);
  const spki = compileErrorYaml(
    'policy: {allow: {and: [{client_certificate: {spki_hash: "FsDbM0rUYIiL3V339eIKqiz6HPSB+Pz2WeAWhqlqh8U="}}]}}',
  );
  assert.deepEqual(spki.path, ['policy', 'allow', 'and', 0, 'client_certificate', 'spki_hash']);
  assert.match(spki.message, /not supported/);
  const typo = compileErrorYaml(
    'policy: {allow: {and: [{client_certificate: {fingerprnt: abc}}]}}',
  );
  assert.match(typo.message, /did you mean "fingerprint"\?/);
});

// ---------------------------------------------------------------- logic

test('deny wins over allow', () => {
  const r = route(
    'policy: {allow: {or: [{accept: true}]}, deny: {or: [{email: {is: bob@example.com}}]}}',
  );
  assert.equal(r(user()).allow, true);
  const bob = r(user({ email: 'bob@example.com' }));
  assert.equal(bob.allow, false);
  assert.equal(bob.reason, 'denied by policy.deny.or[0]: email is bob@example.com');
  assert.equal(bob.needsIdentity, false);
});

test('a deny in one rule of a list overrides an allow in another', () => {
  const y = `
policy:
  - allow: {or: [{groups: {has: eng}}]}
  - deny: {or: [{http_path: {starts_with: /admin}}]}
`;
  assert.equal(allows(y, user({ groups: ['eng'] }), { path: '/x' }), true);
  assert.equal(allows(y, user({ groups: ['eng'] }), { path: '/admin/x' }), false);
});

test('nothing allowed means denied', () => {
  const none = compileRoutePolicy({})({ ctx: ctx(), identity: user() });
  assert.equal(none.allow, false);
  assert.equal(none.reason, 'no policy allows access to this route');
  assert.equal(allows('policy: {deny: {or: [{reject: true}]}}', user()), false);
});

test('and / or / not / nor follow the PPL truth tables', () => {
  const table = (op: string) =>
    [
      [false, false],
      [false, true],
      [true, false],
      [true, true],
    ].map(([a, b]) => {
      const groups = [...(a ? ['a'] : []), ...(b ? ['b'] : [])];
      return allows(
        `policy: {allow: {${op}: [{groups: {has: a}}, {groups: {has: b}}]}}`,
        user({ groups }),
      );
    });
  assert.deepEqual(table('and'), [false, false, false, true]);
  assert.deepEqual(table('or'), [false, true, true, true]);
  assert.deepEqual(table('not'), [true, false, false, false], 'not is ¬A ∧ ¬B');
  assert.deepEqual(table('nor'), [true, true, true, false], 'nor is ¬A ∨ ¬B');
});

test('several operators under one allow are alternatives', () => {
  const y =
    'policy: {allow: {and: [{claim/family_name: Smith}], or: [{domain: {is: domain1.com}}]}}';
  assert.equal(allows(y, user({ email: 'x@other.com', claims: { family_name: 'Smith' } })), true);
  assert.equal(allows(y, user({ email: 'x@domain1.com' })), true);
  assert.equal(allows(y, user({ email: 'x@other.com' })), false);
});

test('logical operators nest to any depth', () => {
  const y = `
policy:
  allow:
    and:
      - or:
          - groups: {has: eng}
          - and:
              - groups: {has: ops}
              - not:
                  - nor:
                      - http_method: {is: GET}
                      - http_path: {starts_with: /status}
      - not:
          - source_ip: 198.51.100.0/24
`;
  // not(nor(A,B)) = A ∧ B
  assert.equal(allows(y, user({ groups: ['eng'] })), true);
  assert.equal(allows(y, user({ groups: ['eng'] }), { clientIp: '198.51.100.9' }), false);
  assert.equal(allows(y, user({ groups: ['ops'] }), { method: 'GET', path: '/status/x' }), true);
  assert.equal(allows(y, user({ groups: ['ops'] }), { method: 'POST', path: '/status/x' }), false);
  assert.equal(allows(y, user({ groups: ['ops'] }), { method: 'GET', path: '/x' }), false);
  const r = route(y)(user({ groups: ['ops'] }), { method: 'GET', path: '/status/x' });
  assert.ok(
    r.trace.some(
      (s) =>
        s.at === 'policy.allow.and[0].or[1].and[1].not[0].nor[1]' &&
        s.criterion === 'http_path starts_with /status' &&
        s.result,
    ),
  );
});

test('double negation is the identity, and not/nor obey De Morgan (property)', () => {
  const names = ['a', 'b', 'c'];
  const p = {
    notnot: compileRoutePolicy({
      policy: { allow: { not: [{ not: [{ groups: { has: 'a' } }] }] } },
    }),
    not: compileRoutePolicy({ policy: { allow: { not: [{ groups: 'a' }, { groups: 'b' }] } } }),
    norOfAnd: compileRoutePolicy({
      policy: { allow: { and: [{ nor: [{ groups: 'a' }] }, { nor: [{ groups: 'b' }] }] } },
    }),
    nor: compileRoutePolicy({ policy: { allow: { nor: [{ groups: 'a' }, { groups: 'c' }] } } }),
    notOfAnd: compileRoutePolicy({
      policy: { allow: { not: [{ and: [{ groups: 'a' }, { groups: 'c' }] }] } },
    }),
  };
  fc.assert(
    fc.property(fc.subarray(names), (groups) => {
      const input = { ctx: ctx(), identity: user({ groups }) };
      assert.equal(p.notnot(input).allow, groups.includes('a'));
      assert.equal(p.not(input).allow, p.norOfAnd(input).allow);
      assert.equal(p.nor(input).allow, p.notOfAnd(input).allow);
      assert.equal(p.nor(input).allow, !(groups.includes('a') && groups.includes('c')));
    }),
  );
});

// ---------------------------------------------------------------- needsIdentity

test('needsIdentity: a negated identity check never lets an anonymous user in', () => {
  const r = route('policy: {allow: {not: [{email: {is: blocked@example.com}}]}}');
  assert.equal(r(user()).allow, true);
  const anon = r(null);
  assert.equal(anon.allow, false);
  assert.equal(anon.needsIdentity, true);
});

test('needsIdentity is false when signing in could not change the outcome', () => {
  const y = 'policy: {allow: {and: [{source_ip: 10.0.0.0/8}, {groups: {has: admins}}]}}';
  const outside = route(y)(null, { clientIp: '192.0.2.1' });
  assert.equal(outside.allow, false);
  assert.equal(outside.needsIdentity, false);
  assert.match(outside.reason, /needs an address in 10\.0\.0\.0\/8; your address is 192\.0\.2\.1/);
  const inside = route(y)(null, { clientIp: '10.0.0.1' });
  assert.equal(inside.needsIdentity, true);

  const denied = route(
    'policy: {allow: {or: [{groups: {has: admins}}]}, deny: {or: [{source_ip: 192.0.2.0/24}]}}',
  )(null, { clientIp: '192.0.2.1' });
  assert.equal(denied.allow, false);
  assert.equal(denied.needsIdentity, false);
});

test('needsIdentity when an allow matched but a deny depends on who the user is', () => {
  const r = route(
    'policy: {allow: {or: [{source_ip: 10.0.0.0/8}]}, deny: {not: [{domain: {is: example.com}}]}}',
  );
  const anon = r(null, { clientIp: '10.0.0.1' });
  assert.equal(anon.allow, false);
  assert.equal(anon.needsIdentity, true);
  assert.equal(r(user(), { clientIp: '10.0.0.1' }).allow, true);
  assert.equal(r(user({ email: 'eve@evil.com' }), { clientIp: '10.0.0.1' }).allow, false);
});

test('criteria that need no identity decide for anonymous users', () => {
  const y = 'policy: {allow: {or: [{http_path: {starts_with: /public}}, {groups: {has: staff}}]}}';
  const r = route(y)(null, { path: '/public/logo.png' });
  assert.equal(r.allow, true);
  assert.equal(r.needsIdentity, false);
  assert.equal(r.reason, 'allowed by policy.allow.or[0]: http_path starts_with /public');
  assert.equal(route(y)(null, { path: '/private' }).needsIdentity, true);
});

// ---------------------------------------------------------------- route-level shortcuts

test('allow_public_unauthenticated_access allows everyone but policy deny rules still apply', () => {
  const open = compileRoutePolicy({ allow_public_unauthenticated_access: true });
  const r = open({ ctx: ctx(), identity: null });
  assert.equal(r.allow, true);
  assert.equal(r.reason, 'allowed by allow_public_unauthenticated_access: accept');
  const withDeny = compileRoutePolicy({
    allow_public_unauthenticated_access: true,
    policy: parse('deny: {or: [{http_path: {starts_with: /admin}}]}'),
  });
  assert.equal(withDeny({ ctx: ctx({ path: '/admin' }), identity: null }).allow, false);
  assert.equal(withDeny({ ctx: ctx({ path: '/' }), identity: null }).allow, true);
});

test('allow_any_authenticated_user allows every identity and combines with policy as an extra allow', () => {
  const p = compileRoutePolicy({
    allow_any_authenticated_user: true,
    policy: parse('allow: {or: [{http_path: /health}]}'),
  });
  assert.equal(p({ ctx: ctx(), identity: user() }).allow, true);
  const anon = p({ ctx: ctx(), identity: null });
  assert.equal(anon.allow, false);
  assert.equal(anon.needsIdentity, true);
  assert.equal(p({ ctx: ctx({ path: '/health' }), identity: null }).allow, true);
});

test('allowed_groups / allowed_emails / allowed_email_domains are an allow "or"', () => {
  const p = compileRoutePolicy({
    allowed_groups: ['admins'],
    allowed_emails: ['Bob@Example.com'],
    allowed_email_domains: ['corp.example'],
  });
  const d = (id: Identity | null) => p({ ctx: ctx(), identity: id, trace: true });
  assert.equal(d(user({ groups: ['admins'] })).allow, true);
  assert.equal(d(user({ email: 'bob@example.com' })).allow, true);
  assert.equal(d(user({ email: 'carol@corp.example' })).allow, true);
  assert.equal(d(user({ email: 'carol@sub.corp.example' })).allow, false);
  const no = d(user({ groups: ['eng'] }));
  assert.equal(no.allow, false);
  assert.equal(no.trace.length, 3);
  assert.equal(d(null).needsIdentity, true);
});

test('shortcut lists combine with a policy; deny in the policy still wins', () => {
  const p = compileRoutePolicy({
    allowed_groups: ['admins'],
    policy: parse('deny: {or: [{http_method: DELETE}]}'),
  });
  assert.equal(p({ ctx: ctx(), identity: user({ groups: ['admins'] }) }).allow, true);
  assert.equal(
    p({ ctx: ctx({ method: 'DELETE' }), identity: user({ groups: ['admins'] }) }).allow,
    false,
  );
});

test('contradictory route settings are rejected, as Pomerium rejects them', () => {
  assert.deepEqual(
    compileError({ allow_public_unauthenticated_access: true, allow_any_authenticated_user: true })
      .path,
    ['allow_any_authenticated_user'],
  );
  assert.deepEqual(
    compileError({ allow_public_unauthenticated_access: true, allowed_groups: ['a'] }).path,
    ['allowed_groups'],
  );
  assert.deepEqual(
    compileError({ allow_any_authenticated_user: true, allowed_emails: ['a@b.c'] }).path,
    ['allowed_emails'],
  );
});

test('shortcut lists must be non-empty lists of strings', () => {
  assert.deepEqual(compileError({ allowed_groups: 'admins' }).path, ['allowed_groups']);
  assert.deepEqual(compileError({ allowed_groups: [] }).path, ['allowed_groups']);
  assert.deepEqual(compileError({ allowed_emails: ['a@b.c', 5] }).path, ['allowed_emails', 1]);
  assert.deepEqual(compileError({ allow_any_authenticated_user: 'yes' }).path, [
    'allow_any_authenticated_user',
  ]);
});

// ---------------------------------------------------------------- bad input

test('unknown criterion names the path and suggests the right name', () => {
  const e = compileErrorYaml(
    'policy: [{allow: {or: [{email: {is: a@b.c}}, {grups: {has: admins}}]}}]',
  );
  assert.deepEqual(e.path, ['policy', 0, 'allow', 'or', 1, 'grups']);
  assert.match(e.message, /unknown criterion "grups" \(did you mean "groups"\?\)/);
  assert.match(
    compileErrorYaml('policy: {allow: {or: [{emial: a@b.c}]}}').message,
    /did you mean "email"\?/,
  );
  assert.match(
    compileErrorYaml('policy: {allow: {or: [{claims/x: y}]}}').message,
    /did you mean "claim"\?/,
  );
  assert.match(
    compileErrorYaml('policy: {allow: {or: [{device: {type: any}}]}}').message,
    /not supported by Portcullis/,
  );
});

test('names inherited from Object.prototype are unknown criteria and certificate keys, not engine text', () => {
  // JSON.parse keeps "__proto__" as an ordinary key, as a YAML or JSON config file can.
  for (const name of ['constructor', 'toString', 'valueOf', 'hasOwnProperty', '__proto__']) {
    const criterion = compileError(
      JSON.parse(`{"policy": {"allow": {"or": [{"${name}": true}]}}}`),
    );
    assert.deepEqual(criterion.path, ['policy', 'allow', 'or', 0, name]);
    assert.match(
      criterion.message,
      new RegExp(`^unknown criterion "${name}"; expected one of accept, reject`),
    );
    assert.doesNotMatch(criterion.message, /native code|\[object Object\]|not supported/);
    // Before, such a key compiled into a check that could never match: a typo'd policy that denied everyone silently.
    const certKey = compileError(
      JSON.parse(`{"policy": {"allow": {"or": [{"client_certificate": {"${name}": "x"}}]}}}`),
    );
    assert.deepEqual(certKey.path, ['policy', 'allow', 'or', 0, 'client_certificate', name]);
    assert.match(
      certKey.message,
      new RegExp(`^unknown certificate matcher key "${name}"; expected one of fingerprint,`),
    );
  }
});

test('unknown operator names the path and suggests the right operator', () => {
  const e = compileErrorYaml(
    'policy: [{allow: {or: [{email: {is: a@b.c}}, {groups: {hsa: admins}}]}}]',
  );
  assert.deepEqual(e.path, ['policy', 0, 'allow', 'or', 1, 'groups', 'hsa']);
  assert.match(e.message, /did you mean "has"\?/);
  const s = compileErrorYaml('policy: {allow: {or: [{email: {startswith: admin}}]}}');
  assert.deepEqual(s.path, ['policy', 'allow', 'or', 0, 'email', 'startswith']);
  assert.match(s.message, /did you mean "starts_with"\?/);
  const l = compileErrorYaml('policy: {allow: {andd: [{accept: true}]}}');
  assert.deepEqual(l.path, ['policy', 'allow', 'andd']);
  assert.match(l.message, /did you mean "and"\?/);
  const a = compileErrorYaml('policy: {alow: {and: [{accept: true}]}}');
  assert.deepEqual(a.path, ['policy', 'alow']);
  assert.match(a.message, /did you mean "allow"\?/);
});

test('wrong value types are reported with what was expected', () => {
  const list = compileErrorYaml('policy: {allow: {or: [{groups: {has: [admins, ops]}}]}}');
  assert.deepEqual(list.path, ['policy', 'allow', 'or', 0, 'groups', 'has']);
  assert.match(list.message, /under "or"/);
  const num = compileErrorYaml('policy: {allow: {or: [{groups: {has: 00123}}]}}');
  assert.match(num.message, /quote it/);
  const notString = compileErrorYaml('policy: {allow: {or: [{email: {is: 5}}]}}');
  assert.deepEqual(notString.path, ['policy', 'allow', 'or', 0, 'email', 'is']);
  const isList = compileErrorYaml('policy: {allow: {or: [{email: [a@b.c]}]}}');
  assert.match(isList.message, /in: \[\.\.\.\]/);
  const inNotList = compileErrorYaml('policy: {allow: {or: [{email: {in: a@b.c}}]}}');
  assert.deepEqual(inNotList.path, ['policy', 'allow', 'or', 0, 'email', 'in']);
  const notArray = compileErrorYaml('policy: {allow: {or: {email: a@b.c}}}');
  assert.deepEqual(notArray.path, ['policy', 'allow', 'or']);
  const twoKeys = compileErrorYaml('policy: {allow: {or: [{email: a@b.c, groups: x}]}}');
  assert.deepEqual(twoKeys.path, ['policy', 'allow', 'or', 0]);
  const claimNoName = compileErrorYaml('policy: {allow: {or: [{claim: x}]}}');
  assert.match(claimNoName.message, /claim\/family_name/);
  const emptyMatcher = compileErrorYaml('policy: {allow: {or: [{email: {}}]}}');
  assert.deepEqual(emptyMatcher.path, ['policy', 'allow', 'or', 0, 'email']);
});

test('structural errors: empty allow, empty operator list, rule with neither allow nor deny', () => {
  assert.deepEqual(compileErrorYaml('policy: {allow: {}}').path, ['policy', 'allow']);
  assert.deepEqual(compileErrorYaml('policy: {allow: null}').path, ['policy', 'allow']);
  assert.deepEqual(compileErrorYaml('policy: {allow: {and: []}}').path, ['policy', 'allow', 'and']);
  assert.deepEqual(compileErrorYaml('policy: [{allow: {or: [{accept: true}]}}, {}]').path, [
    'policy',
    1,
  ]);
  assert.match(
    compileErrorYaml('policy: [{allow: {or: [{accept: true}]}}, {}]').message,
    /neither "allow" nor "deny"/,
  );
  assert.deepEqual(compileErrorYaml('policy: []').path, ['policy']);
  assert.deepEqual(compileErrorYaml('policy: [allow]').path, ['policy', 0]);
  assert.deepEqual(compileErrorYaml('policy: {allow: {and: [{or: []}]}}').path, [
    'policy',
    'allow',
    'and',
    0,
    'or',
  ]);
});

test('an error late in the policy rejects the whole route (nothing half-compiled)', () => {
  const src = parse(`
policy:
  - allow: {or: [{accept: true}]}
  - deny: {or: [{source_ip: 10.0.0.0/99}]}
`) as RoutePolicySource;
  assert.throws(
    () => compileRoutePolicy(src),
    (e: unknown) => e instanceof PolicyError && e.path.join('/') === 'policy/1/deny/or/0/source_ip',
  );
});

// ---------------------------------------------------------------- explanations

test('an allowed decision names the rule and criterion that allowed it', () => {
  const r = route('policy: [{allow: {or: [{email: {is: x@y.z}}, {groups: {has: admins}}]}}]')(
    user({ groups: ['admins', 'eng'] }),
  );
  assert.equal(r.allow, true);
  assert.equal(r.reason, 'allowed by policy[0].allow.or[1]: groups has admins');
  assert.deepEqual(r.trace.at(-1), {
    at: 'policy[0].allow.or[1]',
    criterion: 'groups has admins',
    result: true,
    detail: 'you have admins, eng',
  });
});

test('a negated step explains what must not match', () => {
  const r = route('policy: {allow: {not: [{groups: {has: contractors}}]}}')(
    user({ groups: ['contractors'] }),
  );
  assert.equal(r.allow, false);
  assert.equal(r.reason, 'must not match groups has contractors; you have contractors');
  assert.equal(r.trace[0]!.criterion, 'not groups has contractors');
});

test('failures in an "and" are joined with "and"', () => {
  const r = route('policy: {allow: {and: [{authenticated_user: true}, {http_method: POST}]}}')(
    user(),
    { method: 'GET' },
  );
  assert.equal(r.reason, 'needs method POST; the request method is GET');
});

test('a compiled policy can be evaluated repeatedly and interleaved without leaking state', () => {
  const p = compileRoutePolicy(
    parse(
      'policy: {allow: {or: [{groups: {has: a}}]}, deny: {or: [{http_method: DELETE}]}}',
    ) as RoutePolicySource,
  );
  const a = p({ ctx: ctx(), identity: user({ groups: ['a'] }), trace: true });
  const b = p({ ctx: ctx({ method: 'DELETE' }), identity: user({ groups: ['a'] }), trace: true });
  const c = p({ ctx: ctx(), identity: user({ groups: ['b'] }), trace: true });
  assert.deepEqual([a.allow, b.allow, c.allow], [true, false, false]);
  assert.equal(a.trace.length, 1);
  assert.equal(a.reason, 'allowed by policy.allow.or[0]: groups has a');
});

test('without trace (the request path) a policy gives the same outcome and reason, no steps, and an allow builds nothing', () => {
  const p = compileRoutePolicy(
    parse(`policy:
  - allow: {or: [{groups: {has: admins}}, {email: {is: bob@example.com}}]}
  - deny: {or: [{http_method: DELETE}]}
`) as RoutePolicySource,
  );
  const cases: Array<[Identity | null, Partial<RequestContext>]> = [
    [user({ groups: ['admins'] }), {}],
    [user({ groups: ['eng'], email: 'bob@example.com' }), {}],
    [user({ groups: ['eng'] }), {}],
    [user({ groups: ['admins'] }), { method: 'DELETE' }],
    [null, {}],
  ];
  for (const [id, c] of cases) {
    const traced = p({ ctx: ctx(c), identity: id, trace: true });
    const plain = p({ ctx: ctx(c), identity: id });
    assert.deepEqual(
      [plain.allow, plain.reason, plain.needsIdentity],
      [traced.allow, traced.reason, traced.needsIdentity],
    );
    assert.equal(plain.trace.length, 0);
    assert.ok(traced.trace.length > 0, 'explain still gets the steps');
  }
  // The same deciding step hands back one prebuilt result: nothing per request to collect.
  const first = p({ ctx: ctx(), identity: user({ groups: ['admins'] }) });
  const again = p({
    ctx: ctx(),
    identity: user({ groups: ['admins'], email: 'other@example.com' }),
  });
  assert.equal(first, again);
  assert.ok(Object.isFrozen(first));
  assert.notEqual(
    first,
    p({ ctx: ctx(), identity: user({ groups: ['eng'], email: 'bob@example.com' }) }),
  );
});
