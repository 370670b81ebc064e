// Typed outcomes: an outage is a 503 whose code says which dependency was down, chosen by the
// decision's cause (never by the wording of a reason), and every code has one status and title.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import type { AuthRequest } from '../src/authenticate/flow.js';
import { parseConfig } from '../src/config/load.js';
import { decide, type Decision } from '../src/decide/decide.js';
import { RouteTable } from '../src/decide/route-table.js';
import type { RequestContext, UnavailableCause } from '../src/decide/types.js';
import { codes, outcomeStatus } from '../src/http/outcomes.js';
import { renderRefusal, unavailableCode } from '../src/http/refusal.js';
import { StoreUnavailableError } from '../src/session/types.js';

const cfg = parseConfig(
  `address: 127.0.0.1:4180
insecure_server: true
cookie_secret: ${Buffer.alloc(32, 7).toString('base64')}
idp_provider_url: http://127.0.0.1:9/
idp_client_id: x
idp_client_secret: y
routes:
  - from: http://app.test
    allow_any_authenticated_user: true
`,
  'outcomes.yaml',
);

const ctx: RequestContext = {
  method: 'GET',
  scheme: 'http',
  host: 'app.test',
  port: 80,
  path: '/x',
  query: '',
  clientIp: '127.0.0.1',
  headers: { accept: 'application/json' },
  browser: false,
  now: Date.now(),
  clientCert: undefined,
};

test('decide(): a store outage and an IdP refresh outage are told apart by cause, not by text', async () => {
  const routes = new RouteTable(cfg.routes);
  const failing = (source: 'session_store' | 'idp_refresh') => ({
    lookup: async () => {
      // The message is deliberately misleading: only the typed source may decide.
      throw new StoreUnavailableError('the session store said something', { source });
    },
  });
  for (const source of ['session_store', 'idp_refresh'] as const) {
    const d = await decide(ctx, { routes, sessions: failing(source) });
    assert.equal(d.kind, 'unavailable');
    assert.equal((d as Extract<Decision, { kind: 'unavailable' }>).cause, source);
  }
  const tokens = {
    authenticate: async () => ({
      kind: 'unavailable' as const,
      cause: 'idp_keys' as const,
      reason: 'jwks down',
    }),
  };
  const d = await decide(ctx, { routes, sessions: failing('session_store'), tokens });
  assert.deepEqual(
    d.kind === 'unavailable' && d.cause,
    'idp_keys',
    'a presented token is judged on its own',
  );
});

test('each cause is answered with its own code, a 503 and Retry-After', async () => {
  let cause: UnavailableCause = 'session_store';
  const server = http.createServer((req, res) => {
    const a = { ctx, req, res, requestId: 'r1', setCookies: [] } as unknown as AuthRequest;
    void renderRefusal(a, {
      kind: 'unavailable',
      route: null,
      cause,
      reason: 'the session store is unavailable',
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  try {
    const expected: Record<UnavailableCause, string> = {
      session_store: 'session_store_unavailable',
      idp_refresh: 'idp_unavailable',
      idp_keys: 'token_check_unavailable',
      idp_introspection: 'token_check_unavailable',
      directory: 'directory_unavailable',
    };
    for (const [c, code] of Object.entries(expected) as Array<[UnavailableCause, string]>) {
      cause = c;
      const res = await fetch(`http://127.0.0.1:${port}/`);
      assert.equal(res.status, 503, c);
      assert.equal(res.headers.get('retry-after'), '5');
      const body = (await res.json()) as { error: string; message: string };
      assert.equal(body.error, code, c);
      assert.equal(unavailableCode(c), code);
      if (c === 'idp_refresh') assert.match(body.message, /identity provider/);
      if (c === 'directory') assert.match(body.message, /group memberships .* directory/);
    }
  } finally {
    server.close();
  }
});

test('the outcome table: every code is its own name, with a 4xx or 5xx status', () => {
  for (const [name, value] of Object.entries(codes)) {
    assert.equal(value, name);
    const status = outcomeStatus(value);
    if (value === codes.signed_out) assert.equal(status, 200);
    else assert.ok(status >= 400 && status < 600, `${name}: ${status}`);
  }
  assert.equal(outcomeStatus(codes.wrong_host), 403, 'nginx turns anything but 401/403 into a 500');
  assert.ok(Object.isFrozen(codes));
});

test('an unreachable IdP is told from an IdP that answered, by error type (openid-client), not message', async () => {
  const { startIdp } = await import('../demo/idp.js');
  const client = await import('openid-client');
  const { isUnreachable } = await import('../src/identity/oidc.js');
  const idp = await startIdp({
    clients: [
      { client_id: 'c', client_secret: 's'.repeat(32), redirect_uris: ['http://app.test/cb'] },
    ],
  });
  try {
    const config = await client.discovery(new URL(idp.issuer), 'c', 's'.repeat(32), undefined, {
      execute: [client.allowInsecureRequests],
    });
    // The IdP answers: an unknown refresh token is its refusal (invalid_grant), not an outage.
    const answered = await client.refreshTokenGrant(config, 'made-up').then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(answered instanceof client.ResponseBodyError, String(answered));
    assert.equal(isUnreachable(answered), false);
    // Nothing listens any more: an outage, however the error words it.
    await idp.close();
    const refused = await client.refreshTokenGrant(config, 'made-up').then(
      () => null,
      (e: unknown) => e,
    );
    assert.equal(isUnreachable(refused), true, String(refused));
    assert.equal(
      isUnreachable(
        new client.ClientError('operation timed out', { code: 'OAUTH_TIMEOUT' } as ErrorOptions),
      ),
      true,
    );
    assert.equal(
      isUnreachable(new Error('fetch failed: ECONNREFUSED timeout aborted')),
      false,
      'words decide nothing',
    );
  } finally {
    await idp.close().catch(() => undefined);
  }
});
