import { randomBytes } from 'node:crypto';
import pino, { type Logger } from 'pino';

export type { Logger };

// Secrets, tokens and cookie values must never reach a log line, whatever a caller passes.
const REDACT = [
  'cookie', '*.cookie', 'headers.cookie', 'headers.authorization', '*.headers.cookie', '*.headers.authorization',
  'set-cookie', '*["set-cookie"]', 'token', '*.token', 'access_token', '*.access_token', 'refresh_token', '*.refresh_token',
  'id_token', '*.id_token', 'client_secret', '*.client_secret', 'cookie_secret', '*.cookie_secret', 'code', '*.code',
];

export function createLogger(level: string, destination?: NodeJS.WritableStream | pino.DestinationStream): Logger {
  return pino(
    { level, base: { service: 'portcullis' }, redact: { paths: REDACT, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

let counter = 0;
const prefix = randomBytes(4).toString('hex');
/** Short, unique per process, cheap: no crypto per request. */
export function newRequestId(): string {
  counter = (counter + 1) >>> 0;
  return `${prefix}-${counter.toString(36)}-${Date.now().toString(36)}`;
}
