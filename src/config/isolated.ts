import { Worker } from 'node:worker_threads';
import { buildConfig } from './build.js';
import { ConfigError, keyPath, readConfigText, type ConfigIssue } from './errors.js';
import type { RawConfig } from './schema.js';
import type { Config } from './types.js';

// A running server needs the config's result, not the YAML parser and the schema library that
// produced it: together they keep ~14 MB resident for the life of the process (measured: RSS
// of a process that parsed the bench config in-process vs in a worker that then exited). So
// `serve` and its reloads parse and validate in a short-lived worker thread, which hands back
// the schema-valid raw config; this thread then builds the Config from it (buildConfig imports
// neither). Errors are the same ConfigError, with the same lines, as parseConfig's. The build
// runs in both threads (the worker needs its result for the line numbers of semantic errors and
// for `check`'s findings): a few milliseconds at start and reload, never per request.

export interface ValidateRequest {
  text: string;
  file: string;
  env: Record<string, string | undefined>;
  lint: boolean;
}

export type ValidateReply =
  | { ok: true; raw: RawConfig; policyTests: Config['policyTests']; lint: ConfigIssue[] }
  | { ok: false; issues: ConfigIssue[] };

export interface Loaded {
  cfg: Config;
  /** `portcullis check`'s findings, when asked for. */
  lint: ConfigIssue[];
}

export async function loadConfigFileIsolated(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  opts: { lint?: boolean } = {},
): Promise<Loaded> {
  return parseConfigIsolated(readConfigText(file), file, env, opts);
}

/** parseConfig (plus lintConfig when asked), without loading yaml or zod into this thread. */
export async function parseConfigIsolated(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  opts: { lint?: boolean } = {},
): Promise<Loaded> {
  const request: ValidateRequest = { text, file, env: { ...env }, lint: opts.lint === true };
  const reply = await inWorker(request);
  if (!reply) return inThisThread(request);
  if (!reply.ok) throw new ConfigError(file, reply.issues);
  const problems: ConfigIssue[] = [];
  // The worker built this same raw config without a problem; one can only appear here if a
  // file it names (a secret, a certificate) changed in between. Reported without a line.
  const cfg = buildConfig(reply.raw, file, (path, message) =>
    problems.push({ key: keyPath(path), line: 0, column: 0, severity: 'error', message }),
  );
  if (problems.length || !cfg) throw new ConfigError(file, problems);
  cfg.policyTests = reply.policyTests;
  return { cfg, lint: reply.lint };
}

/** Null when the worker could not do the job (not started, crashed): the caller falls back. */
function inWorker(request: ValidateRequest): Promise<ValidateReply | null> {
  return new Promise((resolve) => {
    let worker: Worker;
    try {
      worker = new Worker(new URL('./validate-worker.js', import.meta.url), {
        workerData: request,
        stdout: false,
        stderr: false,
      });
    } catch {
      resolve(null);
      return;
    }
    let reply: ValidateReply | null = null;
    worker.once('message', (m: ValidateReply) => {
      reply = m;
    });
    worker.once('error', () => {
      reply = null;
    });
    worker.once('exit', () => resolve(reply));
  });
}

async function inThisThread(request: ValidateRequest): Promise<Loaded> {
  const { validateConfig } = await import('./load.js');
  const { cfg } = validateConfig(request.text, request.file, request.env);
  if (!request.lint) return { cfg, lint: [] };
  const { lintConfig } = await import('./lint.js');
  return { cfg, lint: lintConfig(cfg, request.text) };
}
