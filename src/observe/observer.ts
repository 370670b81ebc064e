import type { Decision } from '../decide/decide.js';
import type { RequestContext } from '../decide/types.js';
import type { Logger } from './logger.js';
import { Audit } from './audit.js';
import type { Metrics } from './metrics.js';
import type { UpstreamStatus } from './health.js';
import { Recent, type RawRequest } from './recent.js';

/**
 * What a running Portcullis observes besides its log: metrics and the audit log. One per
 * running instance, handed to every Runtime it builds (at start and on each reload); code that
 * builds a Runtime on its own (`check`, `explain`, `probe`, unit tests) gets a silent one.
 */
export class Observer {
  /** The admin console's memory of recent denials, users, session use and reloads. */
  readonly recent = new Recent();
  /** Load-balanced upstreams as the proxy sees them now (set by the server that owns the pools). */
  upstreams: () => UpstreamStatus[] = () => [];

  constructor(
    readonly metrics: Metrics | null,
    readonly audit: Audit,
  ) {
    // A failed sign-in's event is its audit line; the console's row is made from that line.
    audit.listen((f) => this.recent.audited(f));
  }

  /**
   * Called once per request, next to the access-log line. `outcome` is the code of the page
   * Portcullis answered with itself (outcomes.ts), `raw` what is known of a request that could
   * not be parsed.
   */
  request(
    ctx: RequestContext | null,
    status: number,
    requestId: string,
    started: number,
    decision: string,
    reason: string,
    d?: Decision,
    upstream?: { upstreamMs: number } | null,
    more?: { outcome?: string | undefined; raw?: RawRequest | undefined },
  ): void {
    const route =
      d && 'route' in d && d.route
        ? d.route.id
        : decision === 'portcullis'
          ? '(portcullis)'
          : '(none)';
    if (this.metrics) {
      this.metrics.request(
        route,
        status,
        decision,
        (performance.now() - started) / 1000,
        upstream ? upstream.upstreamMs / 1000 : undefined,
      );
      if (d?.kind === 'unavailable' && d.cause === 'session_store') this.metrics.storeError('load');
    }
    if (ctx === null && more?.raw) this.recent.unparsed(more.raw, requestId, reason);
    else this.recent.request(ctx, d, requestId, more?.outcome);
    if (d?.kind === 'deny') {
      this.audit.warn(
        {
          event: 'access_denied',
          requestId,
          route,
          host: ctx?.host,
          path: ctx?.path,
          user: d.identity?.email || d.identity?.user,
          reason,
        },
        'access denied by policy',
      );
    }
  }
}

/** An observer without metrics, auditing to the given log. */
export function silentObserver(log: Logger): Observer {
  return new Observer(null, new Audit(log.child({ name: 'audit' })));
}

/** The audit log of the Portcullis instance this Runtime belongs to. */
export function audit(rt: { observer: Observer }): Audit {
  return rt.observer.audit;
}
