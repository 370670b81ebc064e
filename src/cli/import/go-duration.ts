// Go's time.ParseDuration, which oauth2-proxy's durations go through: a sequence of decimal
// numbers with units ns, us (µs), ms, s, m, h, e.g. "168h", "1h30m", "1.5h"; "0" alone is zero.
// Go has no "d": oauth2-proxy refuses "7d", so it is refused here too.

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/** Milliseconds, or null when Go would refuse the text. Negative durations are refused. */
export function parseGoDuration(text: string): number | null {
  const s = text.trim();
  if (s === '0' || s === '+0') return 0;
  if (!s || s.startsWith('-')) return null;
  const body = s.startsWith('+') ? s.slice(1) : s;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < body.length) {
    const at = PART.lastIndex;
    const m = PART.exec(body);
    if (!m || m.index !== at) return null;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return total;
}
