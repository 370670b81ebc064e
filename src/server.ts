import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { Config } from './config/types.js';
import type { Duplex } from 'node:stream';
import { Idp } from './identity/oidc.js';
import { Audit, createAuditLogger } from './observe/audit.js';
import {
  isPingable,
  startOpsServer,
  withTimeout,
  type OpsServer,
  type ReadyCheck,
} from './observe/health.js';
import { createLogger, type Logger } from './observe/logger.js';
import type { Metrics } from './observe/metrics.js';
import { Observer } from './observe/observer.js';
import { createRequestHandler, createUpgradeHandler, type ProxyState } from './proxy/handler.js';
import { createConnectHandler } from './proxy/tunnel.js';
import { Upstreams } from './proxy/upstreams.js';
import {
  idpChanged,
  Reloader,
  restartOnlyChanges,
  type ConfigValidator,
  type ReloadResult,
} from './reload.js';
import { Runtime } from './runtime.js';
import { RouteTable } from './decide/route-table.js';
import { runPolicyTests } from './policy/simulate.js';
import { sameSessionStorage } from './session/create.js';

export interface StartOptions {
  logger?: Logger;
  /** Override the configured listen address (tests use port 0). */
  listen?: { host: string; port: number };
  /** The file cfg came from: enables reload() (SIGHUP) and, with watch_config, reload on change. */
  configFile?: string;
  /** Extra checks a reloaded config must pass before it goes live (policy tests). */
  validators?: ConfigValidator[];
  /**
   * Every request to the IdP and its directory API (Graph, GitHub, Google) goes through this
   * fetch: tests answer Microsoft's and GitHub's host names from local stand-ins with it.
   */
  fetch?: typeof fetch;
}

export interface RunningPortcullis {
  server: Server;
  port: number;
  state: ProxyState;
  idp: Idp;
  /** Port of the metrics_address listener (/metrics, /ping, /ready), when configured. */
  metricsPort: number | null;
  /** Null without metrics_address. */
  metrics: Metrics | null;
  /** Re-reads the config file; the old config stays in force if the new one fails. */
  reload(trigger?: string): Promise<ReloadResult>;
  /** Graceful: stop accepting, let in-flight requests finish within shutdown_timeout (or graceMs), then close stores. */
  shutdown(graceMs?: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Builds what a config compiles to. The one place a Runtime is made, at start and on every
 * reload (and by `probe`), so a store or cache that must outlive a reload is kept here.
 */
export function buildRuntime(
  cfg: Config,
  idp: Idp,
  log: Logger,
  previous?: Runtime,
  observer?: Observer,
  idps?: ReadonlyMap<string, Idp>,
): Runtime {
  // The session store (and its connections) survives a reload unless its setting or the secrets sealing it changed.
  const store =
    previous && sameSessionStorage(previous.cfg, cfg) ? previous.sessions.store : undefined;
  const rt = new Runtime(cfg, idp, log, {
    store,
    observer: observer ?? previous?.observer,
    idps,
  });
  // Single-use login states and handoff ids must stay spent across a reload, or a response
  // captured before it could be replayed after it.
  // Likewise the login and handoff rate limits: a reload must not hand a flooding client a fresh budget.
  if (previous) {
    type Kept = Pick<Runtime, 'once' | 'handoffMints'>;
    Object.assign(rt as Kept, {
      once: previous.once,
      handoffMints: previous.handoffMints,
    } satisfies Kept);
    // New limits take effect at once; unchanged ones keep counting.
    const was = previous.cfg.loginRateLimit;
    if (
      was.perAddressPerHour === cfg.loginRateLimit.perAddressPerHour &&
      was.globalPerSecond === cfg.loginRateLimit.globalPerSecond
    ) {
      type Limits = Pick<Runtime, 'loginStarts' | 'loginStartsGlobal'>;
      Object.assign(rt as Limits, {
        loginStarts: previous.loginStarts,
        loginStartsGlobal: previous.loginStartsGlobal,
      } satisfies Limits);
    }
  }
  return rt;
}

/** A reload whose policy_tests fail is refused, like one that does not parse. */
async function policyTestsPass(cfg: Config): Promise<string[]> {
  const failures = await runPolicyTests(cfg, new RouteTable(cfg.routes));
  return failures.map(
    (f) =>
      `${cfg.file}:${f.line}: ${f.key}: policy test "${f.name}" expected ${f.expected}, got ${f.got}${f.explanation.length ? ` (${f.explanation.join('; ')})` : ''}`,
  );
}

function createIdp(
  settings: Config['idp'],
  log: Logger,
  instrument: ((idp: Idp) => void) | null,
  fetchImpl: typeof fetch | undefined,
): Idp {
  const idp = new Idp(
    settings,
    (msg, attempt) => {
      // One line per outage, then one every 10 attempts, not one per retry.
      if (attempt === 1 || attempt % 10 === 0)
        log.error(
          { event: 'idp_discovery_failed', issuer: settings.issuer.href, attempt, detail: msg },
          'identity provider discovery failed; retrying with backoff',
        );
    },
    fetchImpl,
  );
  instrument?.(idp);
  return idp;
}

/** Loads nothing itself: give it a validated Config. Starts even when the IdP is down. */
// Slowloris: a client has 10 s to send its headers, checked every second (Node's default
// check runs only every 30 s). No limit on the whole request: 1 GB uploads must pass. Idle
// keep-alive connections close after 5 s; headers over 16 KB get a 431.
const LISTENER_LIMITS = {
  maxHeaderSize: 16 * 1024,
  headersTimeout: 10_000,
  requestTimeout: 0,
  keepAliveTimeout: 5_000,
  connectionsCheckingInterval: 1_000,
} as const;

export async function startPortcullis(
  cfg: Config,
  opts: StartOptions = {},
): Promise<RunningPortcullis> {
  const log = opts.logger ?? createLogger(cfg.logLevel);
  let draining = false;
  const state: ProxyState = {
    runtime: null as unknown as Runtime,
    upstreams: new Upstreams(log),
  };
  // prom-client and its collectors are loaded only when metrics_address will be scraped (moving
  // it needs a restart anyway): about 10 MB of resident memory otherwise spent for nothing.
  const metricsModule = cfg.metricsListen ? await import('./observe/metrics.js') : null;
  const metrics = metricsModule
    ? new metricsModule.Metrics(() => ({
        idps: state.runtime.identities.all().map((p) => ({ id: p.id, ready: p.idp.status.ready })),
      }))
    : null;
  const instrument =
    metricsModule && metrics ? (i: Idp): void => metricsModule.instrumentIdp(i, metrics) : null;
  const auditSink = createAuditLogger(log, cfg.auditLogFile);
  const observer = new Observer(metrics, new Audit(auditSink.log, metrics));
  let idp = createIdp(cfg.idp, log, instrument, opts.fetch);
  void idp.start();
  // The other IdPs of `idps:`, by id: discovered in the background like the default one, and
  // kept across a reload that leaves their issuer and client alone.
  let others = new Map<string, Idp>();
  const otherIdps = (next: Config, previous: Map<string, Idp>, prevCfg?: Config) => {
    const out = new Map<string, Idp>();
    for (const s of next.idps.slice(1)) {
      const was = prevCfg?.idps.find((p) => p.id === s.id);
      const kept = previous.get(s.id);
      if (kept && was && !idpChanged(was, s)) out.set(s.id, kept);
      else {
        const made = createIdp(s, log, instrument, opts.fetch);
        void made.start();
        out.set(s.id, made);
      }
    }
    return out;
  };
  others = otherIdps(cfg, others);
  for (const w of cfg.warnings) log.warn({ key: w.key, line: w.line }, w.message);
  state.runtime = buildRuntime(cfg, idp, log, undefined, observer, others);
  observer.upstreams = () => state.upstreams.status();
  state.upstreams.configure(cfg.routes);
  metrics?.watchUpstreams(() => state.upstreams.status());
  // Connect (and migrate) now, so a store that is down at start is reported before the first request.
  void state.runtime.sessions.store.start?.();
  const retired = new Set<Runtime>();

  // With client_ca_file every handshake asks for a client certificate but none is required:
  // an unverified or missing one simply leaves RequestContext.clientCert empty for the policy.
  const makeContexts = (c: Config) =>
    (c.tls?.certs ?? []).map((x) => ({
      x509: new X509Certificate(x.cert),
      ctx: createSecureContext({
        cert: x.cert,
        key: x.key,
        ...(c.tls?.clientCa ? { ca: c.tls.clientCa } : {}),
      }),
    }));
  let contexts = makeContexts(cfg);
  let server: Server;
  if (cfg.tls) {
    server = createHttpsServer({
      cert: cfg.tls.certs[0]!.cert,
      key: cfg.tls.certs[0]!.key,
      SNICallback: (servername, cb) => {
        const hit: SecureContext | undefined = contexts.find((c) =>
          c.x509.checkHost(servername),
        )?.ctx;
        cb(null, hit ?? contexts[0]!.ctx);
      },
      ...(cfg.tls.clientCa
        ? { requestCert: true, rejectUnauthorized: false, ca: cfg.tls.clientCa }
        : {}),
      ...LISTENER_LIMITS,
    }) as unknown as Server;
  } else {
    server = createHttpServer(LISTENER_LIMITS);
  }
  server.on('request', createRequestHandler(state));
  // Upgraded sockets leave the HTTP server's bookkeeping: tracked here so shutdown can end them.
  const upgraded = new Set<Duplex>();
  const onUpgrade = createUpgradeHandler(state);
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    onUpgrade(req, socket, head);
  });
  // CONNECT: TCP tunnels for tcp+https routes; tracked like upgrades so shutdown can end them.
  const onConnect = createConnectHandler(state);
  server.on('connect', (req, socket: Duplex, head: Buffer) => {
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    onConnect(req, socket, head);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy();
    // Node's parser refuses smuggling shapes and oversized headers; answer with a status, never a crash.
    const status =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? '431 Request Header Fields Too Large'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? '408 Request Timeout'
          : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
  const listen = opts.listen ?? cfg.listen;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.info(
    {
      event: 'listening',
      address: `${listen.host}:${port}`,
      tls: !!cfg.tls,
      routes: cfg.routes.length,
    },
    'portcullis is listening',
  );

  const ready = async (): Promise<ReadyCheck[]> => {
    const rt = state.runtime;
    const checks: ReadyCheck[] = [
      {
        name: 'config',
        ok: !draining,
        detail: draining ? 'shutting down' : `${rt.cfg.file}, ${rt.cfg.routes.length} routes`,
      },
      {
        name: 'idp_discovery',
        ok: rt.idp.status.ready,
        detail: rt.idp.status.ready
          ? rt.cfg.idp.issuer.href
          : (rt.idp.status.lastError ?? 'discovery not finished'),
      },
      // The other IdPs of `idps:`: one check each, so the one that is down is named.
      ...rt.identities
        .all()
        .slice(1)
        .map((p) => ({
          name: `idp_discovery:${p.id}`,
          ok: p.idp.status.ready,
          detail: p.idp.status.ready
            ? p.settings.issuer.href
            : (p.idp.status.lastError ?? 'discovery not finished'),
        })),
    ];
    const store = rt.sessions.store;
    if (isPingable(store)) {
      try {
        await withTimeout(store.ping(), 2000, `the ${store.kind} session store`);
        checks.push({ name: 'session_store', ok: true, detail: store.kind });
      } catch (e) {
        metrics?.storeError('ping');
        checks.push({
          name: 'session_store',
          ok: false,
          detail: `${store.kind}: ${(e as Error).message}`,
        });
      }
    } else {
      checks.push({ name: 'session_store', ok: true, detail: `${store.kind} (nothing to reach)` });
    }
    return checks;
  };
  let ops: OpsServer | null = null;
  if (cfg.metricsListen && metrics) {
    try {
      ops = await startOpsServer(cfg.metricsListen, metrics, ready, () => state.upstreams.status());
    } catch (e) {
      server.close();
      throw e;
    }
    log.info(
      { event: 'metrics_listening', address: `${cfg.metricsListen.host}:${ops.port}` },
      'metrics, /ping and /ready are listening',
    );
  }

  const apply = async (next: Config): Promise<string[]> => {
    const cur = state.runtime;
    const notes = restartOnlyChanges(cur.cfg, next);
    let nextIdp = idp;
    if (idpChanged(cur.cfg.idp, next.idp)) {
      nextIdp = createIdp(next.idp, log, instrument, opts.fetch);
      void nextIdp.start();
    }
    const nextOthers = otherIdps(next, others, cur.cfg);
    const rt = buildRuntime(next, nextIdp, log, cur, observer, nextOthers);
    for (const [id, old] of others) if (nextOthers.get(id) !== old) old.close();
    others = nextOthers;
    if (next.tls && cur.cfg.tls) contexts = makeContexts(next);
    state.runtime = rt;
    // The old routes' health checks stop here; in-flight requests keep their balancers.
    state.upstreams.configure(next.routes);
    if (nextIdp !== idp) {
      idp.close();
      idp = nextIdp;
    }
    if (rt.sessions.store !== cur.sessions.store) {
      void rt.sessions.store.start?.();
      // Requests that started on the old config still use its store: close it once they are done.
      retired.add(cur);
      setTimeout(() => {
        retired.delete(cur);
        void cur.sessions.store.close().catch(() => {});
      }, next.shutdownTimeoutMs).unref();
    }
    return notes;
  };
  const reloader = opts.configFile
    ? new Reloader({
        file: opts.configFile,
        log,
        metrics,
        apply,
        validators: opts.validators ?? [policyTestsPass],
        files: cfg.filesRead,
        onResult: (r, trigger) => observer.recent.reloaded({ at: Date.now(), trigger, ...r }),
      })
    : null;
  if (reloader && cfg.watchConfig) reloader.watch();

  let closing: Promise<void> | null = null;
  const shutdown = (graceMs: number): Promise<void> => {
    closing ??= (async () => {
      draining = true;
      reloader?.close();
      log.info(
        { event: 'shutting_down', graceMs },
        'stopping: no new connections, finishing requests in flight',
      );
      await new Promise<void>((resolve) => {
        const done = setTimeout(() => {
          server.closeAllConnections();
          for (const s of upgraded) s.destroy();
        }, graceMs);
        done.unref();
        // Keep-alive connections go idle once their response is sent; close them as they do.
        const idle = setInterval(() => server.closeIdleConnections(), 50);
        idle.unref();
        server.close(() => {
          clearTimeout(done);
          clearInterval(idle);
          resolve();
        });
        server.closeIdleConnections();
        // Upgraded sockets (WebSockets) hold the server open; they cannot be drained gently, only bounded.
        if (!upgraded.size && graceMs === 0) server.closeAllConnections();
      });
      idp.close();
      for (const o of others.values()) o.close();
      await ops?.close();
      await state.upstreams.close();
      await Promise.allSettled([
        state.runtime.sessions.store.close(),
        ...[...retired].map((r) => r.sessions.store.close()),
      ]);
      await auditSink.close();
      log.info({ event: 'stopped' }, 'portcullis stopped');
    })();
    return closing;
  };

  return {
    server,
    port,
    state,
    get idp() {
      return idp;
    },
    metricsPort: ops?.port ?? null,
    metrics,
    reload: (trigger = 'request') =>
      reloader
        ? reloader.reload(trigger)
        : Promise.resolve({ ok: false, errors: ['no config file to reload from'], notes: [] }),
    shutdown: (graceMs) => shutdown(graceMs ?? state.runtime.cfg.shutdownTimeoutMs),
    close: () => shutdown(2000),
  };
}
