import test from 'node:test';
import assert from 'node:assert/strict';
import {
  IDENTITY_HEADER_NAMES,
  canonicalHeaderName,
  filterRequestHeaders,
  hopByHop,
  identityHeaderSet,
  isIdentityHeader,
} from '../src/security/headers.js';

test('canonical names are lower-case with underscores read as dashes', () => {
  assert.equal(canonicalHeaderName('X_Forwarded_Email'), 'x-forwarded-email');
  assert.equal(canonicalHeaderName('X-Auth_Request_User'), 'x-auth-request-user');
  assert.equal(canonicalHeaderName('accept'), 'accept');
});

const FORGED_SPELLINGS = [
  'X-Forwarded-Email',
  'x-forwarded-email',
  'X_Forwarded_Email',
  'X-FORWARDED-USER',
  'x-forwarded-groups',
  'X-Forwarded-Preferred-Username',
  'X-Forwarded-Access-Token',
  'X-Auth-Request-User',
  'X-Auth_Request_User',
  'x_auth_request_email',
  'X-Auth-Request-Groups',
  'X-Auth-Request-Preferred-Username',
  'X-Auth-Request-Access-Token',
  'Remote-User',
  'REMOTE_USER',
  'Remote-Groups',
  'Remote-Email',
  'Remote-Name',
  'X-authentik-username',
  'X-Authentik-Groups',
  'X-authentik-email',
  'X-authentik-name',
  'X-authentik-uid',
  'X-authentik-jwt',
  'X-authentik-meta-jwks',
  'X-Authentik-Entitlements',
  'X-Portcullis-Jwt-Assertion',
  'x_portcullis_jwt_assertion',
  'X-Portcullis-Anything',
  'X-Pomerium-Jwt-Assertion',
  'X-Pomerium-Claim-Email',
  'x_pomerium_claim_given_name',
  'X-Pomerium-Jwt-Assertion-For',
  // Kubernetes user impersonation (kubernetes.io/docs/reference/access-authn-authz/authentication/#user-impersonation)
  'Impersonate-User',
  'impersonate_group',
  'Impersonate-Uid',
  'Impersonate-Extra-Scopes',
  'IMPERSONATE.USER',
];

test('every spelling of every identity header is recognised', () => {
  for (const name of FORGED_SPELLINGS) assert.ok(isIdentityHeader(name), name);
  for (const name of IDENTITY_HEADER_NAMES) {
    assert.equal(name, canonicalHeaderName(name), 'the set holds canonical names');
    assert.ok(isIdentityHeader(name.toUpperCase().replaceAll('-', '_')), name);
  }
});

test('inputs and ordinary headers are not identity headers', () => {
  for (const name of [
    'X-Auth-Request-Redirect',
    'X-Forwarded-For',
    'X-Forwarded-Proto',
    'X-Forwarded-Host',
    'Accept',
    'Cookie',
    'Authorization',
    'X-Remote-Something',
    'X-Email',
    'Impersonate',
    'X-Impersonate-User',
  ]) {
    assert.equal(isIdentityHeader(name), false, name);
  }
});

test('configured extra names (e.g. jwt_claims_headers targets) are matched in every spelling', () => {
  const extra = identityHeaderSet(['X-Email', ' x_username ']);
  assert.ok(isIdentityHeader('x-email', extra));
  assert.ok(isIdentityHeader('X_EMAIL', extra));
  assert.ok(isIdentityHeader('X-Username', extra));
  assert.equal(isIdentityHeader('X-Email-Verified', extra), false);
});

test('hop-by-hop: the RFC 9110 set plus every token of every Connection header', () => {
  const set = hopByHop([
    'Host',
    'a',
    'Connection',
    'keep-alive, X-Custom',
    'connection',
    ' x_other ,,Te',
    'X-Custom',
    '1',
  ]);
  for (const name of [
    'connection',
    'keep-alive',
    'proxy-connection',
    'te',
    'trailer',
    'transfer-encoding',
    'upgrade',
    'proxy-authorization',
    'proxy-authenticate',
    'x-custom',
    'x-other',
  ]) {
    assert.ok(set.has(name), name);
  }
  assert.equal(set.has('host'), false);
  assert.equal(set.has(''), false);
  // The result is the caller's to keep; it must not alias a shared set.
  set.add('host');
  assert.equal(hopByHop([]).has('host'), false);
});

test('filterRequestHeaders drops identity and hop-by-hop headers in every spelling and keeps the rest in order', () => {
  const raw = [
    'Host',
    'app.example.com',
    'X-Forwarded-Email',
    'forged@example.com',
    'Accept',
    'text/html',
    'x-forwarded-email',
    'forged2@example.com',
    'X_Forwarded_Email',
    'forged3@example.com',
    'X-Auth-Request-User',
    'admin',
    'X-Auth_Request_User',
    'admin',
    'Remote-User',
    'admin',
    'X-authentik-username',
    'akadmin',
    'X-Portcullis-Jwt-Assertion',
    'eyJhbGciOiJub25lIn0.e30.',
    'X-Pomerium-Claim-Groups',
    'admins',
    'Connection',
    'keep-alive, X-Custom',
    'Keep-Alive',
    'timeout=5',
    'X-Custom',
    'secret-for-this-hop',
    'x_custom',
    'also',
    'Transfer-Encoding',
    'chunked',
    'TE',
    'trailers',
    'Upgrade',
    'h2c',
    'Proxy-Authorization',
    'Basic eDp5',
    'Cookie',
    'a=1',
    'X-Auth-Request-Redirect',
    'https://app.example.com/next',
    'Cookie',
    'b=2',
    'X-Claim',
    'kept unless configured',
  ];
  const copy = [...raw];
  assert.deepEqual(filterRequestHeaders(raw), [
    'Host',
    'app.example.com',
    'Accept',
    'text/html',
    'Cookie',
    'a=1',
    'X-Auth-Request-Redirect',
    'https://app.example.com/next',
    'Cookie',
    'b=2',
    'X-Claim',
    'kept unless configured',
  ]);
  assert.deepEqual(filterRequestHeaders(raw, identityHeaderSet(['X-Claim'])).slice(-2), [
    'Cookie',
    'b=2',
  ]);
  assert.deepEqual(raw, copy, 'the input array is not modified');
});

test('values containing CR, LF or NUL are dropped', () => {
  const raw = [
    'A',
    'ok',
    'B',
    'x\r\nInjected: 1',
    'C',
    'x\ny',
    'D',
    'x\u0000y',
    'E',
    'x\ry',
    'F',
    'tab\tis fine',
  ];
  assert.deepEqual(filterRequestHeaders(raw), ['A', 'ok', 'F', 'tab\tis fine']);
});
