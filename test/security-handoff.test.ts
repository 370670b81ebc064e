import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startIdp } from '../demo/idp.js';
import { startWhoami } from '../demo/whoami.js';
import { bindBrowser, nonceCookieName } from '../src/authenticate/handoff.js';
import { parseConfig } from '../src/config/load.js';
import type { RequestContext } from '../src/decide/types.js';
import { createLogger } from '../src/observe/logger.js';
import type { Runtime } from '../src/runtime.js';
import { startPortcullis } from '../src/server.js';
import { launchBrowser } from './helpers/browser.js';
import { CookieJar, followRedirects, request } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import { startStack, type Stack } from './helpers/stack.js';
import { selfSigned } from './helpers/certs.js';

// Issue 15, Medium 4: a handoff link minted in one browser must not sign in another one.
// Before the fix, bob (signed in on the authenticate host) opened a page of app.other.test, got
// `/.portcullis/handoff?token=T` back without any IdP round trip, and any browser opening T
// became bob on app.other.test: a one-click login CSRF that swaps alice's session for bob's.

const NONCE = '_portcullis_handoff';

describe('the cross-domain handoff is bound to the browser that asked for it', () => {
  let s: Stack;
  const other = (path: string): string => `http://app.other.test:${s.port}${path}`;
  before(async () => {
    s = await startStack({
      hosts: ['auth.corp.test'],
      body: `authenticate_service_url: http://auth.corp.test:\${PORT}
cookie_domain: corp.test
routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
  - from: http://app.other.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_identity_headers: true
`,
    });
  });
  after(() => s.close());

  /** A signed-in browser on the authenticate host (and everything under corp.test). */
  async function signedIn(user: string): Promise<CookieJar> {
    const jar = new CookieJar();
    const r = await loginThroughIdp(`http://app.corp.test:${s.port}/`, {
      jar,
      username: user,
      password: user,
    });
    assert.equal(r.final.status, 200);
    return jar;
  }

  /** What bob does: follow the redirects from an app.other.test page up to the handoff link, and keep it. */
  async function mintLink(
    jar: CookieJar,
    path = '/secret-page',
  ): Promise<{ link: string; status: number }> {
    const toAuth = await request(other(path), { jar, headers: BROWSER_HEADERS });
    assert.equal(toAuth.status, 302);
    const fromAuth = await request(toAuth.location!, { jar, headers: BROWSER_HEADERS });
    return { link: fromAuth.location ?? '', status: fromAuth.status };
  }

  async function whoIsOnOther(jar: CookieJar): Promise<string | null> {
    const r = await request(other('/.portcullis/userinfo'), {
      jar,
      headers: { accept: 'application/json' },
    });
    return r.status === 200 ? (r.json() as { email: string }).email : null;
  }

  test('bob mints a link in his browser, alice opens it: refused, no session set, alice stays alice', async () => {
    const alice = await signedIn('alice');
    const onOther = await followRedirects(other('/mine'), { jar: alice, headers: BROWSER_HEADERS });
    assert.equal(onOther.final.status, 200);
    assert.equal(await whoIsOnOther(alice), 'alice@example.com');

    const bob = await signedIn('bob');
    const { link, status } = await mintLink(bob);
    assert.equal(status, 302);
    assert.match(
      link,
      /\/\.portcullis\/handoff\?token=/,
      'bob gets a handoff link without an IdP round trip',
    );

    const logFrom = s.logs.length;
    const opened = await request(link, { jar: alice, headers: BROWSER_HEADERS });
    assert.equal(opened.status, 400);
    assert.match(opened.body, /was not started in this browser/);
    assert.doesNotMatch(opened.body, /bob@example\.com|at .*\.js:\d+/);
    assert.ok(
      !opened.setCookies.some(
        (c) => c.startsWith('_portcullis=') || c.startsWith('_portcullis_1='),
      ),
      `no session cookie set: ${opened.setCookies.join(' | ')}`,
    );
    assert.equal(
      await whoIsOnOther(alice),
      'alice@example.com',
      'alice is still alice on app.other.test',
    );
    const page = await followRedirects(other('/secret-page'), {
      jar: alice,
      headers: BROWSER_HEADERS,
    });
    assert.match(page.final.body, /alice@example\.com/);
    assert.doesNotMatch(page.final.body, /bob@example\.com/);
    const refused = s.logs.slice(logFrom).find((l) => l.event === 'handoff_refused');
    assert.equal(refused?.reason, 'other_browser', 'an audit line names the refusal');
    assert.equal(refused?.name, 'audit');
    assert.ok(
      !s.logText().includes(new URL(link).searchParams.get('token')!),
      'the token itself is not logged',
    );

    // The refusal did not spend the link: it still works in the browser it was made for.
    const own = await followRedirects(link, { jar: bob, headers: BROWSER_HEADERS });
    assert.equal(own.final.status, 200);
    assert.equal(own.chain.at(-1), other('/secret-page'));
    assert.equal(await whoIsOnOther(bob), 'bob@example.com');
  });

  test('a browser with a nonce of its own (alice mid-login) does not accept a link bound to another', async () => {
    const bob = await signedIn('bob');
    const { link } = await mintLink(bob);
    const alice = new CookieJar();
    const started = await request(other('/start'), { jar: alice, headers: BROWSER_HEADERS });
    assert.equal(started.status, 302);
    assert.ok(alice.get(NONCE, 'app.other.test'), 'alice holds a nonce of her own');
    const opened = await request(link, { jar: alice, headers: BROWSER_HEADERS });
    assert.equal(opened.status, 400);
    assert.match(opened.body, /was not started in this browser/);
    assert.equal(
      await whoIsOnOther(alice),
      null,
      "no session for alice on app.other.test, least of all bob's",
    );
    // A forged nonce cookie of the right shape does not help either.
    const forged = await request(link, {
      headers: { ...BROWSER_HEADERS, cookie: `${NONCE}=${'A'.repeat(24)}` },
    });
    assert.equal(forged.status, 400);
    assert.match(forged.body, /was not started in this browser/);
  });

  test('the nonce cookie: this host only, HttpOnly, SameSite=Lax, 10 minutes, kept from the upstream; spent on use', async () => {
    const bob = await signedIn('bob');
    const toAuth = await request(other('/cookie-check'), { jar: bob, headers: BROWSER_HEADERS });
    const set = toAuth.setCookies.find((c) => c.startsWith(`${NONCE}=`));
    assert.ok(set, 'the redirect to the authenticate host sets the nonce');
    assert.match(
      set,
      /^_portcullis_handoff=[A-Za-z0-9_-]{24}; Path=\/; Max-Age=600; HttpOnly; SameSite=Lax$/,
    );
    assert.doesNotMatch(set, /Domain=/i);
    // A second tab starting at the same time keeps the same nonce instead of overwriting it.
    const again = await request(other('/cookie-check-2'), { jar: bob, headers: BROWSER_HEADERS });
    assert.equal(
      again.setCookies.find((c) => c.startsWith(`${NONCE}=`))?.split(';')[0],
      set.split(';')[0],
    );
    const fromAuth = await request(toAuth.location!, { jar: bob, headers: BROWSER_HEADERS });
    const done = await request(fromAuth.location!, { jar: bob, headers: BROWSER_HEADERS });
    assert.equal(done.status, 302);
    assert.ok(
      done.setCookies.some((c) => new RegExp(`^${NONCE}=; .*Max-Age=0`).test(c)),
      'the nonce is cleared once spent',
    );
    assert.equal(bob.get(NONCE, 'app.other.test'), undefined);
    // Path=/ (what lets the second tab above find it) does not take it to the upstream.
    const url = new URL(other('/headers'));
    const upstream = await request(url.href, {
      headers: {
        accept: 'application/json',
        cookie: `app=1; ${NONCE}=${'n'.repeat(24)}; ${bob.header(url)}`,
      },
    });
    assert.equal(upstream.status, 200);
    assert.match(upstream.body, /app=1/);
    assert.doesNotMatch(upstream.body, new RegExp(NONCE));
  });

  test('over https the nonce cookie carries the __Host- prefix (no Domain, Path=/, Secure), so no sibling host can plant one', () => {
    const rt = { cfg: { cookie: { name: '_portcullis', secure: true } } } as unknown as Runtime;
    const ctx = { headers: {} } as RequestContext;
    const { cookie, nh } = bindBrowser(rt, ctx);
    assert.equal(nonceCookieName(rt), '__Host-_portcullis_handoff');
    // RFC 6265bis 4.1.3.2: a __Host- cookie must be Secure, have Path=/ and no Domain, or the browser drops it.
    assert.match(
      cookie,
      /^__Host-_portcullis_handoff=[A-Za-z0-9_-]{24}; Path=\/; Max-Age=600; Secure; HttpOnly; SameSite=Lax$/,
    );
    assert.match(nh, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(!cookie.includes(nh), 'the cookie holds the nonce, the return address only its hash');
  });

  test('links minted from one session are bounded: 20 at once, then a clear 429', async () => {
    const bob = await signedIn('bob');
    const statuses: number[] = [];
    for (let i = 0; i < 21; i++) statuses.push((await mintLink(bob, `/page-${i}`)).status);
    assert.deepEqual(statuses.slice(0, 20), Array(20).fill(302));
    assert.equal(statuses[20], 429);
    const toAuth = await request(other('/one-more'), { jar: bob, headers: BROWSER_HEADERS });
    const limited = await request(toAuth.location!, { jar: bob, headers: BROWSER_HEADERS });
    assert.equal(limited.status, 429);
    assert.match(limited.body, /Too many sign-in hand-overs/);
    assert.equal(limited.headers['retry-after'], '60');
    assert.ok(s.logs.some((l) => l.event === 'handoff_rate_limited'));
    // Another user's session has its own budget.
    const alice = await signedIn('alice');
    assert.equal((await mintLink(alice)).status, 302);
  });

  test('a return address without a nonce (an rd sign-in) first collects one on the target host, then logs in there', async () => {
    const jar = new CookieJar();
    const start = `http://auth.corp.test:${s.port}/.portcullis/sign_in?rd=${encodeURIComponent(other('/landing?a=1'))}`;
    const r = await loginThroughIdp(start, { jar, username: 'alice', password: 'alice' });
    assert.equal(r.final.status, 200, r.chain.join('\n'));
    assert.equal(r.chain.at(-1), other('/landing?a=1'));
    const detour = r.chain.findIndex((u) => u.startsWith(other('/.portcullis/sign_in?return=')));
    const handoff = r.chain.findIndex((u) => u.startsWith(other('/.portcullis/handoff?')));
    assert.ok(
      detour > 0 && handoff > detour,
      `the detour through app.other.test comes before the handoff:\n${r.chain.join('\n')}`,
    );
    assert.match(r.final.body, /alice@example\.com/);
  });
});

describe('over https, in Chromium', () => {
  test('the nonce is a __Host- cookie the browser accepts, and a first login on the other parent domain lands there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-handoff-tls-'));
    const hosts = ['auth.corp.test', 'app.other.test'];
    selfSigned(dir, 'tls', '/CN=auth.corp.test', [
      '-addext',
      `subjectAltName=${hosts.map((h) => `DNS:${h}`).join(',')}`,
    ]);
    const port = await freePort();
    const clientSecret = randomBytes(24).toString('base64url');
    const idp = await startIdp({
      clients: [
        {
          client_id: 'portcullis',
          client_secret: clientSecret,
          redirect_uris: [`https://auth.corp.test:${port}/.portcullis/callback`],
        },
      ],
    });
    const upstream = await startWhoami({ name: 'upstream' });
    const p = await startPortcullis(
      parseConfig(
        `address: 127.0.0.1:${port}
cookie_secret: ${randomBytes(32).toString('base64')}
idp_provider_url: ${idp.issuer}
idp_client_id: portcullis
idp_client_secret: ${clientSecret}
idp_scopes: [openid, profile, email, groups]
authenticate_service_url: https://auth.corp.test:${port}
certificates:
  - cert: ${join(dir, 'tls.crt')}
    key: ${join(dir, 'tls.key')}
routes:
  - from: https://app.other.test:${port}
    to: ${upstream.url}
    allow_any_authenticated_user: true
    pass_identity_headers: true
`,
        'tls.yaml',
      ),
      { logger: createLogger('silent') },
    );
    const browser = await launchBrowser(hosts);
    try {
      const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
      const page = await ctx.newPage();
      const wanted = `https://app.other.test:${port}/deep?x=1`;
      await page.goto(wanted);
      await page.waitForSelector('#username');
      const nonce = (await ctx.cookies(`https://app.other.test:${port}/`)).find(
        (c) => c.name === '__Host-_portcullis_handoff',
      );
      assert.ok(
        nonce,
        'Chromium stored the __Host- nonce (it drops one that breaks the prefix rules)',
      );
      assert.deepEqual(
        [nonce.secure, nonce.httpOnly, nonce.path, nonce.domain, nonce.sameSite],
        [true, true, '/', 'app.other.test', 'Lax'],
      );
      await page.fill('#username', 'alice');
      await page.fill('#password', 'alice');
      await page.click('#submit');
      await page.waitForURL(wanted);
      assert.match((await page.textContent('body')) ?? '', /alice@example\.com/);
      assert.ok(
        !(await ctx.cookies(`https://app.other.test:${port}/`)).some(
          (c) => c.name === '__Host-_portcullis_handoff',
        ),
        'spent',
      );
      await ctx.close();
    } finally {
      await browser.close();
      await p.close();
      await upstream.close();
      await idp.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
