import { outcomeStatus, type OutcomeCode } from './outcomes.js';

// What Portcullis answers on a CONNECT it will not tunnel. The socket is raw (Node hands it
// over before any ServerResponse exists), so the answer is written here as bytes: the status
// of the outcome table, JSON like every API answer, and `connection: close`.

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  407: 'Proxy Authentication Required',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

export interface TunnelRefusal {
  code: OutcomeCode;
  message: string;
  requestId: string;
  /** Only where the CONNECT contract answers with another status (407 for a missing login). */
  status?: number;
  headers?: Record<string, string>;
  /** Extra JSON members, e.g. login_url. */
  extra?: Record<string, string>;
}

export function tunnelRefusal(r: TunnelRefusal): { status: number; bytes: string } {
  const status = r.status ?? outcomeStatus(r.code);
  const body = JSON.stringify({
    error: r.code,
    message: r.message,
    ...r.extra,
    request_id: r.requestId,
  });
  const head = [
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}`,
    'connection: close',
    'cache-control: no-store',
    'content-type: application/json; charset=utf-8',
    `content-length: ${Buffer.byteLength(body)}`,
    `x-request-id: ${r.requestId}`,
    // Header values come from our own code, but never let one end the head early.
    ...Object.entries(r.headers ?? {}).map(([k, v]) => `${k}: ${v.replace(/[\r\n]/g, '')}`),
  ];
  return { status, bytes: `${head.join('\r\n')}\r\n\r\n${body}` };
}
