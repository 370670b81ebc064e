import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchBrowser } from './helpers/browser.js';
import { startStack, type Stack } from './helpers/stack.js';

// The whole login in a real browser: two parent domains served by one Portcullis through the
// authenticate service and the handoff, the return URL with its query string, 200 groups.
describe('headless Chromium', () => {
  let s: Stack;
  let browser: Browser;
  const hosts = ['auth.corp.test', 'app.corp.test', 'app.other.test'];
  before(async () => {
    // Hash-like names (as Entra ID sends group object ids) do not compress away.
    const many = Array.from({ length: 200 }, (_, i) =>
      createHash('sha256').update(String(i)).digest('hex').slice(0, 36),
    );
    s = await startStack({
      hosts: ['auth.corp.test'],
      body: `authenticate_service_url: http://auth.corp.test:\${PORT}
cookie_domain: corp.test
routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_identity_headers: true
  - from: http://app.other.test:\${PORT}
    to: \${UPSTREAM}
    allowed_groups: [admins]
    pass_identity_headers: true
`,
      idp: {
        users: [
          {
            id: 'alice',
            password: 'alice',
            email: 'alice@example.com',
            name: 'Alice Example',
            groups: ['admins', 'eng'],
          },
          {
            id: 'carol',
            password: 'carol',
            email: 'carol@example.com',
            name: 'Carol Many',
            groups: ['admins', ...many],
          },
        ],
      },
    });
    browser = await launchBrowser(hosts);
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });

  test('alice logs in once and reaches apps on two parent domains, landing on the exact URLs she asked for', async () => {
    const page = await browser.newPage();
    await page.goto(`http://app.corp.test:${s.port}/reports/q3?team=eng&sort=-date`);
    await page.waitForSelector('#username');
    assert.ok(page.url().startsWith(s.idp.issuer), `on the IdP login page, got ${page.url()}`);
    await page.fill('#username', 'alice');
    await page.fill('#password', 'alice');
    await page.click('#submit');
    await page.waitForURL(`http://app.corp.test:${s.port}/reports/q3?team=eng&sort=-date`);
    const body = await page.textContent('body');
    assert.match(body ?? '', /alice@example\.com/);
    assert.match(body ?? '', /admins,eng/);

    await page.goto(`http://app.other.test:${s.port}/dash?x=1`);
    await page.waitForURL(`http://app.other.test:${s.port}/dash?x=1`);
    assert.match((await page.textContent('body')) ?? '', /alice@example\.com/);
    await page.context().close();
  });

  test('a first login that starts on the other parent domain lands there: the handoff nonce survives the IdP round trip', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`http://app.other.test:${s.port}/first?via=other`);
    await page.waitForSelector('#username');
    const nonce = (await ctx.cookies(`http://app.other.test:${s.port}/`)).find(
      (c) => c.name === '_portcullis_handoff',
    );
    assert.ok(
      nonce?.httpOnly && nonce.sameSite === 'Lax',
      'Chromium keeps the HttpOnly, SameSite=Lax nonce of app.other.test',
    );
    await page.fill('#username', 'alice');
    await page.fill('#password', 'alice');
    await page.click('#submit');
    await page.waitForURL(`http://app.other.test:${s.port}/first?via=other`);
    assert.match((await page.textContent('body')) ?? '', /alice@example\.com/);
    const left = await ctx.cookies(`http://app.other.test:${s.port}/`);
    assert.ok(!left.some((c) => c.name === '_portcullis_handoff'), 'the nonce is gone once spent');
    assert.ok(
      left.some((c) => c.name === '_portcullis'),
      'app.other.test has its own session cookie',
    );
    await ctx.close();
  });

  test('a user with 200 groups keeps a working session (chunked cookie under the 4 KB limit)', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`http://app.corp.test:${s.port}/`);
    await page.waitForSelector('#username');
    await page.fill('#username', 'carol');
    await page.fill('#password', 'carol');
    await page.click('#submit');
    await page.waitForURL(`http://app.corp.test:${s.port}/`);
    const res = await page.goto(`http://app.corp.test:${s.port}/.portcullis/userinfo`);
    const info = (await res!.json()) as { groups: string[] };
    assert.equal(info.groups.length, 201);
    const cookies = await ctx.cookies();
    const session = cookies.filter(
      (c) => c.name === '_portcullis' || c.name.startsWith('_portcullis_'),
    );
    assert.ok(session.length > 1, 'the session is split over several cookies');
    for (const c of session)
      assert.ok(c.name.length + c.value.length < 4000, `${c.name} fits a browser cookie`);
    // The other parent domain needs group admins: the big session carries it across the handoff.
    await page.goto(`http://app.other.test:${s.port}/`);
    await page.waitForURL(`http://app.other.test:${s.port}/`);
    assert.match((await page.textContent('body')) ?? '', /carol@example\.com/);
    await ctx.close();
  });
});
