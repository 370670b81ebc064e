// The high-throughput recipe of docs/recipes/nginx.md: real nginx caching Portcullis's allow
// answers for one second, read from the file itself (only addresses, names and the cache path
// are substituted). What a user would notice: nobody sees another user's identity, a refusal
// is never replayed from the cache, and taking access away takes effect within the stated bound.
//
// nginx facts relied on (nginx 1.22+ docs, ngx_http_proxy_module): proxy_cache_valid with a
// status list caches only those statuses; responses with Set-Cookie are not cached unless
// proxy_ignore_headers names it; Cache-Control/Expires/X-Accel-Expires are ignored when named
// there; $upstream_cache_status reports HIT/MISS/EXPIRED for the request that used the cache.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startIdp, type RunningIdp } from '../demo/idp.js';
import { startWhoami, type RunningWhoami } from '../demo/whoami.js';
import { loadConfigFile } from '../src/config/load.js';
import { createLogger } from '../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../src/server.js';
import { CookieJar, request, type Resp } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { startNginx, type StartedNginx } from './helpers/nginx.js';
import { freePort } from './helpers/ports.js';
import { recipe, sub } from './helpers/recipes.js';

describe('nginx caching allow answers (docs/recipes/nginx.md, nginx-cache)', () => {
  let idp: RunningIdp;
  let upstream: RunningWhoami;
  let portcullis: RunningPortcullis;
  let nginx: StartedNginx;
  let app: string;
  let configFile: string;
  let yaml: (adminUsers: string[]) => string;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-nginx-cache-'));
  const jars = { alice: new CookieJar(), bob: new CookieJar() };
  /** Auth requests Portcullis answered, by path: what reached it rather than the cache. */
  const asked: string[] = [];

  before(async () => {
    const port = await freePort();
    const pcPort = await freePort();
    app = `http://app.corp.test:${port}`;
    const secret = randomBytes(24).toString('base64url');
    idp = await startIdp({
      clients: [
        {
          client_id: 'portcullis',
          client_secret: secret,
          redirect_uris: [`${app}/.portcullis/callback`],
          post_logout_redirect_uris: [`${app}/.portcullis/signed_out`],
        },
      ],
    });
    upstream = await startWhoami({ name: 'upstream' });
    const cookieSecret = randomBytes(32).toString('base64');
    yaml = (adminUsers) => `address: 127.0.0.1:${pcPort}
insecure_server: true
cookie_secure: false
cookie_secret: ${cookieSecret}
idp_provider_url: ${idp.issuer}
idp_client_id: portcullis
idp_client_secret: ${secret}
idp_scopes: [openid, profile, email, groups]
watch_config: false
routes:
  - from: ${app}
    prefix: /admin
    policy:
      allow:
        or:
${adminUsers.map((u) => `          - email: {is: ${u}}\n`).join('')}  - from: ${app}
    allow_any_authenticated_user: true
`;
    configFile = join(dir, 'portcullis.yaml');
    writeFileSync(configFile, yaml(['alice@example.com']));
    const { Writable } = await import('node:stream');
    const sink = new Writable({
      write(c: Buffer, _e, cb) {
        for (const line of c.toString().split('\n')) {
          if (!line) continue;
          const l = JSON.parse(line) as { msg?: string; path?: string; decision?: string };
          if (l.msg === 'request' && l.decision?.startsWith('forward_auth'))
            asked.push(l.path ?? '');
        }
        cb();
      },
    });
    portcullis = await startPortcullis(loadConfigFile(configFile), {
      logger: createLogger('info', sink),
      configFile,
    });
    await portcullis.idp.start();
    nginx = await startNginx(
      sub(recipe('nginx.md', 'nginx-cache'), [
        ['/var/cache/nginx/portcullis-auth', join(dir, 'cache')],
        ['listen 80 default_server;', `listen 127.0.0.1:${port} default_server;`],
        ['listen 80;', `listen 127.0.0.1:${port};`],
        ['server_name app.example.com;', 'server_name app.corp.test;'],
        ['?host=app.example.com', '?host=app.corp.test'],
        ['127.0.0.1:4180', `127.0.0.1:${pcPort}`],
        ['127.0.0.1:8080', `127.0.0.1:${upstream.port}`],
      ]),
    );
    for (const who of ['alice', 'bob'] as const) {
      const { final } = await loginThroughIdp(`${app}/whoami`, {
        jar: jars[who],
        username: who,
        password: who,
      });
      assert.equal(final.status, 200, `${who} could not log in: ${final.body.slice(0, 300)}`);
    }
  });
  after(async () => {
    await nginx?.close();
    await Promise.allSettled([portcullis?.close(), upstream?.close(), idp?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (who: 'alice' | 'bob' | null, path: string): Promise<Resp> =>
    request(`${app}${path}`, {
      headers: { accept: 'application/json' },
      ...(who ? { jar: jars[who] } : {}),
    });
  const seen = (r: Resp): { email: string; assertion: string } => {
    const h = r.json<{ headers: Record<string, string> }>().headers;
    return {
      email: h['x-forwarded-email'] ?? '',
      assertion: h['x-portcullis-jwt-assertion'] ?? '',
    };
  };
  const assertionEmail = (jwt: string): string =>
    (JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as { email: string })
      .email;

  test('alice and bob asking for the same URL, interleaved, each get their own identity and assertion, from the cache too', async () => {
    const hits = { alice: 0, bob: 0 };
    for (let i = 0; i < 20; i++) {
      for (const who of ['alice', 'bob'] as const) {
        const r = await get(who, '/same/page?x=1');
        assert.equal(r.status, 200, nginx.errorLog());
        const s = seen(r);
        assert.equal(s.email, `${who}@example.com`, `round ${i}: ${who} was shown ${s.email}`);
        assert.equal(assertionEmail(s.assertion), `${who}@example.com`);
        if (r.headers['x-portcullis-auth-cache'] === 'HIT') hits[who]++;
      }
    }
    // Without hits this test would prove nothing about the cache.
    assert.ok(hits.alice > 5 && hits.bob > 5, `cache hits: ${JSON.stringify(hits)}`);
  });

  test('a 401 and a 403 are never served from the cache: every one is asked again', async () => {
    asked.length = 0;
    for (let i = 0; i < 5; i++) {
      const anon = await get(null, '/nobody?y=2');
      assert.equal(anon.status, 401);
      assert.notEqual(anon.headers['x-portcullis-auth-cache'], 'HIT');
      const denied = await get('bob', '/admin/panel');
      assert.equal(denied.status, 403);
      assert.notEqual(denied.headers['x-portcullis-auth-cache'], 'HIT');
    }
    assert.equal(asked.filter((p) => p === '/nobody').length, 5, asked.join(' '));
    assert.equal(asked.filter((p) => p === '/admin/panel').length, 5, asked.join(' '));

    // Granting bob access works on his very next request: no cached 403 stands in the way.
    writeFileSync(configFile, yaml(['alice@example.com', 'bob@example.com']));
    assert.equal((await portcullis.reload('test')).ok, true);
    assert.equal((await get('bob', '/admin/panel')).status, 200);
  });

  test('taking access away takes effect within 2 s of the reload (nginx keeps 1s in whole seconds)', async () => {
    writeFileSync(configFile, yaml(['alice@example.com']));
    assert.equal((await portcullis.reload('test')).ok, true);
    // Warm: alice's answer for this URL is in the cache.
    for (let i = 0; i < 3; i++) assert.equal((await get('alice', '/admin/x')).status, 200);
    assert.equal((await get('alice', '/admin/x')).headers['x-portcullis-auth-cache'], 'HIT');

    writeFileSync(configFile, yaml(['bob@example.com']));
    assert.equal((await portcullis.reload('test')).ok, true);
    const revoked = Date.now();
    let lastAllowed = -1;
    // Judged by when each request was sent: nginx decided no earlier than that, so a request sent
    // past the bound and let in is a stale answer, while a slow round trip on a loaded machine
    // cannot make one sent in time look late.
    while (Date.now() - revoked < 3000) {
      const sent = Date.now() - revoked;
      const r = await get('alice', '/admin/x');
      if (r.status === 200) lastAllowed = sent;
      else assert.equal(r.status, 403);
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.ok(
      lastAllowed < 2100,
      `alice was still let in by a request sent ${lastAllowed} ms after the reload`,
    );
    // And a fresh request after the bound is refused.
    assert.equal((await get('alice', '/admin/x')).status, 403);
  });
});
