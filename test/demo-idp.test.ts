// The demo IdP, the whoami upstream and the test helpers, exercised against a relying party
// that has nothing to do with Portcullis (openid-client), so the helpers are known-good
// before the proxy's own tests lean on them.
import test, { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { startIdp } from '../demo/idp.js';
import type { IdpClient, RunningIdp } from '../demo/idp.js';
import { startWhoami, wsFrame, WsParser } from '../demo/whoami.js';
import type { WsFrame } from '../demo/whoami.js';
import { CookieJar, followRedirects, request } from './helpers/http.js';
import { loginThroughIdp } from './helpers/login.js';
import { launchBrowser } from './helpers/browser.js';

const SCOPE = 'openid email profile groups offline_access';

interface RpSession {
  claims: client.IDToken;
  idToken: string;
  accessToken: string;
  refreshToken?: string;
}

interface Rp {
  origin: string;
  clientId: string;
  idpClient: IdpClient;
  sessions: Map<string, RpSession>;
  lastError?: { error: string; description?: string };
  connect(idp: RunningIdp): Promise<client.Configuration>;
  config(): client.Configuration;
  close(): Promise<void>;
}

// A minimal confidential relying party: authorization code + PKCE + state + nonce, with the
// transaction kept in a cookie-keyed map and the login outcome rendered as HTML.
async function startRp(
  host = '127.0.0.1',
  extraAuthParams: Record<string, string> = {},
): Promise<Rp> {
  const pending = new Map<string, { verifier: string; state: string; nonce: string }>();
  const sessions = new Map<string, RpSession>();
  let cfg: client.Configuration | undefined;
  const clientId = `rp-${randomBytes(4).toString('hex')}`;
  const secret = randomBytes(16).toString('hex');

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(String((err as Error).stack));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const origin = `http://${host}:${port}`;
  const rp: Rp = {
    origin,
    clientId,
    sessions,
    idpClient: {
      client_id: clientId,
      client_secret: secret,
      redirect_uris: [`${origin}/callback`],
      post_logout_redirect_uris: [`${origin}/bye`],
    },
    async connect(idp) {
      cfg = await client.discovery(new URL(idp.issuer), clientId, secret, undefined, {
        execute: [client.allowInsecureRequests],
      });
      return cfg;
    },
    config() {
      if (!cfg) throw new Error('rp not connected');
      return cfg;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };

  const cookie = (req: http.IncomingMessage, name: string): string | undefined =>
    String(req.headers.cookie ?? '')
      .split(/;\s*/)
      .map((c) => c.split('='))
      .find(([n]) => n === name)?.[1];

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', origin);
    if (url.pathname === '/') {
      const sid = cookie(req, 'rp_sid');
      const s = sid ? sessions.get(sid) : undefined;
      if (s) {
        const html =
          `<!DOCTYPE html><html><body><h1 id="hello">Hello ${s.claims.name as string}</h1>` +
          `<pre id="claims">${JSON.stringify(s.claims)}</pre></body></html>`;
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
        return;
      }
      const t = {
        verifier: client.randomPKCECodeVerifier(),
        state: client.randomState(),
        nonce: client.randomNonce(),
      };
      const tx = randomBytes(12).toString('hex');
      pending.set(tx, t);
      const params: Record<string, string> = {
        redirect_uri: `${origin}/callback`,
        scope: SCOPE,
        code_challenge: await client.calculatePKCECodeChallenge(t.verifier),
        code_challenge_method: 'S256',
        state: t.state,
        nonce: t.nonce,
        ...extraAuthParams,
      };
      for (const [k, v] of url.searchParams) params[k] = v;
      const to = client.buildAuthorizationUrl(rp.config(), params);
      res
        .writeHead(302, {
          location: to.href,
          'set-cookie': `rp_tx=${tx}; Path=/; HttpOnly; SameSite=Lax`,
        })
        .end();
      return;
    }
    if (url.pathname === '/callback') {
      const tx = cookie(req, 'rp_tx');
      const t = tx ? pending.get(tx) : undefined;
      if (!tx || !t) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('no transaction');
        return;
      }
      pending.delete(tx);
      try {
        const tokens = await client.authorizationCodeGrant(rp.config(), url, {
          pkceCodeVerifier: t.verifier,
          expectedState: t.state,
          expectedNonce: t.nonce,
          idTokenExpected: true,
        });
        const sid = randomBytes(12).toString('hex');
        const s: RpSession = {
          claims: tokens.claims()!,
          idToken: tokens.id_token!,
          accessToken: tokens.access_token,
        };
        if (tokens.refresh_token) s.refreshToken = tokens.refresh_token;
        sessions.set(sid, s);
        res
          .writeHead(303, {
            location: '/',
            'set-cookie': `rp_sid=${sid}; Path=/; HttpOnly; SameSite=Lax`,
          })
          .end();
      } catch (err) {
        const e = err as { error?: string; error_description?: string; message: string };
        rp.lastError = { error: e.error ?? e.message };
        if (e.error_description) rp.lastError.description = e.error_description;
        res
          .writeHead(400, { 'content-type': 'text/html' })
          .end(`<p id="error">${e.error ?? e.message}</p>`);
      }
      return;
    }
    if (url.pathname === '/bye') {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<p id="bye">signed out</p>');
      return;
    }
    res.writeHead(404).end();
  }

  return rp;
}

async function rpWithIdp(
  opts: {
    host?: string;
    audience?: string;
    extra?: IdpClient[];
    authParams?: Record<string, string>;
  } = {},
) {
  const rp = await startRp(opts.host, opts.authParams);
  const idpOpts: Parameters<typeof startIdp>[0] = {
    clients: [rp.idpClient, ...(opts.extra ?? [])],
  };
  if (opts.audience) idpOpts.jwtAccessTokenAudience = opts.audience;
  const idp = await startIdp(idpOpts);
  await rp.connect(idp);
  return {
    rp,
    idp,
    close: async () => {
      await rp.close();
      await idp.close();
    },
  };
}

function onlySession(rp: Rp): RpSession {
  assert.equal(rp.sessions.size, 1);
  return [...rp.sessions.values()][0]!;
}

describe('demo IdP with an openid-client relying party', () => {
  let env: Awaited<ReturnType<typeof rpWithIdp>>;
  before(async () => {
    env = await rpWithIdp({
      extra: [
        {
          client_id: 'svc',
          client_secret: 'svc-secret',
          redirect_uris: [],
          grant_types: ['client_credentials'],
        },
      ],
      audience: 'https://api.example.test',
    });
  });
  after(() => env.close());

  test('discovery advertises what the proxy relies on', async () => {
    const meta = env.rp.config().serverMetadata();
    assert.equal(meta.issuer, env.idp.issuer);
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
    for (const s of SCOPE.split(' ')) assert.ok(meta.scopes_supported?.includes(s), s);
    assert.ok(meta.end_session_endpoint);
    assert.ok(meta.introspection_endpoint);
    assert.ok(meta.revocation_endpoint);
    assert.ok(meta.grant_types_supported?.includes('client_credentials'));
  });

  test('alice logs in and the ID token carries email, name and groups', async () => {
    env.rp.sessions.clear();
    const jar = new CookieJar();
    const { final, chain } = await loginThroughIdp(`${env.rp.origin}/`, {
      jar,
      username: 'alice',
      password: 'alice',
    });
    assert.equal(final.status, 200, final.body);
    assert.match(final.body, /Hello Alice Example/);
    assert.ok(
      chain.some((u) => u.startsWith(`${env.idp.issuer}/interaction/`)),
      chain.join('\n'),
    );
    assert.ok(
      chain.some((u) => u.startsWith(`${env.rp.origin}/callback?code=`)),
      chain.join('\n'),
    );
    const s = onlySession(env.rp);
    assert.equal(s.claims.sub, 'alice');
    assert.equal(s.claims.email, 'alice@example.com');
    assert.equal(s.claims.email_verified, true);
    assert.equal(s.claims.name, 'Alice Example');
    assert.equal(s.claims.preferred_username, 'alice');
    assert.deepEqual(s.claims.groups, ['admins', 'eng']);
    assert.ok(s.refreshToken, 'refresh token issued');

    const info = await client.fetchUserInfo(env.rp.config(), s.accessToken, 'alice');
    assert.deepEqual(info.groups, ['admins', 'eng']);

    // The IdP session is live now: prompt=none comes straight back with a code.
    env.rp.sessions.clear();
    const silent = await followRedirects(`${env.rp.origin}/?prompt=none`, { jar });
    assert.match(silent.final.body, /Hello Alice Example/);
    assert.ok(!silent.chain.some((u) => u.includes('/interaction/')));

    // RP-initiated logout needs no confirmation click and returns to post_logout_redirect_uri.
    const end = client.buildEndSessionUrl(env.rp.config(), {
      id_token_hint: s.idToken,
      post_logout_redirect_uri: `${env.rp.origin}/bye`,
      state: 'xyz',
    });
    const out = await followRedirects(end.href, { jar });
    assert.equal(out.final.status, 200);
    assert.equal(out.chain.at(-1), `${env.rp.origin}/bye?state=xyz`);
    // Logging out revokes the session's grants, and with them the refresh token.
    await assert.rejects(
      client.refreshTokenGrant(env.rp.config(), s.refreshToken!),
      (e: { error?: string }) => e.error === 'invalid_grant',
    );

    // ...after which prompt=none reports login_required to the relying party.
    env.rp.sessions.clear();
    const again = await followRedirects(`${env.rp.origin}/?prompt=none`, { jar });
    assert.equal(again.final.status, 400);
    assert.match(again.chain.at(-1)!, /error=login_required/);
  });

  test('a wrong password is refused with the form shown again', async () => {
    env.rp.sessions.clear();
    const jar = new CookieJar();
    const { final, chain } = await loginThroughIdp(`${env.rp.origin}/`, {
      jar,
      username: 'alice',
      password: 'nope',
    });
    assert.equal(final.status, 401);
    assert.match(final.body, /Invalid username or password/);
    assert.match(final.body, /name="password"/);
    assert.match(chain.at(-1)!, /\/interaction\/[^/]+\/login$/);
    assert.equal(env.rp.sessions.size, 0);
  });

  test('the Cancel link ends at the redirect_uri with error=access_denied', async () => {
    const jar = new CookieJar();
    const { final, chain } = await followRedirects(`${env.rp.origin}/`, { jar });
    assert.equal(final.status, 200);
    const cancel = /href="([^"]*\/abort)"/.exec(final.body)?.[1];
    assert.ok(cancel, 'cancel link present');
    const aborted = await followRedirects(new URL(cancel, chain.at(-1)).href, { jar });
    assert.match(
      aborted.chain.at(-1)!,
      new RegExp(`^${env.rp.origin}/callback\\?error=access_denied`),
    );
    assert.equal(aborted.final.status, 400);
    assert.equal(env.rp.lastError?.error, 'access_denied');
  });

  test('refresh rotates the token and picks up new groups', async () => {
    env.rp.sessions.clear();
    await loginThroughIdp(`${env.rp.origin}/`, {
      jar: new CookieJar(),
      username: 'alice',
      password: 'alice',
    });
    const s = onlySession(env.rp);
    env.idp.setGroups('alice', ['eng']);
    try {
      const t = await client.refreshTokenGrant(env.rp.config(), s.refreshToken!);
      assert.deepEqual(t.claims()?.groups, ['eng']);
      assert.ok(t.refresh_token && t.refresh_token !== s.refreshToken, 'rotated');
      // Reusing a rotated refresh token is theft detection territory: refused.
      await assert.rejects(
        client.refreshTokenGrant(env.rp.config(), s.refreshToken!),
        (e: { error?: string }) => e.error === 'invalid_grant',
      );
    } finally {
      env.idp.setGroups('alice', ['admins', 'eng']);
    }
  });

  test('client_credentials yields a JWT for the audience; opaque tokens are introspectable and revocable', async () => {
    const svc = await client.discovery(new URL(env.idp.issuer), 'svc', 'svc-secret', undefined, {
      execute: [client.allowInsecureRequests],
    });
    const t = await client.clientCredentialsGrant(svc);
    const jwks = createRemoteJWKSet(new URL(svc.serverMetadata().jwks_uri!));
    const { payload } = await jwtVerify(t.access_token, jwks, {
      issuer: env.idp.issuer,
      audience: 'https://api.example.test',
    });
    assert.equal(payload.client_id, 'svc');
    // oidc-provider refuses to introspect structured tokens; they are verified with the JWKS.
    await assert.rejects(
      client.tokenIntrospection(svc, t.access_token),
      (e: { error?: string }) => e.error === 'unsupported_token_type',
    );

    env.rp.sessions.clear();
    await loginThroughIdp(`${env.rp.origin}/`, {
      jar: new CookieJar(),
      username: 'bob',
      password: 'bob',
    });
    const s = onlySession(env.rp);
    const before = await client.tokenIntrospection(env.rp.config(), s.accessToken);
    assert.equal(before.active, true);
    assert.equal(before.sub, 'bob');
    await client.tokenRevocation(env.rp.config(), s.accessToken);
    const afterRevoke = await client.tokenIntrospection(env.rp.config(), s.accessToken);
    assert.equal(afterRevoke.active, false);
  });

  test('an authorization request for the audience gets a JWT access token with identity claims', async () => {
    env.rp.sessions.clear();
    await loginThroughIdp(
      `${env.rp.origin}/?resource=${encodeURIComponent('https://api.example.test')}`,
      {
        jar: new CookieJar(),
        username: 'alice',
        password: 'alice',
      },
    );
    const s = onlySession(env.rp);
    const jwks = createRemoteJWKSet(new URL(env.rp.config().serverMetadata().jwks_uri!));
    const { payload } = await jwtVerify(s.accessToken, jwks, {
      issuer: env.idp.issuer,
      audience: 'https://api.example.test',
    });
    assert.equal(payload.sub, 'alice');
    assert.deepEqual(payload.groups, ['admins', 'eng']);
    assert.equal(payload.email, 'alice@example.com');
  });
});

test('disableUser makes refresh fail with invalid_grant and blocks login', async () => {
  const env = await rpWithIdp();
  try {
    await loginThroughIdp(`${env.rp.origin}/`, {
      jar: new CookieJar(),
      username: 'alice',
      password: 'alice',
    });
    const s = onlySession(env.rp);
    env.idp.disableUser('alice');
    await assert.rejects(
      client.refreshTokenGrant(env.rp.config(), s.refreshToken!),
      (e: { error?: string }) => e.error === 'invalid_grant',
    );
    const { final } = await loginThroughIdp(`${env.rp.origin}/`, {
      jar: new CookieJar(),
      username: 'alice',
      password: 'alice',
    });
    assert.equal(final.status, 401);
    assert.match(final.body, /disabled/);
  } finally {
    await env.close();
  }
});

test('removeClient makes the token endpoint answer invalid_client', async () => {
  const env = await rpWithIdp();
  try {
    await loginThroughIdp(`${env.rp.origin}/`, {
      jar: new CookieJar(),
      username: 'bob',
      password: 'bob',
    });
    const s = onlySession(env.rp);
    env.idp.removeClient(env.rp.clientId);
    await assert.rejects(
      client.refreshTokenGrant(env.rp.config(), s.refreshToken!),
      (e: { error?: string }) => e.error === 'invalid_client',
    );
  } finally {
    await env.close();
  }
});

describe('CookieJar', () => {
  test('domain, host-only, path, expiry and secure rules', () => {
    const jar = new CookieJar();
    const app = new URL('http://app.example.test/a/b');
    jar.setFrom(app, [
      'host=1',
      'dom=2; Domain=.example.test; Path=/',
      'deep=3; Path=/a/b',
      'sec=4; Secure',
      'gone=5; Max-Age=0',
      'other=6; Domain=evil.test',
      'ss=7; SameSite=Strict; HttpOnly; Max-Age=60',
    ]);
    assert.equal(jar.get('sec'), undefined, 'Secure refused over http');
    assert.equal(jar.get('other'), undefined, 'foreign domain refused');
    assert.equal(jar.get('gone'), undefined);
    assert.equal(
      jar.header(new URL('http://app.example.test/a/b/c')),
      'deep=3; host=1; ss=7; dom=2',
    );
    assert.equal(jar.header(new URL('http://sub.example.test/')), 'dom=2');
    assert.equal(jar.header(new URL('http://app.example.test/ab')), 'dom=2');
    const ss = jar.all().find((c) => c.name === 'ss')!;
    assert.equal(ss.sameSite, 'Strict');
    assert.equal(ss.httpOnly, true);
    assert.ok(ss.expires! > Date.now());
    jar.setFrom(app, ['dom=; Domain=example.test; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT']);
    assert.equal(jar.get('dom'), undefined);
    const tls = new URL('https://app.example.test/');
    jar.setFrom(tls, [
      '__Host-s=9; Secure; Path=/',
      '__Host-bad=1; Secure; Path=/; Domain=example.test',
    ]);
    assert.equal(jar.get('__Host-s'), '9');
    assert.equal(jar.get('__Host-bad'), undefined);
    assert.equal(jar.header(new URL('http://app.example.test/a/x')), 'host=1; ss=7');
    assert.equal(jar.get('host', 'other.example.test'), undefined);
  });
});

test('request sends any Host header and a raw request-target', async () => {
  const seen: Array<{ url?: string; host?: string }> = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url, host: req.headers.host });
    res.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  try {
    await request(`http://portal.example.test:${port}/x`, { rawPath: '/a/../b/%2e%2e/c?q=1' });
    await request(`http://127.0.0.1:${port}/y`, { headers: { host: 'spoofed.example.test' } });
    assert.deepEqual(seen, [
      { url: '/a/../b/%2e%2e/c?q=1', host: `portal.example.test:${port}` },
      { url: '/y', host: 'spoofed.example.test' },
    ]);
  } finally {
    server.close();
  }
});

describe('whoami upstream', () => {
  let w: Awaited<ReturnType<typeof startWhoami>>;
  before(async () => {
    w = await startWhoami({ name: 'upstream-a' });
  });
  after(() => w.close());

  test('echoes method, raw URL and headers as JSON or HTML', async () => {
    const r = await request(`${w.url}/anything/x?y=%2F`, {
      headers: {
        accept: 'application/json',
        'X-Forwarded-User': 'alice',
        'x-forwarded-groups': 'admins,eng',
      },
    });
    const j = r.json();
    assert.equal(j.method, 'GET');
    assert.equal(j.url, '/anything/x?y=%2F');
    assert.equal(j.httpVersion, '1.1');
    assert.equal(j.name, 'upstream-a');
    assert.equal(j.headers['x-forwarded-user'], 'alice');
    assert.ok(
      (j.rawHeaders as Array<[string, string]>).some(
        ([k, v]) => k === 'X-Forwarded-User' && v === 'alice',
      ),
    );
    assert.equal(r.headers['x-whoami-name'], 'upstream-a');

    const q = await request(`${w.url}/anything?format=json`);
    assert.equal(q.json().url, '/anything?format=json');

    const h = await request(`${w.url}/anything`, {
      headers: { accept: 'text/html', 'x-forwarded-email': 'a@example.com' },
    });
    assert.match(String(h.headers['content-type']), /text\/html/);
    assert.match(
      h.body,
      /<tr class="identity"><th>x-forwarded-email<\/th><td>a@example.com<\/td><\/tr>/,
    );
  });

  test('streams a 50 MB upload and reports its sha256', async () => {
    const total = 50 * 1024 * 1024;
    const chunk = randomBytes(64 * 1024);
    const hash = createHash('sha256');
    let sent = 0;
    const body = new Readable({
      read() {
        if (sent >= total) {
          this.push(null);
          return;
        }
        hash.update(chunk);
        sent += chunk.length;
        this.push(chunk);
      },
    });
    const result = await new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
      const req = http.request(
        `${w.url}/upload`,
        { method: 'POST', headers: { 'content-type': 'application/octet-stream' } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve(JSON.parse(text)));
        },
      );
      req.on('error', reject);
      body.pipe(req);
    });
    assert.equal(result.bytes, total);
    assert.equal(result.sha256, hash.digest('hex'));
  });

  test('sends five server-sent events 100 ms apart', async () => {
    const started = Date.now();
    const r = await request(`${w.url}/sse`, { headers: { accept: 'text/event-stream' } });
    assert.equal(r.headers['content-type'], 'text/event-stream');
    const events = r.body.split('\n\n').filter(Boolean);
    assert.equal(events.length, 5);
    assert.match(events[4]!, /^id: 5\nevent: tick\ndata: \{"n":5/);
    assert.ok(Date.now() - started >= 390);
  });

  test('/slow waits', async () => {
    const started = Date.now();
    const r = await request(`${w.url}/slow?ms=150`);
    assert.equal(r.status, 200);
    assert.ok(Date.now() - started >= 140);
  });

  test('echoes WebSocket text frames, answers pings and closes cleanly', async () => {
    const socket = net.connect(w.port, '127.0.0.1');
    const key = randomBytes(16).toString('base64');
    socket.write(
      `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${w.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-User: alice\r\n\r\n`,
    );
    const parser = new WsParser();
    const frames: WsFrame[] = [];
    let head = Buffer.alloc(0);
    let headers = '';
    const waiters: Array<() => void> = [];
    socket.on('data', (d: Buffer) => {
      if (!headers) {
        head = Buffer.concat([head, d]);
        const i = head.indexOf('\r\n\r\n');
        if (i < 0) return;
        headers = head.subarray(0, i).toString();
        d = head.subarray(i + 4);
      }
      frames.push(...parser.push(d));
      waiters.splice(0).forEach((f) => f());
    });
    const nextFrame = async (): Promise<WsFrame> => {
      while (!frames.length) await new Promise<void>((r) => waiters.push(r));
      return frames.shift()!;
    };
    const closed = new Promise<void>((r) => socket.on('close', () => r()));

    socket.write(wsFrame(0x1, Buffer.from('hello, upstream'), true));
    const echo = await nextFrame();
    assert.match(headers, /^HTTP\/1\.1 101/);
    const accept = createHash('sha1')
      .update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest('base64');
    assert.ok(headers.includes(`Sec-WebSocket-Accept: ${accept}`));
    assert.equal(echo.opcode, 0x1);
    assert.equal(echo.payload.toString(), 'hello, upstream');

    const big = 'x'.repeat(70_000);
    socket.write(wsFrame(0x1, Buffer.from(big), true));
    assert.equal((await nextFrame()).payload.toString(), big);

    socket.write(wsFrame(0x9, Buffer.from('p'), true));
    const pong = await nextFrame();
    assert.equal(pong.opcode, 0xa);
    assert.equal(pong.payload.toString(), 'p');

    socket.write(wsFrame(0x1, Buffer.from('__whoami__'), true));
    assert.equal(
      JSON.parse((await nextFrame()).payload.toString()).headers['x-forwarded-user'],
      'alice',
    );

    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    socket.write(wsFrame(0x8, code, true));
    const close = await nextFrame();
    assert.equal(close.opcode, 0x8);
    assert.equal(close.payload.readUInt16BE(0), 1000);
    await closed;
  });
});

test('headless Chromium logs in through the IdP form for a relying party on a mapped host name', async () => {
  const env = await rpWithIdp({ host: 'rp.example.test' });
  const browser = await launchBrowser(['rp.example.test']);
  try {
    const page = await browser.newPage();
    await page.goto(`${env.rp.origin}/`);
    await page.waitForSelector('#submit');
    assert.ok(page.url().startsWith(`${env.idp.issuer}/interaction/`), page.url());
    await page.fill('input[name=username]', 'alice');
    await page.fill('input[name=password]', 'alice');
    await Promise.all([page.waitForURL(`${env.rp.origin}/`), page.click('#submit')]);
    assert.equal(await page.textContent('#hello'), 'Hello Alice Example');
    const claims = JSON.parse((await page.textContent('#claims')) ?? '{}');
    assert.deepEqual(claims.groups, ['admins', 'eng']);
  } finally {
    await browser.close();
    await env.close();
  }
});
