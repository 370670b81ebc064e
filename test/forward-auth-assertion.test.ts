import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { CookieJar, request } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { startStack, type Stack } from './helpers/stack.js';

// Forward-auth answers carry the same verifiable identity the reverse proxy sends upstream.
let s: Stack;
before(async () => {
  s = await startStack({
    hosts: ['app.corp.test'],
    body: 'routes:\n  - from: http://app.corp.test:${PORT}\n    to: ${UPSTREAM}\n    allow_any_authenticated_user: true\n',
  });
});
after(() => s.close());

test("a 2xx from /.portcullis/auth/nginx carries a signed assertion for the original host, never the client's copy", async () => {
  const jar = new CookieJar();
  await loginThroughIdp(`http://app.corp.test:${s.port}/`, {
    jar,
    username: 'alice',
    password: 'alice',
  });
  const forged = 'eyJhbGciOiJub25lIn0.eyJlbWFpbCI6Im1hbGxvcnlAZXZpbC50ZXN0In0.';
  const r = await request(`http://127.0.0.1:${s.port}/.portcullis/auth/nginx`, {
    headers: {
      cookie: jar.header(new URL(`http://app.corp.test:${s.port}/`)),
      'x-original-url': `http://app.corp.test:${s.port}/reports?q=1`,
      'x-original-method': 'GET',
      'x-portcullis-jwt-assertion': forged,
    },
  });
  assert.equal(r.status, 200);
  const jwt = String(r.headers['x-portcullis-jwt-assertion']);
  assert.notEqual(jwt, forged);
  const published = await request(
    `http://app.corp.test:${s.port}/.well-known/portcullis/jwks.json`,
  );
  assert.equal(published.status, 200);
  const jwks = createLocalJWKSet(published.json());
  const { payload, protectedHeader } = await jwtVerify(jwt, jwks, {
    audience: `app.corp.test:${s.port}`,
  });
  assert.equal(payload.email, 'alice@example.com');
  assert.deepEqual(payload.groups, ['admins', 'eng']);
  assert.ok(protectedHeader.kid);
  assert.equal(r.headers['x-forwarded-email'], 'alice@example.com');
});
