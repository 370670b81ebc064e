import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { normalizeRequestTarget } from '../src/security/path.js';

const ok = (path: string, query = '', asSent?: string) => ({
  ok: true,
  path,
  query,
  ...(asSent === undefined ? {} : { asSent }),
});

function refused(target: string, reason: RegExp, opts?: { allowAmbiguous?: boolean }) {
  const r = normalizeRequestTarget(target, opts);
  assert.equal(r.ok, false, `${JSON.stringify(target)} was accepted as ${JSON.stringify(r)}`);
  if (!r.ok) assert.match(r.reason, reason, `reason for ${JSON.stringify(target)}`);
}

test('dot segments are resolved before the policy sees the path, and the form as sent is kept', () => {
  // asSent: what a proxy that does not normalize (nginx's $request_uri, Caddy's forward_auth)
  // hands the application; forward-auth refuses such targets instead of judging `path`.
  assert.deepEqual(
    normalizeRequestTarget('/public/../admin'),
    ok('/admin', '', '/public/../admin'),
  );
  assert.deepEqual(
    normalizeRequestTarget('/public/%2e%2e/admin'),
    ok('/admin', '', '/public/%2E%2E/admin'),
  );
  assert.deepEqual(
    normalizeRequestTarget('/public/%2E./admin'),
    ok('/admin', '', '/public/%2E./admin'),
  );
  assert.deepEqual(
    normalizeRequestTarget('/public/.%2e/admin'),
    ok('/admin', '', '/public/.%2E/admin'),
  );
  assert.deepEqual(normalizeRequestTarget('/admin/./'), ok('/admin/', '', '/admin/./'));
  assert.deepEqual(normalizeRequestTarget('/a/b/..'), ok('/a/', '', '/a/b/..'));
  assert.deepEqual(normalizeRequestTarget('/a/.'), ok('/a/', '', '/a/.'));
  assert.deepEqual(
    normalizeRequestTarget('/../../etc/passwd'),
    ok('/etc/passwd', '', '/../../etc/passwd'),
  );
  assert.deepEqual(normalizeRequestTarget('/..'), ok('/', '', '/..'));
  assert.deepEqual(normalizeRequestTarget('/a/.hidden/..x'), ok('/a/.hidden/..x'));
  assert.deepEqual(
    normalizeRequestTarget('/a/%2ehidden'),
    ok('/a/.hidden', '', '/a/%2Ehidden'),
    'decoded: an app reading raw bytes sees another path',
  );
});

test('repeated slashes collapse; case is kept', () => {
  assert.deepEqual(normalizeRequestTarget('//admin'), ok('/admin', '', '//admin'));
  assert.deepEqual(normalizeRequestTarget('/a//b///c//'), ok('/a/b/c/', '', '/a//b///c//'));
  assert.deepEqual(normalizeRequestTarget('/ADMIN'), ok('/ADMIN'));
  assert.deepEqual(normalizeRequestTarget('/'), ok('/'));
});

test('encoded slash and backslash are refused, or kept encoded with allowAmbiguous', () => {
  refused('/public/..%2fadmin', /encoded slash \(%2F\)/);
  refused('/public%2f..%2fadmin', /encoded slash \(%2F\)/);
  refused('/public/..%5cadmin', /encoded backslash \(%5C\)/);
  refused('/public\\..\\admin', /backslash/);
  assert.deepEqual(
    normalizeRequestTarget('/public/..%2fadmin', { allowAmbiguous: true }),
    ok('/public/..%2Fadmin'),
  );
  assert.deepEqual(
    normalizeRequestTarget('/public%2f..%2fadmin', { allowAmbiguous: true }),
    ok('/public%2F..%2Fadmin'),
  );
  assert.deepEqual(normalizeRequestTarget('/a\\b', { allowAmbiguous: true }), ok('/a%5Cb'));
});

test('path parameters (;) are refused with a reason that says why', () => {
  refused('/admin;jsessionid=x', /path parameter \(;\)/);
  refused('/admin;/', /path parameter/);
  refused('/admin%3bjsessionid=x', /encoded semicolon \(%3B\)/);
  assert.deepEqual(
    normalizeRequestTarget('/admin;jsessionid=x', { allowAmbiguous: true }),
    ok('/admin;jsessionid=x'),
  );
});

test('an encoded # is data and stays encoded; a raw # is refused', () => {
  assert.deepEqual(normalizeRequestTarget('/admin%23/x'), ok('/admin%23/x'));
  refused('/admin#/x', /fragment/);
  refused('/admin?x=1#frag', /fragment/);
});

test('the query is split at the first ? and kept verbatim, never normalized', () => {
  assert.deepEqual(normalizeRequestTarget('/admin?x=/public'), ok('/admin', '?x=/public'));
  assert.deepEqual(
    normalizeRequestTarget('/a/../b?x=/../c&y=%2f%zz?z'),
    ok('/b', '?x=/../c&y=%2f%zz?z', '/a/../b'),
  );
  assert.deepEqual(normalizeRequestTarget('/a?'), ok('/a', '?'));
  assert.deepEqual(normalizeRequestTarget('/public/..%2fadmin?x'), {
    ok: false,
    reason: 'encoded slash (%2F) in path',
  });
});

test('unreserved characters are decoded, everything else re-encoded with upper-case hex', () => {
  assert.deepEqual(
    normalizeRequestTarget('/%41%62c/%7euser/%2d%5f%2e'),
    ok('/Abc/~user/-_.', '', '/%41%62c/%7Euser/%2D%5F%2E'),
  );
  assert.deepEqual(normalizeRequestTarget('/caf%c3%a9'), ok('/caf%C3%A9'));
  assert.deepEqual(normalizeRequestTarget('/a%3a%40%20b'), ok('/a%3A%40%20b'));
  assert.deepEqual(normalizeRequestTarget('/a"b<c>|{}^`'), ok('/a%22b%3Cc%3E%7C%7B%7D%5E%60'));
  assert.deepEqual(normalizeRequestTarget("/a:b@c!$&'()*+,="), ok("/a:b@c!$&'()*+,="));
});

test('NUL, controls, bad escapes and bad UTF-8 are refused even with allowAmbiguous', () => {
  for (const opts of [undefined, { allowAmbiguous: true }]) {
    refused('/a%00b', /encoded NUL \(%00\)/, opts);
    refused('/a%0d%0aSet-Cookie:x', /encoded control character \(%0D\)/, opts);
    refused('/a%09', /control character/, opts);
    refused('/a%7f', /control character/, opts);
    refused('/a%c2%85', /control character/, opts);
    refused('/a\x00b', /NUL/, opts);
    refused('/a\r\nb', /control character/, opts);
    refused('/a b', /space/, opts);
    refused('/%zz', /invalid percent escape/, opts);
    refused('/%4', /invalid percent escape/, opts);
    refused('/a%', /invalid percent escape/, opts);
    refused('/%c0%af', /overlong UTF-8/, opts);
    refused('/%c0%ae%c0%ae/admin', /overlong UTF-8/, opts);
    refused('/%e0%80%af', /overlong UTF-8/, opts);
    refused('/%ed%a0%80', /UTF-8/, opts);
    refused('/%f4%90%80%80', /UTF-8/, opts);
    refused('/%c3', /UTF-8/, opts);
    refused('/%c3%41', /UTF-8/, opts);
    refused('/caf\u00e9', /non-ASCII/, opts);
  }
});

test('double encoding and Unicode look-alikes of delimiters are ambiguous', () => {
  refused('/a/%252e%252e/admin', /double-encoded/);
  refused('/a/%25%32%65', /double-encoded/);
  refused('/%EF%BC%8E%EF%BC%8E/admin', /look-alike/);
  refused('/a%EF%BC%8Fb', /look-alike/);
  assert.deepEqual(normalizeRequestTarget('/100%25off'), ok('/100%25off'));
  assert.deepEqual(
    normalizeRequestTarget('/a/%252e%252e/admin', { allowAmbiguous: true }),
    ok('/a/%252e%252e/admin'),
  );
});

test('only origin-form targets are accepted', () => {
  refused('', /must start with \//);
  refused('*', /must start with \//);
  refused('http://evil.com/admin', /must start with \//);
  refused('admin', /must start with \//);
});

const SEGMENTS = [
  'a',
  'B',
  'admin',
  '..',
  '.',
  '',
  '%2e',
  '%2E',
  '%2e%2e',
  '.%2e',
  '%2e.',
  '%2f',
  '%2F',
  '%5c',
  '\\',
  ';',
  'x;y',
  '%3b',
  '%41',
  '%7e',
  '~',
  '%25',
  '%2541',
  '%c3%a9',
  '%C0%AF',
  '%zz',
  '%',
  'x.y',
  '%EF%BC%8E',
  '"',
  '{',
  ':',
  '@',
  '%20',
  '%00',
  '%0a',
  '...',
  '%2e%2e%2f',
];

test('property: normalization is idempotent and leaves no dot segments or empty segments', () => {
  const target = fc
    .tuple(
      fc.array(fc.constantFrom(...SEGMENTS), { minLength: 1, maxLength: 10 }),
      fc.constantFrom('', '?', '?x=/../a', '?%2f//'),
    )
    .map(([segs, q]) => '/' + segs.join('/') + q);
  let accepted = 0;
  fc.assert(
    fc.property(target, fc.boolean(), (t, allowAmbiguous) => {
      const opts = { allowAmbiguous };
      const r = normalizeRequestTarget(t, opts);
      if (!r.ok) return true;
      accepted++;
      const { asSent, ...normalized } = r;
      assert.deepEqual(
        normalizeRequestTarget(r.path + r.query, opts),
        normalized,
        `not idempotent for ${JSON.stringify(t)}`,
      );
      // asSent is there exactly when an application reading the raw path would see another
      // path: dot or empty segments, or an escaped letter, digit or -._~ (RFC 3986 2.3).
      const rawPath = t.slice(0, t.length - r.query.length);
      const segments = /(^|\/)(\.|%2e){1,2}(\/|$)|\/\//i.test(rawPath);
      const escapedUnreserved = /%(3[0-9]|[46][1-9a-f]|[57][0-9a]|2[de]|5f|7e)/i.test(rawPath);
      assert.equal(
        asSent !== undefined,
        segments || escapedUnreserved,
        `asSent for ${JSON.stringify(t)}: ${asSent}`,
      );
      assert.ok(r.path.startsWith('/'));
      assert.ok(!r.path.includes('//'), `// in ${r.path}`);
      for (const seg of r.path.split('/'))
        assert.ok(
          seg !== '.' && seg !== '..',
          `dot segment in ${r.path} from ${JSON.stringify(t)}`,
        );
      // What is accepted strictly is accepted identically when ambiguity is allowed.
      if (!allowAmbiguous) assert.deepEqual(normalizeRequestTarget(t, { allowAmbiguous: true }), r);
      return true;
    }),
    { numRuns: 5000 },
  );
  assert.ok(accepted > 0, 'no generated target was accepted');
});
