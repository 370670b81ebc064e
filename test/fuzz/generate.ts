// Hostile requests, as fast-check values. A request names hosts and ports with placeholders
// ({port}: the port of the proxy under test, {other}: a port some other deployment's routes use),
// so one generated or regression request replays unchanged against every proxy.
import fc from 'fast-check';

export type User = 'alice' | 'bob' | 'anonymous';

export interface FuzzRequest {
  method: string;
  target: string;
  /** Host header values in order: none, one, or duplicates. */
  hosts: string[];
  headers: Array<[string, string]>;
  user: User;
  accept: 'json' | 'html';
}

// Route words first: most requests must be plausible enough to reach an upstream, or the
// property is only ever checked on refusals.
const WORDS = [
  'admin',
  'public',
  'static',
  'api',
  'v1',
  'v2',
  'users',
  '42',
  'secret',
  'x',
  'index.html',
  'panel',
];
const SEGMENTS = [
  'ADMIN',
  'Admin',
  '.portcullis',
  'sign_in',
  'callback',
  'auth',
  'nginx',
  '.',
  '..',
  '..',
  '..',
  '',
  '%2e',
  '%2E%2e',
  '.%2e',
  '%2e.',
  '%252e%252e',
  '%2f',
  '%2F',
  '%5c',
  '%5C',
  '\\',
  '..\\',
  ';x=1',
  'admin;jsessionid=1',
  'admin;',
  '%3b',
  '%00',
  '%c0%ae%c0%ae',
  '%c0%af',
  '%ef%bc%8e%ef%bc%8e',
  '%ef%bc%8f',
  '%e2%80%a5',
  '%61dmin',
  '%41dmin',
  'adm%69n',
  'admin%20',
  'admin.',
  '%09admin',
  'admin%2f..',
  'public%2f..%2fadmin',
  '%2e%2e%2fadmin',
  'admin#',
  '*',
  '~',
  '%',
  '%zz',
  'caf%C3%A9',
];
const SEPARATORS = ['/', '/', '/', '/', '/', '/', '//', '\\', '/./', '%2f', '/%2e/', '/../'];
const QUERIES = [
  '',
  '',
  '',
  '',
  '',
  '',
  '?x=1',
  '?/admin',
  '?x=/../admin',
  '?next=/admin/../public',
  '?x=/.portcullis/',
  '?%2e%2e/admin',
  '?a=1&a=2',
  '??',
  '?#',
];
const FRAGMENTS = ['', '', '', '', '', '', '', '', '', '', '#', '#/admin', '#/../public'];
const BASE_HOSTS = [
  'app.fuzz.test',
  'app.fuzz.test',
  'ops.fuzz.test',
  'open.fuzz.test',
  'x.wild.fuzz.test',
  'a.b.wild.fuzz.test',
  'wild.fuzz.test',
  'unknown.test',
  '127.0.0.1',
  'localhost',
];
const PORTS = [
  ':{port}',
  ':{port}',
  ':{port}',
  ':{port}',
  '',
  ':80',
  ':{other}',
  ':0{port}',
  ':99999',
  ':',
];

const segment = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...WORDS) },
  { weight: 1, arbitrary: fc.constantFrom(...SEGMENTS) },
);
const separator = fc.oneof(
  { weight: 12, arbitrary: fc.constant('/') },
  { weight: 1, arbitrary: fc.constantFrom(...SEPARATORS) },
);

const path = fc
  .tuple(fc.array(fc.tuple(separator, segment), { minLength: 0, maxLength: 5 }), fc.boolean())
  .map(([parts, slash]) => {
    let p = parts.map(([sep, seg]) => sep + seg).join('');
    if (!p.startsWith('/')) p = `/${p}`;
    return slash && !p.endsWith('/') ? `${p}/` : p;
  });

/** A very long path: the prefix still decides the route, but buffers and limits are stressed. */
const longPath = fc
  .tuple(
    fc.constantFrom('/public/', '/admin/', '/x/'),
    fc.integer({ min: 200, max: 4000 }),
    fc.constantFrom('a/', '../', './', '%2e%2e/'),
  )
  .map(([start, n, unit]) => start + unit.repeat(n) + 'end');

/** A Host a browser would send for one of the route hosts, on the port of the proxy under test. */
const plainHost = fc.constantFrom(
  'app.fuzz.test:{port}',
  'app.fuzz.test:{port}',
  'ops.fuzz.test:{port}',
  'x.wild.fuzz.test:{port}',
  'open.fuzz.test:{port}',
);

const hostileHost = fc
  .tuple(
    fc.constantFrom(...BASE_HOSTS),
    fc.constantFrom(...PORTS),
    fc.constantFrom('same', 'same', 'same', 'upper', 'mixed', 'dot', 'userinfo', 'space'),
  )
  .map(([h, port, how]) => {
    switch (how) {
      case 'upper':
        return `${h.toUpperCase()}${port}`;
      case 'mixed':
        return `${h[0]!.toUpperCase()}${h.slice(1)}${port}`;
      case 'dot':
        return `${h}.${port}`;
      case 'userinfo':
        return `open.fuzz.test@${h}${port}`;
      case 'space':
        return ` ${h}${port} `;
      default:
        return `${h}${port}`;
    }
  });

const host = fc.oneof({ weight: 6, arbitrary: plainHost }, { weight: 1, arbitrary: hostileHost });

const target = fc.oneof(
  {
    weight: 12,
    arbitrary: fc
      .tuple(path, fc.constantFrom(...QUERIES), fc.constantFrom(...FRAGMENTS))
      .map(([p, q, f]) => p + q + f),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom('http://', 'HTTP://', 'https://', 'http://user@'), host, path)
      .map(([s, h, p]) => `${s}${h.trim()}${p}`),
  },
  { weight: 1, arbitrary: longPath },
  {
    weight: 1,
    arbitrary: fc.constantFrom('*', 'admin', '//admin', '/admin/%2e%2e/x', 'app.fuzz.test:{port}'),
  },
);

const SPOOFED: Array<[string, string]> = [
  ['X-Forwarded-User', 'mallory'],
  ['x-forwarded-email', 'mallory@evil.test'],
  ['X-Forwarded-Groups', 'admins'],
  ['X_Forwarded_User', 'mallory'],
  ['X-Forwarded_Email', 'mallory@evil.test'],
  ['X-Forwarded-Preferred-Username', 'mallory'],
  ['X-Original-URL', 'http://app.fuzz.test:{port}/public'],
  ['X-Original-URL', '/public'],
  ['X-Forwarded-Uri', '/public'],
  ['X-Forwarded-Host', 'open.fuzz.test:{port}'],
  ['X-Forwarded-Proto', 'https'],
  ['X-Forwarded-Method', 'GET'],
  ['X-Original-Method', 'OPTIONS'],
  ['X-Rewrite-URL', '/public'],
  ['Forwarded', 'host=open.fuzz.test:{port};proto=http'],
  ['X-Forwarded-Prefix', '/public'],
  ['X-HTTP-Method-Override', 'DELETE'],
  ['X-Request-Id', 'fuzz-request-id-1'],
];

export const fuzzRequest: fc.Arbitrary<FuzzRequest> = fc.record({
  method: fc.oneof(
    { weight: 4, arbitrary: fc.constant('GET') },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        'HEAD',
        'POST',
        'OPTIONS',
        'DELETE',
        'get',
        'PROPFIND',
        'G\u00c9T',
      ),
    },
  ),
  target,
  hosts: fc.oneof(
    { weight: 10, arbitrary: host.map((h) => [h]) },
    { weight: 2, arbitrary: fc.tuple(host, host).map(([a, b]) => [a, b]) },
    { weight: 1, arbitrary: fc.constant([] as string[]) },
  ),
  headers: fc.oneof(
    { weight: 1, arbitrary: fc.constant([] as Array<[string, string]>) },
    { weight: 1, arbitrary: fc.subarray(SPOOFED, { maxLength: 4 }) },
  ),
  user: fc.constantFrom<User>('alice', 'bob', 'anonymous'),
  accept: fc.constantFrom<'json' | 'html'>('json', 'html'),
});

/** The bytes on the wire, placeholders filled in. */
export function toBytes(
  r: FuzzRequest,
  ports: { port: number; other: number },
  cookies: Record<User, string>,
): Buffer {
  const fill = (s: string) =>
    s.replaceAll('{port}', String(ports.port)).replaceAll('{other}', String(ports.other));
  let head = `${r.method} ${fill(r.target)} HTTP/1.1\r\n`;
  for (const h of r.hosts) head += `Host: ${fill(h)}\r\n`;
  for (const [k, v] of r.headers) head += `${k}: ${fill(v)}\r\n`;
  if (cookies[r.user]) head += `Cookie: ${cookies[r.user]}\r\n`;
  head +=
    r.accept === 'json'
      ? 'Accept: application/json\r\n'
      : 'Accept: text/html,application/xhtml+xml\r\n';
  head += 'Connection: close\r\n\r\n';
  return Buffer.from(head, 'latin1');
}

/** The request as a reader can paste it (printf-ready), with placeholders filled in. */
export function describeBytes(b: Buffer): string {
  const s = b.toString('latin1');
  return s.length > 600 ? `${s.slice(0, 600)}… (${s.length} bytes)` : s;
}
