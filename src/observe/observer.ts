import type { Decision } from '../decide/decide.js';
import type { RequestContext } from '../decide/types.js';
import type { Logger } from './logger.js';
import { Audit } from './audit.js';
import type { Metrics } from './metrics.js';

/**
 * What a running Portcullis observes besides its log: metrics and the audit log. It is found
 * from a Runtime through its Idp (one per running instance, kept across reloads that do not
 * change the IdP), so the request path and the login flow need no new parameters, and code
 * that builds a Runtime on its own (`check`, `explain`, unit tests) gets a silent default.
 */
export class Observer {
  constructor(readonly metrics: Metrics | null, readonly audit: Audit) {}

  /** Called once per request, next to the access-log line. */
  request(ctx: RequestContext | null, status: number, requestId: string, started: number, decision: string, reason: string, d?: Decision, upstream?: { upstreamMs: number } | null): void {
    const route = d && 'route' in d && d.route ? d.route.id : decision === 'portcullis' ? '(portcullis)' : '(none)';
    if (this.metrics) {
      this.metrics.request(route, status, decision, (performance.now() - started) / 1000, upstream ? upstream.upstreamMs / 1000 : undefined);
      if (d?.kind === 'unavailable') this.metrics.storeError('load');
    }
    if (d?.kind === 'deny') {
      this.audit.warn({ event: 'access_denied', requestId, route, host: ctx?.host, path: ctx?.path, user: d.identity?.email || d.identity?.user, reason }, 'access denied by policy');
    }
  }
}

const observers = new WeakMap<object, Observer>();
const fallbacks = new WeakMap<Logger, Observer>();

export function registerObserver(idp: object, o: Observer): void {
  observers.set(idp, o);
}

export function observerFor(rt: { idp: object; log: Logger }): Observer {
  const o = observers.get(rt.idp);
  if (o) return o;
  let f = fallbacks.get(rt.log);
  if (!f) fallbacks.set(rt.log, (f = new Observer(null, new Audit(rt.log.child({ name: 'audit' })))));
  return f;
}

/** The audit log of the Portcullis instance this Runtime belongs to. */
export function audit(rt: { idp: object; log: Logger }): Audit {
  return observerFor(rt).audit;
}
