import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';

/**
 * Asks the kernel for a free loopback port. The port is released before it is returned, so
 * another process could take it in between; tests accept that small race in exchange for not
 * hard-coding ports that collide when suites run side by side.
 */
export async function freePort(): Promise<number> {
  // The kernel may hand a just-released port out again: never give one twice in this process,
  // or two servers of one test would race for it.
  for (;;) {
    const port = await kernelPort();
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

const handedOut = new Set<number>();

function kernelPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('freePort: server has no TCP address'));
        return;
      }
      const { port } = addr;
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

/** Resolves true when something accepts a TCP connection on 127.0.0.1:port. */
export function portAccepts(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ port, host });
    const done = (ok: boolean) => {
      sock.removeAllListeners();
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Fails early when a port a server is about to bind is already taken: otherwise the readiness
 * probe would connect to the squatter and declare a server up that never bound.
 */
export async function assertPortsFree(ports: number[], who: string): Promise<void> {
  const taken: number[] = [];
  for (const p of ports) if (await portAccepts(p)) taken.push(p);
  if (taken.length)
    throw new Error(`${who}: port(s) already in use on 127.0.0.1: ${taken.join(', ')}`);
}

export interface WaitForPortsOptions {
  /** Who is waited for, used in error messages. */
  who: string;
  timeoutMs: number;
  /** Returns a reason when the server can no longer come up (e.g. its process exited). */
  failure?: () => string | null;
  /** Extra readiness condition checked together with the ports (e.g. a pid file written). */
  ready?: () => boolean;
  /** Diagnostics appended to a timeout or failure error (e.g. the server's log). */
  diagnostics?: () => string;
}

/** Polls until every port accepts connections, the server fails, or the time runs out. */
export async function waitForPorts(ports: number[], o: WaitForPortsOptions): Promise<void> {
  const deadline = Date.now() + o.timeoutMs;
  const diag = () => (o.diagnostics ? `\n--- log ---\n${o.diagnostics()}` : '');
  for (;;) {
    const why = o.failure?.();
    if (why) throw new Error(`${o.who} failed to start: ${why}${diag()}`);
    let up = o.ready ? o.ready() : true;
    if (up) {
      for (const p of ports) {
        if (!(await portAccepts(p))) {
          up = false;
          break;
        }
      }
    }
    if (up) {
      // A bind failure can surface between the checks above; look once more before trusting it.
      const late = o.failure?.();
      if (late) throw new Error(`${o.who} failed to start: ${late}${diag()}`);
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${o.who} did not accept connections on 127.0.0.1:${ports.join(', ')} within ${o.timeoutMs} ms${diag()}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Stops a proxy process started by a helper: `signal` first (each proxy's own stop: SIGQUIT lets
 * nginx finish in-flight requests, SIGTERM is HAProxy's and Caddy's), then SIGKILL to its
 * process group after `graceMs`, so a test that leaks a hung request never hangs its cleanup.
 */
export async function stopProcess(
  pid: number,
  exited: Promise<unknown>,
  signal: NodeJS.Signals,
  graceMs = 5000,
): Promise<void> {
  try {
    process.kill(pid, signal);
  } catch {
    return; // already gone
  }
  let t: NodeJS.Timeout | undefined;
  const timer = new Promise<'timeout'>((r) => {
    t = setTimeout(() => r('timeout'), graceMs);
  });
  const outcome = await Promise.race([exited, timer]);
  clearTimeout(t);
  if (outcome !== 'timeout') return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  await exited;
}

const live = new Set<{ child: ChildProcess; dir: string }>();
let exitHookInstalled = false;

/**
 * Until the returned function is called, `child`'s process group is killed and `dir` removed when
 * the test process exits. A test that throws before close() must not leave a proxy holding its
 * ports for the next test file; the group kill also takes nginx's workers, which SIGKILL on the
 * master alone would orphan. `child` must be spawned with `detached: true` (its own group).
 */
export function killOnExit(child: ChildProcess, dir: string): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const l of live) {
        try {
          if (l.child.pid) process.kill(-l.child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
        try {
          rmSync(l.dir, { recursive: true, force: true });
        } catch {
          /* best effort */
        }
      }
    });
  }
  const entry = { child, dir };
  live.add(entry);
  return () => live.delete(entry);
}
