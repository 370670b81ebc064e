import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';

// The client half of a TCP route: one HTTP CONNECT to Portcullis per tunnel. Written on a raw
// socket so that, once the 200 arrives, the socket itself is the tunnel (no HTTP client sits
// in between buffering bytes), and a refusal's status and JSON are read exactly as sent.

export interface Transport {
  /** Where Portcullis listens (--portcullis-url). */
  url: URL;
  /** PEM of extra CAs to trust (--ca-cert). */
  ca?: string | undefined;
  /** --disable-tls-verification */
  insecure?: boolean | undefined;
}

export type ConnectResult =
  | { ok: true; socket: Socket }
  | {
      ok: false;
      status: number;
      /** Lower-case names. */
      headers: Record<string, string>;
      body: string;
    };

const MAX_HEAD = 64 * 1024;

export function openSocket(t: Transport): Socket {
  const port = Number(t.url.port) || (t.url.protocol === 'https:' ? 443 : 80);
  const host = t.url.hostname.replace(/^\[|\]$/g, '');
  if (t.url.protocol !== 'https:') return netConnect({ host, port });
  const opts: ConnectionOptions = {
    host,
    port,
    rejectUnauthorized: !t.insecure,
    ALPNProtocols: ['http/1.1'],
  };
  if (!/^[\d.]+$|:/.test(host)) opts.servername = host;
  if (t.ca) opts.ca = t.ca;
  return tlsConnect(opts);
}

/** CONNECT destination through Portcullis, presenting the CLI token when there is one. */
export function connectThrough(
  t: Transport,
  destination: string,
  token: string | null,
): Promise<ConnectResult> {
  return new Promise((resolve, reject) => {
    const socket = openSocket(t);
    socket.setNoDelay(true);
    const lines = [
      `CONNECT ${destination} HTTP/1.1`,
      `Host: ${destination}`,
      'User-Agent: portcullis-tcp',
      ...(token ? [`Proxy-Authorization: Portcullis ${token}`] : []),
    ];
    const onError = (e: Error): void => reject(e);
    socket.once('error', onError);
    socket.once(t.url.protocol === 'https:' ? 'secureConnect' : 'connect', () =>
      socket.write(`${lines.join('\r\n')}\r\n\r\n`),
    );
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > MAX_HEAD) fail(new Error('Portcullis sent an oversized answer'));
        return;
      }
      const headText = buf.subarray(0, end).toString('latin1');
      const rest = buf.subarray(end + 4);
      const [statusLine, ...headerLines] = headText.split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '');
      if (!m) return fail(new Error(`not an HTTP answer from ${t.url.origin}: ${statusLine}`));
      const status = Number(m[1]);
      const headers: Record<string, string> = {};
      for (const l of headerLines) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      socket.off('data', onData);
      if (status === 200) {
        socket.off('error', onError);
        socket.pause();
        if (rest.length) socket.unshift(rest);
        resolve({ ok: true, socket });
        return;
      }
      // A refusal: read its body (content-length, else until close).
      const want = Number(headers['content-length'] ?? NaN);
      let body = rest;
      const done = (): void => {
        socket.destroy();
        resolve({ ok: false, status, headers, body: body.toString('utf8') });
      };
      if (Number.isFinite(want) && body.length >= want) return done();
      socket.on('data', (c: Buffer) => {
        body = Buffer.concat([body, c]);
        if (Number.isFinite(want) && body.length >= want) done();
      });
      socket.once('end', done);
    };
    const fail = (e: Error): void => {
      socket.destroy();
      reject(e);
    };
    socket.on('data', onData);
    socket.once('end', () => {
      if (!buf.includes('\r\n\r\n'))
        reject(new Error(`${t.url.origin} closed the connection without answering the CONNECT`));
    });
  });
}
