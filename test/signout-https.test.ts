import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../src/config/load.js';
import { createLogger } from '../src/observe/logger.js';
import { startPortcullis } from '../src/server.js';
import { CookieJar, followRedirects, request } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import { startStack, type Stack } from './helpers/stack.js';

describe('sign-out', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({ hosts: ['app.corp.test'], body: `routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
` });
  });
  after(() => s.close());

  test('ends the session here and at the IdP (RP-initiated logout), then returns to a safe page', async () => {
    const jar = new CookieJar();
    await loginThroughIdp(`http://app.corp.test:${s.port}/`, { jar, username: 'alice', password: 'alice' });
    const stolen = jar.get('_portcullis')!;
    const out = await followRedirects(`http://app.corp.test:${s.port}/.portcullis/sign_out?rd=${encodeURIComponent(`http://app.corp.test:${s.port}/bye?x=1`)}`, { jar, headers: BROWSER_HEADERS });
    assert.ok(out.chain.some((u) => u.startsWith(`${s.idp.issuer}/session/end`)), `went through the IdP's end_session_endpoint: ${out.chain.join(' ')}`);
    assert.ok(out.chain.some((u) => u.startsWith(`http://app.corp.test:${s.port}/.portcullis/signed_out?`)));
    assert.ok(out.chain.includes(`http://app.corp.test:${s.port}/bye?x=1`), 'back to the requested page');
    // The IdP session is gone too: the next visit shows the IdP's login form, not a silent re-login.
    assert.match(out.final.body, /id="password"/);
    assert.equal(jar.get('_portcullis'), undefined);
    // With the stateless cookie store a copied cookie outlives sign-out until it expires:
    // that is documented, and a server-side store closes it (tested with the stores).
    assert.ok(stolen.length > 0);
  });

  test('refuses an rd outside the configured hosts', async () => {
    const r = await request(`http://app.corp.test:${s.port}/.portcullis/sign_out?rd=https://evil.test/`, { headers: BROWSER_HEADERS });
    assert.equal(r.status, 400);
  });
});

describe('HTTPS with SNI', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-tls-'));
    for (const name of ['a.corp.test', 'b.corp.test']) {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`)], { stdio: 'ignore' });
    }
  });

  test('serves the certificate matching the SNI name and logs in over https with Secure cookies', async () => {
    const s = await startStack({ hosts: ['placeholder.test'], body: 'routes:\n  - from: http://placeholder.test:${PORT}\n    to: ${UPSTREAM}\n    allow_public_unauthenticated_access: true\n' });
    const port = await freePort();
    const yaml = s.yaml.replace('insecure_server: true\n', '').replace('cookie_secure: false\n', '').replace(/address: .*/, `address: 127.0.0.1:${port}`).replace(/routes:[\s\S]*$/, `certificates:
  - cert: ${join(dir, 'a.corp.test.crt')}
    key: ${join(dir, 'a.corp.test.key')}
  - cert: ${join(dir, 'b.corp.test.crt')}
    key: ${join(dir, 'b.corp.test.key')}
routes:
  - from: https://a.corp.test:${port}
    to: ${s.upstream.url}
    allow_any_authenticated_user: true
  - from: https://b.corp.test:${port}
    to: ${s.upstream.url}
    allow_public_unauthenticated_access: true
`);
    writeFileSync(join(dir, 'cfg.yaml'), yaml);
    const p = await startPortcullis(parseConfig(yaml, 'tls.yaml'), { logger: createLogger('silent') });
    try {
      for (const name of ['a.corp.test', 'b.corp.test']) {
        const cn = await new Promise<string>((resolve, reject) => {
          const sock = connect({ host: '127.0.0.1', port, servername: name, rejectUnauthorized: false }, () => {
            resolve(String(sock.getPeerCertificate().subject.CN));
            sock.end();
          });
          sock.on('error', reject);
        });
        assert.equal(cn, name);
      }
      const pub = await request(`https://b.corp.test:${port}/x`);
      assert.equal(pub.status, 200);
      // The IdP only knows the http callback of the placeholder host, so stop at the redirect:
      // it must name the https callback and set a Secure login-state cookie.
      const start = await request(`https://a.corp.test:${port}/`, { headers: BROWSER_HEADERS });
      assert.equal(start.status, 302);
      assert.equal(new URL(start.location!).searchParams.get('redirect_uri'), `https://a.corp.test:${port}/.portcullis/callback`);
      assert.ok(start.setCookies.every((c) => /; Secure/.test(c)), 'cookies are Secure over https');
    } finally {
      await p.close();
      await s.close();
    }
  });
});
