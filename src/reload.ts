import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
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
  /** The files the running config read (`Config.filesRead`): a change to one reloads too. */
  files?: string[];
  /** Hears every reload's outcome (the admin console's health page). */
  onResult?: (r: ReloadResult, trigger: string) => void;
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
  /** One watcher per directory: the config's and each secret file's. */
  private readonly watchers = new Map<string, FSWatcher>();
  /** Per watched directory, the entries whose change means a reload (`..data` included). */
  private names = new Map<string, Set<string>>();
  private watching = false;
  private debounce: NodeJS.Timeout | null = null;
  private lastHash: string | null = null;
  private files: string[];

  constructor(private readonly o: ReloaderOptions) {
    this.files = o.files ?? [];
    try {
      this.lastHash = digest(readFileSync(o.file), this.files);
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
    this.running = this.run(trigger)
      .then((r) => {
        this.o.onResult?.(r, trigger);
        return r;
      })
      .finally(() => {
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
    this.files = cfg.filesRead;
    this.lastHash = digest(text, this.files);
    if (this.watching) this.follow();
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
   * Watches the directories of the config file and of every file it reads (secrets, keys,
   * certificates), not the files: editors save by renaming a new file over the old one, and
   * Kubernetes swaps a mounted ConfigMap or Secret by moving a `..data` symlink, both of which
   * a watch on the file itself would miss after the first time.
   */
  watch(): void {
    if (this.watching) return;
    this.watching = true;
    this.follow();
  }

  /** Watches the directories the current files live in, and stops watching the others. */
  private follow(): void {
    const names = new Map<string, Set<string>>();
    for (const f of [this.o.file, ...this.files]) {
      const path = resolve(f);
      const set = names.get(dirname(path)) ?? new Set(['..data']);
      set.add(basename(path));
      names.set(dirname(path), set);
    }
    for (const [dir, w] of this.watchers)
      if (!names.has(dir)) {
        w.close();
        this.watchers.delete(dir);
      }
    this.names = names;
    for (const dir of names.keys()) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, (_event, changed) => {
          if (changed === null || this.names.get(dir)?.has(changed)) this.changed();
        });
        w.on('error', (e) =>
          this.o.log.warn(
            { event: 'config_watch_failed', dir, detail: e.message },
            'watching the config file failed; SIGHUP still reloads',
          ),
        );
        this.watchers.set(dir, w);
      } catch (e) {
        this.o.log.warn(
          { event: 'config_watch_failed', dir, detail: (e as Error).message },
          'cannot watch the config file; SIGHUP still reloads',
        );
      }
    }
  }

  private changed(): void {
    if (this.debounce) clearTimeout(this.debounce);
    // Editors write in several steps; one reload after they settle.
    this.debounce = setTimeout(() => {
      this.debounce = null;
      let now: string;
      try {
        now = digest(readFileSync(this.o.file), this.files);
      } catch {
        return void this.reload('file change');
      }
      if (now !== this.lastHash) void this.reload('file change');
    }, 200);
    this.debounce.unref();
  }

  close(): void {
    this.watching = false;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    if (this.debounce) clearTimeout(this.debounce);
  }
}

/** The config's text and the content of every file it reads: what a reload would see. */
function digest(config: Buffer, files: string[]): string {
  const h = createHash('sha256').update(config);
  for (const f of files) {
    h.update(`\0${f}\0`);
    try {
      h.update(readFileSync(f));
    } catch (e) {
      h.update(`unreadable: ${(e as NodeJS.ErrnoException).code ?? ''}`);
    }
  }
  return h.digest('hex');
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
