import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { Config } from './config/types.js';
import { Idp } from './identity/oidc.js';
import { createLogger, type Logger } from './observe/logger.js';
import { createRequestHandler, createUpgradeHandler, type ProxyState } from './proxy/handler.js';
import { Upstreams } from './proxy/upstreams.js';
import { Runtime } from './runtime.js';

export interface StartOptions {
  logger?: Logger;
  /** Override the configured listen address (tests use port 0). */
  listen?: { host: string; port: number };
}

export interface RunningPortcullis {
  server: Server;
  port: number;
  state: ProxyState;
  idp: Idp;
  close(): Promise<void>;
}

/** Loads nothing itself: give it a validated Config. Starts even when the IdP is down. */
export async function startPortcullis(cfg: Config, opts: StartOptions = {}): Promise<RunningPortcullis> {
  const log = opts.logger ?? createLogger(cfg.logLevel);
  const idp = new Idp(cfg.idp, (msg, attempt) => {
    // One line per outage, then one every 10 attempts, not one per retry.
    if (attempt === 1 || attempt % 10 === 0) log.error({ event: 'idp_discovery_failed', issuer: cfg.idp.issuer.href, attempt, detail: msg }, 'identity provider discovery failed; retrying with backoff');
  });
  void idp.start();
  for (const w of cfg.warnings) log.warn({ key: w.key, line: w.line }, w.message);
  const state: ProxyState = { runtime: new Runtime(cfg, idp, log), upstreams: new Upstreams() };

  let server: Server;
  if (cfg.tls) {
    const contexts = cfg.tls.certs.map((c) => ({ x509: new X509Certificate(c.cert), ctx: createSecureContext({ cert: c.cert, key: c.key }) }));
    server = createHttpsServer({
      cert: cfg.tls.certs[0]!.cert,
      key: cfg.tls.certs[0]!.key,
      SNICallback: (servername, cb) => {
        const hit: SecureContext | undefined = contexts.find((c) => c.x509.checkHost(servername))?.ctx;
        cb(null, hit ?? contexts[0]!.ctx);
      },
      maxHeaderSize: 16 * 1024,
      headersTimeout: 20_000,
      requestTimeout: 0,
      keepAliveTimeout: 5_000,
    }) as unknown as Server;
  } else {
    server = createHttpServer({ maxHeaderSize: 16 * 1024, headersTimeout: 20_000, requestTimeout: 0, keepAliveTimeout: 5_000 });
  }
  server.on('request', createRequestHandler(state));
  server.on('upgrade', createUpgradeHandler(state));
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy();
    // Node's parser refuses smuggling shapes and oversized headers; answer with a status, never a crash.
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
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
  log.info({ event: 'listening', address: `${listen.host}:${port}`, tls: !!cfg.tls, routes: cfg.routes.length }, 'portcullis is listening');
  return {
    server,
    port,
    state,
    idp,
    async close() {
      idp.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2000).unref();
      });
      await state.upstreams.close();
      await state.runtime.sessions.store.close();
    },
  };
}
