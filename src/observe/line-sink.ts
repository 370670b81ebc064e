import { writeSync } from 'node:fs';

// Why not pino.destination(): measured per access line in one process (bench notes in
// docs/performance.md), its asynchronous mode hands every few lines to libuv's thread pool and
// re-measures the whole pending string on each write; a worker-thread transport adds a copy and
// a thread. Writing whole lines synchronously, a few kilobytes at a time, costs under a
// microsecond per line and leaves nothing in another thread to lose at exit.

/**
 * Linux's PIPE_BUF: a write of at most this many bytes to a pipe is never split or mixed with
 * another process's write (pipe(7)); to a regular file a write is one positioned copy. Each
 * write below holds whole lines and stays within it, so the `workers` of one deployment, which
 * share stdout, never interleave inside a line. A single line longer than this is written alone.
 */
export const ATOMIC_WRITE_BYTES = 4096;
/** How long a line may wait for others to share its write: the crash bound in time. */
export const FLUSH_AFTER_MS = 50;
/** Past this much unwritable backlog (a reader that stopped reading), new lines are dropped and counted. */
const MAX_BACKLOG_BYTES = 8 * 1024 * 1024;

/**
 * A log destination for whole lines on a file descriptor: buffered until ~4 KB or 50 ms,
 * then written with write(2) in chunks that end on a line boundary. What a crash (SIGKILL, the
 * OOM killer) can lose is bounded by both: at most 4 KB, at most 50 ms of lines. A normal exit,
 * an uncaught exception included, writes the rest from the 'exit' event.
 */
export class LineSink {
  private parts: string[] = [];
  private sizes: number[] = [];
  private bytes = 0;
  private timer: NodeJS.Timeout | null = null;
  private dropped = 0;
  private readonly onExit = (): void => this.flushSync();

  constructor(
    private readonly fd: number,
    private readonly writeFn: (fd: number, data: string | Uint8Array) => number = (fd, data) =>
      typeof data === 'string' ? writeSync(fd, data) : writeSync(fd, data),
  ) {
    process.on('exit', this.onExit);
  }

  /** pino's destination interface: one call per line, newline included. */
  write(line: string): boolean {
    const size = Buffer.byteLength(line);
    if (this.bytes + size > MAX_BACKLOG_BYTES) {
      this.dropped++;
      return false;
    }
    this.parts.push(line);
    this.sizes.push(size);
    this.bytes += size;
    if (this.bytes >= ATOMIC_WRITE_BYTES) this.flushSync();
    else this.timer ??= setTimeout(this.flushFromTimer, FLUSH_AFTER_MS).unref();
    return true;
  }

  private readonly flushFromTimer = (): void => {
    this.timer = null;
    this.flushSync();
  };

  /** Writes everything buffered now; what the descriptor cannot take (EAGAIN) waits for the next try. */
  flushSync(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.dropped > 0) this.noteDropped();
    let start = 0;
    while (start < this.parts.length) {
      let end = start;
      let size = 0;
      do {
        size += this.sizes[end]!;
        end++;
      } while (end < this.parts.length && size + this.sizes[end]! <= ATOMIC_WRITE_BYTES);
      const chunk = end - start === 1 ? this.parts[start]! : this.parts.slice(start, end).join('');
      if (!this.writeAll(chunk)) break;
      this.bytes -= size;
      start = end;
    }
    if (start === this.parts.length) {
      this.parts = [];
      this.sizes = [];
    } else {
      this.parts = this.parts.slice(start);
      this.sizes = this.sizes.slice(start);
    }
    if (this.parts.length) this.timer ??= setTimeout(this.flushFromTimer, FLUSH_AFTER_MS).unref();
  }

  /** False when the descriptor would block (a full non-blocking pipe): the chunk stays buffered. */
  private writeAll(chunk: string): boolean {
    let data: string | Buffer = chunk;
    for (;;) {
      let written: number;
      try {
        written = this.writeFn(this.fd, data);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' && data === chunk) return false;
        if (code === 'EAGAIN') continue; // the rest of a chunk already begun: finish it now
        // EPIPE, EBADF: the reader is gone; nothing to write to, and no reason to crash for it.
        return true;
      }
      const total = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
      if (written >= total) return true;
      data = (typeof data === 'string' ? Buffer.from(data) : data).subarray(written);
    }
  }

  private noteDropped(): void {
    const n = this.dropped;
    this.dropped = 0;
    const line = `{"level":40,"time":"${new Date().toISOString()}","service":"portcullis","event":"log_lines_dropped","dropped":${n},"msg":"the log destination stopped taking lines; ${n} were dropped"}\n`;
    this.parts.push(line);
    this.sizes.push(Buffer.byteLength(line));
    this.bytes += Buffer.byteLength(line);
  }

  /** Stops the exit hook (tests create many sinks). */
  close(): void {
    this.flushSync();
    process.off('exit', this.onExit);
  }
}
