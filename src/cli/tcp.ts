import { readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { connectThrough, type Transport } from './tcp-connect.js';
import { cachedToken, login, storeToken } from './tcp-login.js';
import { TCP_HELP } from './tcp-help.js';

/** host:port as a client names it: a name or [IPv6] and a port, nothing else. */
const DESTINATION =
  /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)*):(\d{1,5})$/;

interface Options {
  destination: string;
  transport: Transport;
  browserCmd: string | undefined;
}

const log = (line: string): void => {
  process.stderr.write(`portcullis tcp: ${line}\n`);
};

export async function tcpCommand(args: string[]): Promise<number> {
  let v;
  let positionals: string[];
  try {
    ({ values: v, positionals } = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        listen: { type: 'string' },
        'portcullis-url': { type: 'string' },
        'ca-cert': { type: 'string' },
        'disable-tls-verification': { type: 'boolean' },
        'browser-cmd': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    console.error(`portcullis tcp: ${(e as Error).message}\n\n${TCP_HELP}`);
    return 2;
  }
  if (v.help) {
    console.log(TCP_HELP);
    return 0;
  }
  const usage = (msg: string): number => {
    console.error(`portcullis tcp: ${msg}\n\n${TCP_HELP}`);
    return 2;
  };
  if (positionals.length !== 1) return usage('expected one destination, HOST:PORT');
  const destination = positionals[0]!;
  const m = DESTINATION.exec(destination);
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535)
    return usage(
      `expected the destination as HOST:PORT (e.g. db.corp.example.com:5432), got "${destination}"`,
    );
  const host = destination.slice(0, destination.length - m[1]!.length - 1);
  const rawUrl = v['portcullis-url'] ?? (process.env.PORTCULLIS_URL || `https://${host}`);
  const url = URL.parse(rawUrl);
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.username)
    return usage(
      `--portcullis-url must be an http(s) URL like https://portcullis.example.com, got "${rawUrl}"`,
    );
  let ca: string | undefined;
  if (v['ca-cert']) {
    try {
      ca = readFileSync(v['ca-cert'], 'utf8');
    } catch (e) {
      return usage(`cannot read --ca-cert ${v['ca-cert']}: ${(e as NodeJS.ErrnoException).code}`);
    }
  }
  const o: Options = {
    destination: destination.toLowerCase(),
    transport: { url, ca, insecure: v['disable-tls-verification'] === true },
    browserCmd: v['browser-cmd'],
  };
  if (v.listen === undefined) return stdio(o);
  const lm = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(v.listen);
  if (!lm || Number(lm[3]) > 65535)
    return usage(`--listen must be ADDRESS:PORT like 127.0.0.1:5432, got "${v.listen}"`);
  return listen(o, lm[1] ?? lm[2]!, Number(lm[3]));
}

class Refused extends Error {}

function reachError(origin: string, e: NodeJS.ErrnoException): string {
  const certificate = /certificate|CERT|SELF_SIGNED/i.test(`${e.code ?? ''} ${e.message}`);
  // Node 24 appends advice for its own command line ("…; if the root CA is installed locally,
  // try running Node.js with --use-system-ca"): this CLI's own option is named instead.
  const message = e.message.replace(/;\s*if the root CA is installed locally[\s\S]*$/, '');
  return `cannot reach Portcullis at ${origin}: ${message}${
    certificate
      ? ' (give its CA with --ca-cert FILE, or check --portcullis-url names the host on its certificate)'
      : ''
  }`;
}

let loggingIn: Promise<string> | null = null;

/** A tunnel socket, signing in first when Portcullis asks for it (once, shared by all tunnels). */
async function tunnel(o: Options): Promise<Socket> {
  const origin = o.transport.url.origin;
  for (let attempt = 0; attempt < 2; attempt++) {
    const token = cachedToken(origin);
    const r = await connectThrough(o.transport, o.destination, token).catch((e: unknown) => {
      throw new Refused(reachError(origin, e as NodeJS.ErrnoException));
    });
    if (r.ok) return r.socket;
    let body: { error?: string; message?: string; login_url?: string } = {};
    try {
      body = JSON.parse(r.body) as typeof body;
    } catch {
      // Not Portcullis's JSON: the status says enough.
    }
    if (r.status !== 407 || attempt > 0)
      throw new Refused(
        `${o.destination} refused (${r.status}${body.error ? ` ${body.error}` : ''}): ${body.message ?? r.body.slice(0, 300)}`,
      );
    if (token) storeToken(origin, null);
    loggingIn ??= login({
      transport: o.transport,
      loginUrl:
        body.login_url ?? r.headers['x-portcullis-login-url'] ?? '/.portcullis/api/v1/login',
      browserCmd: o.browserCmd,
      log,
    }).finally(() => (loggingIn = null));
    storeToken(origin, await loggingIn);
  }
  throw new Refused(`${o.destination}: still not signed in after logging in`);
}

/** local -> tunnel -> local: each direction waits for its reader, and ends when its source does. */
async function splice(local: Socket, remote: Socket): Promise<void> {
  await pipeline(local, remote, local).catch(() => {});
}

async function stdio(o: Options): Promise<number> {
  let sock: Socket;
  try {
    sock = await tunnel(o);
  } catch (e) {
    log((e as Error).message);
    return 1;
  }
  // stdin ending (the local side is done sending) half-closes the tunnel; the answer still
  // flows until the far side closes, as ssh and nc expect.
  await pipeline(process.stdin, sock, process.stdout).catch(() => {});
  return 0;
}

async function listen(o: Options, host: string, port: number): Promise<number> {
  const server = createServer({ pauseOnConnect: true }, (local) => {
    local.on('error', () => local.destroy());
    local.setNoDelay(true);
    tunnel(o).then(
      (remote) => {
        if (local.destroyed) return remote.destroy();
        local.resume();
        void splice(local, remote);
      },
      (e: Error) => {
        log(e.message);
        local.destroy();
      },
    );
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
  } catch (e) {
    log(`cannot listen on ${host}:${port}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    return 1;
  }
  const a = server.address();
  const at =
    a && typeof a === 'object'
      ? `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`
      : '';
  log(`listening on ${at}, tunnelling to ${o.destination} through ${o.transport.url.origin}`);
  const stop = (): void => {
    server.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return new Promise<number>(() => {});
}
