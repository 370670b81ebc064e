import { parentPort, workerData } from 'node:worker_threads';
import { ConfigError } from './errors.js';
import type { ValidateReply, ValidateRequest } from './isolated.js';
import { lintConfig } from './lint.js';
import { validateConfig } from './load.js';

// The worker side of isolated.ts: yaml and zod live and die in this thread.
const { text, file, env, lint } = workerData as ValidateRequest;
let reply: ValidateReply;
try {
  const { cfg, raw } = validateConfig(text, file, env);
  reply = { ok: true, raw, policyTests: cfg.policyTests, lint: lint ? lintConfig(cfg, text) : [] };
} catch (e) {
  if (!(e instanceof ConfigError)) throw e;
  reply = { ok: false, issues: e.issues };
}
parentPort!.postMessage(reply);
