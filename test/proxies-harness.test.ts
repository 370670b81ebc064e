// Proves the nginx and Caddy test helpers against real servers, and pins down the forward-auth
// behaviour of each proxy that docs/recipes/contracts.md describes, as a user would see it.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, Agent, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startNginx, type StartedNginx } from './helpers/nginx.js';
import { startCaddy, type StartedCaddy } from './helpers/caddy.js';
import { freePort } from './helpers/ports.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

interface Backend {
  server: Server;
  port: number;
  seen: Seen[];
  connections: number;
}

async function listen(
  handler: (req: Seen, res: import('node:http').ServerResponse) => void,
): Promise<Backend> {
  const b: Backend = { server: createServer(), port: 0, seen: [], connections: 0 };
  // Longer than any test, so a dropped keep-alive connection means the proxy dropped it.
  b.server.keepAliveTimeout = 60_000;
  b.server.on('connection', () => {
    b.connections++;
  });
  b.server.on('request', (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      b.seen.push(s);
      handler(s, res);
    });
  });
  await new Promise<void>((r) => b.server.listen(0, '127.0.0.1', r));
  b.port = (b.server.address() as AddressInfo).port;
  return b;
}

/** The upstream app: echoes what it received so tests can see what the proxy forwarded. */
const echo = (s: Seen, res: import('node:http').ServerResponse) => {
  res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'app' });
  res.end(JSON.stringify(s));
};

/** The auth service: its answer is chosen by the client's x-test-allow header. */
const auth = (s: Seen, res: import('node:http').ServerResponse) => {
  switch (s.headers['x-test-allow']) {
    case '1':
      res.writeHead(200, { 'x-auth-user': 'alice', 'x-auth-groups': 'admins,devs' });
      res.end('ok');
      return;
    case 'anon': // allowed, but names nobody: a copied identity header must not survive from the client
      res.writeHead(204);
      res.end();
      return;
    case 'forbid':
      res.writeHead(403, { 'content-type': 'text/plain', 'x-auth-reason': 'not in group' });
      res.end('forbidden by auth');
      return;
    case 'redirect':
      res.writeHead(302, { location: 'http://login.invalid/start?rd=x' });
      res.end();
      return;
    default:
      res.writeHead(401, {
        'content-type': 'text/plain',
        'www-authenticate': 'Bearer realm="test"',
        'x-auth-reason': 'no session',
      });
      res.end('denied by auth');
  }
};

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function fetchRaw(
  port: number,
  path: string,
  o: { method?: string; headers?: Record<string, string>; body?: string; agent?: Agent } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: o.method ?? 'GET',
        headers: o.headers,
        agent: o.agent ?? false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

let app: Backend;
let authz: Backend;

before(async () => {
  app = await listen(echo);
  authz = await listen(auth);
});
after(async () => {
  app.server.closeAllConnections();
  authz.server.closeAllConnections();
  await new Promise((r) => app.server.close(r));
  await new Promise((r) => authz.server.close(r));
});

function reset(): void {
  app.seen.length = 0;
  authz.seen.length = 0;
}

describe('nginx auth_request', () => {
  let ngx: StartedNginx;
  let port: number;

  before(async () => {
    port = await freePort();
    ngx = await startNginx(`
      upstream app {
        server 127.0.0.1:${app.port};
        keepalive 4;
      }
      server {
        listen 127.0.0.1:${port};

        location = /_auth {
          internal;
          proxy_pass http://127.0.0.1:${authz.port}/check;
          proxy_pass_request_body off;
          proxy_set_header Content-Length "";
          proxy_set_header X-Original-URI $request_uri;
          proxy_set_header X-Original-Method $request_method;
          proxy_set_header X-Forwarded-Host $http_host;
        }

        location @signin {
          return 302 http://$http_host/signin?rd=$scheme://$http_host$request_uri;
        }

        location /open/ {
          proxy_pass http://app;
          proxy_http_version 1.1;
          proxy_set_header Connection "";
        }

        location / {
          auth_request /_auth;
          auth_request_set $auth_user $upstream_http_x_auth_user;
          auth_request_set $auth_groups $upstream_http_x_auth_groups;
          error_page 401 = @signin;
          proxy_set_header X-Auth-User $auth_user;
          proxy_set_header X-Auth-Groups $auth_groups;
          proxy_pass http://app;
          proxy_http_version 1.1;
          proxy_set_header Connection "";
        }
      }
    `);
  });
  after(async () => {
    await ngx?.close();
  });

  test('allowed: upstream answers, identity from the auth response reaches it, spoofed value does not', async () => {
    reset();
    const r = await fetchRaw(port, '/app/page?q=1', {
      headers: { 'x-test-allow': '1', 'x-auth-user': 'mallory' },
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-upstream'], 'app');
    const seen = JSON.parse(r.body) as Seen;
    assert.equal(seen.url, '/app/page?q=1');
    assert.equal(seen.headers['x-auth-user'], 'alice');
    assert.equal(seen.headers['x-auth-groups'], 'admins,devs');
    // The subrequest is a GET-less clone: the method of the original, the auth location's URI.
    assert.equal(authz.seen.length, 1);
    assert.equal(authz.seen[0]!.url, '/check');
    assert.equal(authz.seen[0]!.headers['x-original-uri'], '/app/page?q=1');
    assert.equal(authz.seen[0]!.headers['x-original-method'], 'GET');
    assert.equal(authz.seen[0]!.headers['x-forwarded-host'], `127.0.0.1:${port}`);
    // Original request headers (cookies, ours) ride along on the subrequest.
    assert.equal(authz.seen[0]!.headers['x-test-allow'], '1');
  });

  test('allowed with no identity: the spoofed header is still dropped', async () => {
    reset();
    const r = await fetchRaw(port, '/x', {
      headers: { 'x-test-allow': 'anon', 'x-auth-user': 'mallory' },
    });
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.body) as Seen;
    assert.equal(seen.headers['x-auth-user'], undefined);
  });

  test('POST body goes to the upstream only, never to the auth subrequest', async () => {
    reset();
    const r = await fetchRaw(port, '/form', {
      method: 'POST',
      body: 'a=1',
      headers: { 'x-test-allow': '1', 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.body) as Seen).body, 'a=1');
    // nginx subrequests are always GET (ngx_http_subrequest); only X-Original-Method tells the truth.
    assert.equal(authz.seen[0]!.method, 'GET');
    assert.equal(authz.seen[0]!.body, '');
    assert.equal(authz.seen[0]!.headers['x-original-method'], 'POST');
  });

  test('401 from auth: error_page sends the user to sign-in with the original URL', async () => {
    reset();
    const r = await fetchRaw(port, '/app/page?q=1');
    assert.equal(r.status, 302);
    assert.equal(
      r.headers.location,
      `http://127.0.0.1:${port}/signin?rd=http://127.0.0.1:${port}/app/page?q=1`,
    );
    assert.equal(app.seen.length, 0);
  });

  test("403 from auth reaches the client as nginx's own 403 page", async () => {
    reset();
    const r = await fetchRaw(port, '/x', { headers: { 'x-test-allow': 'forbid' } });
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-auth-reason'], undefined, 'auth response headers are not passed on');
    assert.doesNotMatch(r.body, /forbidden by auth/);
    assert.equal(app.seen.length, 0);
  });

  test('any other status from auth (a 302 here) becomes a 500', async () => {
    reset();
    const r = await fetchRaw(port, '/x', { headers: { 'x-test-allow': 'redirect' } });
    assert.equal(r.status, 500);
    assert.equal(r.headers.location, undefined);
    assert.match(ngx.errorLog(), /auth request unexpected status: 302/);
  });

  test('upstream keep-alive: sequential requests share one upstream connection', async () => {
    reset();
    const before = app.connections;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 5; i++) {
      const r = await fetchRaw(port, `/open/${i}`, { agent });
      assert.equal(r.status, 200);
      assert.equal(
        (JSON.parse(r.body) as Seen).headers.connection,
        undefined,
        'nginx must not send Connection: close',
      );
    }
    agent.destroy();
    assert.equal(app.seen.length, 5);
    assert.ok(
      app.connections - before <= 1,
      `expected one upstream connection, saw ${app.connections - before}`,
    );
    assert.match(ngx.accessLog(), /GET \/open\/4 HTTP\/1.1" 200/);
  });
});

describe('caddy forward_auth', () => {
  let caddy: StartedCaddy;
  let port: number;

  before(async () => {
    port = await freePort();
    // route{} keeps the written order: left to Caddy's directive order, request_header would run
    // after forward_auth and delete the identity it had just copied.
    caddy = await startCaddy(`
http://127.0.0.1:${port} {
	route {
		request_header -X-Auth-User
		request_header -X-Groups
		forward_auth 127.0.0.1:${authz.port} {
			uri /check?from=caddy
			copy_headers X-Auth-User X-Auth-Groups>X-Groups
		}
		reverse_proxy 127.0.0.1:${app.port}
	}
}
`);
  });
  after(async () => {
    await caddy?.close();
  });

  test('the helper bound the site to loopback and kept state in its dir', () => {
    assert.match(caddy.caddyfile, /\bbind 127\.0\.0\.1\b/);
    assert.match(caddy.caddyfile, /admin off/);
    assert.deepEqual(caddy.ports, [port]);
  });

  test('allowed: copied (and renamed) headers reach the upstream; auth sees the original method and URI', async () => {
    reset();
    const r = await fetchRaw(port, '/app/page?q=1', {
      method: 'POST',
      body: 'a=1',
      headers: { 'x-test-allow': '1', 'x-auth-user': 'mallory' },
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-upstream'], 'app');
    const seen = JSON.parse(r.body) as Seen;
    assert.equal(seen.method, 'POST');
    assert.equal(seen.body, 'a=1');
    assert.equal(seen.headers['x-auth-user'], 'alice');
    assert.equal(seen.headers['x-groups'], 'admins,devs');
    assert.equal(authz.seen.length, 1);
    const a = authz.seen[0]!;
    assert.equal(a.method, 'GET');
    assert.equal(a.body, '');
    assert.equal(a.url, '/check?from=caddy');
    assert.equal(a.headers['x-forwarded-method'], 'POST');
    assert.equal(a.headers['x-forwarded-uri'], '/app/page?q=1');
    assert.equal(a.headers['x-forwarded-proto'], 'http');
    assert.equal(a.headers['x-forwarded-host'], `127.0.0.1:${port}`);
    assert.equal(a.headers['x-forwarded-for'], '127.0.0.1');
  });

  test('allowed with no identity: the client-supplied header was stripped before forward_auth', async () => {
    reset();
    const r = await fetchRaw(port, '/x', {
      headers: { 'x-test-allow': 'anon', 'x-auth-user': 'mallory' },
    });
    assert.equal(r.status, 200);
    const v = (JSON.parse(r.body) as Seen).headers['x-auth-user'];
    assert.notEqual(v, 'mallory', 'spoofed identity reached the upstream');
    // Caddy 2.6 sets the copied header to the unreplaced placeholder when the auth response
    // lacks it (later versions skip it): an upstream must never trust a value of that shape.
    assert.ok(
      v === undefined || v === '' || v === '{http.reverse_proxy.header.X-Auth-User}',
      `unexpected value ${String(v)}`,
    );
  });

  test('401 from auth is copied to the client: status, headers and body', async () => {
    reset();
    const r = await fetchRaw(port, '/x');
    assert.equal(r.status, 401);
    assert.equal(r.headers['www-authenticate'], 'Bearer realm="test"');
    assert.equal(r.headers['x-auth-reason'], 'no session');
    assert.equal(r.body, 'denied by auth');
    assert.equal(app.seen.length, 0);
  });

  test('a redirect from auth reaches the client as is', async () => {
    reset();
    const r = await fetchRaw(port, '/x', { headers: { 'x-test-allow': 'redirect' } });
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, 'http://login.invalid/start?rd=x');
  });

  test('403 from auth is copied to the client', async () => {
    reset();
    const r = await fetchRaw(port, '/x', { headers: { 'x-test-allow': 'forbid' } });
    assert.equal(r.status, 403);
    assert.equal(r.body, 'forbidden by auth');
  });
});

describe('helpers fail clearly', () => {
  test('nginx with a broken config rejects with its error log', async () => {
    const p = await freePort();
    await assert.rejects(
      startNginx(`server { listen 127.0.0.1:${p}; no_such_directive on; }`),
      /unknown directive "no_such_directive"/,
    );
  });

  test('nginx refuses a listen that is not loopback', async () => {
    await assert.rejects(startNginx('server { listen 8080; }'), /must be 127\.0\.0\.1:PORT/);
  });

  test('caddy with a broken Caddyfile rejects with its log', async () => {
    const p = await freePort();
    await assert.rejects(
      startCaddy(`http://127.0.0.1:${p} {\n\tno_such_directive\n}\n`),
      /no_such_directive/,
    );
  });

  test('a port already taken is reported rather than mistaken for readiness', async () => {
    const squatter = createServer();
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
    const p = (squatter.address() as AddressInfo).port;
    try {
      await assert.rejects(startNginx(`server { listen 127.0.0.1:${p}; }`), /already in use/);
      await assert.rejects(
        startCaddy(`http://127.0.0.1:${p} {\n\trespond ok\n}\n`),
        /already in use/,
      );
    } finally {
      await new Promise((r) => squatter.close(r));
    }
  });
});
