import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { Agent, request } from 'undici';
import type { Config } from '../config/types.js';
import { isPingable, withTimeout } from '../observe/health.js';
import type { SessionStore } from '../session/types.js';
import { timed, type ProbeCheck, type ProbeStatus } from './probe-check.js';
import { githubChecks, providerChecks } from './probe-providers.js';

export type { ProbeCheck, ProbeStatus } from './probe-check.js';

// `portcullis probe`: the synthetic check the field reports ask for: a deleted IdP client that health checks miss. A container
// health check only proves the process is up; this proves a login could work right now: the
// IdP answers, its keys are there, it still accepts our client id and secret, every upstream
// answers, and the session store takes a write.

export interface ProbeOptions {
  timeoutMs?: number;
  /** The configured session store, when one was built (closed by the caller). */
  store?: SessionStore | null;
  /** The redirect URI sent with the made-up code; any registered one. */
  redirectUri?: string;
  /** What the checks fetch with (tests hand in a stand-in's); the global fetch otherwise. */
  fetch?: typeof fetch;
}

/** A TCP route's upstream (tcp://host:port) is up when it accepts a connection; nothing is sent. */
function tcpAccepts(url: URL, timeoutMs: number): Promise<{ status: ProbeStatus; detail: string }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) });
    s.setTimeout(timeoutMs, () => {
      s.destroy();
      reject(Object.assign(new Error('timed out'), { name: 'TimeoutError' }));
    });
    s.once('connect', () => {
      s.destroy();
      resolve({ status: 'ok', detail: 'accepted a TCP connection' });
    });
    s.once('error', reject);
  });
}

/** application/x-www-form-urlencoded as RFC 6749 §2.3.1 wants it for Basic client credentials. */
function formEncode(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
}

/**
 * Discovery, keys and client credentials of one OpenID provider. Checks of the IdPs after the
 * first (`idps:`) carry its id (`idp_client:partner`), so the one that fails is named.
 */
async function probeIdp(
  idp: Config['idp'],
  suffix: string,
  o: ProbeOptions,
  timeout: number,
  f: typeof fetch,
): Promise<ProbeCheck[]> {
  const out: ProbeCheck[] = [];
  const issuer = idp.issuer.href;
  const discoveryUrl = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  let md: Record<string, unknown> | null = null;

  out.push(
    await timed(`idp_discovery${suffix}`, discoveryUrl, async () => {
      const res = await f(discoveryUrl, {
        signal: AbortSignal.timeout(timeout),
        headers: { accept: 'application/json' },
      });
      if (!res.ok)
        return {
          status: 'fail',
          detail: `answered HTTP ${res.status}${res.status === 404 ? ' (wrong idp_provider_url, or the provider/application was deleted or renamed)' : ''}`,
        };
      const doc = (await res.json()) as Record<string, unknown>;
      const said = String(doc.issuer ?? '');
      if (said.replace(/\/$/, '') !== issuer.replace(/\/$/, ''))
        return {
          status: 'fail',
          detail: `the IdP calls itself ${JSON.stringify(said)}, not ${issuer}: set idp_provider_url to exactly that`,
        };
      if (typeof doc.token_endpoint !== 'string' || typeof doc.jwks_uri !== 'string')
        return {
          status: 'fail',
          detail: 'the discovery document has no token_endpoint or jwks_uri',
        };
      md = doc;
      // What the IdP advertises (Back-Channel Logout 1.0 §2.1, Front-Channel Logout 1.0 §3):
      // which logout URI to register (docs/identity-providers.md).
      const logout =
        doc.backchannel_logout_supported === true
          ? 'back-channel logout supported'
          : doc.frontchannel_logout_supported === true
            ? 'front-channel logout only'
            : 'no logout from the IdP advertised';
      return { status: 'ok', detail: `issuer ${said}; ${logout}` };
    }),
  );

  const meta = md as Record<string, unknown> | null;
  if (!meta) {
    out.push({
      check: `idp_jwks${suffix}`,
      target: issuer,
      status: 'skip',
      ms: 0,
      detail: 'discovery failed',
    });
    out.push({
      check: `idp_client${suffix}`,
      target: idp.clientId,
      status: 'skip',
      ms: 0,
      detail: 'discovery failed',
    });
  } else {
    const jwksUri = String(meta.jwks_uri);
    out.push(
      await timed(`idp_jwks${suffix}`, jwksUri, async () => {
        const res = await f(jwksUri, {
          signal: AbortSignal.timeout(timeout),
          headers: { accept: 'application/json' },
        });
        if (!res.ok) return { status: 'fail', detail: `answered HTTP ${res.status}` };
        const keys = ((await res.json()) as { keys?: unknown[] }).keys;
        if (!Array.isArray(keys) || !keys.length)
          return { status: 'fail', detail: 'the key set is empty: no ID token could be verified' };
        return {
          status: 'ok',
          detail: `${keys.length} signing key${keys.length === 1 ? '' : 's'}`,
        };
      }),
    );
    const tokenUrl = String(meta.token_endpoint);
    out.push(
      await timed(`idp_client${suffix}`, `${idp.clientId} at ${tokenUrl}`, async () => {
        // A made-up authorization code: a client the IdP still knows, with the right secret, gets
        // invalid_grant (the code is wrong); a deleted client or a wrong secret gets invalid_client.
        const body = new URLSearchParams({
          grant_type: 'authorization_code',
          code: `portcullis-probe-${randomBytes(12).toString('hex')}`,
          redirect_uri: o.redirectUri ?? `${issuer.replace(/\/$/, '')}/probe`,
        });
        const res = await f(tokenUrl, {
          method: 'POST',
          signal: AbortSignal.timeout(timeout),
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            accept: 'application/json',
            authorization: `Basic ${Buffer.from(`${formEncode(idp.clientId)}:${formEncode(idp.clientSecret)}`).toString('base64')}`,
          },
          body,
        });
        let error = '';
        try {
          error = String(((await res.json()) as { error?: unknown }).error ?? '');
        } catch {
          // not JSON: reported by status below
        }
        if (error === 'invalid_grant')
          return {
            status: 'ok',
            detail: 'client id and secret accepted (invalid_grant for a made-up code, as expected)',
          };
        if (error === 'invalid_client')
          return {
            status: 'fail',
            detail:
              'invalid_client: the IdP no longer accepts this client id and secret (the client was deleted, or the secret is wrong or was mangled on its way into the config); logins will fail',
          };
        if (error === 'unauthorized_client')
          return {
            status: 'fail',
            detail:
              'unauthorized_client: the client exists but may not use the authorization code flow',
          };
        if (res.ok)
          return {
            status: 'fail',
            detail: `the token endpoint accepted a made-up code (HTTP ${res.status}): this is not a standard OpenID provider`,
          };
        return {
          status: 'fail',
          detail: `unexpected answer HTTP ${res.status}${error ? ` ${error}` : ''}`,
        };
      }),
    );
  }
  return out;
}

export async function runProbe(cfg: Config, o: ProbeOptions = {}): Promise<ProbeCheck[]> {
  const timeout = o.timeoutMs ?? 5000;
  const f = o.fetch ?? fetch;
  const out: ProbeCheck[] = [];
  for (const [i, idp] of cfg.idps.entries()) {
    const suffix = i === 0 ? '' : `:${idp.id}`;
    out.push(
      ...(idp.provider === 'github'
        ? await githubChecks(idp, suffix, f)
        : await probeIdp(idp, suffix, o, timeout, f)),
      ...(await providerChecks(idp, suffix, f)),
    );
  }

  // One request per distinct upstream, as the proxy would make it (same TLS settings).
  const seen = new Map<string, string[]>();
  const upstreams: Array<{ url: URL; route: string; skip: boolean; ca: string | undefined }> = [];
  for (const r of cfg.routes) {
    for (const u of r.to) {
      const k = `${u.href} ${r.tlsSkipVerify} ${r.tlsCa ?? ''}`;
      const ids = seen.get(k);
      if (ids) ids.push(r.id);
      else {
        seen.set(k, [r.id]);
        upstreams.push({ url: u, route: r.id, skip: r.tlsSkipVerify, ca: r.tlsCa });
      }
    }
  }
  out.push(
    ...(await Promise.all(
      upstreams.map((u) => {
        const ids = seen.get(`${u.url.href} ${u.skip} ${u.ca ?? ''}`)!;
        return timed('upstream', `${ids.join(',')} ${u.url.href}`, async () => {
          if (u.url.protocol === 'tcp:') return tcpAccepts(u.url, timeout);
          const dispatcher = new Agent({
            connect: { rejectUnauthorized: !u.skip, ...(u.ca ? { ca: u.ca } : {}), timeout },
            headersTimeout: timeout,
            bodyTimeout: timeout,
          });
          try {
            const res = await request(u.url, {
              method: 'GET',
              dispatcher,
              headers: { 'user-agent': 'portcullis-probe' },
            });
            await res.body.dump();
            if (res.statusCode >= 500)
              return { status: 'fail', detail: `answered HTTP ${res.statusCode}` };
            return { status: 'ok', detail: `answered HTTP ${res.statusCode}` };
          } finally {
            await dispatcher.close();
          }
        });
      }),
    )),
  );

  const store = o.store;
  if (!store || store.kind === 'cookie') {
    out.push({
      check: 'session_store',
      target: store?.kind ?? 'cookie',
      status: 'skip',
      ms: 0,
      detail: 'sessions live in the browser cookie: nothing to reach',
    });
  } else {
    out.push(
      await timed('session_store', store.kind, async () => {
        if (isPingable(store)) await withTimeout(store.ping(), timeout, `the ${store.kind} store`);
        const now = Date.now();
        const sid = randomBytes(12).toString('base64url');
        const value = await withTimeout(
          store.save({
            v: 1,
            sid,
            sub: 'portcullis-probe',
            claims: {},
            iat: now,
            exp: now + 60_000,
          }),
          timeout,
          `writing to the ${store.kind} store`,
        );
        const back = await withTimeout(
          store.load(value, now),
          timeout,
          `reading from the ${store.kind} store`,
        );
        await withTimeout(
          store.destroy(value),
          timeout,
          `deleting from the ${store.kind} store`,
        ).catch(() => {});
        if (!back || back.sid !== sid)
          return { status: 'fail', detail: 'a session written could not be read back' };
        return { status: 'ok', detail: 'write, read and delete of a probe session' };
      }),
    );
  }
  return out;
}

export function probeOk(checks: ProbeCheck[]): boolean {
  return checks.every((c) => c.status !== 'fail');
}

export function formatText(checks: ProbeCheck[], totalMs: number): string {
  const name = Math.max(...checks.map((c) => c.check.length));
  const lines = checks.map(
    (c) =>
      `${c.status.toUpperCase().padEnd(4)}  ${c.check.padEnd(name)}  ${`${c.ms} ms`.padStart(9)}  ${c.target}: ${c.detail}`,
  );
  const failed = checks.filter((c) => c.status === 'fail').length;
  const skipped = checks.filter((c) => c.status === 'skip').length;
  lines.push(
    `${failed ? 'FAILED' : 'OK'}: ${checks.length} checks, ${checks.length - failed - skipped} ok, ${failed} failed, ${skipped} skipped in ${Math.round(totalMs)} ms`,
  );
  return lines.join('\n');
}

export function formatJson(checks: ProbeCheck[], totalMs: number): string {
  return JSON.stringify({ ok: probeOk(checks), ms: Math.round(totalMs), checks }, null, 2);
}

/** Prometheus text format, for node_exporter's textfile collector or a Pushgateway. */
export function formatPrometheus(checks: ProbeCheck[], now = Date.now()): string {
  const esc = (s: string): string =>
    s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  const label = (c: ProbeCheck): string => `check="${esc(c.check)}",target="${esc(c.target)}"`;
  const run = checks.filter((c) => c.status !== 'skip');
  return [
    '# HELP portcullis_probe_success 1 when the check passed, 0 when it failed.',
    '# TYPE portcullis_probe_success gauge',
    ...run.map((c) => `portcullis_probe_success{${label(c)}} ${c.status === 'ok' ? 1 : 0}`),
    '# HELP portcullis_probe_duration_seconds How long the check took.',
    '# TYPE portcullis_probe_duration_seconds gauge',
    ...run.map((c) => `portcullis_probe_duration_seconds{${label(c)}} ${c.ms / 1000}`),
    '# HELP portcullis_probe_ok 1 when every check passed.',
    '# TYPE portcullis_probe_ok gauge',
    `portcullis_probe_ok ${probeOk(checks) ? 1 : 0}`,
    '# HELP portcullis_probe_last_run_timestamp_seconds When the probe ran.',
    '# TYPE portcullis_probe_last_run_timestamp_seconds gauge',
    `portcullis_probe_last_run_timestamp_seconds ${Math.floor(now / 1000)}`,
    '',
  ].join('\n');
}
