import test, { describe } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { parseCookies, readChunked, singleCookieValue } from '../src/session/cookies.js';
import { stripOwnCookies, upstreamHeaders, type ForwardInput } from '../src/proxy/forward.js';
import { newRequestId } from '../src/observe/logger.js';
import { parseConfig } from '../src/config/load.js';
import type { Route } from '../src/config/types.js';
import type { Identity, RequestContext } from '../src/decide/types.js';

// The hot-path rewrites (cookie fast path, one-pass upstream headers, cheap request ids) must
// keep exactly the behaviour of the slow, obvious code they replaced.

const OWN = '_portcullis';

// ---------------------------------------------------------------------------------------------
// 1. singleCookieValue: a shortcut that may only answer when it is certain.

/** Cookie names that matter: the target, look-alikes that contain it, chunks, and spaced spellings. */
const cookieName = fc.oneof(
  fc.constantFrom(
    OWN,
    OWN,
    OWN,
    `x${OWN}`,
    `${OWN}_1`,
    `${OWN}_2`,
    `${OWN}X`,
    `${OWN}foo`,
    `__portcullis`,
    'portcullis',
    '_Portcullis',
    ` ${OWN}`,
    `${OWN} `,
    ` ${OWN} `,
    `\t${OWN}`,
    `${OWN}\t`,
    `  ${OWN}`,
    'a',
    'b',
    'session',
    '',
  ),
  fc.stringMatching(/^[A-Za-z0-9_ -]{0,8}$/),
);

const cookieValue = fc.oneof(
  fc.constantFrom(
    'abc',
    'good',
    'evil',
    '',
    ' ',
    '"quoted"',
    '"',
    '"half',
    'half"',
    '2~abc',
    '3~x',
    '10~y',
    '0',
    '9lives',
    OWN,
    `x${OWN}`,
    `a${OWN}b`,
    'a=b',
    '=',
    ' spaced ',
    '\tv\t',
    'v w',
  ),
  fc.stringMatching(/^[A-Za-z0-9~"= _-]{0,10}$/),
);

const cookiePart = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(cookieName, cookieValue).map(([n, v]) => `${n}=${v}`) },
  { weight: 1, arbitrary: cookieName }, // a part without "="
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
);

const separator = fc.constantFrom(';', '; ', ' ; ', ';  ', ';\t');

const cookieHeader = fc.oneof(
  {
    weight: 9,
    arbitrary: fc
      .tuple(fc.array(cookiePart, { maxLength: 6 }), separator)
      .map(([parts, sep]) => parts.join(sep)),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
);

describe('singleCookieValue', () => {
  test('whenever the fast path answers, it agrees with the full parser', () => {
    let answered = 0;
    fc.assert(
      fc.property(cookieHeader, (header) => {
        const fast = singleCookieValue(header, OWN);
        if (fast === undefined) return;
        answered++;
        assert.equal(typeof fast, 'string');
        assert.equal(
          fast,
          readChunked(OWN, parseCookies(header)),
          `header ${JSON.stringify(header)}`,
        );
      }),
      { numRuns: 5000 },
    );
    // The property says nothing if the fast path never answers.
    assert.ok(answered > 100, `fast path answered only ${answered} times`);
  });

  test("common case: the one session cookie among the application's", () => {
    assert.equal(singleCookieValue('a=1; _portcullis=abc; b=2', OWN), 'abc');
    assert.equal(singleCookieValue('_portcullis=abc', OWN), 'abc');
    assert.equal(singleCookieValue('a=1;_portcullis=abc', OWN), 'abc');
    assert.equal(singleCookieValue('a=1; _portcullis=abc ', OWN), 'abc');
  });

  test('a look-alike cookie never supplies the session value', () => {
    const v = singleCookieValue('x_portcullis=evil; _portcullis=good', OWN);
    assert.notEqual(v, 'evil');
    assert.ok(v === undefined || v === 'good');
    assert.equal(singleCookieValue('x_portcullis=evil', OWN), undefined);
    assert.equal(singleCookieValue('_portcullisX=evil', OWN), undefined);
    assert.equal(singleCookieValue('a=_portcullis=evil', OWN), undefined);
    // the full parser agrees: the real session is "good"
    assert.equal(readChunked(OWN, parseCookies('x_portcullis=evil; _portcullis=good')), 'good');
  });

  test('duplicates, odd spacing, chunks, quotes, empty values and arrays are left to the full parser', () => {
    assert.equal(singleCookieValue('_portcullis=a; _portcullis=b', OWN), undefined);
    assert.equal(readChunked(OWN, parseCookies('_portcullis=a; _portcullis=b')), 'a'); // first wins there
    assert.equal(singleCookieValue('_portcullis =v', OWN), undefined);
    assert.equal(singleCookieValue('_portcullis=2~abc; _portcullis_1=def', OWN), undefined);
    assert.equal(singleCookieValue('_portcullis=2~abc', OWN), undefined);
    assert.equal(singleCookieValue('_portcullis="abc"', OWN), undefined);
    assert.equal(singleCookieValue('_portcullis=', OWN), undefined);
    assert.equal(singleCookieValue('_portcullis=; a=1', OWN), undefined);
    assert.equal(singleCookieValue('a=1', OWN), undefined);
    assert.equal(singleCookieValue(undefined, OWN), undefined);
    assert.equal(singleCookieValue(['_portcullis=abc'], OWN), undefined);
    assert.equal(singleCookieValue(['a=1', '_portcullis=abc'], OWN), undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// 2. stripOwnCookies: same output as the previous split/filter/join code.

function referenceStrip(header: string, own: string): string {
  return header
    .split(';')
    .filter((p) => {
      const name = p.slice(0, p.indexOf('=') === -1 ? undefined : p.indexOf('=')).trim();
      return (
        name && name !== own && !name.startsWith(`${own}_`) && !name.startsWith(`__Host-${own}_`)
      );
    })
    .join(';')
    .trim();
}

describe('stripOwnCookies', () => {
  test('identical to the previous implementation for arbitrary headers', () => {
    fc.assert(
      fc.property(cookieHeader, fc.constantFrom(OWN, OWN, 'sess', 'a'), (header, own) => {
        assert.equal(
          stripOwnCookies(header, own),
          referenceStrip(header, own),
          `header ${JSON.stringify(header)}, own ${own}`,
        );
      }),
      { numRuns: 5000 },
    );
  });

  test('headers without any Portcullis cookie come out as the previous code made them', () => {
    // The fast path (`own` not in the header) must not skip the previous clean-up of empty parts.
    for (const header of ['a=1; ', 'a=1;;b=2', '; a=1', '=x; a=1', 'a=1; =x', ' a=1 ', 'a=1']) {
      assert.equal(
        stripOwnCookies(header, OWN),
        referenceStrip(header, OWN),
        `header ${JSON.stringify(header)}`,
      );
    }
  });

  test('the session cookie and its chunks are removed; look-alikes and order are kept', () => {
    assert.equal(
      stripOwnCookies('a=1; _portcullis=2~abc; b=2; _portcullis_1=def; c=3', OWN),
      'a=1; b=2; c=3',
    );
    assert.equal(
      stripOwnCookies('x_portcullis=1; _portcullis=s; _portcullisfoo=2', OWN),
      'x_portcullis=1; _portcullisfoo=2',
    );
    assert.equal(stripOwnCookies(' _portcullis =s; z=9', OWN), 'z=9');
    assert.equal(stripOwnCookies('_portcullis=s', OWN), '');
    // The handoff nonce, which over https must live at Path=/ under the __Host- prefix.
    assert.equal(
      stripOwnCookies('a=1; __Host-_portcullis_handoff=n; __Host-other=2', OWN),
      'a=1; __Host-other=2',
    );
    assert.equal(stripOwnCookies('b=2; a=1', OWN), 'b=2; a=1');
  });
});

// ---------------------------------------------------------------------------------------------
// 3. upstreamHeaders: what the application behind the proxy actually sees.

const SECRET = Buffer.alloc(32, 7).toString('base64');
const cfg = parseConfig(
  [
    'insecure_server: true',
    'idp_provider_url: https://idp.example.com',
    'idp_client_id: portcullis',
    'idp_client_secret: s3cret',
    `cookie_secret: ${SECRET}`,
    'routes:',
    '  - from: https://app.example.com',
    '    to: http://10.0.0.5:3000',
    '    allow_any_authenticated_user: true',
    '  - from: https://keep.example.com',
    '    to: http://10.0.0.6:3000',
    '    preserve_host_header: true',
    '    allow_any_authenticated_user: true',
    '  - from: https://custom.example.com',
    '    to: http://10.0.0.7:3000',
    '    allow_any_authenticated_user: true',
    '    set_request_headers:',
    '      X-Team: platform',
    '      X-Forwarded-Email: route@example.com',
    '    remove_request_headers:',
    '      - X-Debug',
    '',
  ].join('\n'),
  'portcullis.yaml',
  {},
);
const [plainRoute, preserveRoute, customRoute] = cfg.routes as [Route, Route, Route];

const UPSTREAM = new URL('http://10.0.0.5:3000');
const PEER = '203.0.113.9';

function identity(via: Identity['via']): Identity {
  return {
    sub: 's1',
    user: 'alice',
    email: 'alice@example.com',
    emailVerified: true,
    name: 'Alice',
    preferredUsername: 'alice',
    groups: ['eng'],
    claims: {},
    via,
  };
}

const ID_HEADERS: ReadonlyArray<[string, string]> = [
  ['x-portcullis-jwt-assertion', 'signed.jwt.value'],
  ['x-forwarded-user', 'alice'],
  ['x-forwarded-email', 'alice@example.com'],
];

interface Call {
  raw: string[];
  route?: Route;
  trustedPeer?: boolean;
  via?: Identity['via'] | null;
  identityHeaders?: ReadonlyArray<[string, string]>;
  host?: string;
  port?: number;
}

function call(c: Call): string[] {
  const raw = c.raw;
  const headers: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    headers[k] = headers[k] === undefined ? raw[i + 1]! : `${headers[k]}, ${raw[i + 1]!}`;
  }
  const req = { rawHeaders: raw, headers, method: 'GET', url: '/x' } as unknown as IncomingMessage;
  const ctx: RequestContext = {
    method: 'GET',
    scheme: 'https',
    host: c.host ?? 'app.example.com',
    port: c.port ?? 443,
    path: '/x',
    query: '',
    clientIp: PEER,
    headers,
    browser: false,
    now: Date.now(),
  };
  const via = c.via === undefined ? 'session' : c.via;
  const f: Omit<ForwardInput, 'res'> = {
    req,
    ctx,
    route: c.route ?? plainRoute,
    identity: via === null ? null : identity(via),
    requestId: 'req-42',
    ownCookie: OWN,
    trustedPeer: c.trustedPeer ?? false,
    peerIp: PEER,
    setCookies: [],
    identityHeaders: c.identityHeaders ?? ID_HEADERS,
  };
  return upstreamHeaders(f, UPSTREAM);
}

/** [name, value] pairs for readable assertions. */
function pairs(flat: string[]): Array<[string, string]> {
  assert.equal(flat.length % 2, 0, 'flat header list has an odd length');
  const out: Array<[string, string]> = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}
const canon = (n: string): string => n.toLowerCase().replaceAll('_', '-');
/** Every value sent under `name`, in any spelling (the upstream may fold `_` and `-`). */
function valuesOf(flat: string[], name: string): string[] {
  return pairs(flat)
    .filter(([k]) => canon(k) === canon(name))
    .map(([, v]) => v);
}

describe('upstreamHeaders', () => {
  test("client identity headers in any spelling are gone; the proxy's are sent exactly once", () => {
    const out = call({
      raw: [
        'X-Forwarded-User',
        'mallory',
        'x_forwarded_email',
        'mallory@evil.example',
        'X-Portcullis-Jwt-Assertion',
        'forged',
        'Remote-User',
        'root',
        'X_Forwarded_User',
        'mallory2',
        'Accept',
        'text/html',
      ],
    });
    assert.deepEqual(valuesOf(out, 'x-forwarded-user'), ['alice']);
    assert.deepEqual(valuesOf(out, 'x-forwarded-email'), ['alice@example.com']);
    assert.deepEqual(valuesOf(out, 'x-portcullis-jwt-assertion'), ['signed.jwt.value']);
    assert.deepEqual(valuesOf(out, 'remote-user'), []);
    assert.deepEqual(valuesOf(out, 'accept'), ['text/html']);
    for (const v of ['mallory', 'mallory@evil.example', 'forged', 'root', 'mallory2'])
      assert.ok(!out.includes(v), `client value ${v} reached the upstream`);
  });

  test('client identity headers are dropped even when the proxy sends none (public route)', () => {
    const out = call({
      raw: ['X-Forwarded-User', 'mallory', 'remote_user', 'root'],
      via: null,
      identityHeaders: [],
    });
    assert.deepEqual(valuesOf(out, 'x-forwarded-user'), []);
    assert.deepEqual(valuesOf(out, 'remote-user'), []);
  });

  test('X-Forwarded-For from an untrusted peer is replaced by the peer, in every spelling', () => {
    const out = call({ raw: ['X_Forwarded_For', '6.6.6.6', 'X-Forwarded-For', '7.7.7.7'] });
    assert.deepEqual(valuesOf(out, 'x-forwarded-for'), [PEER]);
    assert.deepEqual(
      pairs(out)
        .filter(([k]) => canon(k) === 'x-forwarded-for')
        .map(([k]) => k),
      ['x-forwarded-for'],
    );
    assert.ok(!out.some((v) => v.includes('6.6.6.6') || v.includes('7.7.7.7')));
  });

  test("a trusted peer's X-Forwarded-For is extended, its underscore twin still dropped", () => {
    const out = call({
      raw: ['X-Forwarded-For', '1.2.3.4', 'X_Forwarded_For', '6.6.6.6'],
      trustedPeer: true,
    });
    assert.deepEqual(valuesOf(out, 'x-forwarded-for'), [`1.2.3.4, ${PEER}`]);
    assert.ok(!out.some((v) => v.includes('6.6.6.6')));
    // several instances are one list, in order
    const two = call({
      raw: ['X-Forwarded-For', '1.2.3.4', 'x-forwarded-for', '5.6.7.8'],
      trustedPeer: true,
    });
    assert.deepEqual(valuesOf(two, 'x-forwarded-for'), [`1.2.3.4, 5.6.7.8, ${PEER}`]);
  });

  test("Host, X-Forwarded-*, Forwarded, X-Real-IP, X-Request-Id and Expect are the proxy's, not the client's", () => {
    const raw = [
      'Host',
      'evil.example',
      'X-Forwarded-Host',
      'evil.example',
      'X-Forwarded-Proto',
      'http',
      'X-Forwarded-Port',
      '1',
      'Forwarded',
      'for=6.6.6.6;host=evil.example',
      'X-Real-IP',
      '6.6.6.6',
      'x_real_ip',
      '6.6.6.7',
      'X-Request-Id',
      'chosen-by-client',
      'Expect',
      '100-continue',
    ];
    const out = call({ raw });
    assert.deepEqual(valuesOf(out, 'host'), ['10.0.0.5:3000']);
    assert.deepEqual(valuesOf(out, 'x-forwarded-host'), ['app.example.com']);
    assert.deepEqual(valuesOf(out, 'x-forwarded-proto'), ['https']);
    assert.deepEqual(valuesOf(out, 'x-forwarded-port'), []);
    assert.deepEqual(valuesOf(out, 'forwarded'), []);
    assert.deepEqual(valuesOf(out, 'x-real-ip'), []);
    assert.deepEqual(valuesOf(out, 'expect'), []);
    assert.deepEqual(valuesOf(out, 'x-request-id'), ['req-42']);

    const kept = call({ raw, route: preserveRoute, host: 'keep.example.com' });
    assert.deepEqual(valuesOf(kept, 'host'), ['keep.example.com']);
    const port = call({ raw, route: preserveRoute, host: 'keep.example.com', port: 8443 });
    assert.deepEqual(valuesOf(port, 'host'), ['keep.example.com:8443']);
    assert.deepEqual(valuesOf(port, 'x-forwarded-host'), ['keep.example.com:8443']);
  });

  test('headers named in Connection, hop-by-hop headers and values with CR/LF/NUL are dropped', () => {
    const out = call({
      raw: [
        'Connection',
        'keep-alive, X-Secret',
        'X-Secret',
        'hush',
        'x_secret',
        'hush2',
        'Keep-Alive',
        'timeout=5',
        'Proxy-Authorization',
        'Basic Zm9vOmJhcg==',
        'TE',
        'trailers',
        'Upgrade',
        'h2c',
        'X-Cr',
        'a\rb',
        'X-Lf',
        'a\nb',
        'X-Nul',
        'a\0b',
        'X-Ok',
        'fine',
      ],
    });
    for (const n of [
      'connection',
      'x-secret',
      'keep-alive',
      'proxy-authorization',
      'te',
      'upgrade',
      'x-cr',
      'x-lf',
      'x-nul',
    ]) {
      assert.deepEqual(valuesOf(out, n), [], `${n} reached the upstream`);
    }
    assert.deepEqual(valuesOf(out, 'x-ok'), ['fine']);
    assert.ok(!out.some((v) => /[\r\n\0]/.test(v)));
  });

  test('the session cookie is stripped, other cookies stay; an emptied Cookie header is not sent', () => {
    const out = call({
      raw: ['Cookie', 'a=1; _portcullis=secret; _portcullis_1=chunk; x_portcullis=2; b=3'],
    });
    assert.deepEqual(valuesOf(out, 'cookie'), ['a=1; x_portcullis=2; b=3']);
    assert.ok(!out.some((v) => v.includes('secret') || v.includes('chunk')));
    const only = call({ raw: ['Cookie', '_portcullis=secret', 'Accept', '*/*'] });
    assert.deepEqual(valuesOf(only, 'cookie'), []);
    const twice = call({ raw: ['Cookie', 'a=1', 'cookie', '_portcullis=secret; b=2'] });
    assert.deepEqual(valuesOf(twice, 'cookie'), ['a=1', 'b=2']);
  });

  test('Authorization: the Portcullis scheme never, an IdP bearer token only when it did not prove the identity', () => {
    assert.deepEqual(
      valuesOf(call({ raw: ['Authorization', 'Portcullis xyz'] }), 'authorization'),
      [],
    );
    assert.deepEqual(
      valuesOf(call({ raw: ['authorization', 'portcullis xyz'], via: null }), 'authorization'),
      [],
    );
    assert.deepEqual(
      valuesOf(call({ raw: ['Authorization', 'PORTCULLIS\txyz'], via: 'bearer' }), 'authorization'),
      [],
    );
    assert.deepEqual(
      valuesOf(call({ raw: ['Authorization', 'Bearer abc'], via: 'session' }), 'authorization'),
      ['Bearer abc'],
    );
    assert.deepEqual(
      valuesOf(call({ raw: ['Authorization', 'Bearer abc'], via: 'bearer' }), 'authorization'),
      [],
    );
    assert.deepEqual(
      valuesOf(call({ raw: ['Authorization', 'Bearer abc'], via: null }), 'authorization'),
      ['Bearer abc'],
    );
  });

  test("an identity header that is also Authorization (pass_access_token) replaces the client's", () => {
    const out = call({
      raw: ['Authorization', 'Bearer client'],
      identityHeaders: [...ID_HEADERS, ['authorization', 'Bearer idp-token']],
    });
    assert.deepEqual(valuesOf(out, 'authorization'), ['Bearer idp-token']);
  });

  test('set_request_headers win over identity and client headers; remove_request_headers covers every spelling', () => {
    const out = call({
      route: customRoute,
      host: 'custom.example.com',
      raw: [
        'x-team',
        'client-team',
        'X_TEAM',
        'client-team2',
        'X-Debug',
        '1',
        'x_debug',
        '2',
        'X-DEBUG',
        '3',
        'Accept',
        '*/*',
      ],
    });
    assert.deepEqual(valuesOf(out, 'x-team'), ['platform']);
    assert.deepEqual(valuesOf(out, 'x-forwarded-email'), ['route@example.com']);
    assert.deepEqual(valuesOf(out, 'x-forwarded-user'), ['alice']);
    assert.deepEqual(valuesOf(out, 'x-debug'), []);
    assert.deepEqual(valuesOf(out, 'accept'), ['*/*']);
  });

  test("the client's other headers keep their order, ahead of the proxy's", () => {
    const clientOwn: string[] = [
      'Accept',
      'a',
      'User-Agent',
      'u',
      'X-B',
      '1',
      'X-A',
      '2',
      'x-b',
      '3',
      'Accept-Language',
      'de',
    ];
    const raw = [
      'Host',
      'app.example.com',
      'Accept',
      'a',
      'X-Forwarded-User',
      'm',
      'User-Agent',
      'u',
      'X-B',
      '1',
      'Cookie',
      '_portcullis=s',
      'X-A',
      '2',
      'x-b',
      '3',
      'Accept-Language',
      'de',
    ];
    const out = call({ raw });
    assert.deepEqual(out.slice(0, clientOwn.length), clientOwn);
    const rest = pairs(out.slice(clientOwn.length)).map(([k]) => k);
    assert.deepEqual(rest, [
      'host',
      'x-forwarded-for',
      'x-forwarded-proto',
      'x-forwarded-host',
      'x-request-id',
      ...ID_HEADERS.map(([k]) => k),
    ]);
  });

  test('property: no client identity header, Connection-named header or bad value ever gets through', () => {
    const names = fc.constantFrom(
      'X-Forwarded-User',
      'x_forwarded_user',
      'X-Forwarded-Email',
      'REMOTE_USER',
      'Remote-Groups',
      'X-Portcullis-Jwt-Assertion',
      'x_portcullis_anything',
      'X-Authentik-Meta-App',
      'X-Pomerium-Claim-Email',
      'X-App',
      'X_App',
      'Accept',
      'X-Secret',
      'x_secret',
      'X-Forwarded-For',
      'X_Forwarded_For',
      'Host',
      'Cookie',
      'Authorization',
      'Connection',
    );
    const values = fc.oneof(
      fc.constantFrom('v', 'x-secret', 'X_App', 'a\r\nb', '\0', 'Bearer t', '_portcullis=s; a=1'),
      fc.string({ maxLength: 6 }),
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(names, values), { maxLength: 10 }),
        fc.boolean(),
        (list, trusted) => {
          const raw = list.flat();
          const out = call({ raw, trustedPeer: trusted });
          const tokens = new Set<string>();
          for (const [k, v] of list)
            if (k.toLowerCase() === 'connection')
              for (const t of v.split(',')) if (t.trim()) tokens.add(canon(t.trim()));
          const ours = new Set([
            'host',
            'x-forwarded-for',
            'x-forwarded-proto',
            'x-forwarded-host',
            'x-request-id',
            ...ID_HEADERS.map(([k]) => k),
          ]);
          for (const [k, v] of pairs(out)) {
            assert.ok(!/[\r\n\0]/.test(v), `bad value for ${k}`);
            assert.notEqual(canon(k), 'connection');
            if (ours.has(k)) continue;
            assert.ok(!tokens.has(canon(k)), `${k} was named in Connection`);
            assert.ok(
              !/^(x-forwarded-(user|email)|remote-|x-portcullis-|x-authentik-|x-pomerium-)/.test(
                canon(k),
              ),
              `client identity header ${k}`,
            );
            if (canon(k) === 'cookie')
              assert.ok(!v.includes('_portcullis'), 'session cookie forwarded');
          }
          for (const k of ours) assert.equal(valuesOf(out, k).length, 1, `${k} not exactly once`);
          assert.equal(valuesOf(out, 'x-forwarded-for')[0]!.endsWith(PEER), true);
          if (!trusted) assert.equal(valuesOf(out, 'x-forwarded-for')[0], PEER);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// 4. newRequestId

test('newRequestId: 10,000 ids are unique and well-formed', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    const id = newRequestId();
    assert.match(id, /^[0-9a-f]{12}-\d+$/);
    seen.add(id);
  }
  assert.equal(seen.size, 10_000);
});

describe('Lane: which upstream pool a request goes to', async () => {
  const { Lane } = await import('../src/proxy/upstreams.js');
  type Pool = import('../src/proxy/undici.js').Pool;
  const fastPool = { name: 'fast' } as unknown as Pool;
  const overflowPool = { name: 'overflow' } as unknown as Pool;
  const flight = () => ({ lane: null, epoch: -1, streaming: false, queued: false, go() {} });
  // As forward.ts does: a request that did not queue has its connection at once.
  const fill = (lane: InstanceType<typeof Lane>, n: number, at: number) =>
    Array.from({ length: n }, () => {
      const f = flight();
      assert.equal(lane.choose(f, at, true), fastPool);
      if (!f.queued) lane.connected(f, at);
      return f;
    });

  test('the first 32 requests get a shared connection without queueing', () => {
    const lane = new Lane(fastPool, () => overflowPool);
    const flights = fill(lane, 32, 1000);
    assert.ok(flights.every((f) => !f.queued));
  });

  test('short requests beyond 32 queue for a shared connection; done ones free their place', () => {
    const lane = new Lane(fastPool, () => overflowPool);
    const flights = fill(lane, 32, 1000);
    const f = flight();
    assert.equal(lane.choose(f, 1001, true), fastPool);
    assert.equal(f.queued, true);
    for (const x of flights) lane.done(x);
    lane.done(f);
    const g = flight();
    assert.equal(lane.choose(g, 1002, true), fastPool);
    assert.equal(g.queued, false);
  });

  test('a request with a body never queues: with every shared connection busy it gets its own', () => {
    const lane = new Lane(fastPool, () => overflowPool);
    fill(lane, 32, 1000);
    const f = flight();
    assert.equal(lane.choose(f, 1001, false), overflowPool);
    assert.equal(f.lane, null);
  });

  test('when half the shared connections stream (SSE, downloads), new requests do not queue behind them', () => {
    const lane = new Lane(fastPool, () => overflowPool);
    const flights = fill(lane, 32, 1000);
    for (const f of flights.slice(0, 15)) lane.streamingStarted(f);
    assert.equal(
      lane.choose(flight(), 1001, true),
      fastPool,
      '15 streams of 32: still worth queueing',
    );
    lane.streamingStarted(flights[15]!);
    assert.equal(lane.choose(flight(), 1002, true), overflowPool, '16 streams of 32: go elsewhere');
  });

  test('requests in flight for over a second (long polls) count as holders too', () => {
    const lane = new Lane(fastPool, () => overflowPool);
    fill(lane, 16, 1000);
    fill(lane, 16, 1900);
    assert.equal(
      lane.choose(flight(), 1950, true),
      fastPool,
      'nothing has been in flight for a second yet',
    );
    assert.equal(
      lane.choose(flight(), 2100, true),
      overflowPool,
      '16 requests have now been in flight over a second',
    );
  });

  test('time spent waiting in the queue is not holding a connection (1,000 clients of a fast app)', () => {
    const lane = new Lane(fastPool, () => overflowPool);
    const first = fill(lane, 32, 1000);
    const waiting = fill(lane, 900, 1000);
    assert.ok(waiting.every((f) => f.queued));
    // The queue turns over: each shared connection finishes and takes the next waiting one.
    for (let i = 0; i < 32; i++) {
      lane.done(first[i]!);
      lane.connected(waiting[i]!, 2050);
    }
    assert.equal(lane.stuck(2100), false, 'connections turning over: keep waiting');
    assert.equal(
      lane.choose(flight(), 2100, true),
      fastPool,
      'requests that waited over a second in the queue are not holders',
    );
  });

  test('a request that leaves the queue (its client left, or it moved) is never started; the next one is, in order', () => {
    const lane = new Lane(fastPool, () => overflowPool);
    const first = fill(lane, 32, 1000);
    const started: string[] = [];
    const waiter = (name: string) => {
      const f = { ...flight(), go: () => started.push(name) };
      assert.equal(lane.choose(f, 1001, true), fastPool);
      assert.equal(f.queued, true);
      return f;
    };
    const a = waiter('a');
    waiter('b');
    waiter('c');
    lane.done(a);
    lane.done(first[0]!);
    assert.deepEqual(started, ['b']);
    lane.done(first[1]!);
    assert.deepEqual(started, ['b', 'c']);
    lane.done(first[2]!);
    const late = flight();
    assert.equal(lane.choose(late, 1002, true), fastPool);
    assert.equal(late.queued, false, 'a free connection and nobody waiting: it goes at once');
  });

  test('a waiting request gives up on the queue when half the connections have been busy for 500 ms', () => {
    const lane = new Lane(fastPool, () => overflowPool);
    fill(lane, 16, 1000);
    fill(lane, 16, 1400);
    fill(lane, 5, 1400); // queued
    assert.equal(lane.stuck(1200), false, '200 ms: the shared connections may still turn over');
    assert.equal(lane.stuck(1500), true, '16 of 32 connected two buckets ago and still busy');
  });
});

// ---------------------------------------------------------------------------------------------
// 5. The decoded-session cache holds what it needs, not the request it was filled from.

describe('session cache memory', () => {
  test("a cached session does not keep the whole Cookie header alive (other apps' cookies, analytics)", async (t) => {
    const { SessionManager } = await import('../src/session/manager.js');
    const { CookieSessionStore } = await import('../src/session/cookie-store.js');
    const { Sealer } = await import('../src/session/seal.js');
    const v8 = await import('node:v8');
    const { runInNewContext } = await import('node:vm');
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;

    const store = new CookieSessionStore(new Sealer(Buffer.from(SECRET, 'base64')), OWN);
    const manager = new SessionManager(cfg, store);
    const now = Date.now();
    const n = 1500;
    const values: string[] = [];
    for (let i = 0; i < n; i++) {
      values.push(
        await store.save({
          v: 1,
          sid: `sid-${i}`,
          sub: `user-${i}`,
          claims: { email: `u${i}@example.com`, groups: ['eng'] },
          iat: now,
          exp: now + 3_600_000,
        }),
      );
    }
    // What a browser sends on a parent-domain deployment: 8 KB of other cookies around ours.
    const padding = `_ga=${'g'.repeat(4000)}; other_app=${'o'.repeat(4000)}`;
    const ctx = (value: string): RequestContext =>
      ({
        headers: { cookie: `${padding}; ${OWN}=${value}` },
        now,
        host: 'app.example.com',
      }) as unknown as RequestContext;

    gc();
    const before = process.memoryUsage().heapUsed;
    for (const v of values) {
      // A fresh header string per request, as Node's HTTP parser makes it.
      const r = await manager.lookup(ctx(Buffer.from(v, 'latin1').toString('latin1')));
      assert.equal(r.identity?.user, `user-${values.indexOf(v)}`);
    }
    gc();
    const perSession = (process.memoryUsage().heapUsed - before) / n;
    // An entry is ~2-3 KB (key, identity, claims, view); keeping the header would add 8 KB each.
    t.diagnostic(`${Math.round(perSession)} bytes of heap per cached session`);
    assert.ok(perSession < 5000, `${Math.round(perSession)} bytes of heap per cached session`);
    // And they are cached: the second round decrypts nothing.
    let opened = 0;
    const load = store.load.bind(store);
    store.load = async (value, t) => {
      opened++;
      return load(value, t);
    };
    for (const v of values.slice(0, 100))
      await manager.lookup(ctx(Buffer.from(v, 'latin1').toString('latin1')));
    assert.equal(opened, 0);
  });

  test('session_cache_size bounds the cache: more sessions than that cycling are decrypted again, fewer are not', async () => {
    const { SessionManager } = await import('../src/session/manager.js');
    const { CookieSessionStore } = await import('../src/session/cookie-store.js');
    const { Sealer } = await import('../src/session/seal.js');
    const store = new CookieSessionStore(new Sealer(Buffer.from(SECRET, 'base64')), OWN);
    const now = Date.now();
    const values: string[] = [];
    for (let i = 0; i < 150; i++)
      values.push(
        await store.save({
          v: 1,
          sid: `sid-${i}`,
          sub: `user-${i}`,
          claims: { groups: ['eng'] },
          iat: now,
          exp: now + 3_600_000,
        }),
      );
    let opened = 0;
    const load = store.load.bind(store);
    store.load = async (value, t) => {
      opened++;
      return load(value, t);
    };
    const ctx = (value: string): RequestContext =>
      ({
        headers: { cookie: `${OWN}=${value}` },
        now,
        host: 'app.example.com',
      }) as unknown as RequestContext;
    const cycle = async (m: InstanceType<typeof SessionManager>): Promise<number> => {
      opened = 0;
      for (const v of values)
        assert.equal((await m.lookup(ctx(v))).identity?.user, `user-${values.indexOf(v)}`);
      return opened;
    };
    const small = new SessionManager({ ...cfg, sessionCacheSize: 100 }, store);
    assert.equal(await cycle(small), 150);
    assert.equal(
      await cycle(small),
      150,
      '150 sessions through 100 places: every one was evicted before it came back',
    );
    const big = new SessionManager({ ...cfg, sessionCacheSize: 200 }, store);
    assert.equal(await cycle(big), 150);
    assert.equal(await cycle(big), 0, 'all 150 fit: none is decrypted again');
  });
});
