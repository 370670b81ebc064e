// Real infrastructure for the session-store tests: a private redis-server that can be stopped
// and started without touching the machine's shared one, a throwaway PostgreSQL database, a TCP
// proxy that can be cut to simulate a network outage, a spy on the token endpoint, and
// Portcullis instances started from YAML with their logs captured.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../../src/server.js';
import { freePort, portAccepts } from './ports.js';

export const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres';

async function waitFor(cond: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export interface PrivateRedis {
  port: number;
  /** `redis-cli shutdown nosave`: the AOF (fsync always) still holds every write. */
  shutdown(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** A redis-server of our own on a free port, persisting to an append-only file in a temp dir. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-redis-'));
  let child: ChildProcess | null = null;
  const start = async (): Promise<void> => {
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--dir',
        dir,
      ],
      { stdio: 'ignore' },
    );
    await waitFor(() => portAccepts(port), `redis-server on ${port}`);
  };
  const shutdown = async (): Promise<void> => {
    const c = child;
    spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'shutdown', 'nosave']);
    if (c && c.exitCode === null) await new Promise((r) => c.once('exit', r));
    child = null;
  };
  await start();
  return {
    port,
    start,
    shutdown,
    async close() {
      if (child) await shutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface TempDatabase {
  name: string;
  url(port?: number): string;
  query<T extends pg.QueryResultRow = Record<string, unknown>>(
    sql: string,
    params?: unknown[],
  ): Promise<T[]>;
  /** Ends every server connection to the database (what a database restart does to clients). */
  terminateConnections(): Promise<void>;
  drop(): Promise<void>;
}

export async function createTempDatabase(): Promise<TempDatabase> {
  const name = `portcullis_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = (port = 5432): string => `postgres://postgres@127.0.0.1:${port}/${name}`;
  const run = async <T extends pg.QueryResultRow>(
    conn: string,
    sql: string,
    params?: unknown[],
  ): Promise<T[]> => {
    const c = new pg.Client({ connectionString: conn });
    await c.connect();
    try {
      return (await c.query<T>(sql, params)).rows;
    } finally {
      await c.end();
    }
  };
  return {
    name,
    url,
    query: (sql, params) => run(url(), sql, params),
    async terminateConnections() {
      await run(
        PG_ADMIN,
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
        [name],
      );
    },
    async drop() {
      await run(PG_ADMIN, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

export interface TcpProxy {
  port: number;
  /** Stops accepting and drops every open connection, like a network partition. */
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const port = await freePort();
  const sockets = new Set<net.Socket>();
  let server: net.Server | null = null;
  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = net.createServer((client) => {
        const upstream = net.connect(targetPort, '127.0.0.1');
        sockets.add(client).add(upstream);
        const drop = (): void => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
        client.pipe(upstream).pipe(client);
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve());
      server = s;
    });
  const cut = async (): Promise<void> => {
    const s = server;
    server = null;
    for (const sock of sockets) sock.destroy();
    sockets.clear();
    if (s) await new Promise((r) => s.close(() => r(undefined)));
  };
  await listen();
  return { port, cut, restore: listen, close: cut };
}

export interface TokenSpy {
  /** refresh_token grants sent to the IdP, in order, with the refresh token presented. */
  refreshes: Array<{ refreshToken: string; status: number }>;
  /** Every token string the IdP's token endpoint handed out. */
  issued: Set<string>;
  restore(): void;
}

/** Wraps the process's fetch (openid-client uses it) to see the token endpoint's traffic. */
export function spyOnTokenEndpoint(issuer: string): TokenSpy {
  const original = globalThis.fetch;
  const spy: TokenSpy = {
    refreshes: [],
    issued: new Set(),
    restore: () => {
      globalThis.fetch = original;
    },
  };
  globalThis.fetch = async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const res = await original(input, init);
    if (url.startsWith(issuer) && url.includes('/token') && init?.method === 'POST') {
      const body = new URLSearchParams(
        typeof init.body === 'string'
          ? init.body
          : init.body instanceof URLSearchParams
            ? init.body.toString()
            : '',
      );
      if (body.get('grant_type') === 'refresh_token')
        spy.refreshes.push({ refreshToken: body.get('refresh_token') ?? '', status: res.status });
      try {
        const json = (await res.clone().json()) as Record<string, unknown>;
        for (const k of ['access_token', 'refresh_token', 'id_token'])
          if (typeof json[k] === 'string') spy.issued.add(json[k] as string);
      } catch {
        // not JSON: nothing issued
      }
    }
    return res;
  };
  return spy;
}

export interface Proxy {
  port: number;
  running: RunningPortcullis;
  logs: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** A Portcullis started from YAML (its `address` port), with its log lines captured. */
export async function startProxy(yaml: string, name = 'test.yaml'): Promise<Proxy> {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n'))
        if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const running = await startPortcullis(parseConfig(yaml, name), {
    logger: createLogger('debug', sink),
  });
  await running.idp.start();
  return { port: running.port, running, logs, close: () => running.close() };
}

/** The stack's YAML for another Portcullis on `port` (route hosts carry the port). */
export function yamlOnPort(yaml: string, fromPort: number, toPort: number): string {
  return yaml.replace(new RegExp(`:${fromPort}(?!\\d)`, 'g'), `:${toPort}`);
}

/** A Portcullis running as its own process (`portcullis serve`), its JSON log lines parsed. */
export interface ServeProcess {
  port: number;
  logs: Array<Record<string, unknown>>;
  /** Everything it printed, for failure messages. */
  output(): string;
  close(): Promise<void>;
}

const MAIN_JS = new URL('../../src/cli/main.js', import.meta.url).pathname;

/**
 * `portcullis serve --config <file>` in a child process, listening on `port` (the YAML's
 * `address`): a replica as operators run one, sharing nothing with this process but the store.
 */
export async function startServeProcess(yaml: string, port: number): Promise<ServeProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-serve-'));
  const file = join(dir, 'replica.yaml');
  writeFileSync(file, yaml);
  const child: ChildProcess = spawn(process.execPath, [MAIN_JS, 'serve', '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let partial = '';
  const logs: Array<Record<string, unknown>> = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const line of lines)
      if (line.trim().startsWith('{')) logs.push(JSON.parse(line) as Record<string, unknown>);
  });
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const close = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const end = Date.now() + 30_000;
  while (!(await portAccepts(port))) {
    if (Date.now() > end || child.exitCode !== null) {
      await close();
      throw new Error(`portcullis serve did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { port, logs, output: () => out, close };
}
