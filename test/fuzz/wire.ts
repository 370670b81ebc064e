// Both ends of the wire for the differential fuzz: a client that sends bytes exactly as written
// (fetch and undici would normalize the target and the Host), and an upstream that records the
// request it was handed, including the ones Node's own parser refuses.
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface RawReply {
  /** 0 when no status line came back (connection reset, timeout). */
  status: number;
  head: string;
  error?: string;
}

/**
 * One request on its own connection. The client connects from 127.0.0.2, an address no
 * Portcullis in the fuzz trusts, so it is judged like any client on the internet.
 */
export function sendRaw(port: number, bytes: Buffer, timeoutMs = 4000): Promise<RawReply> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const head = end === -1 ? text : text.slice(0, end);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      resolve({ status: m ? Number(m[1]) : 0, head, ...(error && !m ? { error } : {}) });
    };
    // The answer's head is all the fuzz needs: stop once it is in, whatever the body does.
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    // No half-close: nginx and Portcullis read an early FIN as the client giving up.
    sock.on('connect', () => sock.write(bytes));
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      if (Buffer.concat(chunks).includes('\r\n\r\n')) finish();
    });
    sock.on('error', (e) => finish(e.message));
    sock.on('close', () => finish('closed'));
  });
}

export interface Received {
  upstream: string;
  method: string;
  /** req.url: the request-target exactly as the upstream's HTTP parser delivered it. */
  url: string;
  rawHeaders: Array<[string, string]>;
}

export interface Recorder {
  name: string;
  port: number;
  received: Received[];
  /** Requests that reached the upstream's socket but that Node's parser refused (never served). */
  refused: Array<{ code: string; bytes: string }>;
  clear(): void;
  close(): Promise<void>;
}

export async function startRecorder(name: string): Promise<Recorder> {
  const received: Received[] = [];
  const refused: Recorder['refused'] = [];
  const server = http.createServer((req, res) => {
    const rawHeaders: Array<[string, string]> = [];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2)
      rawHeaders.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
    received.push({ upstream: name, method: req.method ?? '', url: req.url ?? '', rawHeaders });
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'x-fuzz-upstream': name });
    res.end(`upstream ${name}\n`);
  });
  server.on('clientError', (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket) => {
    refused.push({
      code: err.code ?? err.message,
      bytes: err.rawPacket ? err.rawPacket.toString('latin1').slice(0, 300) : '',
    });
    if (socket.writable)
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    name,
    port: (server.address() as AddressInfo).port,
    received,
    refused,
    clear() {
      received.length = 0;
      refused.length = 0;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
