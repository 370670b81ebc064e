import * as client from 'openid-client';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Idp } from '../identity/oidc.js';
import type { UpstreamStatus } from './health.js';

// One registry per Portcullis instance (tests run several in one process, and a reload must
// not re-register anything). Children are cached per label set: prom-client's labels() builds
// and validates a label object on every call, which the hot path should not pay.

type Inc = { inc(v?: number): void };
type Observe = { observe(v: number): void };

const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** Login failure reasons are partly chosen by the IdP (the `error` parameter): bounded here so a hostile callback cannot mint series. */
const KNOWN_FAILURES = new Set([
  'invalid_state',
  'state_not_found',
  'state_replayed',
  'access_denied',
  'token_exchange_failed',
  'idp_unreachable',
  'no_id_token',
  'idp_unavailable',
  'session_store_unavailable',
  'login_required',
  'consent_required',
  'interaction_required',
  'invalid_request',
  'invalid_scope',
  'unauthorized_client',
  'server_error',
  'temporarily_unavailable',
]);

export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'route' | 'status' | 'decision'>;
  private readonly requestSeconds: Histogram<'route'>;
  private readonly upstreamSeconds: Histogram<'route'>;
  private readonly idpSeconds: Histogram<'operation' | 'outcome'>;
  private readonly logins: Counter;
  private readonly loginFailures: Counter<'reason'>;
  private readonly refreshed: Counter<'result'>;
  private readonly storeErrors: Counter<'operation'>;
  private readonly reloads: Counter<'result'>;
  private readonly lastReload: Gauge;
  private readonly lastReloadOk: Gauge;
  private readonly requestChildren = new Map<string, Map<number, Map<string, Inc>>>();
  private readonly requestSecondsChildren = new Map<string, Observe>();
  private readonly upstreamSecondsChildren = new Map<string, Observe>();
  private readonly failureChildren = new Map<string, Inc>();

  constructor(readiness?: () => { idps: Array<{ id: string; ready: boolean }> }) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    this.requests = new Counter({
      name: 'portcullis_requests_total',
      help: 'Requests answered, by route, HTTP status and decision.',
      labelNames: ['route', 'status', 'decision'],
      registers: [r],
    });
    this.requestSeconds = new Histogram({
      name: 'portcullis_request_duration_seconds',
      help: 'Whole request time as Portcullis saw it (until the response head, for proxied requests the upstream answer).',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS,
      registers: [r],
    });
    this.upstreamSeconds = new Histogram({
      name: 'portcullis_upstream_duration_seconds',
      help: 'Time until the upstream answered.',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS,
      registers: [r],
    });
    this.idpSeconds = new Histogram({
      name: 'portcullis_idp_request_duration_seconds',
      help: 'Calls to the identity provider (discovery, token, refresh, userinfo, jwks).',
      labelNames: ['operation', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers: [r],
    });
    this.logins = new Counter({
      name: 'portcullis_logins_total',
      help: 'Completed logins.',
      registers: [r],
    });
    this.loginFailures = new Counter({
      name: 'portcullis_login_failures_total',
      help: 'Failed logins, by reason.',
      labelNames: ['reason'],
      registers: [r],
    });
    this.refreshed = new Counter({
      name: 'portcullis_sessions_refreshed_total',
      help: 'Token refreshes at the IdP, by result.',
      labelNames: ['result'],
      registers: [r],
    });
    this.storeErrors = new Counter({
      name: 'portcullis_session_store_errors_total',
      help: 'Session store operations that failed because the store was unavailable.',
      labelNames: ['operation'],
      registers: [r],
    });
    this.reloads = new Counter({
      name: 'portcullis_config_reloads_total',
      help: 'Configuration reloads, by result (success, failure).',
      labelNames: ['result'],
      registers: [r],
    });
    this.lastReload = new Gauge({
      name: 'portcullis_config_last_reload_timestamp_seconds',
      help: 'When the configuration was last reloaded (or first loaded).',
      registers: [r],
    });
    this.lastReloadOk = new Gauge({
      name: 'portcullis_config_last_reload_successful',
      help: '1 when the last reload attempt succeeded, 0 when the old configuration is still in force after a failed one.',
      registers: [r],
    });
    this.lastReload.setToCurrentTime();
    this.lastReloadOk.set(1);
    // Created before any traffic so dashboards and alerts see 0, not "no data".
    this.reloads.labels('success').inc(0);
    this.reloads.labels('failure').inc(0);
    this.logins.inc(0);
    if (readiness) {
      new Gauge({
        name: 'portcullis_idp_ready',
        help: '1 once discovery of the identity provider has succeeded, by IdP (`idps[].id`, default for the top-level idp_* keys).',
        labelNames: ['idp'],
        registers: [r],
        collect() {
          // Rebuilt at each scrape: an IdP a reload removed must not linger at its last value.
          this.reset();
          for (const p of readiness().idps) this.labels(p.id).set(p.ready ? 1 : 0);
        },
      });
    }
  }

  request(
    route: string,
    status: number,
    decision: string,
    seconds: number,
    upstreamSeconds: number | undefined,
  ): void {
    let byStatus = this.requestChildren.get(route);
    if (!byStatus) this.requestChildren.set(route, (byStatus = new Map()));
    let byDecision = byStatus.get(status);
    if (!byDecision) byStatus.set(status, (byDecision = new Map()));
    let c = byDecision.get(decision);
    if (!c) byDecision.set(decision, (c = this.requests.labels(route, String(status), decision)));
    c.inc();
    let h = this.requestSecondsChildren.get(route);
    if (!h) this.requestSecondsChildren.set(route, (h = this.requestSeconds.labels(route)));
    h.observe(seconds);
    if (upstreamSeconds !== undefined) {
      let u = this.upstreamSecondsChildren.get(route);
      if (!u) this.upstreamSecondsChildren.set(route, (u = this.upstreamSeconds.labels(route)));
      u.observe(upstreamSeconds);
    }
  }

  /** portcullis_upstream_healthy: per `to` of each load-balanced route, read at scrape time. */
  watchUpstreams(status: () => UpstreamStatus[]): void {
    new Gauge({
      name: 'portcullis_upstream_healthy',
      help: '1 while an upstream of a load-balanced route takes traffic; 0 while its health checks fail or outlier_detection has ejected it.',
      labelNames: ['route', 'upstream'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const u of status())
          this.labels(u.route, u.upstream).set(u.healthy && !u.ejected ? 1 : 0);
      },
    });
  }

  login(): void {
    this.logins.inc();
  }

  loginFailure(reason: string): void {
    const r = KNOWN_FAILURES.has(reason) ? reason : 'idp_error';
    let c = this.failureChildren.get(r);
    if (!c) this.failureChildren.set(r, (c = this.loginFailures.labels(r)));
    c.inc();
  }

  sessionRefreshed(ok: boolean): void {
    this.refreshed.labels(ok ? 'success' : 'failure').inc();
  }

  storeError(operation: string): void {
    this.storeErrors.labels(operation).inc();
  }

  reload(ok: boolean): void {
    this.reloads.labels(ok ? 'success' : 'failure').inc();
    this.lastReloadOk.set(ok ? 1 : 0);
    if (ok) this.lastReload.setToCurrentTime();
  }

  idpCall(operation: string, outcome: 'ok' | 'error', seconds: number): void {
    this.idpSeconds.labels(operation, outcome).observe(seconds);
  }

  /** A fetch for openid-client that times every IdP call; token requests with a refresh_token grant count as session refreshes. */
  idpFetch(md: client.ServerMetadata): typeof fetch {
    return async (input, init) => {
      const url = String(input);
      const body = init?.body;
      const refresh = body instanceof URLSearchParams && body.get('grant_type') === 'refresh_token';
      const op =
        url === md.token_endpoint
          ? refresh
            ? 'refresh'
            : 'token'
          : url === md.userinfo_endpoint
            ? 'userinfo'
            : url === md.jwks_uri
              ? 'jwks'
              : url === md.revocation_endpoint
                ? 'revocation'
                : url === md.introspection_endpoint
                  ? 'introspection'
                  : 'other';
      const t = performance.now();
      try {
        const res = await fetch(input, init);
        // A 4xx answer is still the IdP answering; "error" is kept for 5xx and the network.
        this.idpCall(op, res.status >= 500 ? 'error' : 'ok', (performance.now() - t) / 1000);
        if (refresh) this.sessionRefreshed(res.ok);
        return res;
      } catch (e) {
        this.idpCall(op, 'error', (performance.now() - t) / 1000);
        if (refresh) this.sessionRefreshed(false);
        throw e;
      }
    };
  }
}

/**
 * Times discovery and every call made through the discovered configuration, without the
 * identity module knowing about metrics: `get()` tags each new Configuration with a timed
 * fetch, and each discovery attempt is timed around the (private) attempt method.
 */
export function instrumentIdp(idp: Idp, m: Metrics): void {
  const target = idp as unknown as { get(): client.Configuration; attempt?: () => Promise<void> };
  const get = target.get.bind(idp);
  let tagged: client.Configuration | null = null;
  target.get = () => {
    const c = get();
    if (c !== tagged) {
      c[client.customFetch] = m.idpFetch(c.serverMetadata()) as client.CustomFetch;
      tagged = c;
    }
    return c;
  };
  const attempt = target.attempt;
  if (typeof attempt === 'function') {
    target.attempt = async () => {
      const t = performance.now();
      await attempt.call(idp);
      m.idpCall('discovery', idp.status.ready ? 'ok' : 'error', (performance.now() - t) / 1000);
    };
  }
}
