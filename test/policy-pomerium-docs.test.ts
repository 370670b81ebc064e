// Policy examples from Pomerium's public documentation, pasted verbatim as YAML and checked to
// behave as the surrounding documentation text says they do.
import test from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { compileRoutePolicy, PolicyError, type RoutePolicySource } from '../src/policy/index.js';
import type { Identity, RequestContext } from '../src/decide/types.js';

const FRI = Date.UTC(2025, 2, 28, 12, 0); // a Friday

function ctx(over: Partial<RequestContext> = {}): RequestContext {
  return {
    method: 'GET',
    scheme: 'https',
    host: 'verify.localhost.pomerium.io',
    port: 443,
    path: '/',
    query: '',
    clientIp: '198.51.100.1',
    headers: {},
    browser: true,
    now: FRI,
    ...over,
  };
}

function user(over: Partial<Identity> = {}): Identity {
  return {
    sub: 'u',
    user: 'u',
    email: 'someone@example.com',
    emailVerified: true,
    name: '',
    preferredUsername: '',
    groups: [],
    claims: {},
    via: 'session',
    ...over,
  };
}

/** A bare PPL document, as the docs show it, placed in a route's `policy`. */
function ppl(doc: string) {
  const p = compileRoutePolicy({ policy: parse(doc) });
  return (identity: Identity | null, c: Partial<RequestContext> = {}) =>
    p({ ctx: ctx(c), identity }).allow;
}

/** A whole route object as the docs show it. */
function routeYaml(doc: string) {
  const p = compileRoutePolicy(parse(doc) as RoutePolicySource);
  return (identity: Identity | null, c: Partial<RequestContext> = {}) =>
    p({ ctx: ctx(c), identity }).allow;
}

// Source: https://www.pomerium.com/docs/internals/ppl ("At a Glance"),
// pomerium/documentation content/docs/internals/ppl.mdx
test('docs: at a glance — example.com domain allowed, user2 and user3 denied', () => {
  const allow = ppl(`
allow:
  and:
    - domain:
        is: example.com
deny:
  or:
    - email:
        is: user2@example.com
    - email:
        is: user3@example.com
`);
  assert.equal(allow(user({ email: 'user1@example.com' })), true);
  assert.equal(allow(user({ email: 'user2@example.com' })), false);
  assert.equal(allow(user({ email: 'user3@example.com' })), false);
  assert.equal(allow(user({ email: 'user1@other.com' })), false);
});

// Source: https://www.pomerium.com/docs/internals/ppl ("More on Logical Operators"),
// pomerium/documentation content/docs/internals/ppl.mdx — OPERATOR replaced by each operator.
test('docs: logical operators and / or / not / nor over domain and claim/groups', () => {
  const template = `
allow:
  OPERATOR:
    - domain:
        is: example.com
    - claim/groups: admin
`;
  const people = {
    both: user({ email: 'a@example.com', claims: { groups: ['admin'] } }),
    domainOnly: user({ email: 'a@example.com', claims: { groups: ['eng'] } }),
    adminOnly: user({ email: 'a@other.com', claims: { groups: ['admin'] } }),
    neither: user({ email: 'a@other.com', claims: { groups: ['eng'] } }),
  };
  const run = (op: string) => {
    const allow = ppl(template.replace('OPERATOR', op));
    return [
      allow(people.both),
      allow(people.domainOnly),
      allow(people.adminOnly),
      allow(people.neither),
    ];
  };
  // "and": example.com and admin (A ∧ B)
  assert.deepEqual(run('and'), [true, false, false, false]);
  // "or": example.com or admin (A ∨ B)
  assert.deepEqual(run('or'), [true, true, true, false]);
  // "not": neither example.com nor admin (¬A ∧ ¬B)
  assert.deepEqual(run('not'), [false, false, false, true]);
  // "nor": not example.com or not admin (¬A ∨ ¬B)
  assert.deepEqual(run('nor'), [false, true, true, true]);
});

// Source: https://www.pomerium.com/docs/internals/ppl ("Multiple Operators in a Rule"),
// pomerium/documentation content/docs/internals/ppl.mdx — both forms are documented as equivalent.
test('docs: multiple operators in one rule equal multiple allow rules', () => {
  const oneRule = ppl(`
allow:
  and:
    - claim/family_name: Smith
  or:
    - domain:
        is: domain1.com
    - domain:
        is: domain2.com
`);
  const twoRules = ppl(`
- allow:
    and:
      - claim/family_name: Smith
- allow:
    or:
      - domain:
          is: domain1.com
      - domain:
          is: domain2.com
`);
  const people = [
    user({ email: 'x@other.com', claims: { family_name: 'Smith' } }),
    user({ email: 'x@domain1.com' }),
    user({ email: 'x@domain2.com', claims: { family_name: 'Jones' } }),
    user({ email: 'x@other.com', claims: { family_name: 'Jones' } }),
  ];
  assert.deepEqual(
    people.map((p) => oneRule(p)),
    [true, true, true, false],
  );
  assert.deepEqual(
    people.map((p) => twoRules(p)),
    [true, true, true, false],
  );
});

// Source: https://www.pomerium.com/docs/internals/ppl ("Criteria"),
// pomerium/documentation content/docs/internals/ppl.mdx
test('docs: criteria with sub-path — Smiths allowed, but any non-GET request denied', () => {
  const allow = ppl(`
allow:
  and:
    - claim/family_name: Smith
deny:
  not:
    - http_method:
        is: GET
`);
  const smith = user({ claims: { family_name: 'Smith' } });
  assert.equal(allow(smith, { method: 'GET' }), true);
  assert.equal(allow(smith, { method: 'POST' }), false);
  assert.equal(allow(user({ claims: { family_name: 'Jones' } }), { method: 'GET' }), false);
});

// Source: https://www.pomerium.com/docs/internals/ppl ("Certificate Matcher"),
// pomerium/documentation content/docs/internals/ppl.mdx
test('docs: certificate matcher — san_email ends_with, and a single trusted fingerprint', () => {
  const san = ppl(`
allow:
  and:
    - authenticated_user: true
    - client_certificate:
        san_email:
          ends_with: '@yourdomain.com'
`);
  const good = {
    fingerprint256: '00'.repeat(32).match(/../g)!.join(':'),
    subject: {},
    san: ['email:alice@yourdomain.com'],
  };
  const bad = { ...good, san: ['email:alice@otherdomain.com'] };
  assert.equal(san(user(), { clientCert: good }), true);
  assert.equal(san(user(), { clientCert: bad }), false);
  assert.equal(san(null, { clientCert: good }), false, 'still requires sign-in');

  const fp = ppl(`
allow:
  and:
    - authenticated_user: true
    - client_certificate:
        fingerprint: '17859273e8a980631d367b2d5a6a6635412b0f22835f69e47b3f65624546a704'
`);
  // The docs' openssl output for the same certificate, in the long form Node also uses.
  const trusted = {
    fingerprint256:
      '17:85:92:73:E8:A9:80:63:1D:36:7B:2D:5A:6A:66:35:41:2B:0F:22:83:5F:69:E4:7B:3F:65:62:45:46:A7:04',
    subject: {},
    san: [],
  };
  assert.equal(fp(user(), { clientCert: trusted }), true);
  assert.equal(fp(user(), { clientCert: good }), false);
  assert.equal(fp(user()), false, 'no certificate');
});

// Source: https://www.pomerium.com/docs/internals/ppl ("Certificate Matcher", spki_hash allowlist),
// pomerium/documentation content/docs/internals/ppl.mdx (the docs' trailing "..." removed).
test('docs: spki_hash allowlist is refused at load time, not silently ignored', () => {
  assert.throws(
    () =>
      ppl(`
allow:
  and:
    - authenticated_user: true
    - client_certificate:
        spki_hash:
          - 'FsDbM0rUYIiL3V339eIKqiz6HPSB+Pz2WeAWhqlqh8U='
          - 'pbdFxDXEtpabt3MZiik71farokMg6ZIn2azvsdXtZYA='
          - 'WTu9ETBS1/v/ll20erWcf+TAj7rzrJix/oCUv5GMPtg='
`),
    (e: unknown) => e instanceof PolicyError && /spki_hash is not supported/.test(e.message),
  );
});

// Source: https://www.pomerium.com/docs/internals/ppl ("Day of Week Matcher"),
// pomerium/documentation content/docs/internals/ppl.mdx
test('docs: day_of_week tue-fri', () => {
  const allow = ppl(`
allow:
  and:
    - day_of_week: tue-fri
`);
  const day = (d: number) => Date.UTC(2025, 2, d, 12); // 2025-03-24 is a Monday
  assert.deepEqual(
    [24, 25, 26, 27, 28, 29, 30].map((d) => allow(null, { now: day(d) })),
    [false, true, true, true, true, false, false],
  );
});

// Source: https://www.pomerium.com/docs/internals/ppl ("Date Matcher"),
// pomerium/documentation content/docs/internals/ppl.mdx
test('docs: date after 2020-01-02T16:20:00 and before 2150-01-02T16:20:00', () => {
  const allow = ppl(`
allow:
  and:
    - date:
        after: 2020-01-02T16:20:00
        before: 2150-01-02T16:20:00
`);
  assert.equal(allow(null, { now: FRI }), true);
  assert.equal(allow(null, { now: Date.UTC(2020, 0, 2, 16, 19) }), false);
  assert.equal(allow(null, { now: Date.UTC(2150, 0, 2, 16, 21) }), false);
});

// Source: https://www.pomerium.com/docs/internals/ppl ("String Matcher"),
// pomerium/documentation content/docs/internals/ppl.mdx
test('docs: string matcher starts_with admin@ and in [...]', () => {
  const admin = ppl(`
allow:
  and:
    - email:
        starts_with: 'admin@'
`);
  assert.equal(admin(user({ email: 'admin@example.com' })), true);
  assert.equal(admin(user({ email: 'administrator@example.com' })), false);

  const listed = ppl(`
allow:
  and:
    - email:
        in: ['user1@company.com', 'user2.company.com']
`);
  assert.equal(listed(user({ email: 'user1@company.com' })), true);
  assert.equal(
    listed(user({ email: 'user2@company.com' })),
    false,
    'the docs list "user2.company.com", which no address equals',
  );
});

// Source: https://www.pomerium.com/docs/internals/ppl ("String Matcher", not_in under deny),
// pomerium/documentation content/docs/internals/ppl.mdx — mcp_tool is an MCP-only criterion.
test('docs: the mcp_tool not_in example is rejected as unsupported', () => {
  assert.throws(
    () =>
      ppl(`
deny:
  and:
    - mcp_tool:
        not_in: ['query', 'list_tables']
`),
    (e: unknown) =>
      e instanceof PolicyError &&
      e.path.join('.') === 'policy.deny.and.0.mcp_tool' &&
      /not supported/.test(e.message),
  );
});

// Source: https://www.pomerium.com/docs/internals/ppl ("String List Matcher"),
// pomerium/documentation content/docs/internals/ppl.mdx
test('docs: groups has a group id', () => {
  const allow = ppl(`
allow:
  and:
    - groups:
        has: '00gv40ki4gmtCyl5d4x6'
`);
  assert.equal(allow(user({ groups: ['other', '00gv40ki4gmtCyl5d4x6'] })), true);
  assert.equal(allow(user({ groups: ['other'] })), false);
});

// Source: https://www.pomerium.com/docs/internals/ppl ("Time of Day Matcher"),
// pomerium/documentation content/docs/internals/ppl.mdx
test('docs: time_of_day UTC after 2:20:00 before 4:30PM', () => {
  const allow = ppl(`
allow:
  and:
    - time_of_day:
        timezone: UTC
        after: 2:20:00
        before: 4:30PM
`);
  const at = (h: number, m: number) => allow(null, { now: Date.UTC(2025, 2, 28, h, m) });
  assert.equal(at(2, 19), false);
  assert.equal(at(2, 20), true);
  assert.equal(at(16, 29), true);
  assert.equal(at(16, 30), false);
});

// Source: https://www.pomerium.com/docs/reference/routes/policy ("Examples", Core),
// pomerium/documentation content/docs/reference/routes/policy.mdx
test('docs: route policy requiring both domain pomerium.com and user id "user"', () => {
  const allow = routeYaml(`
from: https://verify.localhost.pomerium.io
to: http://verify:8000
policy:
  - allow:
      and:
        - domain:
            is: pomerium.com
        - user:
            is: user
`);
  assert.equal(allow(user({ email: 'x@pomerium.com', user: 'user' })), true);
  assert.equal(allow(user({ email: 'x@pomerium.com', user: 'other' })), false);
  assert.equal(allow(user({ email: 'x@example.com', user: 'user' })), false);
});

// Source: pomerium/documentation content/examples/config/config.docker.yaml.md (verify route)
test('docs: docker example route allows exactly one email', () => {
  const allow = routeYaml(`
from: https://verify.localhost.pomerium.io
to: http://verify:8000
policy:
  - allow:
      or:
        - email:
            # Replace user@example.com with your email address
            is: user@example.com
pass_identity_headers: true
`);
  assert.equal(allow(user({ email: 'user@example.com' })), true);
  assert.equal(allow(user({ email: 'other@example.com' })), false);
});

// Source: https://www.pomerium.com/docs/learn-pomerium/build-policies (Examples 2 and 3),
// pomerium/documentation content/docs/learn-pomerium/build-policies.md
test('docs: build-policies — domain example.com; domain or user id', () => {
  const byDomain = routeYaml(`
policy:
  allow:
    and:
      - domain:
          is: example.com
`);
  // "if your email were bob@gmail.com, Pomerium would deny you access; if your email were bob@example.com, Pomerium would grant you access"
  assert.equal(byDomain(user({ email: 'bob@gmail.com' })), false);
  assert.equal(byDomain(user({ email: 'bob@example.com' })), true);

  const domainOrUser = routeYaml(`
policy:
  allow:
    or:
      - domain:
          is: example.com
      - user:
          is: '1234567890#$%^'
`);
  assert.equal(domainOrUser(user({ email: 'x@gmail.com', user: '1234567890#$%^' })), true);
  assert.equal(domainOrUser(user({ email: 'x@example.com', user: 'someone' })), true);
  assert.equal(domainOrUser(user({ email: 'x@gmail.com', user: 'someone' })), false);
});

// Source: https://www.pomerium.com/docs/learn-pomerium/build-policies ("Build policies for your routes"),
// pomerium/documentation content/docs/learn-pomerium/build-policies.md — this snippet in the docs is
// mis-indented, so YAML reads `is` as a second key next to `domain`. It must fail loudly rather
// than compile into something that ignores the domain.
test('docs: the mis-indented build-policies snippet is rejected with a pointer to the item', () => {
  let err: unknown;
  try {
    routeYaml(`
policy:
  allow:
    and:
      - domain:
        is: example.com
`);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof PolicyError);
  assert.deepEqual(err.path, ['policy', 'allow', 'and', 0]);
  assert.match(err.message, /exactly one key/);
});

// Source: https://www.pomerium.com/docs/reference/routes/public-access and
// https://www.pomerium.com/docs/reference/routes/allow-any-authenticated-user ("Examples", Core)
test('docs: public access allows anonymous users; any-authenticated-user requires sign-in', () => {
  const pub = routeYaml('allow_public_unauthenticated_access: true');
  assert.equal(pub(null), true);
  const any = compileRoutePolicy({ allow_any_authenticated_user: true });
  assert.equal(any({ ctx: ctx(), identity: user({ email: 'someone@gmail.com' }) }).allow, true);
  const anon = any({ ctx: ctx(), identity: null });
  assert.equal(anon.allow, false);
  assert.equal(anon.needsIdentity, true);
});
