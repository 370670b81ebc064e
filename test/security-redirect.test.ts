import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { createRedirectValidator, redirectParam } from '../src/security/redirect.js';

// From dist/test/ back to /work, then into the shared corpora (repo is /work/main).
const CORPUS = new URL(
  '../../../shared/attack-corpora/oauth2-proxy-openredirects.txt',
  import.meta.url,
);

/** Go's url.QueryUnescape as oauth2-proxy's own corpus test applies it; bytewise when not UTF-8. */
function queryUnescape(s: string): string {
  const plus = s.replaceAll('+', ' ');
  try {
    return decodeURIComponent(plus);
  } catch {
    return plus.replace(/%([0-9a-f]{2})/gi, (_m, h: string) =>
      String.fromCharCode(parseInt(h, 16)),
    );
  }
}

test('oauth2-proxy open-redirect corpus: every line is refused, raw and query-unescaped, with and without a base', () => {
  const lines = readFileSync(CORPUS, 'utf8').split('\n');
  if (lines.at(-1) === '') lines.pop();
  assert.equal(
    lines.length,
    559,
    'the corpus should have 559 lines; is the path to /work/shared right?',
  );
  const validate = createRedirectValidator({
    allowedHosts: ['www.whitelisteddomain.tld'],
    allowedDomains: ['.whitelisteddomain.tld'],
  });
  const base = new URL('https://www.whitelisteddomain.tld/');
  const accepted: string[] = [];
  for (const line of lines) {
    for (const target of [line, queryUnescape(line)]) {
      const withBase = validate(target, base);
      if (withBase) accepted.push(`${JSON.stringify(target)} -> ${withBase.href}`);
      const without = validate(target);
      if (without) accepted.push(`${JSON.stringify(target)} (no base) -> ${without.href}`);
    }
  }
  assert.deepEqual(accepted, []);
});

const exact = createRedirectValidator({
  allowedHosts: ['allowed.example.com', 'ports.example.org:8443', 'any.example.org:*', '127.0.0.1'],
  allowedDomains: [],
});
const domain = createRedirectValidator({ allowedHosts: [], allowedDomains: ['.example.com'] });
const base = new URL('https://allowed.example.com/');

const REFUSED = [
  '',
  '//evil.com',
  '///evil.com',
  '/\\evil.com',
  '/%09/evil.com',
  '/%5cevil.com',
  '/%2f%2fevil.com',
  '/%252f%252fevil.com',
  '/%2F%5Cevil.com',
  '/./%2f/evil.com',
  '/\t/evil.com',
  'https:evil.com',
  'https:allowed.example.com',
  'https:/allowed.example.com',
  'https:///evil.com',
  '//allowed.example.com@evil.com',
  'https://allowed.example.com@evil.com',
  'https://allowed.example.com%40evil.com',
  'https://allowed.example.com%2f@evil.com',
  'https://evil.com\\@allowed.example.com',
  'https://evil.com@allowed.example.com/',
  'https://user:pass@allowed.example.com/',
  'https://badexample.com',
  'https://example.com.evil.com/',
  'https://allowed.example.com.evil.com/',
  'https://evil.com/allowed.example.com',
  'https://evil.com/?https://allowed.example.com',
  'https://evil.com#allowed.example.com',
  'javascript:alert(1)',
  'JaVaScRiPt:alert(1)',
  'javascript://allowed.example.com/%0aalert(1)',
  'data:text/html,<script>alert(1)</script>',
  'data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==',
  'vbscript:msgbox(1)',
  'ftp://allowed.example.com/',
  'ws://allowed.example.com/',
  'http://0x7f.1/',
  'http://0x7f000001/',
  'http://2130706433/',
  'http://0177.0.0.1/',
  'http://127.1/',
  'http://[::ffff:127.0.0.1]/',
  'https://allowed．example．com/',
  'https://allowed。example。com/',
  'https://allowed｡example｡com/',
  'https://ａｌｌｏｗｅｄ.example.com/',
  'https://allowed%2eexample%2ecom/',
  'https://evil.com%23.example.com/',
  'https://allowed.example.com./',
  'https://allowed.example.com/%0d%0aSet-Cookie:%20a=1',
  'https://allowed.example.com/%0D%0ALocation:%20https://evil.com',
  '/%0d%0aLocation:%20https://evil.com',
  '/a\r\nLocation: https://evil.com',
  '/a\nb',
  '/a%00b',
  ' https://allowed.example.com/',
  'https://allowed.example.com/ ',
  'https://allowed.example.com:8443/',
  'https://allowed.example.com:/',
  'https://ports.example.org/',
  'https://ports.example.org:9443/',
  'evil.com',
  'allowed.example.com/path',
  'https://',
  '?next=/x',
  '#/x',
  'dashboard',
  '/login?next=https://evil.com/',
  '/login?next=%2f%2fevil.com',
];

test('explicit hostile targets are refused', () => {
  for (const target of REFUSED) {
    assert.equal(
      exact(target, base),
      null,
      `exact-host validator accepted ${JSON.stringify(target)}`,
    );
    assert.equal(domain(target, base), null, `domain validator accepted ${JSON.stringify(target)}`);
  }
});

test('a relative target is refused without a base, and with a base that is not allowed', () => {
  assert.equal(exact('/dashboard'), null);
  assert.equal(exact('/dashboard', new URL('https://evil.com/')), null);
  assert.equal(exact('/dashboard', new URL('https://user:pw@allowed.example.com/')), null);
  assert.equal(exact('/dashboard', new URL('javascript:alert(1)')), null);
});

test('same-host targets keep their path, query and fragment exactly', () => {
  const rel = exact('/app/page?x=1&y=a%2Fb&z=%E2%9C%93#frag', base);
  assert.ok(rel);
  assert.equal(rel.href, 'https://allowed.example.com/app/page?x=1&y=a%2Fb&z=%E2%9C%93#frag');
  assert.equal(rel.pathname + rel.search, '/app/page?x=1&y=a%2Fb&z=%E2%9C%93');

  const abs = exact('https://allowed.example.com/a/b%20c?d=e&f=%2F', base);
  assert.ok(abs);
  assert.equal(abs.href, 'https://allowed.example.com/a/b%20c?d=e&f=%2F');

  assert.equal(exact('/', base)?.href, 'https://allowed.example.com/');
  assert.equal(exact('/?a=1', base)?.href, 'https://allowed.example.com/?a=1');
  // Scheme and host case are the parser's business and do not change the destination.
  assert.equal(exact('HTTPS://Allowed.Example.COM/X')?.href, 'https://allowed.example.com/X');
  assert.equal(exact('http://allowed.example.com/x')?.href, 'http://allowed.example.com/x');
  assert.equal(exact('http://127.0.0.1/x')?.hostname, '127.0.0.1');
});

test('ports: no port = default port only, host:port = that port, host:* = any', () => {
  assert.ok(exact('https://allowed.example.com:443/'));
  assert.ok(exact('http://allowed.example.com:80/'));
  assert.equal(exact('https://allowed.example.com:8443/'), null);
  assert.equal(exact('http://allowed.example.com:443/'), null);
  assert.equal(exact('https://ports.example.org:8443/x')?.href, 'https://ports.example.org:8443/x');
  assert.equal(exact('https://ports.example.org/x'), null);
  assert.equal(exact('https://ports.example.org:8444/x'), null);
  assert.ok(exact('https://any.example.org:1234/'));
  assert.ok(exact('https://any.example.org/'));
  const withPortBase = new URL('https://ports.example.org:8443/');
  assert.equal(exact('/x?y=1', withPortBase)?.href, 'https://ports.example.org:8443/x?y=1');
});

test('allowed domains: the domain itself and any subdomain, nothing that merely ends with it', () => {
  assert.equal(domain('https://app.example.com/x')?.hostname, 'app.example.com');
  assert.equal(domain('https://a.b.example.com/')?.hostname, 'a.b.example.com');
  assert.equal(domain('https://example.com/')?.hostname, 'example.com');
  assert.equal(domain('https://badexample.com/'), null);
  assert.equal(domain('https://example.com.evil.com/'), null);
  assert.equal(domain('https://.example.com/'), null);
  assert.equal(domain('https://a..example.com/'), null);
  assert.equal(domain('https://app.example.com:8443/'), null);
  const star = createRedirectValidator({
    allowedHosts: [],
    allowedDomains: ['*.example.com:8443'],
  });
  assert.ok(star('https://app.example.com:8443/'));
  assert.equal(star('https://app.example.com/'), null);
});

test('allow-list entries that the URL parser would rewrite are configuration errors', () => {
  assert.throws(
    () => createRedirectValidator({ allowedHosts: ['allowed．example．com'], allowedDomains: [] }),
    /did you mean "allowed\.example\.com"/,
  );
  assert.throws(
    () => createRedirectValidator({ allowedHosts: ['bad host'], allowedDomains: [] }),
    /not a canonical host name/,
  );
  assert.throws(
    () => createRedirectValidator({ allowedHosts: ['a.example.com:99999'], allowedDomains: [] }),
    /invalid port/,
  );
  assert.throws(
    () => createRedirectValidator({ allowedHosts: [], allowedDomains: ['example.com'] }),
    /must start with "\."/,
  );
  assert.throws(
    () => createRedirectValidator({ allowedHosts: [], allowedDomains: ['.10.0.0.1'] }),
    /IP address/,
  );
});

test('property: whatever the mix of separators, encodings and host names, an accepted URL has an allowed host', () => {
  const validate = createRedirectValidator({
    allowedHosts: ['allowed.example.com', 'ports.example.org:8443'],
    allowedDomains: ['.example.net'],
  });
  const isAllowed = (u: URL) =>
    (u.hostname === 'allowed.example.com' && u.port === '') ||
    (u.hostname === 'ports.example.org' && u.port === '8443') ||
    ((u.hostname === 'example.net' || u.hostname.endsWith('.example.net')) &&
      !u.hostname.startsWith('.') &&
      u.port === '');
  const prefix = fc.constantFrom(
    'https://',
    'http://',
    'HTTPS://',
    '//',
    '/',
    '',
    'https:',
    'https:/',
    '/\\',
    '\\\\',
    'javascript:',
    'data:',
    ' ',
    '%2f%2f',
    'https:///',
  );
  const host = fc.constantFrom(
    'allowed.example.com',
    'ports.example.org',
    'a.example.net',
    'example.net',
    'evil.com',
    'allowed.example.com.evil.com',
    'evilexample.net',
    'allowed．example．com',
    'allowed。example。com',
    'a｡example｡net',
    'allowed%2eexample%2ecom',
    '127.0.0.1',
    '0x7f.1',
    '2130706433',
    '[::1]',
    'allowed.example.com@evil.com',
    'evil.com@allowed.example.com',
    'evil.com%40allowed.example.com',
    '',
  );
  const piece = fc.constantFrom(
    '/',
    '\\',
    '@',
    '.',
    '..',
    '%',
    '%2e',
    '%2f',
    '%5c',
    '%40',
    '%09',
    '%0a',
    '%0d%0a',
    '%00',
    '%252f',
    '．',
    '。',
    ':',
    ':8443',
    ':443',
    '?',
    '#',
    '//',
    'evil.com',
    'allowed.example.com',
    'a.example.net',
    'x',
    'user:pw@',
    ' ',
    '\t',
    '\r\n',
    'https://',
  );
  const target = fc
    .tuple(prefix, host, fc.array(piece, { maxLength: 8 }))
    .map(([p, h, rest]) => p + h + rest.join(''));
  const bases = fc.constantFrom<URL | undefined>(
    undefined,
    new URL('https://allowed.example.com/'),
    new URL('https://evil.com/'),
    new URL('https://a.example.net/'),
  );
  let acceptedCount = 0;
  fc.assert(
    fc.property(target, bases, (t, b) => {
      const u = validate(t, b);
      if (u === null) return true;
      acceptedCount++;
      return (
        isAllowed(u) &&
        (u.protocol === 'https:' || u.protocol === 'http:') &&
        u.username === '' &&
        u.password === ''
      );
    }),
    { numRuns: 5000 },
  );
  // The property is only meaningful if some generated targets were accepted.
  assert.ok(acceptedCount > 0, 'no generated target was accepted');
});

test('property: arbitrary strings around an allowed prefix never escape the allowed host', () => {
  const validate = createRedirectValidator({
    allowedHosts: ['allowed.example.com'],
    allowedDomains: [],
  });
  fc.assert(
    fc.property(
      fc.constantFrom('https://allowed.example.com', '/', 'https://'),
      fc.string({ unit: 'binary', maxLength: 40 }),
      (p, s) => {
        const u = validate(p + s, new URL('https://allowed.example.com/'));
        return (
          u === null || (u.hostname === 'allowed.example.com' && u.port === '' && u.username === '')
        );
      },
    ),
    { numRuns: 3000 },
  );
});

// Issue 18 §4: the peers' snippets put the address into `rd` unescaped, e.g. oauth2-proxy's
// `return 302 /oauth2/sign_in?rd=$scheme://$host$request_uri;` (oauth2-proxy docs,
// configuration/integration, v7.13.x) and Authentik's `start?rd=$scheme://$http_host$request_uri`
// (goauthentik.io docs, providers/proxy/server_nginx, 2024.x). A space in the address arrived
// as %20, one round of decoding made it a space, and the validator's 400 was what the user saw.
test('rd as the snippets write it: %20 and non-ASCII escapes come back as the browser wrote them, + stays +', () => {
  const validate = createRedirectValidator({
    allowedHosts: ['app.example.com'],
    allowedDomains: [],
  });
  const base = new URL('https://app.example.com/');
  const cases: Array<[string, string]> = [
    ['rd=https://app.example.com/a%20b?q=x%20y', 'https://app.example.com/a%20b?q=x%20y'],
    ['rd=/search?q=hello%20world', 'https://app.example.com/search?q=hello%20world'],
    ['rd=/c++/docs', 'https://app.example.com/c++/docs'],
    ['rd=/caf%C3%A9', 'https://app.example.com/caf%C3%A9'],
    // Escaped once more by a careful snippet ($escaped_request_uri, ingress-nginx's rd):
    [
      `rd=${encodeURIComponent('https://app.example.com/a%20b?x=1&y=2')}`,
      'https://app.example.com/a%20b?x=1&y=2',
    ],
    ['x=1&rd=/first&rd=/second', 'https://app.example.com/first'],
  ];
  for (const [query, want] of cases) {
    const rd = redirectParam(`?${query}`, 'rd');
    assert.equal(rd === undefined ? null : validate(rd, base)?.href, want, query);
  }
  assert.equal(redirectParam('?x=1', 'rd'), undefined);
  assert.equal(redirectParam('', 'rd'), undefined);
  assert.equal(redirectParam('?rd=', 'rd'), '');
  // A value that does not decode is judged as written: still on the allowed origin, still checked.
  assert.equal(redirectParam('?rd=/a%zz', 'rd'), '/a%zz');
});

test('rd as the snippets write it: every open-redirect attempt stays refused, raw and escaped', () => {
  const validate = createRedirectValidator({
    allowedHosts: ['app.example.com'],
    allowedDomains: ['.example.com'],
  });
  const base = new URL('https://app.example.com/');
  const attempts = [
    '//evil.test',
    '/\\evil.test',
    '/%2F%2Fevil.test',
    '/%252F%252Fevil.test',
    '%2F%2Fevil.test',
    '/%20/evil.test',
    '/ /evil.test',
    '/%09/evil.test',
    'https://app.example.com@evil.test/',
    'https://app.example.com%40evil.test/',
    'https://evil.test%23.app.example.com/',
    'https://evil.test\\@app.example.com/',
    'https://evil%E3%80%82test/',
    'https://app.example.com.evil.test/',
    'https:evil.test',
    'https:///evil.test',
    'javascript:alert(1)',
    '/a%0d%0aSet-Cookie:%20x=1',
    '/a%250d%250aSet-Cookie:x=1',
    '/a%00',
    '/login?next=https://evil.test',
  ];
  const accepted: string[] = [];
  for (const attempt of attempts) {
    for (const query of [`rd=${attempt}`, `rd=${encodeURIComponent(attempt)}`]) {
      const rd = redirectParam(`?${query}`, 'rd');
      if (rd !== undefined && validate(rd, base) !== null) accepted.push(query);
    }
  }
  assert.deepEqual(accepted, []);
  // The whole corpus, unescaped into rd: a line cut at its first `&` may become a harmless
  // same-site address, so what holds is that nothing leaves the allowed hosts.
  const offsite: string[] = [];
  for (const line of readFileSync(CORPUS, 'utf8').split('\n').filter(Boolean)) {
    for (const query of [`rd=${line}`, `rd=${encodeURIComponent(line)}`]) {
      const rd = redirectParam(`?${query}`, 'rd');
      const url = rd === undefined ? null : validate(rd, base);
      if (url && url.hostname !== 'example.com' && !url.hostname.endsWith('.example.com'))
        offsite.push(`${query} -> ${url.href}`);
      if (url && /[/\\]{2}/.test(url.pathname)) offsite.push(`${query} -> ${url.href}`);
    }
  }
  assert.deepEqual(offsite, []);
});
