import pino from 'pino';
import { createLogger, type Logger } from './logger.js';
import type { Metrics } from './metrics.js';

/** Fields every audit line carries; `event` names what happened (login, login_failed, sign_out, ...). */
export interface AuditFields {
  event: string;
  [k: string]: unknown;
}

/**
 * Security events, on their own logger (`"name":"audit"`) so they can be shipped or kept apart
 * from access lines: in the main log stream, or in `audit_log_file`. Events that have a metric
 * are counted here, so callers write one line and both stay in step.
 */
export class Audit {
  private listener: ((f: AuditFields) => void) | null = null;

  constructor(
    readonly log: Logger,
    private readonly metrics: Metrics | null = null,
  ) {}

  /** One more reader of every event (the admin console's recent failures), after the line. */
  listen(fn: (f: AuditFields) => void): void {
    this.listener = fn;
  }

  info(fields: AuditFields, msg: string): void {
    this.count(fields);
    this.log.info(fields, msg);
    this.listener?.(fields);
  }

  warn(fields: AuditFields, msg: string): void {
    this.count(fields);
    this.log.warn(fields, msg);
    this.listener?.(fields);
  }

  private count(f: AuditFields): void {
    const m = this.metrics;
    if (!m) return;
    switch (f.event) {
      case 'login':
        m.login();
        return;
      case 'login_failed':
        m.loginFailure(typeof f.reason === 'string' ? f.reason : 'unknown');
        return;
      case 'idp_unavailable':
        m.loginFailure('idp_unavailable');
        return;
    }
  }
}

/** The audit logger: a child of the main logger, or a file of its own (same redaction, same format). */
export function createAuditLogger(
  base: Logger,
  file: string | null,
): { log: Logger; close(): Promise<void> } {
  if (!file) return { log: base.child({ name: 'audit' }), close: async () => {} };
  const dest = pino.destination({ dest: file, sync: false, mkdir: true });
  const log = createLogger(base.level, dest).child({ name: 'audit' });
  return {
    log,
    close: () =>
      new Promise<void>((resolve) => {
        // flushSync throws while the file is still being opened; then there is nothing to flush.
        try {
          dest.flushSync();
        } catch {
          // nothing buffered yet
        }
        dest.end();
        resolve();
      }),
  };
}
