import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { normalizeIp } from '../security/cidr.js';
import { LineSink } from './line-sink.js';
import pino, { type Logger } from 'pino';

export type { Logger };

// Secrets, tokens and cookie values must never reach a log line, whatever a caller passes.
const REDACT = [
  'cookie',
  '*.cookie',
  'headers.cookie',
  'headers.authorization',
  '*.headers.cookie',
  '*.headers.authorization',
  'set-cookie',
  '*["set-cookie"]',
  'token',
  '*.token',
  'access_token',
  '*.access_token',
  'refresh_token',
  '*.refresh_token',
  'id_token',
  '*.id_token',
  'client_secret',
  '*.client_secret',
  'cookie_secret',
  '*.cookie_secret',
  'code',
  '*.code',
];

export function createLogger(
  level: string,
  destination?: NodeJS.WritableStream | pino.DestinationStream,
): Logger {
  return pino(
    {
      level,
      base: { service: 'portcullis' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? new LineSink(1),
  );
}

// The random prefix makes ids unique across processes and restarts; the counter within one.
// Decimal, not base 36: small numbers' decimal strings are cached by V8, the rest are cheap.
let counter = 0;
const prefix = `${randomBytes(6).toString('hex')}-`;
/** Short, unique per process, cheap: no crypto and no clock per request. */
export function newRequestId(): string {
  counter = counter === Number.MAX_SAFE_INTEGER ? 1 : counter + 1;
  return prefix + counter;
}

// Bounded and plain so a forwarded id cannot inject into log lines or headers.
const FORWARDED_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/**
 * The request id: the one a trusted proxy in front already assigned (so one id follows the
 * request through every hop's logs), else a new one. From anyone else it is ignored, or a
 * client could pick ids that collide with other users' requests in the logs.
 */
export function requestIdFor(
  req: IncomingMessage,
  isTrustedProxy: (ip: string) => boolean,
): string {
  const given = req.headers['x-request-id'];
  if (typeof given === 'string' && FORWARDED_ID.test(given)) {
    if (isTrustedProxy(normalizeIp(req.socket.remoteAddress ?? ''))) return given;
  }
  return newRequestId();
}
