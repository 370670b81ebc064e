import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { CookieJar, request } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { startStack, type Stack } from './helpers/stack.js';
import { EC_KEY, selfSigned } from './helpers/certs.js';

// Pomerium's route keys for the upstream connection and the headers around it, through a
// running Portcullis with real upstreams. The specification is Pomerium's documentation:
//  HEADERS   https://www.pomerium.com/docs/reference/routes/headers#rewrite-response-headers
//  CORS      https://www.pomerium.com/docs/reference/routes/cors-preflight
//  TLS       https://www.pomerium.com/docs/reference/routes/tls
//  TO        https://www.pomerium.com/docs/reference/routes/to (h2c, http+unix, https+unix)
//  K8S       https://www.pomerium.com/docs/reference/routes/kubernetes-service-account-token
//            and https://kubernetes.io/docs/reference/access-authn-authz/user-impersonation/
//  TIMEOUTS  https://www.pomerium.com/docs/reference/routes/timeouts
//  JWT GROUPS FILTER https://www.pomerium.com/docs/reference/jwt-groups-filter
//            and https://www.pomerium.com/docs/reference/routes/jwt-groups-filter
//  REGEX ORDER https://www.pomerium.com/docs/reference/routes/regex-priority-order
// What counts as a CORS preflight is the Fetch standard's "CORS-preflight request": OPTIONS
// with Origin and Access-Control-Request-Method (https://fetch.spec.whatwg.org/#cors-preflight-request).

const JSON_ACCEPT = { accept: 'application/json' };

interface Seen {
  method: string;
  url: string;
  /** Raw header pairs, lower-cased names: repeated headers stay separate. */
  headers: Array<[string, string]>;
  httpVersion: string;
  clientCertCn?: string;
}

function pairs(raw: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
  return out;
}

function all(seen: Seen, name: string): string[] {
  return seen.headers.filter(([k]) => k === name).map(([, v]) => v);
}

/** Answers what it saw as JSON, and records it: proof that a refused request went no further. */
function recorder(seen: Seen[]) {
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s: Seen = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: pairs(req.rawHeaders),
        httpVersion: req.httpVersion,
      };
      const peer = (req.socket as Partial<TLSSocket>).getPeerCertificate?.();
      if (peer?.subject) s.clientCertCn = String(peer.subject.CN);
      seen.push(s);
      if (req.url?.startsWith('/redirect')) {
        // What an upstream that knows only its internal name answers.
        res.writeHead(302, {
          location: 'http://internal.svc:9000/app/next?x=1',
          refresh: '0; url=http://internal.svc:9000/app/refreshed',
          'content-location': 'http://elsewhere.svc/app/kept',
          link: '<http://internal.svc:9000/app/style.css>; rel=preload',
        });
        res.end();
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ...s, body: Buffer.concat(chunks).toString('utf8') }));
    });
  };
}

function listen(server: net.Server, where: number | string): Promise<void> {
  return new Promise((r) =>
    typeof where === 'string' ? server.listen(where, r) : server.listen(where, '127.0.0.1', r),
  );
}

function portOf(server: net.Server): number {
  return (server.address() as AddressInfo).port;
}

/** Closes servers and every socket they accepted (upgraded ones too, which Node stops tracking). */
function closeAll(servers: Array<net.Server | http2.Http2Server>): Promise<unknown> {
  return Promise.allSettled(
    servers.map(
      (s) =>
        new Promise<void>((r) => {
          s.close(() => r());
          for (const sock of accepted.get(s) ?? []) sock.destroy();
        }),
    ),
  );
}

const accepted = new WeakMap<object, Set<net.Socket>>();
function track<T extends net.Server | http2.Http2Server>(server: T): T {
  const set = new Set<net.Socket>();
  accepted.set(server, set);
  server.on('connection', (sock: net.Socket) => {
    set.add(sock);
    sock.on('close', () => set.delete(sock));
  });
  return server;
}

/** A CA, a server certificate for app.internal, and a client certificate, all made with openssl. */
function makeCertificates(dir: string): void {
  const ossl = (...args: string[]): void =>
    void execFileSync('openssl', args, { stdio: 'ignore', cwd: dir });
  /** A self-signed CA certificate, `${name}.crt`, with its key. */
  const ca = (name: string, cn: string): void => selfSigned(dir, name, `/CN=${cn}`);
  ca('ca', 'Test CA');
  const issue = (name: string, subj: string, ext: string): void => {
    ossl('req', ...EC_KEY, '-subj', subj, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    writeFileSync(join(dir, `${name}.ext`), ext);
    ossl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.crt`,
    );
  };
  issue(
    'server',
    '/CN=app.internal',
    'subjectAltName=DNS:app.internal\nextendedKeyUsage=serverAuth\n',
  );
  issue('client', '/CN=portcullis-client', 'extendedKeyUsage=clientAuth\n');
  // A second CA's client certificate: right shape, wrong issuer.
  ca('other', 'Other CA');
}

describe('upstream connection and header keys through a running Portcullis', () => {
  let s: Stack;
  let h2ws: http2.Http2Server;
  const h2wsSeen: Array<Record<string, unknown>> = [];
  let dir: string;
  const seen: Seen[] = [];
  const servers: Array<net.Server | http2.Http2Server> = [];
  const url = (host: string, path: string): string => `http://${host}:${s.port}${path}`;
  const token = 'eyJhbGciOiJSUzI1NiJ9.service-account.signature';
  let jar: CookieJar;
  const last = (): Seen => seen.at(-1)!;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-keys-'));
    makeCertificates(dir);
    const pem = (n: string): string => readFileSync(join(dir, n), 'utf8');
    const b64 = (n: string): string => Buffer.from(pem(n)).toString('base64');
    writeFileSync(join(dir, 'sa-token'), `${token}\n`);

    const plain = track(http.createServer(recorder(seen)));
    // A WebSocket echo: the handshake, then every byte back as it came.
    plain.on('upgrade', (req: http.IncomingMessage, sock: net.Socket) => {
      const accept = createHash('sha1')
        .update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest('base64');
      sock.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
      );
      sock.on('data', (d: Buffer) => sock.write(d));
      sock.on('error', () => sock.destroy());
    });
    await listen(plain, 0);
    const h2c = track(
      http2.createServer((req, res) =>
        recorder(seen)(
          req as unknown as http.IncomingMessage,
          res as unknown as http.ServerResponse,
        ),
      ),
    );
    await listen(h2c as unknown as net.Server, 0);
    const unixPlain = track(http.createServer(recorder(seen)));
    await listen(unixPlain, join(dir, 'plain.sock'));
    const tlsOptions = {
      cert: pem('server.crt'),
      key: pem('server.key'),
      ca: pem('ca.crt'),
      requestCert: true,
      rejectUnauthorized: true,
    };
    const mtls = track(https.createServer(tlsOptions, recorder(seen)));
    await listen(mtls, 0);
    const unixTls = track(https.createServer(tlsOptions, recorder(seen)));
    await listen(unixTls, join(dir, 'tls.sock'));
    // An h2c WebSocket echo as RFC 8441 has it: SETTINGS_ENABLE_CONNECT_PROTOCOL, then an
    // extended CONNECT stream per WebSocket on which the frames flow; each text frame from the
    // client (masked, RFC 6455 section 5.3) is answered with an unmasked "echo: ..." frame.
    h2ws = track(http2.createServer({ settings: { enableConnectProtocol: true } }));
    h2ws.on('stream', (stream, headers) => {
      h2wsSeen.push({ ...headers });
      stream.respond({ ':status': 200, 'sec-websocket-protocol': 'chat' });
      stream.on('error', () => {});
      let buf = Buffer.alloc(0);
      stream.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        while (buf.length >= 6 && buf.length >= 6 + (buf[1]! & 0x7f)) {
          const len = buf[1]! & 0x7f;
          const mask = buf.subarray(2, 6);
          const text = Buffer.from(buf.subarray(6, 6 + len).map((b, i) => b ^ mask[i % 4]!));
          buf = buf.subarray(6 + len);
          const reply = Buffer.from(`echo: ${text.toString()}`);
          stream.write(Buffer.concat([Buffer.from([0x81, reply.length]), reply]));
        }
      });
    });
    await listen(h2ws as unknown as net.Server, 0);
    servers.push(plain, h2c, unixPlain, mtls, unixTls, h2ws);
    const up = `http://127.0.0.1:${portOf(plain)}`;
    const mtlsUp = `https://127.0.0.1:${portOf(mtls)}`;
    const clientFiles = `tls_client_cert_file: ${join(dir, 'client.crt')}
    tls_client_key_file: ${join(dir, 'client.key')}`;

    s = await startStack({
      hosts: ['app.corp.test', 'cors.corp.test', 'k8s.corp.test'],
      body: `jwt_claims_headers: {X-Groups: groups}
routes:
  # HEADERS: rewrite_response_headers
  - from: http://app.corp.test:\${PORT}
    prefix: /redirect
    to: ${up}
    allow_public_unauthenticated_access: true
    rewrite_response_headers:
      - header: Location
        prefix: http://internal.svc:9000/app/
        value: http://app.corp.test:\${PORT}/
      - header: refresh
        prefix: '0; url=http://internal.svc:9000/app/'
        value: '0; url=/'
      - header: Content-Location
        prefix: http://internal.svc:9000/app/
        value: /
  # CORS
  - from: http://cors.corp.test:\${PORT}
    prefix: /api/
    to: ${up}
    allowed_emails: [alice@example.com]
    cors_allow_preflight: true
    allow_websockets: true
  - from: http://cors.corp.test:\${PORT}
    prefix: /strict/
    to: ${up}
    allowed_emails: [alice@example.com]
  # K8S
  - from: http://k8s.corp.test:\${PORT}
    prefix: /filtered/
    to: ${up}
    allow_any_authenticated_user: true
    kubernetes_service_account_token_file: ${join(dir, 'sa-token')}
    jwt_groups_filter: [eng, nobody]
  - from: http://k8s.corp.test:\${PORT}
    to: ${up}
    allow_any_authenticated_user: true
    cors_allow_preflight: true
    kubernetes_service_account_token_file: ${join(dir, 'sa-token')}
  # TO: WebSockets to h2c upstreams, with and without RFC 8441
  - from: http://app.corp.test:\${PORT}
    prefix: /h2c-ws/
    to: h2c://127.0.0.1:${portOf(h2ws as unknown as net.Server)}
    allow_public_unauthenticated_access: true
    allow_websockets: true
  - from: http://app.corp.test:\${PORT}
    prefix: /h2c-no-ws/
    to: h2c://127.0.0.1:${portOf(h2c as unknown as net.Server)}
    allow_public_unauthenticated_access: true
    allow_websockets: true
  # TIMEOUTS: idle_timeout on a WebSocket tunnel
  - from: http://app.corp.test:\${PORT}
    prefix: /ws-idle/
    to: ${up}
    allow_public_unauthenticated_access: true
    allow_websockets: true
    idle_timeout: 1s
  # REGEX ORDER: a path route first in the file, then two regex routes in the other order
  - from: http://app.corp.test:\${PORT}
    path: /rx/special/fixed
    allow_public_unauthenticated_access: true
    response: {body: fixed}
  - from: http://app.corp.test:\${PORT}
    regex: '^/rx/.*$'
    allow_public_unauthenticated_access: true
    response: {body: general}
  - from: http://app.corp.test:\${PORT}
    regex: '^/rx/special/.*$'
    regex_priority_order: 10
    allow_public_unauthenticated_access: true
    response: {body: special}
  # TO: h2c, http+unix, https+unix
  - from: http://app.corp.test:\${PORT}
    prefix: /h2c/
    to: h2c://127.0.0.1:${portOf(h2c as unknown as net.Server)}
    allow_public_unauthenticated_access: true
  - from: http://app.corp.test:\${PORT}
    prefix: /unix/
    to: http+unix://${join(dir, 'plain.sock')}
    allow_public_unauthenticated_access: true
  - from: http://app.corp.test:\${PORT}
    prefix: /unix-tls/
    to: https+unix://${join(dir, 'tls.sock')}
    allow_public_unauthenticated_access: true
    tls_custom_ca_file: ${join(dir, 'ca.crt')}
    tls_upstream_server_name: app.internal
    ${clientFiles}
  # TLS: upstream mTLS and the server name
  - from: http://app.corp.test:\${PORT}
    prefix: /mtls-files/
    to: ${mtlsUp}
    allow_public_unauthenticated_access: true
    tls_custom_ca_file: ${join(dir, 'ca.crt')}
    tls_upstream_server_name: app.internal
    ${clientFiles}
  - from: http://app.corp.test:\${PORT}
    prefix: /mtls-inline/
    to: ${mtlsUp}
    allow_public_unauthenticated_access: true
    tls_custom_ca: ${b64('ca.crt')}
    tls_server_name: app.internal
    tls_client_cert: ${b64('client.crt')}
    tls_client_key: ${b64('client.key')}
  - from: http://app.corp.test:\${PORT}
    prefix: /mtls-none/
    to: ${mtlsUp}
    allow_public_unauthenticated_access: true
    tls_custom_ca_file: ${join(dir, 'ca.crt')}
    tls_upstream_server_name: app.internal
  - from: http://app.corp.test:\${PORT}
    prefix: /mtls-wrong-ca/
    to: ${mtlsUp}
    allow_public_unauthenticated_access: true
    tls_custom_ca_file: ${join(dir, 'ca.crt')}
    tls_upstream_server_name: app.internal
    tls_client_cert_file: ${join(dir, 'other.crt')}
    tls_client_key_file: ${join(dir, 'other.key')}
  - from: http://app.corp.test:\${PORT}
    prefix: /mtls-wrong-name/
    to: ${mtlsUp}
    allow_public_unauthenticated_access: true
    tls_custom_ca_file: ${join(dir, 'ca.crt')}
    tls_upstream_server_name: other.internal
    ${clientFiles}
  - from: http://app.corp.test:\${PORT}
    prefix: /mtls-no-name/
    to: ${mtlsUp}
    allow_public_unauthenticated_access: true
    tls_custom_ca_file: ${join(dir, 'ca.crt')}
    ${clientFiles}
`,
    });
    jar = new CookieJar();
    const { final, chain } = await loginThroughIdp(url('k8s.corp.test', '/version'), {
      jar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(final.status, 200, chain.join(' -> '));
    // The same sign-in covers the CORS host's policy (one login per host).
    const cors = await loginThroughIdp(url('cors.corp.test', '/api/me'), {
      jar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(cors.final.status, 200, cors.chain.join(' -> '));
  });

  after(async () => {
    await s?.close();
    await closeAll(servers);
    rmSync(dir, { recursive: true, force: true });
  });

  // HEADERS: "The header field will match the HTTP header name, and prefix will be replaced with value."
  test('rewrite_response_headers swaps the prefix of Location, Refresh and others', async () => {
    const r = await request(url('app.corp.test', '/redirect'));
    assert.equal(r.status, 302);
    assert.equal(r.location, `http://app.corp.test:${s.port}/next?x=1`);
    assert.equal(r.headers.refresh, '0; url=/refreshed');
    // A value without the prefix, and a header no rule names, pass unchanged.
    assert.equal(r.headers['content-location'], 'http://elsewhere.svc/app/kept');
    assert.equal(r.headers.link, '<http://internal.svc:9000/app/style.css>; rel=preload');
  });

  // CORS: "allows unauthenticated HTTP OPTIONS requests as per the CORS spec".
  const preflight = {
    ...JSON_ACCEPT,
    origin: 'https://web.example.com',
    'access-control-request-method': 'POST',
    'access-control-request-headers': 'content-type',
  };

  test('cors_allow_preflight: a preflight reaches the upstream without a session', async () => {
    const before = seen.length;
    const r = await request(url('cors.corp.test', '/api/items'), {
      method: 'OPTIONS',
      headers: {
        ...preflight,
        'X-Portcullis-Jwt-Assertion': 'forged',
        'X-Forwarded-Email': 'alice@example.com',
      },
    });
    assert.equal(r.status, 200, r.body);
    assert.equal(seen.length, before + 1);
    assert.equal(last().method, 'OPTIONS');
    assert.equal(last().url, '/api/items');
    assert.deepEqual(all(last(), 'access-control-request-method'), ['POST']);
    // Nobody signed in: no assertion or identity goes upstream, and no forged one either.
    assert.deepEqual(all(last(), 'x-portcullis-jwt-assertion'), []);
    assert.deepEqual(all(last(), 'x-forwarded-email'), []);
  });

  test('cors_allow_preflight: anything short of a real preflight still needs the policy', async () => {
    const before = seen.length;
    type Variant = { method: string; headers: Record<string, string>; body?: string };
    const options = (headers: Record<string, string>, body?: string): Variant => ({
      method: 'OPTIONS',
      headers,
      ...(body === undefined ? {} : { body }),
    });
    // Method-override headers: a preflight must not become another method on the way upstream.
    // Issue 17 item 5: some frameworks fold `.` like `-` and `_`.
    const overrides: Array<[string, string]> = [
      ['X-HTTP-Method-Override', 'DELETE'],
      ['X_HTTP_Method_Override', 'DELETE'],
      ['x-method-override', 'PUT'],
      ['X.HTTP.Method.Override', 'DELETE'],
    ];
    const variants: Array<[string, Variant]> = [
      [
        'OPTIONS without Access-Control-Request-Method',
        options({ ...JSON_ACCEPT, origin: 'https://web.example.com' }),
      ],
      [
        'OPTIONS without Origin',
        options({ ...JSON_ACCEPT, 'access-control-request-method': 'POST' }),
      ],
      ['OPTIONS with empty Origin', options({ ...preflight, origin: ' ' })],
      ['GET with preflight headers', { method: 'GET', headers: preflight }],
      ['POST with preflight headers', { method: 'POST', headers: preflight, body: 'x=1' }],
      ['OPTIONS with a body', options(preflight, 'delete=all')],
      [
        'OPTIONS with chunked body',
        options({ ...preflight, 'transfer-encoding': 'chunked' }, '5\r\nhello\r\n0\r\n\r\n'),
      ],
      ...overrides.map(([name, value]): [string, Variant] => [
        `OPTIONS with ${name}`,
        options({ ...preflight, [name]: value }),
      ]),
    ];
    for (const [what, v] of variants) {
      const r = await request(url('cors.corp.test', '/api/items'), v);
      assert.equal(r.status, 401, `${what}: ${r.status} ${r.body}`);
    }
    // A real preflight on a route without cors_allow_preflight.
    const strict = await request(url('cors.corp.test', '/strict/items'), {
      method: 'OPTIONS',
      headers: preflight,
    });
    assert.equal(strict.status, 401);
    assert.equal(seen.length, before, 'nothing reached the upstream');
  });

  test('cors_allow_preflight: a preflight dressed as a WebSocket upgrade is not let through', async () => {
    const before = seen.length;
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(s.port, '127.0.0.1', () => {
        sock.write(
          'OPTIONS /api/socket HTTP/1.1\r\n' +
            `Host: cors.corp.test:${s.port}\r\n` +
            'Origin: https://web.example.com\r\n' +
            'Access-Control-Request-Method: GET\r\n' +
            'Connection: Upgrade\r\nUpgrade: websocket\r\n' +
            'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
        );
      });
      let text = '';
      sock.on('data', (c: Buffer) => (text += c.toString('latin1')));
      sock.on('close', () => resolve(text));
      sock.on('error', reject);
      setTimeout(() => sock.destroy(), 20_000).unref();
    });
    assert.match(answer, /^HTTP\/1\.1 401 /);
    assert.equal(seen.length, before);
  });

  test('cors_allow_preflight: a signed-in request still goes through the policy as usual', async () => {
    const r = await request(url('cors.corp.test', '/api/items'), {
      jar,
      headers: { ...JSON_ACCEPT, origin: 'https://web.example.com' },
    });
    assert.equal(r.status, 200);
    assert.equal(all(last(), 'x-portcullis-jwt-assertion').length, 1);
  });

  // K8S: "Pomerium will impersonate the Pomerium user's identity, and Kubernetes RBAC can be
  // applied to identity provider users and groups."
  test('kubernetes_service_account_token: Bearer token, Impersonate-User and one Impersonate-Group per group', async () => {
    const r = await request(url('k8s.corp.test', '/api/v1/namespaces'), {
      jar,
      headers: {
        ...JSON_ACCEPT,
        'Impersonate-Group': 'system:masters',
        'Impersonate-User': 'system:admin',
        'X-Forwarded-Email': 'mallory@example.com',
      },
    });
    assert.equal(r.status, 200);
    const got = last();
    assert.deepEqual(all(got, 'authorization'), [`Bearer ${token}`]);
    assert.deepEqual(all(got, 'impersonate-user'), ['alice@example.com']);
    assert.deepEqual(all(got, 'impersonate-group'), ['admins', 'eng']);
  });

  // JWT GROUPS FILTER: "Only groups belonging to this subset will be included in the groups
  // claim" and "The setting also applies to the Impersonate-Group header".
  test('jwt_groups_filter limits the assertion, the groups header and Impersonate-Group', async () => {
    const groupsIn = (got: Seen): unknown => {
      const jwt = all(got, 'x-portcullis-jwt-assertion')[0]!;
      return (
        JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as {
          groups: unknown;
        }
      ).groups;
    };
    const filtered = await request(url('k8s.corp.test', '/filtered/x'), {
      jar,
      headers: JSON_ACCEPT,
    });
    assert.equal(filtered.status, 200);
    assert.deepEqual(all(last(), 'impersonate-group'), ['eng']);
    assert.deepEqual(all(last(), 'x-groups'), ['eng']);
    assert.deepEqual(groupsIn(last()), ['eng']);
    const whole = await request(url('k8s.corp.test', '/other'), { jar, headers: JSON_ACCEPT });
    assert.equal(whole.status, 200);
    assert.deepEqual(groupsIn(last()), ['admins', 'eng']);
    assert.deepEqual(all(last(), 'x-groups'), ['admins,eng']);
    assert.deepEqual(all(last(), 'impersonate-group'), ['admins', 'eng']);
  });

  test('kubernetes_service_account_token: the client Authorization is replaced, never sent beside it', async () => {
    const r = await request(url('k8s.corp.test', '/api'), {
      jar,
      headers: { ...JSON_ACCEPT, authorization: 'Basic bWFsbG9yeTpwdw==' },
    });
    assert.equal(r.status, 200);
    assert.deepEqual(all(last(), 'authorization'), [`Bearer ${token}`]);
  });

  test('kubernetes_service_account_token: without a session the token never leaves Portcullis', async () => {
    const before = seen.length;
    const r = await request(url('k8s.corp.test', '/api'), { headers: JSON_ACCEPT });
    assert.equal(r.status, 401);
    assert.equal(seen.length, before);
    // A preflight on the same route passes unjudged, and so without the service account's token.
    const p = await request(url('k8s.corp.test', '/api'), {
      method: 'OPTIONS',
      headers: preflight,
    });
    assert.equal(p.status, 200);
    assert.equal(seen.length, before + 1);
    assert.deepEqual(all(last(), 'authorization'), []);
    assert.deepEqual(all(last(), 'impersonate-user'), []);
    assert.deepEqual(all(last(), 'impersonate-group'), []);
  });

  // The service account may impersonate anyone: its token is for the API server alone. A
  // forward-auth answer goes back to whoever asked, and a signed-in user can ask directly.
  test('kubernetes_service_account_token: never in a forward-auth answer', async () => {
    for (const path of ['/.portcullis/auth/traefik', '/.portcullis/auth/nginx']) {
      const r = await request(url('k8s.corp.test', path), {
        jar,
        headers: {
          ...JSON_ACCEPT,
          'x-forwarded-proto': 'http',
          'x-forwarded-host': `k8s.corp.test:${s.port}`,
          'x-forwarded-uri': '/api/v1/secrets',
          'x-original-url': `http://k8s.corp.test:${s.port}/api/v1/secrets`,
        },
      });
      assert.equal(r.status, 200, `${path}: ${r.status} ${r.body}`);
      assert.ok(r.headers['x-portcullis-jwt-assertion'], path);
      assert.doesNotMatch(JSON.stringify(r.headers), new RegExp(token.split('.')[1]!), path);
      assert.equal(r.headers['impersonate-user'], undefined, path);
    }
  });

  // TO: "To configure Pomerium to make HTTP/2 requests in cleartext, use the h2c scheme".
  test('h2c:// upstreams are spoken to in HTTP/2 over cleartext, bodies included', async () => {
    const r = await request(url('app.corp.test', '/h2c/x?q=1'), {
      method: 'POST',
      headers: { ...JSON_ACCEPT, 'content-type': 'text/plain' },
      body: 'hello over h2c',
    });
    assert.equal(r.status, 200, r.body);
    const body = r.json<Seen & { body: string }>();
    assert.equal(body.httpVersion, '2.0');
    assert.equal(body.url, '/h2c/x?q=1');
    assert.equal(body.method, 'POST');
    assert.equal(body.body, 'hello over h2c');
    const again = await request(url('app.corp.test', '/h2c/y'), { headers: JSON_ACCEPT });
    assert.equal(again.json<Seen>().httpVersion, '2.0');
  });

  // TO: "to: https+unix:///var/run/example.sock".
  test('http+unix:// upstreams are reached over the socket, with Host: localhost', async () => {
    const r = await request(url('app.corp.test', '/unix/page'), { headers: JSON_ACCEPT });
    assert.equal(r.status, 200, r.body);
    const got = r.json<Seen>();
    assert.equal(got.url, '/unix/page');
    assert.deepEqual(all(got, 'host'), ['localhost']);
  });

  test('https+unix:// upstreams speak TLS over the socket, verified against tls_upstream_server_name', async () => {
    const r = await request(url('app.corp.test', '/unix-tls/page'), { headers: JSON_ACCEPT });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json<Seen>().clientCertCn, 'portcullis-client');
  });

  // TLS: "Pomerium will present this client certificate to upstream services when requested".
  test('tls_client_cert_file/tls_client_key_file: the upstream sees the client certificate', async () => {
    const r = await request(url('app.corp.test', '/mtls-files/a'), { headers: JSON_ACCEPT });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json<Seen>().clientCertCn, 'portcullis-client');
  });

  test('tls_client_cert/tls_client_key (base64 PEM) and tls_server_name work the same', async () => {
    const r = await request(url('app.corp.test', '/mtls-inline/a'), { headers: JSON_ACCEPT });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json<Seen>().clientCertCn, 'portcullis-client');
  });

  test('an upstream that requires a client certificate refuses routes without the right one', async () => {
    const before = seen.length;
    for (const path of ['/mtls-none/a', '/mtls-wrong-ca/a']) {
      const r = await request(url('app.corp.test', path), { headers: JSON_ACCEPT });
      assert.equal(r.status, 502, `${path}: ${r.body}`);
      assert.equal(r.json<{ error: string }>().error, 'upstream_unavailable');
    }
    assert.equal(seen.length, before);
  });

  // TLS Upstream Server Name: the name "used for verification and SNI".
  test('the upstream certificate must carry tls_upstream_server_name, else the `to` host', async () => {
    const before = seen.length;
    // The certificate is for app.internal: other.internal, and 127.0.0.1 from `to`, fail.
    for (const path of ['/mtls-wrong-name/a', '/mtls-no-name/a']) {
      const r = await request(url('app.corp.test', path), { headers: JSON_ACCEPT });
      assert.equal(r.status, 502, `${path}: ${r.body}`);
    }
    assert.equal(seen.length, before);
  });

  // WebSockets over HTTP/2 are RFC 8441's extended CONNECT (:method CONNECT, :protocol
  // websocket; "the Sec-WebSocket-Key and Sec-WebSocket-Accept header fields are not used",
  // section 5). The client still speaks RFC 6455's HTTP/1.1 handshake, so Portcullis answers it
  // with the Sec-WebSocket-Accept that section 4.2.2 defines.
  const wsHandshake = (
    path: string,
    key: string | null,
  ): Promise<{ sock: net.Socket; got: () => string }> =>
    new Promise((resolve) => {
      const sock = net.connect(s.port, '127.0.0.1');
      let got = '';
      sock.on('data', (c: Buffer) => (got += c.toString('latin1')));
      sock.on('error', () => {});
      sock.write(
        `GET ${path} HTTP/1.1\r\nHost: app.corp.test:${s.port}\r\n` +
          'Connection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n' +
          'Sec-WebSocket-Protocol: chat\r\n' +
          (key === null ? '' : `Sec-WebSocket-Key: ${key}\r\n`) +
          '\r\n',
      );
      resolve({ sock, got: () => got });
    });
  const untilText = async (got: () => string, text: string): Promise<void> => {
    for (let i = 0; i < 200 && !got().includes(text); i++)
      await new Promise((r) => setTimeout(r, 50));
    assert.ok(got().includes(text), `expected ${text} in ${JSON.stringify(got())}`);
  };
  /** A masked client text frame (RFC 6455 section 5.2), payload under 126 bytes. */
  const frame = (text: string): Buffer => {
    const mask = Buffer.from([1, 2, 3, 4]);
    const payload = Buffer.from(text).map((b, i) => b ^ mask[i % 4]!);
    return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload]);
  };

  test('TO: a WebSocket to an h2c:// upstream goes over an RFC 8441 extended CONNECT stream', async () => {
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const { sock, got } = await wsHandshake('/h2c-ws/chat?room=1', key);
    try {
      await untilText(got, '\r\n\r\n');
      const head = got().slice(0, got().indexOf('\r\n\r\n'));
      assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
      // RFC 6455 section 1.3's own example: this key's accept value.
      assert.match(head, /\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/i);
      assert.match(head, /\r\nupgrade: websocket\r\n/i);
      assert.match(head, /\r\nconnection: upgrade\r\n/i);
      assert.match(head, /\r\nsec-websocket-protocol: chat\r\n/i);
      const seen = h2wsSeen.at(-1)!;
      assert.equal(seen[':method'], 'CONNECT');
      assert.equal(seen[':protocol'], 'websocket');
      assert.equal(seen[':path'], '/h2c-ws/chat?room=1');
      assert.equal(seen['sec-websocket-version'], '13');
      assert.equal(seen['sec-websocket-key'], undefined);
      sock.write(frame('hello over h2'));
      await untilText(got, '\x81\x13echo: hello over h2');
      sock.write(frame('and again'));
      await untilText(got, '\x81\x0fecho: and again');
    } finally {
      sock.destroy();
    }
  });

  test('TO: an h2c:// upstream without RFC 8441 gets no WebSocket: a 502 that says why', async () => {
    const before = h2wsSeen.length;
    const { sock, got } = await wsHandshake('/h2c-no-ws/chat', 'dGhlIHNhbXBsZSBub25jZQ==');
    await new Promise((r) => sock.on('close', r));
    assert.match(got(), /^HTTP\/1\.1 502 Bad Gateway\r\n/);
    assert.match(got(), /does not accept WebSockets over HTTP\/2 \(RFC 8441 extended CONNECT\)/);
    assert.doesNotMatch(got(), /\n\s+at \S+ \(/);
    // No Sec-WebSocket-Key: no handshake to answer, and nothing reaches the upstream.
    const bad = await wsHandshake('/h2c-ws/chat', null);
    await new Promise((r) => bad.sock.on('close', r));
    assert.match(bad.got(), /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(bad.got(), /needs a Sec-WebSocket-Key/);
    assert.equal(h2wsSeen.length, before);
  });

  // TIMEOUTS: idle_timeout is how long a stream may go without data; on a WebSocket route it
  // is off unless set ("both the route timeout and idle timeout are automatically disabled").
  test('idle_timeout closes a silent WebSocket tunnel, and only a silent one', async () => {
    const sock = net.connect(s.port, '127.0.0.1');
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.on('error', () => {});
    let received = '';
    sock.on('data', (c: Buffer) => (received += c.toString('latin1')));
    sock.write(
      'GET /ws-idle/chat HTTP/1.1\r\n' +
        `Host: app.corp.test:${s.port}\r\n` +
        'Connection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    const waitFor = async (text: string): Promise<void> => {
      for (let i = 0; i < 200 && !received.includes(text); i++)
        await new Promise((r) => setTimeout(r, 50));
      assert.ok(received.includes(text), `expected ${text} in ${JSON.stringify(received)}`);
    };
    await waitFor('101 Switching Protocols');
    // Traffic every 250 ms for three idle periods: the tunnel stays up.
    for (let i = 0; i < 12; i++) {
      sock.write(`ping${i};`);
      await waitFor(`ping${i};`);
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(sock.destroyed, false);
    // Then silence: the tunnel is closed.
    await closed;
  });

  // REGEX ORDER: "determines the ordering of routes that use regex matching. Higher values are evaluated first."
  test('regex_priority_order puts a later regex route first; other routes keep their place', async () => {
    const body = async (path: string): Promise<string> =>
      (await request(url('app.corp.test', path))).body;
    assert.equal(await body('/rx/special/page'), 'special');
    assert.equal(await body('/rx/other'), 'general');
    assert.equal(await body('/rx/special/fixed'), 'fixed');
  });
});
