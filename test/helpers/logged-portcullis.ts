// A Portcullis started in the test process whose log the test reads: what an operator would see.
import { Writable } from 'node:stream';
import type { Config } from '../../src/config/types.js';
import { createLogger } from '../../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis, type StartOptions } from '../../src/server.js';

export interface LoggedPortcullis {
  proxy: RunningPortcullis;
  /** Every JSON log line so far, parsed, oldest first (the array grows as lines come). */
  logs: Array<Record<string, unknown>>;
  /** The log as written. */
  text(): string;
}

/** Starts Portcullis logging at `level` (default debug) into memory, then its IdP discovery. */
export async function startLoggedPortcullis(
  cfg: Config,
  opts: Omit<StartOptions, 'logger'> & { level?: string } = {},
): Promise<LoggedPortcullis> {
  const { level = 'debug', ...start } = opts;
  const logs: Array<Record<string, unknown>> = [];
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const s = chunk.toString('utf8');
      text += s;
      for (const line of s.split('\n'))
        if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const proxy = await startPortcullis(cfg, { ...start, logger: createLogger(level, sink) });
  try {
    await proxy.idp.start();
  } catch (e) {
    await proxy.close();
    throw e;
  }
  return { proxy, logs, text: () => text };
}
