// Logout initiated by the identity provider (OpenID Connect Back-Channel Logout 1.0,
// https://openid.net/specs/openid-connect-backchannel-1_0.html, and Front-Channel Logout 1.0,
// https://openid.net/specs/openid-connect-frontchannel-1_0.html): a user who signs out at the IdP
// (oidc-provider's end_session, which posts a Logout Token to backchannel_logout_uri) is signed
// out of Portcullis on every process sharing the session store; a Logout Token that is not
// exactly what §2.4/§2.6 describe is refused with a 400 and ends nothing.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { runProbe } from '../src/cli/probe.js';
import { parseConfig } from '../src/config/load.js';
import { CookieSessionStore } from '../src/session/cookie-store.js';
import { Sealer } from '../src/session/seal.js';
import type { SessionData } from '../src/session/types.js';
import { CookieJar, followRedirects, request, type Resp } from './helpers/http.js';
import { BROWSER_HEADERS, loginThroughIdp } from './helpers/login.js';
import { freePort } from './helpers/ports.js';
import {
  createTempDatabase,
  startProxy,
  startServeProcess,
  type Proxy,
  yamlOnPort,
  type ServeProcess,
  type TempDatabase,
} from './helpers/session-infra.js';
import { startStack, type Stack } from './helpers/stack.js';

const EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const JSON_HEADERS = { accept: 'application/json' };
const ROUTES = `routes:
  - from: http://app.corp.test:\${PORT}
    to: \${UPSTREAM}
    allow_any_authenticated_user: true
    pass_identity_headers: true
    pass_id_token: X-Id-Token
`;

/** The IdP's own outgoing requests, sent like every test client: to 127.0.0.1, Host from the URL. */
async function idpFetch(url: string, init: RequestInit): Promise<Response> {
  const headers: Record<string, string> = {};
  new Headers(init.headers).forEach((v, k) => (headers[k] = v));
  const body =
    init.body instanceof URLSearchParams ? init.body.toString() : (init.body as string | undefined);
  const r = await request(url, {
    method: init.method ?? 'GET',
    headers,
    ...(body !== undefined ? { body } : {}),
  });
  return new Response(r.status === 204 ? null : r.body, { status: r.status });
}

/** A log line of a `portcullis serve` process, once written (its lines are flushed within 50 ms). */
async function logLine(
  p: ServeProcess,
  match: (l: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown> | undefined> {
  for (let i = 0; i < 50 && !p.logs.some(match); i++) await new Promise((r) => setTimeout(r, 100));
  return p.logs.find(match);
}

/** Polls until the answer is not 200 (a replica hears of an ending within milliseconds). */
async function untilRefused(get: () => Promise<Resp>, withinMs = 5_000): Promise<Resp> {
  const t0 = Date.now();
  for (;;) {
    const resp = await get();
    if (resp.status !== 200 || Date.now() - t0 > withinMs) return resp;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function signIn(start: string, user: string, jar = new CookieJar()): Promise<CookieJar> {
  const login = await loginThroughIdp(start, { jar, username: user, password: user });
  assert.equal(login.final.status, 200, `${user} signed in`);
  return jar;
}

/** Signs out at the IdP the way the user's browser would (end_session, then its confirmation). */
async function signOutAtIdp(s: Stack, jar: CookieJar): Promise<void> {
  const out = await followRedirects(`${s.idp.issuer}/session/end`, {
    jar,
    headers: BROWSER_HEADERS,
  });
  assert.equal(out.final.status, 200);
  assert.match(out.final.body, /signed out of the Demo IdP/);
}

function postLogout(
  port: number,
  token: string,
  extra: Partial<Parameters<typeof request>[1]> = {},
) {
  return request(`http://app.corp.test:${port}/.portcullis/backchannel-logout`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ logout_token: token }).toString(),
    ...extra,
  });
}

function logoutClaims(s: Stack, claims: JWTPayload): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: s.idp.issuer,
    aud: 'portcullis',
    iat: now,
    exp: now + 120,
    jti: randomBytes(12).toString('base64url'),
    events: { [EVENT]: {} },
    ...claims,
  };
}

function signedLogout(s: Stack, claims: JWTPayload, header = { typ: 'logout+jwt' }) {
  return s.idp.signJwt(logoutClaims(s, claims), header);
}

for (const kind of ['redis', 'postgres'] as const) {
  describe(`back-channel logout with two Portcullis processes sharing ${kind}`, () => {
    let s: Stack;
    // The second one is its own `portcullis serve` process: it hears of the logout only
    // through the shared store.
    let b: ServeProcess;
    let db: TempDatabase | null = null;
    const prefix = `portcullis-bcl-${randomBytes(6).toString('hex')}:`;
    const app = (port: number, path = '/'): string => `http://app.corp.test:${port}${path}`;
    const get = (port: number, jar: CookieJar, headers = JSON_HEADERS) =>
      request(app(port), { jar, headers });

    before(async () => {
      let url: string;
      if (kind === 'postgres') {
        db = await createTempDatabase();
        url = db.url();
      } else {
        url = `redis://127.0.0.1:6379/0?key_prefix=${prefix}`;
      }
      const port = await freePort();
      const portB = await freePort();
      s = await startStack({
        port,
        hosts: ['app.corp.test'],
        body: `session_storage: "${url}"\n${ROUTES}`,
        idp: { backchannelLogout: true, fetch: idpFetch },
        client: {
          // Users sign in through either process.
          redirect_uris: [port, portB].map((p) => app(p, '/.portcullis/callback')),
          backchannel_logout_uri: `${app(port)}.portcullis/backchannel-logout`,
          backchannel_logout_session_required: true,
        },
      });
      b = await startServeProcess(yamlOnPort(s.yaml, s.port, portB), portB);
    });
    after(async () => {
      await Promise.allSettled([b?.close(), s?.close()]);
      if (db) await db.drop();
      else {
        const r = new Redis({ host: '127.0.0.1', port: 6379 });
        const keys = await r.keys(`${prefix}*`);
        if (keys.length) await r.del(...keys);
        r.disconnect();
      }
    });

    test('signing out at the IdP ends the session on both processes; another user keeps theirs', async () => {
      const alice = await signIn(app(s.port, '/a'), 'alice');
      // The same browser through the other process: one session, seen by both.
      assert.equal((await get(b.port, alice)).status, 200);
      const bob = await signIn(app(b.port, '/b'), 'bob');
      assert.equal((await get(s.port, bob)).status, 200);

      await signOutAtIdp(s, alice);

      const viaB = await untilRefused(() => get(b.port, alice));
      assert.equal(viaB.status, 401, 'refused through the process that did not get the logout');
      assert.equal((await get(s.port, alice)).status, 401);
      // A browser is sent to the IdP to sign in again.
      const page = await request(app(b.port, '/again'), { jar: alice, headers: BROWSER_HEADERS });
      assert.equal(page.status, 302);
      assert.ok(page.location?.startsWith(`${s.idp.issuer}/auth?`), page.location);

      assert.equal((await get(s.port, bob)).status, 200, "bob's session is untouched");
      assert.equal((await get(b.port, bob)).status, 200);

      const line = s.logs.find((l) => l.event === 'idp_logout');
      assert.ok(line, 'an audit line for the logout');
      assert.equal(line.channel, 'back');
      assert.equal(line.by, 'sid');
      assert.equal(line.ended, 1);
      assert.equal(line.iss, s.idp.issuer);
    });

    test('a Logout Token naming only the user (sub) ends every session of that user', async () => {
      const phone = await signIn(app(s.port, '/p'), 'alice');
      const laptop = await signIn(app(b.port, '/l'), 'alice');
      const bob = await signIn(app(s.port, '/b2'), 'bob');
      // What an admin ending the user's IdP sessions sends: no sid, the user's sub.
      const r = await postLogout(b.port, await signedLogout(s, { sub: 'alice' }));
      assert.equal(r.status, 200, r.body);
      assert.equal(r.headers['cache-control'], 'no-store');
      for (const jar of [phone, laptop]) {
        assert.equal((await untilRefused(() => get(s.port, jar))).status, 401);
        assert.equal((await get(b.port, jar)).status, 401);
      }
      assert.equal((await get(s.port, bob)).status, 200);
      assert.equal((await get(b.port, bob)).status, 200);
      const line = await logLine(b, (l) => l.event === 'idp_logout' && l.by === 'sub');
      assert.equal(line?.ended, 2);
      assert.equal(line?.user, 'alice');
    });

    test('a Logout Token naming a sid ends that IdP session only, not the same user elsewhere', async () => {
      const one = await signIn(app(s.port, '/1'), 'alice');
      const other = await signIn(app(s.port, '/2'), 'alice');
      const sidOf = async (jar: CookieJar): Promise<string> => {
        const r = await get(s.port, jar);
        const sid = decodeJwt(r.json().headers['x-id-token'] as string).sid;
        assert.equal(typeof sid, 'string');
        return sid as string;
      };
      const sid = await sidOf(one);
      assert.notEqual(sid, await sidOf(other), 'two browsers, two IdP sessions');
      const r = await postLogout(s.port, await signedLogout(s, { sid, sub: 'alice' }));
      assert.equal(r.status, 200, r.body);
      assert.equal((await untilRefused(() => get(b.port, one))).status, 401);
      assert.equal((await get(b.port, other)).status, 200);
      assert.equal((await get(s.port, other)).status, 200);
    });

    test('portcullis probe says the IdP advertises back-channel logout', async () => {
      const checks = await runProbe(parseConfig(s.yaml, 'test.yaml'));
      const discovery = checks.find((c) => c.check === 'idp_discovery');
      assert.equal(discovery?.status, 'ok');
      assert.match(discovery?.detail ?? '', /; back-channel logout supported$/);
    });

    test('a Logout Token replayed through either process is refused (its jti is spent)', async () => {
      const token = await signedLogout(s, { sub: 'nobody-in-particular' });
      assert.equal((await postLogout(s.port, token)).status, 200);
      for (const port of [s.port, b.port]) {
        const again = await postLogout(port, token);
        assert.equal(again.status, 400);
        assert.equal(again.json().error, 'invalid_request');
        assert.match(again.json().error_description, /already used/);
      }
    });

    test('tokens that are not Logout Tokens from this IdP for this client get 400 and end nothing', async () => {
      const alice = await signIn(app(s.port, '/x'), 'alice');
      const sid = decodeJwt((await get(s.port, alice)).json().headers['x-id-token'] as string)
        .sid as string;
      const now = Math.floor(Date.now() / 1000);
      const other = await generateKeyPair('RS256');
      const idpKid = (decodeJwtHeader(await signedLogout(s, { sub: 'alice' })).kid ?? '') as string;
      const forged = await new SignJWT(logoutClaims(s, { sub: 'alice', sid }))
        .setProtectedHeader({ alg: 'RS256', kid: idpKid, typ: 'logout+jwt' })
        .sign(other.privateKey);
      const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const unsigned = `${b64({ alg: 'none', typ: 'logout+jwt' })}.${b64(logoutClaims(s, { sub: 'alice', sid }))}.`;
      const embedded = await new SignJWT(logoutClaims(s, { sub: 'alice', sid }))
        .setProtectedHeader({
          alg: 'RS256',
          typ: 'logout+jwt',
          jwk: await exportJWK(other.publicKey),
        })
        .sign(other.privateKey);
      const cases: Array<[string, string, RegExp]> = [
        ['signed with a key that is not the IdP’s', forged, /signature/],
        ['unsigned (alg none)', unsigned, /algorithm/],
        ['signed with a key it carries itself', embedded, /signature/],
        [
          'for another client (aud)',
          await signedLogout(s, { sub: 'alice', sid, aud: 'someone-else' }),
          /aud/,
        ],
        [
          'from another issuer',
          await signedLogout(s, { sub: 'alice', sid, iss: 'http://127.0.0.1:1/evil' }),
          /configured identity provider/,
        ],
        [
          'without events',
          await signedLogout(s, { sub: 'alice', sid, events: undefined }),
          /events/,
        ],
        [
          'with another event',
          await signedLogout(s, {
            sub: 'alice',
            sid,
            events: { 'http://schemas.openid.net/event/other': {} },
          }),
          /events/,
        ],
        [
          'with the event not a JSON object',
          await signedLogout(s, { sub: 'alice', sid, events: { [EVENT]: 'yes' } }),
          /JSON object/,
        ],
        [
          'with a nonce (an ID token)',
          await signedLogout(s, { sub: 'alice', sid, nonce: 'n' }),
          /nonce/,
        ],
        ['naming neither sid nor sub', await signedLogout(s, {}), /neither a sid nor a sub/],
        ['without jti', await signedLogout(s, { sub: 'alice', sid, jti: undefined }), /jti/],
        ['without iat', await signedLogout(s, { sub: 'alice', sid, iat: undefined }), /iat/],
        [
          'issued an hour ago',
          await signedLogout(s, { sub: 'alice', sid, iat: now - 3600, exp: now + 60 }),
          /issued more than 300 s ago/,
        ],
        [
          'expired',
          await signedLogout(s, { sub: 'alice', sid, iat: now - 200, exp: now - 100 }),
          /expired|exp/,
        ],
        [
          'typed as an access token',
          await signedLogout(s, { sub: 'alice', sid }, { typ: 'at+jwt' }),
          /typ/,
        ],
        ['not a JWT', 'not-a-jwt', /not a JWT/],
      ];
      for (const [what, token, reason] of cases) {
        const r = await postLogout(s.port, token);
        assert.equal(r.status, 400, `${what}: ${r.body}`);
        assert.equal(r.headers['cache-control'], 'no-store', what);
        assert.equal(r.json().error, 'invalid_request', what);
        assert.match(r.json().error_description, reason, what);
      }
      const plain = await request(app(s.port, '/.portcullis/backchannel-logout'), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ logout_token: forged }),
      });
      assert.equal(plain.status, 400);
      assert.match(plain.json().error_description, /x-www-form-urlencoded/);
      const twice = await request(app(s.port, '/.portcullis/backchannel-logout'), {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `logout_token=${forged}&logout_token=${forged}`,
      });
      assert.equal(twice.status, 400);
      assert.match(twice.json().error_description, /more than once/);
      const none = await postLogout(s.port, '');
      assert.equal(none.status, 400);
      assert.match(none.json().error_description, /missing/);
      const viaGet = await request(app(s.port, '/.portcullis/backchannel-logout'), {
        headers: JSON_HEADERS,
      });
      assert.equal(viaGet.status, 405);

      // Nothing was ended.
      assert.equal((await get(s.port, alice)).status, 200);
      assert.equal((await get(b.port, alice)).status, 200);
      assert.ok(s.logs.some((l) => l.event === 'idp_logout_refused'));
    });

    test('front-channel logout: the IdP frames the page with iss and sid, and the session ends on both processes', async () => {
      const alice = await signIn(app(s.port, '/f'), 'alice');
      const bob = await signIn(app(s.port, '/g'), 'bob');
      const sid = decodeJwt((await get(s.port, alice)).json().headers['x-id-token'] as string)
        .sid as string;
      const q = new URLSearchParams({ iss: s.idp.issuer, sid });
      const wrongIss = await request(
        app(b.port, `/.portcullis/frontchannel-logout?iss=http://127.0.0.1:1&sid=${sid}`),
        { headers: BROWSER_HEADERS },
      );
      assert.equal(wrongIss.status, 400);
      const noSid = await request(
        app(b.port, `/.portcullis/frontchannel-logout?iss=${encodeURIComponent(s.idp.issuer)}`),
        { headers: BROWSER_HEADERS },
      );
      assert.equal(noSid.status, 400);
      const twice = await request(app(b.port, `/.portcullis/frontchannel-logout?${q}&${q}`), {
        headers: BROWSER_HEADERS,
      });
      assert.equal(twice.status, 400);
      assert.equal((await get(s.port, alice)).status, 200, 'nothing ended by a bad request');

      const r = await request(app(b.port, `/.portcullis/frontchannel-logout?${q}`), {
        headers: BROWSER_HEADERS,
      });
      assert.equal(r.status, 200);
      assert.match(r.body, /Signed out/);
      // Front-Channel Logout 1.0 §2: "Cache-Control: no-cache, no-store" and "Pragma: no-cache".
      assert.equal(r.headers['cache-control'], 'no-cache, no-store');
      assert.equal(r.headers.pragma, 'no-cache');
      // Framable by the IdP, and only by it (and ourselves): no X-Frame-Options DENY here.
      assert.equal(r.headers['x-frame-options'], undefined);
      assert.match(
        String(r.headers['content-security-policy']),
        new RegExp(`frame-ancestors 'self' ${s.idp.issuer.replaceAll('.', '\\.')}(;|$)`),
      );
      assert.equal((await untilRefused(() => get(s.port, alice))).status, 401);
      assert.equal((await get(b.port, alice)).status, 401);
      assert.equal((await get(s.port, bob)).status, 200);
      // Microsoft Entra ID sends sid alone (no iss): with one IdP configured, it is that IdP's.
      const bobSid = decodeJwt((await get(s.port, bob)).json().headers['x-id-token'] as string)
        .sid as string;
      const entra = await request(
        app(s.port, `/.portcullis/frontchannel-logout?sid=${encodeURIComponent(bobSid)}`),
        { headers: BROWSER_HEADERS },
      );
      assert.equal(entra.status, 200);
      assert.equal((await untilRefused(() => get(b.port, bob))).status, 401);
      // Every other page of ours still refuses to be framed.
      const other = await request(app(s.port, '/.portcullis/signed_out'), {
        headers: BROWSER_HEADERS,
      });
      assert.equal(other.headers['x-frame-options'], 'DENY');
      assert.ok(await logLine(b, (l) => l.event === 'idp_logout' && l.channel === 'front'));
    });
  });
}

describe('back-channel logout with the memory store (one process)', () => {
  let s: Stack;
  const app = (port: number, path = '/'): string => `http://app.corp.test:${port}${path}`;
  before(async () => {
    const port = await freePort();
    s = await startStack({
      port,
      hosts: ['app.corp.test'],
      body: `session_storage: memory\n${ROUTES}`,
      idp: { backchannelLogout: true, fetch: idpFetch },
      client: { backchannel_logout_uri: `${app(port)}.portcullis/backchannel-logout` },
    });
  });
  after(async () => {
    await s?.close();
  });

  test('signing out at the IdP ends the session; a body too large is refused', async () => {
    const alice = await signIn(app(s.port, '/a'), 'alice');
    const bob = await signIn(app(s.port, '/b'), 'bob');
    const big = await postLogout(s.port, 'x'.repeat(70_000));
    assert.equal(big.status, 400);
    assert.match(big.json().error_description, /larger than/);
    await signOutAtIdp(s, alice);
    const get = (jar: CookieJar) => request(app(s.port), { jar, headers: JSON_HEADERS });
    assert.equal((await get(alice)).status, 401);
    assert.equal((await get(bob)).status, 200);
    assert.equal(s.logs.find((l) => l.event === 'idp_logout')?.ended, 1);
  });
});

describe('back-channel logout with the cookie store', () => {
  let s: Stack;
  let b: Proxy;
  const app = (port: number, path = '/'): string => `http://app.corp.test:${port}${path}`;
  const get = (port: number, jar: CookieJar) => request(app(port), { jar, headers: JSON_HEADERS });

  before(async () => {
    const port = await freePort();
    s = await startStack({
      port,
      hosts: ['app.corp.test'],
      body: ROUTES,
      idp: { backchannelLogout: true, fetch: idpFetch },
      client: { backchannel_logout_uri: `${app(port)}.portcullis/backchannel-logout` },
    });
    b = await startProxy(yamlOnPort(s.yaml, s.port, await freePort()), 'replica.yaml');
  });
  after(async () => {
    await Promise.allSettled([b?.close(), s?.close()]);
  });

  test('the process that receives the logout refuses the session from then on; a new sign-in works', async () => {
    const alice = await signIn(app(s.port, '/a'), 'alice');
    const copied = alice.header(new URL(app(b.port)));
    const bob = await signIn(app(s.port, '/b'), 'bob');
    await signOutAtIdp(s, alice);
    assert.equal((await get(s.port, alice)).status, 401);
    assert.equal((await get(s.port, bob)).status, 200);
    const line = s.logs.find((l) => l.event === 'idp_logout');
    assert.match(String(line?.ended), /cookie store/);
    // As docs/identity-providers.md says: a cookie-store session lives only in the browser, and
    // a replica that did not receive the logout has no way to know of it.
    const viaB = await request(app(b.port), { headers: { ...JSON_HEADERS, cookie: copied } });
    assert.equal(viaB.status, 200);
    // Signing in again after the logout gives a session the logout does not touch.
    await signIn(app(s.port, '/c'), 'alice', alice);
    assert.equal((await get(s.port, alice)).status, 200);
  });

  test('a logout for a user (sub) refuses all of their sessions in this process', async () => {
    const one = await signIn(app(s.port, '/1'), 'bob');
    const two = await signIn(app(s.port, '/2'), 'bob');
    const r = await postLogout(s.port, await signedLogout(s, { sub: 'bob' }));
    assert.equal(r.status, 200, r.body);
    assert.equal((await get(s.port, one)).status, 401);
    assert.equal((await get(s.port, two)).status, 401);
  });
});

describe('the cookie store’s list of logouts is bounded and fails safe', () => {
  const session = (sub: string, iat: number, idpSid?: string): SessionData => ({
    v: 1,
    sid: randomBytes(18).toString('base64url'),
    sub,
    claims: {},
    iat,
    exp: iat + 3600_000,
    idpIss: 'https://idp.test',
    ...(idpSid ? { idpSid } : {}),
  });

  test('past its bound, older sessions are refused rather than a logout forgotten', async () => {
    const overflows: number[] = [];
    const store = new CookieSessionStore(
      new Sealer(randomBytes(32)),
      '_portcullis',
      3600_000,
      (floor) => overflows.push(floor),
      2,
    );
    const t0 = Date.now() - 60_000;
    const carol = await store.save(session('carol', t0, 'sid-c'));
    const dave = await store.save(session('dave', t0 + 10, 'sid-d'));
    const erin = await store.save(session('erin', t0 + 20));
    const later = await store.save(session('frank', t0 + 50_000));
    const now = t0 + 30_000;
    await store.endByIdp({ iss: 'https://idp.test', sid: 'sid-c', at: t0 + 1 }, now);
    assert.equal(await store.load(carol, now), null, 'carol is logged out');
    assert.ok(await store.load(dave, now), 'dave is not');
    // Two more logouts than the list holds: carol's entry is folded into a floor.
    await store.endByIdp({ iss: 'https://idp.test', sub: 'x', at: t0 + 2 }, now);
    await store.endByIdp({ iss: 'https://idp.test', sub: 'y', at: t0 + 15 }, now);
    assert.deepEqual(overflows, [t0 + 1]);
    assert.equal(await store.load(carol, now), null, 'still refused after its entry went');
    assert.ok(await store.load(dave, now), 'started after the floor: kept');
    await store.endByIdp({ iss: 'https://idp.test', sub: 'z', at: t0 + 25 }, now);
    await store.endByIdp({ iss: 'https://idp.test', sub: 'w', at: t0 + 26 }, now);
    assert.deepEqual(overflows, [t0 + 1, t0 + 2, t0 + 15]);
    assert.equal(await store.load(dave, now), null, 'the floor moved past dave');
    assert.ok(await store.load(erin, now), 'erin started after every forgotten logout');
    assert.ok(await store.load(later, now));
  });
});

function decodeJwtHeader(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
}
