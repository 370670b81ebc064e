// Reads a V8 .cpuprofile (node --cpu-prof) and ranks functions by self time.
import { relative } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  totalMs: number;
  connections?: number;
  rps?: number;
  top: Array<{ name: string; where: string; selfMs: number; selfPct: number }>;
  areas: Array<{ area: string; selfMs: number; selfPct: number }>;
  /** Portcullis functions by total time (self + callees). */
  inclusive: Array<{ name: string; where: string; totalMs: number; totalPct: number }>;
}

function where(cf: CallFrame, root: string): string {
  if (!cf.url) return '(native)';
  let u = cf.url.replace(/^file:\/\//, '');
  if (u.startsWith('/')) u = relative(root, u);
  return `${u}:${cf.lineNumber + 1}`;
}

/** Which part of the stack a frame belongs to, for a coarse breakdown. */
function area(cf: CallFrame, root: string): string {
  const name = cf.functionName;
  if (!cf.url) {
    if (name === '(garbage collector)') return 'garbage collection';
    if (name === '(idle)' || name === '(program)') return name;
    return 'native / V8 builtins';
  }
  let u = cf.url.replace(/^file:\/\//, '');
  if (u.startsWith('/')) u = relative(root, u);
  if (u.startsWith('node:')) {
    const m = /^node:(?:internal\/)?([a-z_]+)/.exec(u);
    return `node core: ${m?.[1] ?? u}`;
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (nm) return `dependency: ${nm[1]}`;
  const src = /^dist\/src\/([^/]+(?:\/[^/]+)?)\.js/.exec(u);
  if (src) return `portcullis: src/${src[1]}.ts`;
  return u;
}

export function analyzeProfile(p: CpuProfile, root: string): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  if (p.samples && p.timeDeltas) {
    for (let i = 0; i < p.samples.length; i++)
      self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
  } else {
    const per =
      (p.endTime - p.startTime) /
      1000 /
      Math.max(
        1,
        p.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0),
      );
    for (const n of p.nodes) self.set(n.id, (n.hitCount ?? 0) * per);
  }
  let total = 0;
  const fn = new Map<string, { name: string; where: string; selfMs: number }>();
  const areas = new Map<string, number>();
  for (const [id, ms] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const cf = n.callFrame;
    if (cf.functionName === '(idle)') continue;
    total += ms;
    const key = `${cf.functionName}|${cf.url}|${cf.lineNumber}`;
    const e = fn.get(key) ?? {
      name: cf.functionName || '(anonymous)',
      where: where(cf, root),
      selfMs: 0,
    };
    e.selfMs += ms;
    fn.set(key, e);
    const a = area(cf, root);
    areas.set(a, (areas.get(a) ?? 0) + ms);
  }
  const pct = (ms: number): number => (total ? (ms / total) * 100 : 0);
  // Inclusive time: each sample counts once for every distinct function on its stack.
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const incl = new Map<string, { name: string; where: string; totalMs: number }>();
  for (const [id, ms] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)?.callFrame;
      if (!cf || cf.functionName === '(idle)' || !/dist\/(src|bench)\//.test(cf.url)) continue;
      const key = `${cf.functionName}|${cf.url}|${cf.lineNumber}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const e = incl.get(key) ?? {
        name: cf.functionName || '(anonymous)',
        where: where(cf, root),
        totalMs: 0,
      };
      e.totalMs += ms;
      incl.set(key, e);
    }
  }
  return {
    totalMs: total,
    top: [...fn.values()]
      .sort((x, y) => y.selfMs - x.selfMs)
      .slice(0, 40)
      .map((e) => ({ ...e, selfPct: pct(e.selfMs) })),
    inclusive: [...incl.values()]
      .sort((x, y) => y.totalMs - x.totalMs)
      .slice(0, 30)
      .map((e) => ({ ...e, totalPct: pct(e.totalMs) })),
    areas: [...areas.entries()]
      .sort((x, y) => y[1] - x[1])
      .map(([a, ms]) => ({ area: a, selfMs: ms, selfPct: pct(ms) })),
  };
}
