// A Portcullis started in the test process whose log the test reads: what an operator would see.
import { Writable } from 'node:stream';
import type { Config } from '../../src/config/types.js';
import { createLogger, type Logger } from '../../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis, type StartOptions } from '../../src/server.js';

export interface MemoryLog {
  /** A logger at the given level writing here; several Portcullis instances may share it. */
  logger: Logger;
  /** Every JSON log line so far, parsed, oldest first (the array grows as lines come). */
  logs: Array<Record<string, unknown>>;
  /** The log as written, to assert no secret ever reaches it. */
  text(): string;
}

export function memoryLog(level = 'debug'): MemoryLog {
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
  return { logger: createLogger(level, sink), logs, text: () => text };
}

export interface LoggedPortcullis extends Omit<MemoryLog, 'logger'> {
  proxy: RunningPortcullis;
}

/** Starts Portcullis logging at `level` (default debug) into memory, then its IdP discovery. */
export async function startLoggedPortcullis(
  cfg: Config,
  opts: Omit<StartOptions, 'logger'> & { level?: string } = {},
): Promise<LoggedPortcullis> {
  const { level = 'debug', ...start } = opts;
  const { logger, logs, text } = memoryLog(level);
  const proxy = await startPortcullis(cfg, { ...start, logger });
  try {
    await proxy.idp.start();
  } catch (e) {
    await proxy.close();
    throw e;
  }
  return { proxy, logs, text };
}
