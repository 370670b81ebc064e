import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DEMO_USERS, type DemoUser } from '../demo/idp.js';
import { CookieJar, request, type Resp } from './helpers/http.js';
import {
  API_AUDIENCE,
  CLI,
  startIdentityStack,
  type IdentityStack,
} from './helpers/identity-stack.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startStack, type Stack } from './helpers/stack.js';

// Issue 17, item 2: an email the IdP did not verify is not an identity. Self-registration and
// social logins let anyone type any address; before the fix, mallory registered "ceo@example.com"
// at the IdP (email_verified: false), passed `domain: example.com` and reached the upstream as
// X-Forwarded-Email: ceo@example.com. oauth2-proxy refuses such logins unless started with
// `--insecure-oidc-allow-unverified-email` (oauth2-proxy PR #159, CHANGELOG v4.0.0: "option to skip
// the OIDC provider verified email check"); Portcullis refuses by default the same way.

const MALLORY: DemoUser = {
  id: 'mallory',
  password: 'mallory',
  email: 'ceo@example.com',
  name: 'Mallory',
  groups: [],
  emailVerified: false,
};
// Entra ID and others send no email_verified at all.
const EVE: DemoUser = {
  id: 'eve',
  password: 'eve',
  email: 'eve@example.com',
  name: 'Eve',
  groups: [],
  emailVerified: 'omitted',
};
const USERS = [...DEMO_USERS, MALLORY, EVE];

const ROUTES = `routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    pass_identity_headers: true
    policy:
      allow:
        or:
          - domain: { is: example.com }
`;

function seen(r: Resp): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of r.json().rawHeaders as Array<[string, string]>)
    (out[k.toLowerCase()] ??= []).push(v);
  return out;
}

async function signIn(s: Stack, user: string): Promise<{ final: Resp; jar: CookieJar }> {
  const jar = new CookieJar();
  const { final } = await loginThroughIdp(`http://app.corp.test:${s.port}/?format=json`, {
    jar,
    username: user,
    password: user,
  });
  return { final, jar };
}

/** The jar holds no Portcullis session, and the app still asks this browser to sign in. */
async function assertNoSession(s: Stack, jar: CookieJar): Promise<void> {
  const again = await request(`http://app.corp.test:${s.port}/?format=json`, {
    jar,
    headers: BROWSER_HEADERS,
  });
  assert.equal(again.status, 302, 'no session was set: the app sends the browser to sign in again');
  assert.match(again.location ?? '', /\/\.portcullis\/sign_in|\/auth\?/);
}

function auditLines(s: Stack, event: string): Array<Record<string, unknown>> {
  return s.logs.filter((l) => l.name === 'audit' && l.event === event);
}

describe('an email the IdP did not verify (default settings)', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({ hosts: ['app.corp.test'], body: ROUTES, idp: { users: USERS } });
  });
  after(() => s.close());

  test('email_verified false: sign-in refused with a clear page and an audit line, no session, nothing upstream', async () => {
    const { final, jar } = await signIn(s, 'mallory');
    assert.equal(final.status, 403, final.body);
    assert.match(final.body, /Sign-in refused/);
    assert.match(final.body, /has not verified the email address ceo@example\.com/);
    assert.doesNotMatch(
      final.body,
      /rawHeaders|x-forwarded-email/i,
      'the upstream was never reached',
    );
    await assertNoSession(s, jar);
    const line = auditLines(s, 'login_failed').find((l) => l.reason === 'email_unverified');
    assert.ok(line, 'an audit line says why');
    assert.equal(line.email, 'ceo@example.com');
    assert.equal(line.user, 'mallory');
    assert.match(String(line.setting), /idp_allow_unverified_email/);
    assert.ok(
      !auditLines(s, 'login').some((l) => l.user === 'ceo@example.com'),
      'no successful login was recorded',
    );
  });

  test('no email_verified claim at all: refused too, and the log names the setting that trusts such an IdP', async () => {
    const { final, jar } = await signIn(s, 'eve');
    assert.equal(final.status, 403, final.body);
    assert.match(final.body, /did not say whether the email address eve@example\.com is verified/);
    await assertNoSession(s, jar);
    const line = auditLines(s, 'login_failed').find(
      (l) => l.reason === 'email_verification_unknown',
    );
    assert.ok(line);
    assert.match(String(line.setting), /idp_email_verified_missing: trust/);
  });

  test('a verified user signs in as before', async () => {
    const { final } = await signIn(s, 'alice');
    assert.equal(final.status, 200, final.body);
    assert.deepEqual(seen(final)['x-forwarded-email'], ['alice@example.com']);
  });
});

describe('opting in', () => {
  let trustMissing: Stack;
  let allowUnverified: Stack;
  before(async () => {
    trustMissing = await startStack({
      hosts: ['app.corp.test'],
      body: `idp_email_verified_missing: trust\n${ROUTES}`,
      idp: { users: USERS },
    });
    allowUnverified = await startStack({
      hosts: ['app.corp.test'],
      body: `idp_allow_unverified_email: true\n${ROUTES}`,
      idp: { users: USERS },
    });
  });
  after(() => Promise.all([trustMissing.close(), allowUnverified.close()]));

  test('idp_email_verified_missing: trust lets an email without the claim in, but never one marked unverified', async () => {
    const eve = await signIn(trustMissing, 'eve');
    assert.equal(eve.final.status, 200, eve.final.body);
    assert.deepEqual(seen(eve.final)['x-forwarded-email'], ['eve@example.com']);
    const mallory = await signIn(trustMissing, 'mallory');
    assert.equal(mallory.final.status, 403);
    await assertNoSession(trustMissing, mallory.jar);
  });

  test('idp_allow_unverified_email: true lets both in', async () => {
    const mallory = await signIn(allowUnverified, 'mallory');
    assert.equal(mallory.final.status, 200, mallory.final.body);
    assert.deepEqual(seen(mallory.final)['x-forwarded-email'], ['ceo@example.com']);
    const eve = await signIn(allowUnverified, 'eve');
    assert.equal(eve.final.status, 200, eve.final.body);
  });
});

describe('bearer tokens and introspection follow the same rule', () => {
  let s: IdentityStack;
  const url = (): string => `http://api.corp.test:${s.port}/?format=json`;
  before(async () => {
    s = await startIdentityStack({
      hosts: ['api.corp.test'],
      globals: `bearer_audiences: [${API_AUDIENCE}, ${CLI.id}]
idp_introspection: true`,
      body: `routes:
  - from: http://api.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_bearer_tokens: true
    pass_identity_headers: true
    policy:
      allow:
        or:
          - domain: { is: example.com }
`,
    });
    await s.restartIdp({ users: USERS });
  });
  after(() => s.close());

  for (const [kind, resource] of [
    ['a JWT', API_AUDIENCE],
    ['an opaque token (introspection)', undefined],
  ] as const) {
    test(`${kind} whose email is unverified or unstated is refused with 401 invalid_token; a verified one passes`, async () => {
      for (const user of ['mallory', 'eve']) {
        const token = await s.userToken(user, resource);
        const r = await request(url(), {
          headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        });
        assert.equal(r.status, 401, `${user}: ${r.body}`);
        assert.equal(r.json().error, 'invalid_token');
        assert.match(
          String(r.headers['www-authenticate']),
          /error="invalid_token".*email address .*example\.com is not/,
        );
        assert.doesNotMatch(r.body, /rawHeaders/, 'nothing reached the upstream');
      }
      const alice = await s.userToken('alice', resource);
      const ok = await request(url(), { headers: { authorization: `Bearer ${alice}` } });
      assert.equal(ok.status, 200, ok.body);
      assert.deepEqual(seen(ok)['x-forwarded-email'], ['alice@example.com']);
    });
  }
});
