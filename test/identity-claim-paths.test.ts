import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DEMO_USERS, type DemoUser } from '../demo/idp.js';
import { ConfigError } from '../src/config/errors.js';
import { lintConfig } from '../src/config/lint.js';
import { parseConfig } from '../src/config/load.js';
import { claimStrings, groupsAt, readClaim } from '../src/identity/claim-path.js';
import { request } from './helpers/http.js';
import { BROWSER_HEADERS } from './helpers/login.js';
import {
  HOST,
  startProviderStack,
  upstreamHeaders,
  type ProviderStack,
} from './helpers/provider-stack.js';

// Issue 19, section 1: claim paths for any IdP, and `idp_provider` presets that know where
// each IdP puts groups. The claim shapes below are each IdP's documented ones:
// - Keycloak 26: realm roles at realm_access.roles, client roles at
//   resource_access.<client_id>.roles (keycloak.org docs-api 26.1.5,
//   org.keycloak.protocol.oidc.mappers.UserRealmRoleMappingMapper / UserClientRoleMappingMapper).
// - Amazon Cognito: `cognito:groups` (a list) and `cognito:username` in the ID token
//   (docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-id-token.html,
//   "ID token payload").
// - GitLab 17: `groups_direct` in the ID token, `groups` (direct and inherited) from userinfo
//   (docs.gitlab.com/integration/openid_connect_provider, "Shared information").
// - Auth0: custom claims are namespaced URLs; `groups` and `roles` are restricted names an
//   Action cannot set (auth0.com/docs/secure/tokens/json-web-tokens/create-custom-claims,
//   "General restrictions").

const KC: DemoUser = {
  id: 'kc',
  password: 'kc',
  email: 'kc@example.com',
  name: 'Keycloak User',
  groups: ['/staff'],
  claims: {
    realm_access: { roles: ['offline_access', 'realm-admin'] },
    resource_access: {
      portcullis: { roles: ['app-editor'] },
      'other-client': { roles: ['not-for-us'] },
    },
  },
};
const COG: DemoUser = {
  id: 'cog',
  password: 'cog',
  email: 'cog@example.com',
  name: 'Cognito User',
  groups: [],
  claims: { 'cognito:groups': ['Admins', 'Readers'], 'cognito:username': 'cog-user' },
};
const GL: DemoUser = {
  id: 'gl',
  password: 'gl',
  email: 'gl@example.com',
  name: 'GitLab User',
  groups: ['acme', 'acme/platform'],
  claims: { groups_direct: ['acme/platform/sre'] },
};
const A0: DemoUser = {
  id: 'a0',
  password: 'a0',
  email: 'a0@example.com',
  name: 'Auth0 User',
  groups: [],
  claims: {
    'https://corp.example.com/groups': ['auth0-admins'],
    'https://corp.example.com/profile': { login: 'a0-login', mail: 'a0.alt@example.com' },
  },
};
// An IdP that packs its list into one string (e.g. a SAML bridge): "ops,dev".
const PACKED: DemoUser = {
  id: 'packed',
  password: 'packed',
  email: 'packed@example.com',
  name: 'Packed',
  groups: [],
  claims: { groups: 'ops,dev' },
};

const USERS = [...DEMO_USERS, KC, COG, GL, A0, PACKED];
const EXTRA = [
  'realm_access',
  'resource_access',
  'cognito:groups',
  'cognito:username',
  'groups_direct',
  'https://corp.example.com/groups',
  'https://corp.example.com/profile',
];

// One route any signed-in user reaches, one that needs a group the test expects to be there.
function routes(group: string): string {
  return `routes:
  - from: http://${HOST}:\${PORT}
    prefix: /need
    to: \${UPSTREAM}
    pass_identity_headers: true
    policy:
      allow:
        and:
          - groups: { has: ${JSON.stringify(group)} }
  - from: http://${HOST}:\${PORT}
    to: \${UPSTREAM}
    pass_identity_headers: true
    allow_any_authenticated_user: true
`;
}

describe('claim paths (unit)', () => {
  test('a literal claim name wins over a dotted reading; nested paths walk objects', () => {
    const claims = {
      'https://corp.example.com/groups': ['a'],
      realm_access: { roles: ['r1', 'r2'] },
      resource_access: { 'app.corp': { roles: ['dotted-client'] }, app: { roles: ['short'] } },
      'a.b': 'literal',
      a: { b: 'nested' },
    };
    assert.deepEqual(readClaim(claims, 'https://corp.example.com/groups'), ['a']);
    assert.deepEqual(readClaim(claims, 'realm_access.roles'), ['r1', 'r2']);
    // The longest key that exists wins, so a client id with dots needs no quoting.
    assert.deepEqual(readClaim(claims, 'resource_access.app.corp.roles'), ['dotted-client']);
    assert.deepEqual(readClaim(claims, 'resource_access.app.roles'), ['short']);
    assert.equal(readClaim(claims, 'a.b'), 'literal');
    assert.equal(readClaim(claims, 'realm_access.missing'), undefined);
    assert.equal(readClaim(claims, 'realm_access..roles'), undefined);
  });

  test('hostile paths find nothing: prototype keys, inherited properties, silly indices', () => {
    const claims = { list: ['x', 'y'], obj: {} };
    for (const path of [
      '__proto__',
      '__proto__.polluted',
      'constructor.name',
      'obj.constructor',
      'obj.toString',
      'list.length',
      'list.-1',
      'list.01',
      'list.1e3',
      'obj.hasOwnProperty',
    ])
      assert.equal(readClaim(claims, path), undefined, path);
    assert.equal(readClaim(claims, 'list.1'), 'y');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  test('a single string is one group unless a separator is set; non-strings are dropped', () => {
    assert.deepEqual(claimStrings('ops,admins', 'none'), ['ops,admins']);
    assert.deepEqual(claimStrings('ops, admins,,', 'comma'), ['ops', 'admins']);
    assert.deepEqual(claimStrings(' ops  admins\tdev ', 'space'), ['ops', 'admins', 'dev']);
    assert.deepEqual(claimStrings(['a', 1, null, '', { b: 1 }, 'c'], 'comma'), ['a', 'c']);
    assert.deepEqual(claimStrings({ roles: ['a'] }, 'none'), []);
    assert.deepEqual(claimStrings('', 'space'), []);
    assert.deepEqual(
      groupsAt({ g: ['a', 'b'], r: { x: ['b', 'c'] } }, ['g', 'r.x', 'missing'], 'none'),
      ['a', 'b', 'c'],
    );
  });
});

const BASE = `address: 127.0.0.1:8443
insecure_server: true
cookie_secure: false
cookie_secret: ${Buffer.alloc(32, 7).toString('base64')}
idp_provider_url: https://idp.example.com
idp_client_id: portcullis-app
idp_client_secret: s3cr3t-Zq8Lw2Rn5Tb7Vx1Ym4Kc
`;
const GROUP_ROUTE = `routes:
  - from: https://app.example.com
    to: http://127.0.0.1:9000
    policy:
      allow:
        and:
          - groups: { has: admins }
`;

describe('idp_provider presets and claim settings (config)', () => {
  test('each provider sets the defaults its documentation implies; explicit settings win', () => {
    const kc = parseConfig(`${BASE}idp_provider: keycloak\n${GROUP_ROUTE}`, 'c.yaml', {});
    assert.deepEqual(kc.idp.groupsClaims, [
      'groups',
      'realm_access.roles',
      'resource_access.portcullis-app.roles',
    ]);
    const cog = parseConfig(`${BASE}idp_provider: cognito\n${GROUP_ROUTE}`, 'c.yaml', {});
    assert.deepEqual(cog.idp.groupsClaims, ['cognito:groups']);
    assert.ok(!cog.idp.scopes.includes('offline_access'), 'Cognito rejects offline_access');
    const gl = parseConfig(`${BASE}idp_provider: gitlab\n${GROUP_ROUTE}`, 'c.yaml', {});
    assert.deepEqual(gl.idp.groupsClaims, ['groups', 'groups_direct']);
    const okta = parseConfig(`${BASE}idp_provider: okta\n${GROUP_ROUTE}`, 'c.yaml', {});
    assert.ok(okta.idp.scopes.includes('groups'));
    const az = parseConfig(`${BASE}idp_provider: azure\n${GROUP_ROUTE}`, 'c.yaml', {});
    assert.equal(az.idp.userClaim, 'oid');
    const own = parseConfig(
      `${BASE}idp_provider: keycloak\nidp_groups_claim: [realm_access.roles]\nidp_scopes: [openid]\nidp_groups_separator: comma\n${GROUP_ROUTE}`,
      'c.yaml',
      {},
    );
    assert.deepEqual(own.idp.groupsClaims, ['realm_access.roles']);
    assert.deepEqual(own.idp.scopes, ['openid']);
    assert.equal(own.idp.groupsSeparator, 'comma');
    const plain = parseConfig(`${BASE}${GROUP_ROUTE}`, 'c.yaml', {});
    assert.deepEqual(plain.idp.groupsClaims, ['groups'], 'no provider: unchanged defaults');
    assert.equal(plain.idp.groupsSeparator, 'none');
  });

  test('bad values are refused with the key, the line and what was expected', () => {
    const cases: Array<[string, RegExp]> = [
      ['idp_provider: keycloack', /idp_provider.*expected idp_provider as one of oidc, keycloak/s],
      ['idp_groups_claim: 5', /idp_groups_claim.*claim name or dotted path/s],
      ['idp_groups_claim: []', /idp_groups_claim/],
      ['idp_groups_claim: "a\\u0000b"', /without control characters/],
      ['idp_groups_separator: tab', /expected idp_groups_separator as one of none, comma, space/],
      ['idp_user_claim: ""', /idp_user_claim.*claim name or a dotted path/s],
    ];
    for (const [line, expected] of cases) {
      assert.throws(
        () => parseConfig(`${BASE}${line}\n${GROUP_ROUTE}`, 'bad.yaml', {}),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError, String(e));
          assert.match(e.message, expected);
          assert.match(e.message, /bad\.yaml:8/, `the line is named for ${line}`);
          return true;
        },
      );
    }
  });

  test('check: no groups-scope warning for IdPs that send roles unasked; Auth0 needs a namespaced claim', () => {
    const warn = (globals: string) => {
      const yaml = `${BASE}${globals}\n${GROUP_ROUTE}`;
      return lintConfig(parseConfig(yaml, 'c.yaml', {}), yaml).filter((i) =>
        /group/i.test(i.message),
      );
    };
    assert.equal(warn('').length, 1, 'plain OIDC without a groups scope still warns');
    assert.deepEqual(warn('idp_provider: keycloak'), []);
    assert.deepEqual(warn('idp_provider: cognito'), []);
    assert.deepEqual(warn('idp_provider: okta'), []);
    const a0 = warn('idp_provider: auth0\nidp_scopes: [openid, email, groups]');
    assert.equal(a0.length, 1);
    assert.match(a0[0]!.message, /Auth0.*namespaced/);
    assert.deepEqual(
      warn(
        'idp_provider: auth0\nidp_scopes: [openid, email]\nidp_groups_claim: https://corp.example.com/groups',
      ),
      [],
    );
  });
});

describe('providers against the real test IdP issuing their claim shapes', () => {
  let stack: ProviderStack;
  before(async () => {
    stack = await startProviderStack({ users: USERS, extraClaims: EXTRA, deployments: 7 });
  });
  after(() => stack.close());

  test('keycloak: groups, realm roles and this client’s roles are the groups; another client’s are not', async () => {
    const d = await stack.deploy('idp_provider: keycloak', routes('realm-admin'));
    const { final, jar } = await d.signIn('kc', '/need?format=json');
    assert.equal(final.status, 200, final.body);
    const groups = upstreamHeaders(final)['x-forwarded-groups']?.[0]?.split(',') ?? [];
    assert.deepEqual(groups, ['/staff', 'offline_access', 'realm-admin', 'app-editor']);
    assert.ok(!groups.includes('not-for-us'));
    // A policy on a client role works the same way.
    const alice = await d.signIn('alice', '/need?format=json');
    assert.equal(alice.final.status, 403, 'alice has no realm-admin role');
    assert.match(alice.final.body, /realm-admin/);
    const again = await request(`http://${HOST}:${d.port}/?format=json`, {
      jar,
      headers: BROWSER_HEADERS,
    });
    assert.equal(again.status, 200);
  });

  test('cognito: cognito:groups are the groups; idp_user_claim reads cognito:username', async () => {
    const d = await stack.deploy(
      'idp_provider: cognito\nidp_user_claim: cognito:username',
      routes('Admins'),
    );
    const { final } = await d.signIn('cog', '/need?format=json');
    assert.equal(final.status, 200, final.body);
    const h = upstreamHeaders(final);
    assert.deepEqual(h['x-forwarded-groups'], ['Admins,Readers']);
    assert.deepEqual(h['x-forwarded-user'], ['cog-user']);
  });

  test('gitlab: groups (userinfo) and groups_direct (ID token) together', async () => {
    const d = await stack.deploy('idp_provider: gitlab', routes('acme/platform/sre'));
    const { final } = await d.signIn('gl', '/need?format=json');
    assert.equal(final.status, 200, final.body);
    assert.deepEqual(upstreamHeaders(final)['x-forwarded-groups'], [
      'acme,acme/platform,acme/platform/sre',
    ]);
  });

  test('auth0: a namespaced claim (a URL full of dots) and paths into a namespaced object', async () => {
    const d = await stack.deploy(
      [
        'idp_provider: auth0',
        'idp_groups_claim: https://corp.example.com/groups',
        'idp_user_claim: https://corp.example.com/profile.login',
      ].join('\n'),
      routes('auth0-admins'),
    );
    const { final } = await d.signIn('a0', '/need?format=json');
    assert.equal(final.status, 200, final.body);
    const h = upstreamHeaders(final);
    assert.deepEqual(h['x-forwarded-groups'], ['auth0-admins']);
    assert.deepEqual(h['x-forwarded-user'], ['a0-login']);
  });

  test('a packed string is one group by default, so "ops,dev" grants neither ops nor dev', async () => {
    const d = await stack.deploy('idp_provider: ping', routes('dev'));
    const { final, jar } = await d.signIn('packed', '/need?format=json');
    assert.equal(final.status, 403, final.body);
    const whole = await request(`http://${HOST}:${d.port}/?format=json`, {
      jar,
      headers: BROWSER_HEADERS,
    });
    assert.deepEqual(upstreamHeaders(whole)['x-forwarded-groups'], ['ops,dev']);
  });

  test('idp_groups_separator: comma splits such a string, for IdPs documented to pack lists', async () => {
    const d = await stack.deploy('idp_provider: ping\nidp_groups_separator: comma', routes('dev'));
    const { final } = await d.signIn('packed', '/need?format=json');
    assert.equal(final.status, 200, final.body);
    assert.deepEqual(upstreamHeaders(final)['x-forwarded-groups'], ['ops,dev']);
  });

  test('idp_email_claim as a path feeds X-Forwarded-Email and email policies', async () => {
    const d = await stack.deploy(
      'idp_email_claim: https://corp.example.com/profile.mail',
      `routes:
  - from: http://${HOST}:\${PORT}
    to: \${UPSTREAM}
    pass_identity_headers: true
    allowed_emails: [a0.alt@example.com]
`,
    );
    const ok = await d.signIn('a0');
    assert.equal(ok.final.status, 200, ok.final.body);
    assert.deepEqual(upstreamHeaders(ok.final)['x-forwarded-email'], ['a0.alt@example.com']);
    const other = await d.signIn('alice');
    assert.equal(other.final.status, 403);
  });
});
