export type PolicyPath = (string | number)[];

/** A policy that cannot be compiled. `path` is relative to the route object. */
export class PolicyError extends Error {
  constructor(
    public readonly path: PolicyPath,
    message: string,
  ) {
    super(message);
    this.name = 'PolicyError';
  }
}

/** Renders a key path the way it is written in YAML-ish dotted form: policy[0].allow.or[1]. */
export function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${p}` : p;
  }
  return out;
}

function distance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  let prev = new Array<number>(n + 1);
  let cur = new Array<number>(n + 1);
  for (let j = 0; j <= n; j++) prev[j] = j;
  for (let i = 1; i <= m; i++) {
    cur[0] = i;
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[n]!;
}

/** ' (did you mean "x"?)' for the closest known word, or '' when nothing is close enough to be a typo. */
export function didYouMean(word: string, known: readonly string[]): string {
  const w = word.toLowerCase().replace(/-/g, '_');
  let best = '';
  let bestD = Infinity;
  for (const k of known) {
    const d = k === w ? 0 : distance(w, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  // A third of the word (at least 2 edits) separates typos like "grups"/"emial" from unrelated words.
  const limit = Math.max(2, Math.floor(w.length / 3));
  if (best && bestD <= limit) return ` (did you mean "${best}"?)`;
  for (const k of known) if (k.startsWith(w) || w.startsWith(k)) return ` (did you mean "${k}"?)`;
  return '';
}

export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Date) return 'a date';
  switch (typeof v) {
    case 'object':
      return 'an object';
    case 'string':
      return `the string "${v}"`;
    case 'number':
    case 'boolean':
      return `${typeof v} ${String(v)}`;
    default:
      return typeof v;
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}
