import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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
import { selfSigned } from './helpers/certs.js';

describe('sign-out', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({
      hosts: ['app.corp.test'],
      body: `routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
`,
    });
  });
  after(() => s.close());

  test('ends the session here and at the IdP (RP-initiated logout), then returns to a safe page', async () => {
    const jar = new CookieJar();
    await loginThroughIdp(`http://app.corp.test:${s.port}/`, {
      jar,
      username: 'alice',
      password: 'alice',
    });
    const stolen = jar.get('_portcullis')!;
    const out = await followRedirects(
      `http://app.corp.test:${s.port}/.portcullis/sign_out?rd=${encodeURIComponent(`http://app.corp.test:${s.port}/bye?x=1`)}`,
      { jar, headers: BROWSER_HEADERS },
    );
    assert.ok(
      out.chain.some((u) => u.startsWith(`${s.idp.issuer}/session/end`)),
      `went through the IdP's end_session_endpoint: ${out.chain.join(' ')}`,
    );
    assert.ok(
      out.chain.some((u) => u.startsWith(`http://app.corp.test:${s.port}/.portcullis/signed_out?`)),
    );
    assert.ok(
      out.chain.includes(`http://app.corp.test:${s.port}/bye?x=1`),
      'back to the requested page',
    );
    // The IdP session is gone too: the next visit shows the IdP's login form, not a silent re-login.
    assert.match(out.final.body, /id="password"/);
    assert.equal(jar.get('_portcullis'), undefined);
    // With the stateless cookie store a copied cookie outlives sign-out until it expires:
    // that is documented, and a server-side store closes it (tested with the stores).
    assert.ok(stolen.length > 0);
  });

  test('refuses an rd outside the configured hosts', async () => {
    const r = await request(
      `http://app.corp.test:${s.port}/.portcullis/sign_out?rd=https://evil.test/`,
      { headers: BROWSER_HEADERS },
    );
    assert.equal(r.status, 400);
  });
});

describe('HTTPS with SNI', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-tls-'));
    for (const name of ['a.corp.test', 'b.corp.test']) {
      selfSigned(dir, name, `/CN=${name}`, ['-addext', `subjectAltName=DNS:${name}`]);
    }
  });

  test('serves the certificate matching the SNI name and logs in over https with Secure cookies', async () => {
    const s = await startStack({
      hosts: ['placeholder.test'],
      body: 'routes:\n  - from: http://placeholder.test:${PORT}\n    to: ${UPSTREAM}\n    allow_public_unauthenticated_access: true\n',
    });
    const port = await freePort();
    const yaml = s.yaml
      .replace('insecure_server: true\n', '')
      .replace('cookie_secure: false\n', '')
      .replace(/address: .*/, `address: 127.0.0.1:${port}`)
      .replace(
        /routes:[\s\S]*$/,
        `certificates:
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
`,
      );
    writeFileSync(join(dir, 'cfg.yaml'), yaml);
    const p = await startPortcullis(parseConfig(yaml, 'tls.yaml'), {
      logger: createLogger('silent'),
    });
    try {
      for (const name of ['a.corp.test', 'b.corp.test']) {
        const cn = await new Promise<string>((resolve, reject) => {
          const sock = connect(
            { host: '127.0.0.1', port, servername: name, rejectUnauthorized: false },
            () => {
              resolve(String(sock.getPeerCertificate().subject.CN));
              sock.end();
            },
          );
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
      assert.equal(
        new URL(start.location!).searchParams.get('redirect_uri'),
        `https://a.corp.test:${port}/.portcullis/callback`,
      );
      assert.ok(
        start.setCookies.every((c) => /; Secure/.test(c)),
        'cookies are Secure over https',
      );
    } finally {
      await p.close();
      await s.close();
    }
  });
});

describe('TLS client certificates', () => {
  test('client_certificate policies see a certificate signed by client_ca_file, and only such a one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-mtls-'));
    const ossl = (...args: string[]): void =>
      void execFileSync('openssl', args, { stdio: 'ignore', cwd: dir });
    selfSigned(dir, 'srv', '/CN=srv.corp.test', ['-addext', 'subjectAltName=DNS:srv.corp.test']);
    for (const ca of ['ca', 'rogue']) selfSigned(dir, ca, `/CN=${ca}`);
    for (const [name, ca] of [
      ['ops', 'ca'],
      ['fake', 'rogue'],
    ] as const) {
      ossl(
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-subj',
        `/CN=${name}`,
        '-addext',
        `subjectAltName=email:ops@example.com`,
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.csr`,
      );
      writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=email:ops@example.com\n');
      ossl(
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        `${ca}.crt`,
        '-CAkey',
        `${ca}.key`,
        '-CAcreateserial',
        '-days',
        '1',
        '-extfile',
        'ext.cnf',
        '-out',
        `${name}.crt`,
      );
    }
    const port = await freePort();
    const upstream = await (await import('../demo/whoami.js')).startWhoami();
    const cfg = parseConfig(
      `address: 127.0.0.1:${port}
certificate_file: ${join(dir, 'srv.crt')}
certificate_key_file: ${join(dir, 'srv.key')}
client_ca_file: ${join(dir, 'ca.crt')}
idp_provider_url: http://127.0.0.1:1
idp_client_id: x
idp_client_secret: y
cookie_secret: ${Buffer.alloc(32, 3).toString('base64')}
routes:
  - from: https://srv.corp.test:${port}
    to: ${upstream.url}
    policy:
      - allow:
          and:
            - client_certificate: { san_email: { is: ops@example.com } }
`,
      'mtls.yaml',
    );
    const p = await startPortcullis(cfg, { logger: createLogger('silent') });
    const { request: httpsRequest } = await import('node:https');
    const get = (cert?: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port,
            path: '/',
            servername: 'srv.corp.test',
            headers: { host: `srv.corp.test:${port}`, accept: 'application/json' },
            rejectUnauthorized: false,
            ...(cert
              ? {
                  cert: readFileSync(join(dir, `${cert}.crt`)),
                  key: readFileSync(join(dir, `${cert}.key`)),
                }
              : {}),
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
    try {
      assert.equal(
        await get('ops'),
        200,
        'a certificate from the configured CA with the right SAN',
      );
      assert.equal(await get('fake'), 403, 'the same SAN from another CA is no certificate at all');
      assert.equal(await get(), 403, 'no certificate');
    } finally {
      await p.close();
      await upstream.close();
    }
  });
});
