import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { DEMO_USERS, startIdp, type RunningIdp } from '../demo/idp.js';
import { startWhoami } from '../demo/whoami.js';
import { parseConfig } from '../src/config/load.js';
import { createLogger } from '../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../src/server.js';
import { CookieJar, request } from './helpers/http.js';
import { checkOk, importOk, routesOf, write } from './helpers/import-cli.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { startNginx, type StartedNginx } from './helpers/nginx.js';
import { oauth2ProxyNginx } from './helpers/oauth2-proxy-nginx.js';
import { freePort } from './helpers/ports.js';

// `portcullis import` as an operator runs it (test/helpers/import-cli.ts): the built CLI fed the
// peers' own documented example configs (written here from the documented facts, each cited),
// judged by what it writes, what it prints, its exit status, and whether `portcullis check`
// and a real sign-in accept the result.

describe('a sign-in through an imported oauth2-proxy config', () => {
  let idp: RunningIdp;
  let upstream: Awaited<ReturnType<typeof startWhoami>>;
  let proxy: RunningPortcullis;
  let port: number;
  let imported: string;
  const clientSecret = randomBytes(24).toString('base64url');

  before(async () => {
    port = await freePort();
    upstream = await startWhoami({ name: 'upstream' });
    // The IdP keeps the redirect URI oauth2-proxy had registered.
    idp = await startIdp({
      clients: [
        {
          client_id: 'oauth2-proxy',
          client_secret: clientSecret,
          redirect_uris: [`http://app.corp.test:${port}/oauth2/callback`],
          post_logout_redirect_uris: [`http://app.corp.test:${port}/.portcullis/signed_out`],
        },
      ],
    });
    // A reverse-proxy oauth2-proxy setup as the recipes describe it: one upstream, the
    // redirect URL on the app's host, X-Forwarded-* to the upstream (the default), the access
    // token passed (pass_access_token), X-Auth-Request-* for an auth_request caller.
    const cfgFile = write(
      'signin.cfg',
      [
        `http_address = "127.0.0.1:${port}"`,
        'provider = "oidc"',
        `oidc_issuer_url = "${idp.issuer}"`,
        'client_id = "oauth2-proxy"',
        `client_secret_file = "${write('client-secret', `${clientSecret}\n`)}"`,
        `cookie_secret = "${randomBytes(32).toString('base64url')}"`,
        'cookie_secure = false',
        'email_domains = ["example.com"]',
        'allowed_groups = ["admins"]',
        `upstreams = ["${upstream.url}/"]`,
        `redirect_url = "http://app.corp.test:${port}/oauth2/callback"`,
        'scope = "openid email profile groups"',
        'set_xauthrequest = true',
        'pass_access_token = true',
        'skip_auth_routes = ["GET=^/healthz$"]',
      ].join('\n'),
    );
    const r = await importOk(['oauth2-proxy', '--config', cfgFile]);
    imported = r.file;
    await checkOk(imported);
    proxy = await startPortcullis(parseConfig(readFileSync(imported, 'utf8'), imported), {
      logger: createLogger('silent'),
    });
    await proxy.idp.start();
  });
  after(async () => {
    await Promise.allSettled([proxy?.close(), upstream?.close(), idp?.close()]);
  });

  test('alice signs in at the IdP, returns to her URL with its query, and the upstream gets X-Forwarded-* and the access token', async () => {
    const jar = new CookieJar();
    const start = `http://app.corp.test:${port}/reports?format=json&q=a%20b`;
    const r = await loginThroughIdp(start, { jar, username: 'alice', password: 'alice' });
    assert.equal(r.final.status, 200, r.chain.join('\n'));
    assert.equal(r.chain.at(-1), start);
    assert.ok(
      r.chain.some((u) => u.startsWith(`http://app.corp.test:${port}/oauth2/callback?`)),
      'the IdP returns to the redirect URI oauth2-proxy had registered',
    );
    const seen = JSON.parse(r.final.body) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/reports?format=json&q=a%20b');
    assert.equal(seen.headers['x-forwarded-user'], 'alice');
    assert.equal(seen.headers['x-forwarded-email'], 'alice@example.com');
    assert.equal(seen.headers['x-forwarded-groups'], 'admins,eng');
    assert.ok(seen.headers['x-forwarded-access-token'], 'pass_access_token');
    assert.equal(seen.headers.host, `app.corp.test:${port}`, 'pass_host_header (default true)');

    // The same session answers an auth_request subrequest on /oauth2/auth as oauth2-proxy did.
    const auth = await request(`http://app.corp.test:${port}/oauth2/auth`, {
      jar,
      headers: { 'x-forwarded-uri': '/reports' },
    });
    assert.equal(auth.status, 202);
    assert.equal(auth.headers['x-auth-request-email'], 'alice@example.com');
    assert.equal(auth.headers['x-auth-request-groups'], 'admins,eng');
  });

  test('bob (not in admins) is refused; the skipped health path needs nobody; a client cannot forge X-Forwarded-User', async () => {
    const jar = new CookieJar();
    const r = await loginThroughIdp(`http://app.corp.test:${port}/reports`, {
      jar,
      username: 'bob',
      password: 'bob',
    });
    assert.equal(r.final.status, 403);
    const health = await request(`http://app.corp.test:${port}/healthz?format=json`, {
      headers: { 'x-forwarded-user': 'admin' },
    });
    assert.equal(health.status, 200);
    const seen = JSON.parse(health.body) as { headers: Record<string, string> };
    assert.equal(seen.headers['x-forwarded-user'], undefined, 'the forged header is stripped');
    const post = await request(`http://app.corp.test:${port}/healthz`, {
      method: 'POST',
      headers: { ...BROWSER_HEADERS },
    });
    assert.equal(post.status, 302, 'another method on the skipped path still needs a sign-in');
  });
});

describe("real nginx with oauth2-proxy's auth_request snippet, in front of an imported auth-only oauth2-proxy config", () => {
  // The nginx side is oauth2-proxy's documented integration (Integration page, "Configuring for
  // use with the Nginx auth_request directive", versions 7.10.x to 7.13.x): a /oauth2/ location,
  // an exact /oauth2/auth location with X-Forwarded-Uri $request_uri and no body, a named
  // location answering 302 to /oauth2/sign_in?rd=..., and auth_request_set copying
  // X-Auth-Request-User / -Email into the upstream request. $host becomes $http_host because
  // the test cannot listen on port 80. The oauth2-proxy side is the shape that setup needs
  // (auth only: no upstreams, set_xauthrequest, the app host in whitelist_domains), imported.
  let idp: RunningIdp;
  let upstream: Awaited<ReturnType<typeof startWhoami>>;
  let proxy: RunningPortcullis;
  let nginx: StartedNginx;
  let app: string;

  before(async () => {
    const port = await freePort();
    const pcPort = await freePort();
    app = `http://app.corp.test:${port}`;
    const clientSecret = randomBytes(24).toString('base64url');
    idp = await startIdp({
      clients: [
        {
          client_id: 'oauth2-proxy',
          client_secret: clientSecret,
          redirect_uris: [`${app}/oauth2/callback`],
          post_logout_redirect_uris: [`${app}/`],
        },
      ],
      users: [
        ...DEMO_USERS,
        { id: 'carol', password: 'carol', email: 'carol@partner.test', name: 'Carol', groups: [] },
      ],
    });
    upstream = await startWhoami({ name: 'upstream' });
    const cfgFile = write(
      'auth-only.cfg',
      [
        `http_address = "127.0.0.1:${pcPort}"`,
        'provider = "oidc"',
        `oidc_issuer_url = "${idp.issuer}"`,
        'client_id = "oauth2-proxy"',
        `client_secret = "${clientSecret}"`,
        // 32 hex characters, which oauth2-proxy decodes as base64url to 24 bytes (AES-192).
        `cookie_secret = "${randomBytes(16).toString('hex')}"`,
        'cookie_secure = false',
        'email_domains = ["example.com"]',
        'scope = "openid email profile groups"',
        `redirect_url = "${app}/oauth2/callback"`,
        `whitelist_domains = ["app.corp.test:${port}"]`,
        'set_xauthrequest = true',
        'reverse_proxy = true',
      ].join('\n'),
    );
    const r = await importOk(['oauth2-proxy', '--config', cfgFile]);
    assert.deepEqual(
      routesOf(r.cfg).map((x) => x.from),
      [app],
      'the whitelisted host is the route',
    );
    assert.match(r.stderr, /not carried over: cookie_secret — it keys 192-bit AES/);
    await checkOk(r.file);
    proxy = await startPortcullis(parseConfig(readFileSync(r.file, 'utf8'), r.file), {
      logger: createLogger('silent'),
    });
    await proxy.idp.start();
    // oauth2-proxy's documented nginx snippet, unchanged but for the address of the auth server.
    nginx = await startNginx(oauth2ProxyNginx({ port, auth: pcPort, upstream: upstream.port }));
  });
  after(async () => {
    await nginx?.close();
    await Promise.allSettled([proxy?.close(), upstream?.close(), idp?.close()]);
  });

  test('alice signs in through /oauth2/sign_in and /oauth2/callback, lands on her URL, and nginx passes her identity upstream', async () => {
    const jar = new CookieJar();
    const wanted = `${app}/reports/q3?team=eng`;
    const { final, chain } = await loginThroughIdp(wanted, {
      jar,
      username: 'alice',
      password: 'alice',
      headers: { 'X-User': 'mallory' },
    });
    assert.equal(final.status, 200, `${chain.join('\n')}\n${nginx.errorLog()}`);
    assert.equal(chain.at(-1), wanted);
    assert.ok(chain.some((u) => u.startsWith(`${app}/oauth2/sign_in?rd=`)));
    assert.ok(chain.some((u) => u.startsWith(`${app}/oauth2/callback?`)));
    const r = await request(`${app}/reports/q3?format=json`, {
      jar,
      headers: { ...BROWSER_HEADERS, 'X-User': 'mallory' },
    });
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.body) as { headers: Record<string, string> };
    assert.equal(seen.headers['x-user'], 'alice');
    assert.equal(seen.headers['x-email'], 'alice@example.com');
  });

  test('carol (outside email_domains) signs in at the IdP and is refused; without a session the snippet redirects to sign-in', async () => {
    const carol = new CookieJar();
    const r = await loginThroughIdp(`${app}/x`, {
      jar: carol,
      username: 'carol',
      password: 'carol',
    });
    assert.equal(r.final.status, 403, r.chain.join('\n'));
    const anon = await request(`${app}/secret?a=1`, { headers: { accept: 'application/json' } });
    assert.equal(anon.status, 302, 'the snippet turns the 401 into its sign-in redirect');
    assert.equal(anon.location, `${app}/oauth2/sign_in?rd=${app}/secret?a=1`);
  });
});
