// What one access line costs in CPU, by way of writing it, in one process (no network, so the
// figure holds on a busy machine far better than a wrk run does).
//
//   node dist/bench/log-cost.js [lines]      (npm run build first)
//
// Each variant runs in its own child process and writes to its own file in a temp directory;
// lines are written a few per event-loop turn, as a server does. CPU is the process's user +
// system time (thread-pool and transport threads included) minus the same loop logging nothing.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { writeAccessLine, type AccessFields } from '../src/observe/access-log.js';
import { LineSink } from '../src/observe/line-sink.js';
import { createLogger, type Logger } from '../src/observe/logger.js';

const VARIANTS: Record<string, string> = {
  off: 'log_level: warn: nothing written (the baseline subtracted from the others)',
  'pino-async': 'logger.info() with the redaction list, pino.destination({sync: false}) (before)',
  'pino-sync': 'logger.info() with the redaction list, pino.destination({sync: true})',
  'pino-async-4k': 'logger.info(), pino.destination({sync: false, minLength: 4096})',
  'pino-transport': "logger.info(), pino.transport({target: 'pino/file'}): a worker thread",
  'pino-noredact': 'logger.info() without a redaction list, pino.destination({sync: false})',
  shipped: 'writeAccessLine() into LineSink: whole lines, written in chunks of ≤ 4 KB (now)',
};

function fields(i: number): AccessFields {
  return {
    requestId: `0a1b2c3d4e5f-${i}`,
    route: 'app',
    method: 'GET',
    host: 'app.example.com',
    path: '/some/path',
    status: 200,
    upstreamStatus: 200,
    upstreamMs: 0.41,
    ms: 0.93,
    user: 'alice@example.com',
    decision: 'allow',
    reason: 'allowed by policy',
  };
}

async function child(variant: string, file: string, lines: number): Promise<void> {
  const fd = openSync(file, 'w');
  let log: Logger;
  if (variant === 'pino-sync')
    log = createLogger('info', pino.destination({ dest: fd, sync: true }));
  else if (variant === 'pino-async-4k')
    log = createLogger('info', pino.destination({ dest: fd, sync: false, minLength: 4096 }));
  else if (variant === 'pino-transport')
    log = createLogger(
      'info',
      pino.transport({ target: 'pino/file', options: { destination: file } }),
    );
  else if (variant === 'pino-noredact')
    log = pino(
      { level: 'info', timestamp: pino.stdTimeFunctions.isoTime },
      pino.destination({ dest: fd, sync: false }),
    );
  else if (variant === 'shipped' || variant === 'off')
    log = createLogger(variant === 'off' ? 'warn' : 'info', new LineSink(fd));
  else log = createLogger('info', pino.destination({ dest: fd, sync: false }));
  const viaPino = variant.startsWith('pino');
  const perTurn = 4;
  const started = process.cpuUsage();
  let i = 0;
  await new Promise<void>((resolve) => {
    const turn = (): void => {
      for (let k = 0; k < perTurn; k++, i++) {
        const f = fields(i);
        if (viaPino) {
          if (log.isLevelEnabled('info')) log.info(f, 'request');
        } else writeAccessLine(log, f);
      }
      if (i < lines) setImmediate(turn);
      else resolve();
    };
    turn();
  });
  log.flush?.();
  const used = process.cpuUsage(started);
  // The transport's thread finishes after the flush; its CPU is in the process's total below.
  if (variant === 'pino-transport') await new Promise((r) => setTimeout(r, 1000));
  const total = process.cpuUsage();
  process.stdout.write(
    JSON.stringify({ loopUs: used.user + used.system, totalUs: total.user + total.system }),
  );
}

function main(): void {
  const [mode, variant, file, n] = process.argv.slice(2);
  if (mode === '--child') {
    void child(variant!, file!, Number(n));
    return;
  }
  const lines = Number(mode ?? 200_000);
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-log-cost-'));
  const self = fileURLToPath(import.meta.url);
  try {
    const perLine: Record<string, number[]> = {};
    // Three rounds, variants interleaved, so a busy minute hits every variant alike.
    for (let round = 0; round < 3; round++) {
      for (const v of Object.keys(VARIANTS)) {
        const file = join(dir, `${v}.log`);
        const out = execFileSync(process.execPath, [self, '--child', v, file, String(lines)], {
          encoding: 'utf8',
        });
        const { totalUs } = JSON.parse(out) as { totalUs: number };
        const written = readFileSync(file, 'utf8').split('\n').filter(Boolean).length;
        if (v !== 'off' && written < lines) throw new Error(`${v}: ${written} of ${lines} lines`);
        (perLine[v] ??= []).push(totalUs / lines);
      }
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[1]!;
    const base = median(perLine.off!);
    console.log(`Node ${process.version}, ${lines} lines per run, median of 3 rounds`);
    console.log('µs CPU per line above log_level: warn | variant');
    for (const [v, what] of Object.entries(VARIANTS)) {
      if (v === 'off') continue;
      console.log(`${(median(perLine[v]!) - base).toFixed(2).padStart(8)} | ${v}: ${what}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
