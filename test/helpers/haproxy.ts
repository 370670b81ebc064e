// Starts a real, throwaway HAProxy for integration tests: config, Lua and state in one temp dir,
// in the foreground (-db), so tests never touch /etc/haproxy or a system HAProxy.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertPortsFree, killOnExit, stopProcess, waitForPorts } from './ports.js';

export interface StartedHaproxy {
  dir: string;
  ports: number[];
  close(): Promise<void>;
  /** Everything HAProxy printed (alerts and warnings go to stderr in -db mode). */
  log(): string;
}

/** Ports of `bind` lines; anything not bound to loopback is refused, by project rule. */
export function haproxyBindPorts(cfg: string): number[] {
  const ports: number[] = [];
  for (const m of cfg.replace(/#[^\n]*/g, '').matchAll(/^\s*bind\s+(\S+)/gm)) {
    const lo = /^127\.0\.0\.1:(\d+)$/.exec(m[1]!);
    if (!lo)
      throw new Error(
        `startHaproxy: bind ${m[1]} must be 127.0.0.1:PORT (tests bind to loopback only)`,
      );
    ports.push(Number(lo[1]));
  }
  return ports;
}

/**
 * @param cfg haproxy.cfg; every `lua-load <path>` is pointed at the matching entry of `files`
 * @param files extra files by the path the config names (e.g. the Lua script)
 */
export async function startHaproxy(
  cfg: string,
  files: Record<string, string> = {},
  opts: { binary?: string; startTimeoutMs?: number } = {},
): Promise<StartedHaproxy> {
  const binary = opts.binary ?? process.env['HAPROXY_BIN'] ?? '/usr/sbin/haproxy';
  const ports = haproxyBindPorts(cfg);
  if (!ports.length) throw new Error('startHaproxy: no `bind 127.0.0.1:PORT` line');
  await assertPortsFree(ports, 'startHaproxy');
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-haproxy-'));
  let text = cfg;
  for (const [path, body] of Object.entries(files)) {
    const local = join(dir, path.replace(/[^A-Za-z0-9._-]/g, '_'));
    writeFileSync(local, body);
    if (!text.includes(path)) throw new Error(`startHaproxy: the config does not name ${path}`);
    text = text.split(path).join(local);
  }
  const confPath = join(dir, 'haproxy.cfg');
  writeFileSync(confPath, text);

  let output = '';
  let exited: string | null = null;
  const child = spawn(binary, ['-db', '-f', confPath], {
    cwd: dir,
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
      exited = `haproxy exited (code ${code}, signal ${signal})`;
      resolve();
    });
    child.once('error', (err) => {
      exited = `could not run ${binary}: ${err.message}`;
      resolve();
    });
  });

  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    if (!exited && child.pid) await stopProcess(child.pid, exitPromise, 'SIGTERM');
    untrack();
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitForPorts(ports, {
      who: `haproxy (${dir})`,
      timeoutMs: opts.startTimeoutMs ?? 10_000,
      failure: () => exited,
      diagnostics: () => `${output}\n--- haproxy.cfg ---\n${text}`,
    });
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  child.unref();
  (child.stdout as unknown as { unref?: () => void }).unref?.();
  (child.stderr as unknown as { unref?: () => void }).unref?.();
  return { dir, ports, close, log: () => output };
}
