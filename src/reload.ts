import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { parseConfigIsolated } from './config/isolated.js';
import { ConfigError, formatIssue } from './config/errors.js';
import type { Config } from './config/types.js';
import type { Logger } from './observe/logger.js';
import type { Metrics } from './observe/metrics.js';

export interface ReloadResult {
  ok: boolean;
  /** Why the new config was refused (the old one stays in force). */
  errors: string[];
  /** Settings that changed but only take effect after a restart. */
  notes: string[];
}

/** Extra validation of a candidate config before it goes live (policy tests); returns failures. */
export type ConfigValidator = (cfg: Config) => Promise<string[]> | string[];

export interface ReloaderOptions {
  file: string;
  log: Logger;
  metrics: Metrics | null;
  /** Puts a validated config in force; returns restart-only notes. Throws if it cannot. */
  apply(cfg: Config): Promise<string[]>;
  validators?: ConfigValidator[];
  env?: NodeJS.ProcessEnv;
}

/**
 * Reloads the config file on request (SIGHUP) and when it changes. A candidate is parsed,
 * validated and tested in full before anything is swapped: on any failure the running config
 * stays, the reason is logged and counted. Reloads never overlap; a request that arrives
 * during one is run once after it, so the last write always wins.
 */
export class Reloader {
  private running: Promise<ReloadResult> | null = null;
  private queued: Promise<ReloadResult> | null = null;
  private watcher: FSWatcher | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private lastHash: string | null = null;

  constructor(private readonly o: ReloaderOptions) {
    try {
      this.lastHash = hash(readFileSync(o.file));
    } catch {
      // The file was loaded by the caller; if it is gone now, the first change event will say so.
    }
  }

  reload(trigger = 'request'): Promise<ReloadResult> {
    // A request during a reload gets the follow-up run, which reads the file as it is now: the
    // running one may have read it before the change this caller is asking about.
    if (this.running) {
      const next = (): Promise<ReloadResult> => this.reload(trigger);
      return (this.queued ??= this.running.then(next, next));
    }
    this.running = this.run(trigger).finally(() => {
      this.running = null;
      this.queued = null;
    });
    return this.running;
  }

  private async run(trigger: string): Promise<ReloadResult> {
    const { log, metrics, file } = this.o;
    const fail = (errors: string[]): ReloadResult => {
      metrics?.reload(false);
      log.error(
        { event: 'config_reload_failed', file, trigger, errors },
        'configuration reload failed; the previous configuration stays in force',
      );
      return { ok: false, errors, notes: [] };
    };
    let text: Buffer;
    try {
      text = readFileSync(file);
    } catch (e) {
      return fail([`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`]);
    }
    let cfg: Config;
    try {
      cfg = (await parseConfigIsolated(text.toString('utf8'), file, this.o.env ?? process.env)).cfg;
    } catch (e) {
      if (e instanceof ConfigError) return fail(e.issues.map((i) => formatIssue(file, i)));
      return fail([(e as Error).message]);
    }
    for (const v of this.o.validators ?? []) {
      let failures: string[];
      try {
        failures = await v(cfg);
      } catch (e) {
        failures = [(e as Error).message];
      }
      if (failures.length) return fail(failures);
    }
    let notes: string[];
    try {
      notes = await this.o.apply(cfg);
    } catch (e) {
      return fail([(e as Error).message]);
    }
    this.lastHash = hash(text);
    metrics?.reload(true);
    for (const w of cfg.warnings) log.warn({ key: w.key, line: w.line }, w.message);
    log.info(
      {
        event: 'config_reloaded',
        file,
        trigger,
        routes: cfg.routes.length,
        ...(notes.length ? { restartNeeded: notes } : {}),
      },
      'configuration reloaded',
    );
    return { ok: true, errors: [], notes };
  }

  /**
   * Watches the file's directory, not the file: editors save by renaming a new file over the
   * old one, and Kubernetes swaps a ConfigMap by moving a `..data` symlink, both of which a
   * watch on the file itself would miss after the first time.
   */
  watch(): void {
    if (this.watcher) return;
    const dir = dirname(this.o.file);
    const name = basename(this.o.file);
    try {
      this.watcher = watch(dir, { persistent: false }, (_event, changed) => {
        if (changed !== null && changed !== name && changed !== '..data') return;
        if (this.debounce) clearTimeout(this.debounce);
        // Editors write in several steps; one reload after they settle.
        this.debounce = setTimeout(() => {
          this.debounce = null;
          let now: string;
          try {
            now = hash(readFileSync(this.o.file));
          } catch {
            return void this.reload('file change');
          }
          if (now !== this.lastHash) void this.reload('file change');
        }, 200);
        this.debounce.unref();
      });
      this.watcher.on('error', (e) =>
        this.o.log.warn(
          { event: 'config_watch_failed', detail: e.message },
          'watching the config file failed; SIGHUP still reloads',
        ),
      );
    } catch (e) {
      this.o.log.warn(
        { event: 'config_watch_failed', detail: (e as Error).message },
        'cannot watch the config file; SIGHUP still reloads',
      );
    }
  }

  close(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.debounce) clearTimeout(this.debounce);
  }
}

function hash(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Settings a running listener cannot change; a reload keeps the old value and says so. */
export function restartOnlyChanges(cur: Config, next: Config): string[] {
  const out: string[] = [];
  if (cur.listen.host !== next.listen.host || cur.listen.port !== next.listen.port)
    out.push('address (restart to listen on the new address)');
  if (!!cur.tls !== !!next.tls) out.push('insecure_server / TLS on or off (restart to change)');
  const m = (c: Config) =>
    c.metricsListen ? `${c.metricsListen.host}:${c.metricsListen.port}` : '';
  if (m(cur) !== m(next)) out.push('metrics_address (restart to move the metrics listener)');
  if (cur.auditLogFile !== next.auditLogFile)
    out.push('audit_log_file (restart to switch the audit log)');
  return out;
}

/** True when the IdP client must be rebuilt (and discovery run again). */
export function idpChanged(a: Config['idp'], b: Config['idp']): boolean {
  return (
    a.issuer.href !== b.issuer.href ||
    a.clientId !== b.clientId ||
    a.clientSecret !== b.clientSecret
  );
}
