// Child processes the bench starts (each in its own process group, so a stop takes the whole
// tree), and what /proc says about them: CPU seconds and resident memory.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface Tracked {
  name: string;
  child: ChildProcess;
  pid: number;
  /** stdout + stderr, last 64 KB, for failure messages. */
  output(): string;
  exited: Promise<number | null>;
  hasExited(): boolean;
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

const live = new Set<Tracked>();

/** Spawns `cmd` detached (own process group) and remembers it until it is stopped. */
export function spawnTracked(
  name: string,
  cmd: string,
  args: string[],
  opts: SpawnOptions = {},
): Tracked {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...opts });
  let out = '';
  const keep = (b: Buffer): void => {
    out += b.toString();
    if (out.length > 65536) out = out.slice(-65536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let done = false;
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      done = true;
      resolve(code);
    });
    child.once('error', (e) => {
      done = true;
      out += `\n[spawn error] ${e.message}`;
      resolve(null);
    });
  });
  const t: Tracked = {
    name,
    child,
    pid: child.pid ?? -1,
    output: () => out,
    exited,
    hasExited: () => done,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000) {
      live.delete(t);
      if (done || !child.pid) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        /* already gone */
      }
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
      if ((await Promise.race([exited, timer])) === 'timeout') {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
        await exited;
      }
    },
  };
  live.add(t);
  return t;
}

/** Stops everything still running (in reverse start order). */
export async function stopAll(): Promise<void> {
  const all = [...live].reverse();
  await Promise.allSettled(all.map((t) => t.stop()));
}

/** Last resort on exit: SIGKILL every group still alive. */
export function killAllSync(): void {
  for (const t of live) {
    try {
      if (t.pid > 0) process.kill(-t.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  live.clear();
}

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return n > 0 ? n : 100;
})();

interface Stat {
  ppid: number;
  ticks: number;
}

function readStat(pid: number): Stat | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may contain spaces: fields start after the last ')'.
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    return { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) };
  } catch {
    return null;
  }
}

/** `root` and every descendant process alive now. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(Number(d));
    if (!st) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(Number(d));
    children.set(st.ppid, list);
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  if (readStat(root)) walk(root);
  return out;
}

/** CPU seconds (user + system) used so far by each process, keyed by pid. */
export function cpuTicks(pids: number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const p of pids) {
    const st = readStat(p);
    if (st) m.set(p, st.ticks);
  }
  return m;
}

/** Seconds of CPU used between two snapshots (processes that vanished count what they had). */
export function cpuSecondsBetween(before: Map<number, number>, after: Map<number, number>): number {
  let ticks = 0;
  for (const [p, t] of after) ticks += t - (before.get(p) ?? 0);
  return ticks / CLK_TCK;
}

/** Resident set size in bytes (VmRSS), 0 when the process is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * A process's resident memory split by where it comes from (/proc/PID/smaps_rollup): `own` is
 * anonymous memory (the JavaScript heap, malloc, stacks), private to the process; `mapped` is
 * the rest, mostly the node binary's and libraries' pages read from disk, which every node
 * process on the machine shares and the kernel can drop and read again.
 */
export function rssSplit(pid: number): { own: number; mapped: number } {
  try {
    const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (k: string): number =>
      Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? 0);
    const rss = kb('Rss') * 1024;
    const own = kb('Anonymous') * 1024;
    return { own, mapped: rss - own };
  } catch {
    return { own: 0, mapped: 0 };
  }
}

/** Samples the summed RSS of some process trees until stopped; reports the peak. */
export class RssSampler {
  private peak = 0;
  private timer: NodeJS.Timeout;
  private pids: number[] = [];
  private n = 0;
  constructor(
    private readonly roots: number[],
    intervalMs = 200,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }
  private sample(): void {
    // Walking /proc for the trees costs more than reading a few status files: only every 10th sample.
    if (this.n++ % 10 === 0) this.pids = trees(this.roots);
    let sum = 0;
    for (const p of this.pids) sum += rssBytes(p);
    if (sum > this.peak) this.peak = sum;
  }
  stop(): number {
    clearInterval(this.timer);
    this.n = 0;
    this.sample();
    return this.peak;
  }
}

/** Summed RSS of process trees right now. */
export function treeRss(roots: number[]): number {
  let sum = 0;
  for (const r of roots) for (const p of processTree(r)) sum += rssBytes(p);
  return sum;
}

/** Every pid in the trees of `roots` right now. */
export function trees(roots: number[]): number[] {
  return roots.flatMap((r) => processTree(r));
}
