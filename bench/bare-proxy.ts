// The ceiling for any proxy written on Node's own HTTP server and undici, on the same machine:
// no session, no policy, no header hygiene, nothing Portcullis does. Target (n) of the bench
// runs it so that "how far is Portcullis from nginx" can be split into what Node costs and what
// Portcullis adds. Never deploy this: it forwards whatever the client sends.
//
//   node dist/bench/bare-proxy.js <listen port> <upstream origin>
import { createServer } from 'node:http';
import { Pool } from '../src/proxy/undici.js';

const [portArg, origin] = process.argv.slice(2);
if (!portArg || !origin) {
  console.error('usage: node dist/bench/bare-proxy.js <listen port> <upstream origin>');
  process.exit(2);
}
// The same pool settings as Portcullis' src/proxy/upstreams.ts.
const pool = new Pool(origin, { connections: 256, pipelining: 1, keepAliveTimeout: 30_000 });

createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  let status = 0;
  let raw: Buffer[] = [];
  pool.dispatch(
    { path: req.url ?? '/', method: req.method as 'GET', headers: req.rawHeaders },
    {
      onConnect() {},
      onError() {
        res.writeHead(502).end();
      },
      onHeaders(s: number, h: Buffer[]) {
        status = s;
        raw = h;
        return true;
      },
      onData(c: Buffer) {
        chunks.push(c);
        return true;
      },
      onComplete() {
        const head: string[] = [];
        for (let i = 0; i < raw.length; i += 2) {
          const k = raw[i]!.toString('latin1');
          const l = k.toLowerCase();
          if (l !== 'connection' && l !== 'keep-alive')
            head.push(k, raw[i + 1]!.toString('latin1'));
        }
        res.writeHead(status, head).end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
      },
    },
  );
}).listen(Number(portArg), '127.0.0.1');
