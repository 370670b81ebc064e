// Regression tests for the two forward-auth bypasses of the December 2026 review (SECURITY.md,
// "Forward-auth: the request judged is the request forwarded"), through real nginx and real
// Caddy configured by docs/recipes, in front of an upstream that records the raw request-target
// it received, as an application routing on the raw path would see it.
//
// 1. Host confusion: nginx sends a request whose Host matches no server_name to the port's
//    default server, and its recipe builds X-Original-URL from the client's Host, so a client
//    naming another route's host had that route's policy applied to this upstream.
// 2. Path confusion: forward-auth judged `/admin/../x` as `/x` while nginx and Caddy forward the
//    target as sent (nginx: `$request_uri` is "full original request URI (with arguments)",
//    https://nginx.org/en/docs/http/ngx_http_core_module.html#var_request_uri; Caddy's
//    forward_auth copies `{http.request.uri}` into X-Forwarded-Uri and reverse_proxy sends the
//    original URI, https://caddyserver.com/docs/caddyfile/directives/forward_auth).
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startAuthServer, type AuthServer } from './helpers/auth-server.js';
import { startCaddy, type StartedCaddy } from './helpers/caddy.js';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { startNginx, type StartedNginx } from './helpers/nginx.js';
import { freePort } from './helpers/ports.js';
import { recipe, sub } from './helpers/recipes.js';

/** An application that routes on the raw request-target and reports who it thinks is asking. */
async function startRecorder(): Promise<{
  port: number;
  seen: Array<{ url: string; host: string; user: string }>;
  close(): Promise<void>;
}> {
  const seen: Array<{ url: string; host: string; user: string }> = [];
  const server = http.createServer((req, res) => {
    const user = String(req.headers['x-forwarded-user'] ?? '');
    seen.push({ url: req.url ?? '', host: String(req.headers.host ?? ''), user });
    const area = (req.url ?? '').startsWith('/admin') ? 'ADMIN AREA' : 'app';
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`${area} for ${user || 'anonymous'}\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** The status, or 0 when the proxy closed the connection without an answer (nginx's 444). */
async function statusOf(p: Promise<Resp>): Promise<number> {
  try {
    return (await p).status;
  } catch {
    return 0;
  }
}

for (const kind of ['nginx', 'caddy'] as const) {
  describe(`forward-auth bypasses through real ${kind} (docs/recipes/${kind}.md)`, () => {
    let auth: AuthServer;
    let upstream: Awaited<ReturnType<typeof startRecorder>>;
    let proxy: StartedNginx | StartedCaddy;
    let port: number;
    let pcPort: number;
    let app: string;
    let bobCookie: string;
    let aliceCookie: string;
    const logs: string[] = [];

    before(async () => {
      port = await freePort();
      pcPort = await freePort();
      app = `http://app.corp.test:${port}`;
      upstream = await startRecorder();
      // The review's setup: an admins-only app, a public status page and a wiki for anyone
      // signed in, all in one Portcullis; nginx or Caddy fronts only the app.
      auth = await startAuthServer({
        app,
        port: pcPort,
        routes: `  - from: ${app}
    prefix: /admin
    allowed_groups: [admins]
  - from: ${app}
    allow_any_authenticated_user: true
  - from: http://status.corp.test:${port}
    allow_public_unauthenticated_access: true
  - from: http://wiki.corp.test:${port}
    allow_any_authenticated_user: true
`,
        logs,
      });
      proxy =
        kind === 'nginx'
          ? await startNginx(
              sub(recipe('nginx.md', 'nginx'), [
                ['listen 80 default_server;', `listen 127.0.0.1:${port} default_server;`],
                ['listen 80;', `listen 127.0.0.1:${port};`],
                ['server_name app.example.com;', 'server_name app.corp.test;'],
                ['?host=app.example.com', '?host=app.corp.test'],
                ['127.0.0.1:4180', `127.0.0.1:${pcPort}`],
                ['127.0.0.1:8080', `127.0.0.1:${upstream.port}`],
              ]),
            )
          : await startCaddy(
              sub(recipe('caddy.md', 'caddy'), [
                ['app.example.com {', `http://app.corp.test:${port} {`],
                ['?host=app.example.com', '?host=app.corp.test'],
                ['127.0.0.1:4180', `127.0.0.1:${pcPort}`],
                ['127.0.0.1:8080', `127.0.0.1:${upstream.port}`],
              ]),
            );
      // Sessions are not bound to a host: bob's cookie from the app is the cookie he would get
      // by signing in to the wiki, which he may.
      const login = async (user: string) => {
        const jar = new CookieJar();
        const r = await loginThroughIdp(`${app}/home`, { jar, username: user, password: user });
        assert.equal(
          r.final.status,
          200,
          `${user} signs in through ${kind}: ${r.chain.join('\n')}`,
        );
        return jar.header(new URL(app))!;
      };
      bobCookie = await login('bob');
      aliceCookie = await login('alice');
    });
    after(async () => {
      await proxy?.close();
      await Promise.allSettled([auth?.close(), upstream?.close()]);
    });

    const diag = () =>
      `${'errorLog' in proxy ? proxy.errorLog() : proxy.log()}\n${logs.join('').slice(-3000)}`;
    const get = (path: string, headers: Record<string, string>) =>
      statusOf(
        request(`${app}${path}`, {
          rawPath: path,
          headers: { accept: 'application/json', ...headers },
        }),
      );

    test("the client's Host header cannot choose another route's policy for this upstream", async () => {
      upstream.seen.length = 0;
      assert.equal(await get('/admin/users', {}), 401, 'the app itself still asks for a session');
      // Before the fix: 200 from the admins-only app, judged as the public status page.
      // (Caddy answers a host no site names with its own empty 200; what matters is that the
      // upstream never sees the request.)
      for (const host of [
        `status.corp.test:${port}`,
        'status.corp.test',
        `STATUS.corp.test.:${port}`,
      ]) {
        await get('/admin/users', { host });
        assert.deepEqual(upstream.seen, [], `anonymous with Host: ${host}\n${diag()}`);
      }
      // Before the fix: 200 with X-Forwarded-User: bob, judged as the wiki.
      await get('/admin/users', { host: `wiki.corp.test:${port}`, cookie: bobCookie });
      assert.deepEqual(upstream.seen, [], `bob with Host: wiki.corp.test\n${diag()}`);
      // The host the location protects still works for who may use it.
      assert.equal(await get('/admin/users', { cookie: aliceCookie }), 200);
      assert.equal(await get('/home', { cookie: bobCookie }), 200);
      assert.deepEqual(
        (upstream.seen as Array<{ user: string }>).map((s) => s.user),
        ['alice', 'bob'],
      );
    });

    test('a path is judged as the proxy forwards it: dot segments and // are refused, not normalized away', async () => {
      upstream.seen.length = 0;
      assert.equal(await get('/admin/panel', { cookie: bobCookie }), 403, 'bob is not an admin');
      // Before the fix each was judged as /x (any signed-in user) and reached the admin area.
      const sneaky = [
        '/admin/../x',
        '/admin/%2e%2e/x',
        '/admin/%2E%2E/x',
        '/admin/./../x',
        '/admin/.%2e/x',
        '/admin//../x',
      ];
      for (const path of sneaky) {
        const status = await get(path, { cookie: bobCookie });
        assert.notEqual(status, 200, `bob ${path}\n${diag()}`);
      }
      assert.deepEqual(
        upstream.seen,
        [],
        `no such path reached the upstream: ${JSON.stringify(upstream.seen)}`,
      );
      // Ordinary paths are untouched, including dots that are not segments of their own.
      for (const path of ['/x', '/docs/v1.2/', '/.well-known/thing', '/a..b/c']) {
        assert.equal(await get(path, { cookie: bobCookie }), 200, `bob ${path}\n${diag()}`);
      }
      assert.equal(await get('/admin/panel', { cookie: aliceCookie }), 200);
    });

    if (kind === 'nginx') {
      test("the auth URL's ?host= binding refuses another host even where nginx lets it through", async () => {
        // A user who drops the default_server block, or adds this server to a port that has
        // another default: the binding alone must hold.
        const recipeText = recipe('nginx.md', 'nginx');
        const withoutDefault = recipeText.replace(
          /server \{\n {4}listen 80 default_server;[\s\S]*?\n\}\n/,
          '',
        );
        assert.notEqual(
          withoutDefault,
          recipeText,
          'the recipe has a default_server block to remove',
        );
        const port2 = await freePort();
        const nginx2 = await startNginx(
          sub(withoutDefault, [
            ['listen 80;', `listen 127.0.0.1:${port2};`],
            ['server_name app.example.com;', 'server_name app.corp.test;'],
            ['?host=app.example.com', `?host=app.corp.test:${port}`],
            ['127.0.0.1:4180', `127.0.0.1:${pcPort}`],
            ['127.0.0.1:8080', `127.0.0.1:${upstream.port}`],
          ]),
        );
        try {
          upstream.seen.length = 0;
          const at = (host: string, cookie?: string) =>
            statusOf(
              request(`http://127.0.0.1:${port2}/admin/users`, {
                headers: { host, accept: 'application/json', ...(cookie ? { cookie } : {}) },
              }),
            );
          assert.equal(await at(`status.corp.test:${port}`), 403, diag());
          assert.equal(await at(`wiki.corp.test:${port}`, bobCookie), 403, diag());
          assert.deepEqual(upstream.seen, []);
          assert.match(
            logs.join(''),
            /"event":"forward_auth_wrong_host"/,
            'the operator can see why',
          );
          // The bound host (the route's own port in Host, as a browser sends it) passes.
          assert.equal(await at(`app.corp.test:${port}`, aliceCookie), 200, diag());
        } finally {
          await nginx2.close();
        }
      });
    }
  });
}
