import cluster, { type Worker } from 'node:cluster';

// `workers: auto|N`: one primary process that only supervises, and N workers that each load
// the config themselves (the same file, the same way as a single process) and serve one
// listening port together through node:cluster. The primary accepts connections and hands
// them round-robin to the workers; a keep-alive connection stays on the worker it was given.
//
// Per-process state stays per process: the decoded-session cache, single-use login states,
// the login rate limit and /metrics (each scrape of metrics_address answers from one worker).
// Sessions themselves are shared because they live in the cookie or in redis/postgres
// (session_storage: memory is refused with workers > 1 by the config loader).

/** True inside a worker started by runCluster. */
export function isClusterWorker(): boolean {
  return cluster.isWorker;
}

/** A worker that dies this soon after it started, before listening, means the config cannot serve. */
const EARLY_EXIT_MS = 5_000;
const RESTART_DELAY_MS = 1_000;

/**
 * Runs in the primary: forks `count` workers of this same command line and supervises them.
 * SIGHUP is passed to every worker (each reloads its config), SIGTERM/SIGINT too (each drains
 * and exits); a worker that crashes later is replaced. `env` is added to each worker's
 * environment (and not to this process's). Resolves with the exit code.
 */
export function runCluster(
  count: number,
  log: (msg: string) => void = (m) => console.error(m),
  env?: Record<string, string>,
): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping = false;
    let finished = false;
    let exitCode = 0;
    const started = new Map<Worker, number>();
    const listening = new Set<Worker>();

    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      resolve(code);
    };

    const fork = (): void => {
      const w = cluster.fork(env);
      started.set(w, Date.now());
      w.once('listening', () => listening.add(w));
    };

    cluster.on('exit', (w, code, signal) => {
      const since = started.get(w) ?? 0;
      const wasListening = listening.has(w);
      started.delete(w);
      listening.delete(w);
      if (stopping) {
        if (started.size === 0) finish(exitCode);
        return;
      }
      if (!wasListening && Date.now() - since < EARLY_EXIT_MS) {
        // The config or the port is the problem, not a transient crash: restarting would loop.
        log(
          `portcullis: worker ${w.process.pid} exited before it could serve (code ${code}, signal ${signal}); stopping`,
        );
        stopping = true;
        exitCode = code || 1;
        for (const other of started.keys()) other.process.kill('SIGTERM');
        if (started.size === 0) finish(exitCode);
        return;
      }
      log(
        `portcullis: worker ${w.process.pid} exited (code ${code}, signal ${signal}); starting a new one`,
      );
      setTimeout(() => {
        if (!stopping) fork();
      }, RESTART_DELAY_MS).unref();
    });

    process.on('SIGHUP', () => {
      for (const w of started.keys()) w.process.kill('SIGHUP');
    });
    const stop = (signal: NodeJS.Signals): void => {
      // A second signal means "now", as for a single process: the workers hear it too.
      if (stopping && started.size) {
        for (const w of started.keys()) w.process.kill('SIGINT');
        return;
      }
      stopping = true;
      if (started.size === 0) return finish(exitCode);
      for (const w of started.keys()) w.process.kill(signal);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));

    for (let i = 0; i < count; i++) fork();
  });
}
