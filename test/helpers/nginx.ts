// Starts a real, throwaway nginx for integration tests: its own prefix dir, config, logs and
// temp paths, so tests never touch /etc/nginx or a system nginx that may be running.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertPortsFree, killOnExit, stopProcess, waitForPorts } from './ports.js';

export interface NginxOptions {
  /** Path of the nginx binary; defaults to $NGINX_BIN or /usr/sbin/nginx. */
  binary?: string;
  /** How long to wait for every listen port to accept connections. */
  startTimeoutMs?: number;
  /** Extra directives for the main (top-level) context, e.g. `env FOO;`. */
  mainDirectives?: string;
}

export interface StartedNginx {
  dir: string;
  /** The 127.0.0.1 ports found in the block's listen directives, in order of appearance. */
  ports: number[];
  close(): Promise<void>;
  /** error.log plus whatever nginx wrote to stderr, for assertions and failure messages. */
  errorLog(): string;
  accessLog(): string;
}

/** Ports of `listen` directives; anything not bound to loopback is refused, by project rule. */
export function nginxListenPorts(httpBlock: string): number[] {
  const ports: number[] = [];
  const noComments = httpBlock.replace(/#[^\n]*/g, '');
  for (const m of noComments.matchAll(/\blisten\s+([^\s;]+)/g)) {
    const addr = m[1]!;
    if (addr.startsWith('unix:')) continue;
    const lo = /^(?:127\.0\.0\.1|localhost):(\d+)$/.exec(addr);
    if (!lo)
      throw new Error(
        `startNginx: listen ${addr} must be 127.0.0.1:PORT (tests bind to loopback only)`,
      );
    const port = Number(lo[1]);
    if (!ports.includes(port)) ports.push(port);
  }
  return ports;
}

export async function startNginx(
  httpBlock: string,
  opts: NginxOptions = {},
): Promise<StartedNginx> {
  const binary = opts.binary ?? process.env['NGINX_BIN'] ?? '/usr/sbin/nginx';
  const ports = nginxListenPorts(httpBlock);
  if (ports.length === 0)
    throw new Error('startNginx: the http block has no `listen 127.0.0.1:PORT` to wait for');
  await assertPortsFree(ports, 'startNginx');

  const dir = mkdtempSync(join(tmpdir(), 'portcullis-nginx-'));
  const errorLogPath = join(dir, 'error.log');
  const accessLogPath = join(dir, 'access.log');
  const pidPath = join(dir, 'nginx.pid');
  // Workers default to user `nobody`, which cannot enter a 0700 mkdtemp dir owned by root to
  // write temp files or logs; running them as root keeps the dir private instead of world-writable.
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const conf = `${asRoot ? 'user root;\n' : ''}daemon off;
master_process on;
worker_processes 1;
pid ${pidPath};
error_log ${errorLogPath} info;
${opts.mainDirectives ?? ''}
events { worker_connections 512; }
http {
  access_log ${accessLogPath};
  client_body_temp_path ${join(dir, 'client_body_temp')};
  proxy_temp_path ${join(dir, 'proxy_temp')};
  fastcgi_temp_path ${join(dir, 'fastcgi_temp')};
  uwsgi_temp_path ${join(dir, 'uwsgi_temp')};
  scgi_temp_path ${join(dir, 'scgi_temp')};
  default_type application/octet-stream;
${httpBlock}
}
`;
  const confPath = join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);

  let output = '';
  let exited: string | null = null;
  // -e: nginx opens its compiled-in error log before reading the config; point it into the dir.
  // detached: its own process group, so close() and the exit hook can take master and worker together.
  const child = spawn(binary, ['-p', `${dir}/`, '-c', confPath, '-e', errorLogPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const untrack = killOnExit(child, dir);
  child.stdout!.on('data', (b: Buffer) => {
    output += b.toString();
  });
  child.stderr!.on('data', (b: Buffer) => {
    output += b.toString();
  });
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `nginx exited (code ${code}, signal ${signal})`;
      resolve();
    });
    child.once('error', (err) => {
      exited = `could not run ${binary}: ${err.message}`;
      resolve();
    });
  });

  const readLog = (p: string) => {
    try {
      return readFileSync(p, 'utf8');
    } catch {
      return '';
    }
  };
  const errorLog = () => readLog(errorLogPath) + (output ? `\n[stderr]\n${output}` : '');

  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    if (!exited && child.pid) await stopProcess(child.pid, exitPromise, 'SIGQUIT');
    untrack();
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitForPorts(ports, {
      who: `nginx (${dir})`,
      timeoutMs: opts.startTimeoutMs ?? 10_000,
      failure: () => exited,
      // nginx writes its pid file only after every listen socket is bound: this tells our nginx
      // apart from anything else that might answer on the port.
      ready: () => existsSync(pidPath) && readLog(pidPath).trim() === String(child.pid),
      diagnostics: errorLog,
    });
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }

  // Nothing but close() should keep the test process alive on nginx's account.
  child.unref();
  (child.stdout as unknown as { unref?: () => void }).unref?.();
  (child.stderr as unknown as { unref?: () => void }).unref?.();

  return { dir, ports, close, errorLog, accessLog: () => readLog(accessLogPath) };
}
