// The Kubernetes recipes in deploy/kubernetes/recipes, rendered with kubectl kustomize and read
// for what they configure (endpoint, path, headers to send and to copy); then Portcullis gets
// the check requests each controller builds from that configuration, and its answers are held
// to what the controller does with them. None of these controllers can run here.
//
// Request shapes, by controller:
// - ingress-nginx: the auth location of rootfs/etc/nginx/template/nginx.tmpl (docs/recipes/
//   contracts.md §2): GET to the auth-url's path and query, X-Original-URL
//   ($scheme://$http_host$request_uri), X-Original-Method, plus the client's headers.
// - Envoy Gateway: internal/xds/translator/extauth.go (envoyproxy/gateway, v1.x) makes
//   SecurityPolicy extAuth.http.path the ext_authz http_service path_prefix, headersToExtAuth its
//   allowed_headers and headersToBackend allowed_upstream_headers, and sets no
//   allowed_client_headers. Envoy's HTTP ext_authz then sends the client's method, path_prefix +
//   the original path and query, the original Host, and of the client's headers only the allowed
//   ones (plus Host, Method, Path, Content-Length, Authorization: envoy ext_authz.proto,
//   AuthorizationRequest/allowed_headers); it allows on 200 only, and with no
//   allowed_client_headers every header of a denial reaches the client.
// - Traefik: pkg/middlewares/auth/forward.go: GET to the address as written, X-Forwarded-Method,
//   -Proto, -Host, -Uri, -For (its own, trustForwardHeader false); any 2xx allows, and
//   authResponseHeaders are copied.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startStack, type Stack } from './helpers/stack.js';
import { one, render } from './helpers/kustomize.js';

const K8S = new URL('../../deploy/kubernetes/', import.meta.url).pathname;
const RECIPE_HOST = 'app.example.com';

// The Portcullis Service the base renders (name, namespace of the overlays, port).
const base = render(`${K8S}overlays/redis`);
const svc = one(base, 'Service', 'portcullis');
const svcPort = svc.spec.ports.find((p: { name: string }) => p.name === 'http').port as number;
const svcHost = `${svc.metadata.name}.${svc.metadata.namespace}.svc.cluster.local:${svcPort}`;

let s: Stack;
let app: string;
let alice: string;
let bob: string;
const host = () => `app.corp.test:${s.port}`;

before(async () => {
  s = await startStack({
    hosts: ['app.corp.test', 'other.corp.test'],
    body: `routes:
  - from: http://app.corp.test:\${PORT}
    prefix: /admin
    allowed_groups: [admins]
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
  - from: http://other.corp.test:\${PORT}
    allow_public_unauthenticated_access: true
`,
  });
  app = `http://${host()}`;
  for (const [user, set] of [
    ['alice', (c: string) => (alice = c)],
    ['bob', (c: string) => (bob = c)],
  ] as const) {
    const jar = new CookieJar();
    const r = await loginThroughIdp(`${app}/`, { jar, username: user, password: user });
    assert.equal(r.final.status, 200);
    set(jar.header(new URL(app)));
  }
});
after(() => s.close());

/** The recipe's URL to Portcullis, pointed at this test's Portcullis. */
function local(url: string): URL {
  const u = new URL(url);
  assert.equal(u.host, svcHost, `${url} does not name the Portcullis Service the base deploys`);
  const out = new URL(`http://127.0.0.1:${s.port}${u.pathname}${u.search}`);
  for (const [k, v] of out.searchParams)
    if (k === 'host') out.searchParams.set(k, v.replaceAll(RECIPE_HOST, 'app.corp.test'));
  return out;
}

function copies(r: Resp, names: string[]): void {
  for (const n of names)
    assert.ok(r.headers[n.toLowerCase()], `the recipe copies ${n}, which Portcullis did not send`);
}

describe('ingress-nginx (annotations, no snippet)', () => {
  const objs = render(`${K8S}recipes/ingress-nginx`);
  const ann = one(objs, 'Ingress', 'app').metadata.annotations!;
  const P = 'nginx.ingress.kubernetes.io/';
  const authUrl = () => local(ann[`${P}auth-url`]!);
  const copied = ann[`${P}auth-response-headers`]!.split(',');
  const check = (path: string, extra: Record<string, string> = {}, originalHost = host()) =>
    request(authUrl().href, {
      headers: {
        'x-original-url': `http://${originalHost}${path}`,
        'x-original-method': 'GET',
        'x-sent-from': 'nginx-ingress-controller',
        'x-forwarded-for': '127.0.0.1',
        ...extra,
      },
    });

  test('works with the controller default allow-snippet-annotations: "false"', () => {
    for (const o of objs)
      for (const k of Object.keys(o.metadata.annotations ?? {}))
        assert.doesNotMatch(k, /snippet/, `${o.metadata.name}: ${k} needs snippets enabled`);
    assert.equal(authUrl().pathname, '/.portcullis/auth/nginx');
    assert.equal(ann[`${P}auth-signin`], 'https://$host/.portcullis/sign_in');
  });

  test('allowed: 200 carrying every header auth-response-headers copies', async () => {
    const r = await check('/reports?q=1', { cookie: alice });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-forwarded-user'], 'alice');
    copies(r, copied);
  });

  test('no session: 401, which the controller turns into a redirect to auth-signin; denied: 403', async () => {
    assert.equal((await check('/reports', { accept: BROWSER_HEADERS.accept! })).status, 401);
    assert.equal((await check('/admin/x', { cookie: bob })).status, 403);
  });

  test('the ?host= binding refuses another host sent through this Ingress', async () => {
    const r = await check('/', { cookie: alice }, `other.corp.test:${s.port}`);
    assert.equal(r.status, 403);
  });

  test('the /.portcullis/ Ingress sends sign-in to the Portcullis Service, unauthenticated', () => {
    const ing = one(objs, 'Ingress', 'app-portcullis');
    assert.equal(ing.metadata.annotations?.[`${P}auth-url`], undefined);
    const path = ing.spec.rules[0].http.paths[0];
    assert.equal(path.path, '/.portcullis/');
    const ext = one(objs, 'Service', path.backend.service.name);
    assert.equal(`${ext.spec.externalName}:${path.backend.service.port.number}`, svcHost);
  });
});

describe('Envoy Gateway SecurityPolicy ext-auth (HTTP)', () => {
  const objs = render(`${K8S}recipes/envoy-gateway`);
  const ext = one(objs, 'SecurityPolicy').spec.extAuth;
  const backend = ext.http.backendRefs[0];
  const allowed: string[] = ext.headersToExtAuth;
  const copied: string[] = ext.http.headersToBackend;
  // What Envoy sends: the client's headers filtered to allowed_headers (+ the fixed ones).
  const check = (path: string, client: Record<string, string>, method = 'GET') => {
    const always = ['host', 'content-length', 'authorization'];
    const headers: Record<string, string> = { 'content-length': '0' };
    for (const [k, v] of Object.entries(client))
      if (allowed.includes(k.toLowerCase()) || always.includes(k.toLowerCase())) headers[k] = v;
    return request(`${app}${ext.http.path}${path}`, {
      method,
      rawPath: `${ext.http.path}${path}`,
      headers,
    });
  };

  test('points at the Portcullis Service and its Envoy endpoint; fails closed', () => {
    assert.equal(`${backend.name}.${backend.namespace}.svc.cluster.local:${backend.port}`, svcHost);
    assert.equal(ext.http.path, '/.portcullis/auth/envoy');
    assert.equal(ext.failOpen, false);
    assert.ok(allowed.includes('cookie'), 'without cookie in headersToExtAuth no session is seen');
  });

  test('allowed: 200 (the only status Envoy allows on) carrying every headersToBackend', async () => {
    const r = await check('/reports?q=1', { cookie: alice, 'x-forwarded-proto': 'http' }, 'POST');
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-forwarded-user'], 'alice');
    copies(r, copied);
  });

  test('a browser without a session gets a 302 to sign in, which reaches it; denied is 403', async () => {
    const r = await check('/reports?q=1', { accept: BROWSER_HEADERS.accept! });
    assert.equal(r.status, 302);
    assert.match(r.location ?? '', /\/\.portcullis\/sign_in\?/);
    assert.equal((await check('/admin/x', { cookie: bob })).status, 403);
    assert.equal((await check('/reports', { accept: 'application/json' })).status, 401);
  });

  test('a client header outside headersToExtAuth never reaches Portcullis (X-Forwarded-Uri)', async () => {
    // Were it passed, a client could try to name another path; Envoy drops it, and the path
    // judged is the one after the prefix.
    const r = await check('/admin/x', { cookie: bob, 'x-forwarded-uri': '/reports' });
    assert.equal(r.status, 403);
  });
});

describe('Traefik Middleware forwardAuth', () => {
  const objs = render(`${K8S}recipes/traefik`);
  const fa = one(objs, 'Middleware').spec.forwardAuth;
  const address = () => local(fa.address);
  const check = (path: string, extra: Record<string, string> = {}, xfHost = host()) =>
    request(address().href, {
      headers: {
        'x-forwarded-method': 'GET',
        'x-forwarded-proto': 'http',
        'x-forwarded-host': xfHost,
        'x-forwarded-uri': path,
        'x-forwarded-for': '203.0.113.7',
        ...extra,
      },
    });

  test('Traefik writes the X-Forwarded-* itself and the address binds the host', () => {
    assert.equal(fa.trustForwardHeader, false);
    assert.equal(address().pathname, '/.portcullis/auth/traefik');
    assert.equal(address().searchParams.get('host'), 'app.corp.test');
  });

  test('allowed: 200 carrying every authResponseHeaders name', async () => {
    const r = await check('/reports?q=1', { cookie: alice });
    assert.equal(r.status, 200);
    copies(r, fa.authResponseHeaders);
  });

  test('no session: 302 to sign in on the same host; denied 403; another host refused', async () => {
    const r = await check('/reports', { accept: BROWSER_HEADERS.accept! });
    assert.equal(r.status, 302);
    assert.match(r.location ?? '', /\/\.portcullis\/sign_in\?/);
    assert.equal((await check('/admin/x', { cookie: bob })).status, 403);
    assert.equal((await check('/', { cookie: alice }, `other.corp.test:${s.port}`)).status, 403);
  });

  test('the /.portcullis/ route reaches the Portcullis Service without the middleware', () => {
    const route = one(objs, 'IngressRoute').spec.routes[0];
    assert.match(route.match, /PathPrefix\(`\/\.portcullis\/`\)/);
    assert.equal(route.middlewares, undefined);
    const target = route.services[0];
    assert.equal(`${target.name}.${target.namespace}.svc.cluster.local:${target.port}`, svcHost);
  });
});
