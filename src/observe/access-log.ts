import pino, { type Logger } from 'pino';

/** What one access line says about one request; undefined fields are left out, as pino does. */
export interface AccessFields {
  requestId: string;
  route: string | undefined;
  method: string | undefined;
  host: string | undefined;
  path: string;
  status: number;
  upstreamStatus: number | undefined;
  upstreamMs: number | undefined;
  ms: number;
  user: string | undefined;
  decision: string;
  reason: string;
  /** The outcome code of a page or JSON answer Portcullis gave itself (src/http/outcomes.ts). */
  outcome?: string | undefined;
  configuredHosts?: readonly string[] | undefined;
}

// The access line is the one log line written per request, so it is built here by hand rather
// than by logger.info(): pino with the redaction list in logger.ts spent ~30 µs of CPU on each
// (the wildcard paths walk every key), a third of a whole proxied request. Its keys are fixed
// and none is a secret's name, so redaction had nothing to remove; the line is the same JSON,
// key for key, in pino's order (test/access-log.test.ts compares the two).

// Printable ASCII without `"` and `\`: such a string is its own JSON body. Anything else
// (control characters, non-ASCII, lone surrogates) goes through JSON.stringify.
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const str = (s: string): string => (PLAIN.test(s) ? `"${s}"` : JSON.stringify(s));

let isoMs = -1;
let iso = '';
/** pino.stdTimeFunctions.isoTime, formatted once per millisecond instead of once per line. */
function isoNow(): string {
  const now = Date.now();
  if (now !== isoMs) {
    isoMs = now;
    iso = new Date(now).toISOString();
  }
  return iso;
}

interface PinoInternals {
  [key: symbol]: unknown;
}

/** The line pino would write for `logger.info(fields, 'request')`, without the newline. */
export function formatAccessLine(bindings: string, f: AccessFields, time = isoNow()): string {
  let s = `{"level":30,"time":"${time}"${bindings},"requestId":${str(f.requestId)}`;
  if (f.route !== undefined) s += `,"route":${str(f.route)}`;
  if (f.method !== undefined) s += `,"method":${str(f.method)}`;
  if (f.host !== undefined) s += `,"host":${str(f.host)}`;
  s += `,"path":${str(f.path)},"status":${f.status}`;
  if (f.upstreamStatus !== undefined) s += `,"upstreamStatus":${f.upstreamStatus}`;
  if (f.upstreamMs !== undefined) s += `,"upstreamMs":${f.upstreamMs}`;
  s += `,"ms":${f.ms}`;
  if (f.user !== undefined) s += `,"user":${str(f.user)}`;
  s += `,"decision":${str(f.decision)},"reason":${str(f.reason)}`;
  if (f.outcome !== undefined) s += `,"outcome":${str(f.outcome)}`;
  if (f.configuredHosts !== undefined)
    s += `,"configuredHosts":[${f.configuredHosts.map(str).join(',')}]`;
  return `${s},"msg":"request"}`;
}

/**
 * Writes the access line to the logger's own destination (the same stream, so it is ordered
 * with the logger's other lines and flushed with them) when the logger writes `info`.
 */
export function writeAccessLine(log: Logger, f: AccessFields): void {
  if (!log.isLevelEnabled('info')) return;
  const internals = log as unknown as PinoInternals;
  const stream = internals[pino.symbols.streamSym] as { write(s: string): unknown };
  const bindings = internals[pino.symbols.chindingsSym] as string;
  stream.write(`${formatAccessLine(bindings, f)}\n`);
}
