// A sample upstream that reports exactly what reached it, so the demo and the tests can see
// which identity headers the proxy injected and whether it altered the request.
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createHash } from 'node:crypto';

export interface RunningWhoami {
  url: string;
  port: number;
  close(): Promise<void>;
}

const IDENTITY_HEADERS = new Set([
  'x-forwarded-user',
  'x-forwarded-email',
  'x-forwarded-groups',
  'x-portcullis-jwt-assertion',
]);
const ECHO_BODY_LIMIT = 64 * 1024;
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const WS_MAX_MESSAGE = 16 * 1024 * 1024;

const esc = (s: unknown): string =>
  String(s).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

function pairs(raw: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  extra: Record<string, string> = {},
): void {
  const body = JSON.stringify(value, null, 2);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...extra,
  });
  res.end(body);
}

function wantsJson(req: IncomingMessage, url: URL): boolean {
  return (
    url.searchParams.get('format') === 'json' ||
    /application\/json/i.test(String(req.headers.accept ?? ''))
  );
}

async function readUpTo(
  req: IncomingMessage,
  limit: number,
): Promise<{ text: string; bytes: number; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let kept = 0;
  let bytes = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (kept < limit) {
      const part = chunk.subarray(0, limit - kept);
      chunks.push(part);
      kept += part.length;
    }
  }
  return { text: Buffer.concat(chunks).toString('utf8'), bytes, truncated: bytes > kept };
}

function htmlReport(
  name: string,
  seen: {
    method: string;
    url: string;
    httpVersion: string;
    rawHeaders: Array<[string, string]>;
    remoteAddress?: string;
    body?: string;
  },
): string {
  const rows = seen.rawHeaders
    .map(([k, v]) => {
      const hl = IDENTITY_HEADERS.has(k.toLowerCase());
      return `<tr${hl ? ' class="identity"' : ''}><th>${esc(k)}</th><td>${esc(v)}</td></tr>`;
    })
    .join('\n');
  const user = seen.rawHeaders.find(([k]) => k.toLowerCase() === 'x-forwarded-user')?.[1];
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>whoami - ${esc(name)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#111}
table{border-collapse:collapse;width:100%;max-width:1000px}th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #ddd;vertical-align:top;word-break:break-all}
th{width:260px;font-family:ui-monospace,monospace;font-weight:600}td{font-family:ui-monospace,monospace}
tr.identity{background:#fef3c7}tr.identity th::after{content:" \\2605";color:#b45309}
.who{font-size:1.2em;margin:12px 0}
</style>
</head>
<body>
<h1>whoami <small>(${esc(name)})</small></h1>
<p class="who" id="who">${user ? `Signed in as <strong id="user">${esc(user)}</strong>` : 'No identity headers received.'}</p>
<p><code id="request-line">${esc(seen.method)} ${esc(seen.url)} HTTP/${esc(seen.httpVersion)}</code></p>
<table id="headers">
<thead><tr><th>Header</th><th>Value</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
${seen.body ? `<h2>Body</h2><pre id="body">${esc(seen.body)}</pre>` : ''}
</body>
</html>`;
}

export function startWhoami(opts: { port?: number; name?: string } = {}): Promise<RunningWhoami> {
  const name = opts.name ?? 'whoami';
  const sockets = new Set<Duplex>();

  // Users with hundreds of groups get large identity headers (X-Forwarded-Groups and the signed
  // assertion can pass 16 KB together): like an upstream configured for them, accept 64 KB.
  const server = http.createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: (err as Error).message });
      else res.destroy();
    });
  });
  // Long enough that a proxy's pooled connections are really reused between test requests.
  server.keepAliveTimeout = 30_000;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://whoami.invalid');
    res.setHeader('x-whoami-name', name);

    if (url.pathname === '/upload' && req.method === 'POST') {
      // Hash as the bytes arrive: the point is to prove the proxy streams large bodies.
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of req as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        hash.update(chunk);
      }
      sendJson(res, 200, { bytes, sha256: hash.digest('hex') });
      return;
    }

    if (url.pathname === '/sse' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.flushHeaders();
      for (let i = 1; i <= 5; i++) {
        if (res.destroyed) return;
        res.write(`id: ${i}\nevent: tick\ndata: ${JSON.stringify({ n: i, at: Date.now() })}\n\n`);
        if (i < 5) await new Promise((r) => setTimeout(r, 100));
      }
      res.end();
      return;
    }

    if (url.pathname === '/slow') {
      const ms = Math.max(0, Math.min(Number(url.searchParams.get('ms') ?? '1000') || 0, 600_000));
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ms);
        res.once('close', () => {
          clearTimeout(t);
          resolve();
        });
      });
      if (!res.destroyed && !res.writableEnded) sendJson(res, 200, { slept: ms, name });
      return;
    }

    if (url.pathname === '/ws') {
      sendJson(
        res,
        426,
        { error: 'WebSocket upgrade required' },
        { upgrade: 'websocket', connection: 'Upgrade' },
      );
      return;
    }

    // Every other path echoes, so any route the proxy maps here can be inspected.
    const body =
      req.method === 'GET' || req.method === 'HEAD'
        ? undefined
        : await readUpTo(req, ECHO_BODY_LIMIT);
    const seen = {
      name,
      method: req.method ?? '',
      url: req.url ?? '',
      httpVersion: req.httpVersion,
      headers: req.headers,
      rawHeaders: pairs(req.rawHeaders),
      remoteAddress: req.socket.remoteAddress,
      ...(body ? { body: body.text, bodyBytes: body.bytes, bodyTruncated: body.truncated } : {}),
    };
    if (wantsJson(req, url)) {
      sendJson(res, 200, seen);
    } else {
      const html = htmlReport(name, seen);
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-length': Buffer.byteLength(html),
      });
      res.end(html);
    }
  }

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://whoami.invalid');
    const key = req.headers['sec-websocket-key'];
    if (
      url.pathname !== '/ws' ||
      String(req.headers.upgrade).toLowerCase() !== 'websocket' ||
      typeof key !== 'string' ||
      req.headers['sec-websocket-version'] !== '13'
    ) {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const accept = createHash('sha1')
      .update(key + WS_GUID)
      .digest('base64');
    const protocol = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')[0]
      ?.trim();
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\n' +
        'Upgrade: websocket\r\n' +
        'Connection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n` +
        (protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : '') +
        `X-Whoami-Name: ${name}\r\n` +
        '\r\n',
    );
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    websocketEcho(socket, head, {
      name,
      method: req.method ?? '',
      url: req.url ?? '',
      httpVersion: req.httpVersion,
      headers: req.headers,
      rawHeaders: pairs(req.rawHeaders),
    });
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      const port = (server.address() as AddressInfo).port;
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** Builds one final frame; servers send unmasked frames, clients must pass mask = true. */
export function wsFrame(opcode: number, payload: Buffer, mask = false): Buffer {
  const len = payload.length;
  const headerLen = 2 + (len < 126 ? 0 : len < 65536 ? 2 : 8) + (mask ? 4 : 0);
  const header = Buffer.alloc(headerLen);
  header[0] = 0x80 | opcode;
  let off = 2;
  if (len < 126) {
    header[1] = len;
  } else if (len < 65536) {
    header[1] = 126;
    header.writeUInt16BE(len, 2);
    off = 4;
  } else {
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(len), 2);
    off = 10;
  }
  if (!mask) return Buffer.concat([header, payload]);
  header[1] = header[1]! | 0x80;
  const key = Buffer.from(
    [Math.random() * 256, Math.random() * 256, Math.random() * 256, Math.random() * 256].map(
      Math.floor,
    ),
  );
  key.copy(header, off);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ key[i & 3]!;
  return Buffer.concat([header, body]);
}

export interface WsFrame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

/** Incremental RFC 6455 frame parser; unmasks client frames, takes server frames as they are. */
export class WsParser {
  private buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): WsFrame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: WsFrame[] = [];
    for (;;) {
      if (this.buf.length < 2) break;
      const b0 = this.buf[0]!;
      const b1 = this.buf[1]!;
      const masked = (b1 & 0x80) !== 0;
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) break;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) break;
        const big = this.buf.readBigUInt64BE(2);
        if (big > BigInt(WS_MAX_MESSAGE)) throw new Error('frame too large');
        len = Number(big);
        off = 10;
      }
      const maskLen = masked ? 4 : 0;
      if (this.buf.length < off + maskLen + len) break;
      let payload = this.buf.subarray(off + maskLen, off + maskLen + len);
      if (masked) {
        const key = this.buf.subarray(off, off + 4);
        payload = Buffer.from(payload);
        for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i & 3]!;
      } else {
        payload = Buffer.from(payload);
      }
      frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload });
      this.buf = this.buf.subarray(off + maskLen + len);
    }
    return frames;
  }
}

// Echoes text and binary messages; the text message "__whoami__" is answered with the
// upgrade request as seen here (JSON), so tests can check identity headers on WebSockets.
function websocketEcho(socket: Duplex, head: Buffer, seen: unknown): void {
  const parser = new WsParser();
  let fragments: Buffer[] = [];
  let fragmentOpcode = 0;
  let closing = false;

  const fail = (code: number) => {
    if (closing) return;
    closing = true;
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code);
    socket.end(wsFrame(0x8, p));
  };

  const onData = (chunk: Buffer) => {
    let frames: WsFrame[];
    try {
      frames = parser.push(chunk);
    } catch {
      fail(1009);
      return;
    }
    for (const f of frames) {
      if (closing) return;
      switch (f.opcode) {
        case 0x0: // continuation
        case 0x1:
        case 0x2: {
          if (f.opcode !== 0x0) {
            fragments = [];
            fragmentOpcode = f.opcode;
          }
          fragments.push(f.payload);
          if (!f.fin) break;
          const message = Buffer.concat(fragments);
          fragments = [];
          if (fragmentOpcode === 0x1 && message.toString('utf8') === '__whoami__') {
            socket.write(wsFrame(0x1, Buffer.from(JSON.stringify(seen))));
          } else {
            socket.write(wsFrame(fragmentOpcode, message));
          }
          break;
        }
        case 0x8: {
          closing = true;
          // Echo the status code back, as the closing handshake expects.
          socket.end(wsFrame(0x8, f.payload.subarray(0, 2)));
          return;
        }
        case 0x9:
          socket.write(wsFrame(0xa, f.payload));
          break;
        case 0xa:
          break;
        default:
          fail(1002);
          return;
      }
    }
  };

  (socket as Socket).setNoDelay?.(true);
  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
  if (head.length) onData(head);
}
