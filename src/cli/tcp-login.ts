import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Transport } from './tcp-connect.js';

// The CLI's side of the programmatic login (authenticate/cli-login.ts): a loopback listener
// receives the token after the user signs in in a browser, and the token is kept in the user's
// cache directory, per Portcullis origin, so later tunnels need no login until the session ends.

const LOGIN_WAIT_MS = 5 * 60_000;

function cacheFile(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'portcullis', 'tcp-tokens.json');
}

function readCache(): Record<string, string> {
  try {
    const v = JSON.parse(readFileSync(cacheFile(), 'utf8')) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, string>) : {};
  } catch {
    return {};
  }
}

export function cachedToken(origin: string): string | null {
  const t = readCache()[origin];
  return typeof t === 'string' ? t : null;
}

/** Stores (or with null, forgets) the token for a Portcullis origin; the file is the user's alone. */
export function storeToken(origin: string, token: string | null): void {
  const all = readCache();
  if (token) all[origin] = token;
  else delete all[origin];
  const file = cacheFile();
  mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(all), { mode: 0o600 });
  renameSync(tmp, file);
}

function get(t: Transport, url: URL): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const secure = url.protocol === 'https:';
    const req = (secure ? httpsRequest : httpRequest)(url, {
      headers: { accept: 'application/json', 'user-agent': 'portcullis-tcp' },
      ...(secure ? { rejectUnauthorized: !t.insecure, ...(t.ca ? { ca: t.ca } : {}) } : {}),
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`${url.origin} did not answer`)));
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.end();
  });
}

export interface LoginOptions {
  transport: Transport;
  /** The login endpoint Portcullis named in its 407 (absolute, or a path on --portcullis-url). */
  loginUrl: string;
  /** --browser-cmd; else xdg-open/open when a desktop is there; the URL is always printed. */
  browserCmd?: string | undefined;
  log: (line: string) => void;
}

/** Runs the loopback login and returns the token Portcullis hands over. */
export async function login(o: LoginOptions): Promise<string> {
  const endpoint = new URL(o.loginUrl, o.transport.url);
  if (endpoint.protocol !== 'https:' && endpoint.protocol !== 'http:')
    throw new Error(`Portcullis named a login URL that is not http(s): ${o.loginUrl}`);
  let received: (token: string) => void = () => {};
  const token = new Promise<string>((resolve) => (received = resolve));
  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://127.0.0.1');
    const t = u.pathname === '/callback' ? u.searchParams.get('portcullis_token') : null;
    res.writeHead(t ? 200 : 404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(t ? 'Login complete: you can close this window.\n' : 'Not found\n');
    if (t) received(t);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as AddressInfo).port;
    endpoint.searchParams.set('redirect_uri', `http://127.0.0.1:${port}/callback`);
    const start = await get(o.transport, endpoint);
    if (start.status !== 200)
      throw new Error(
        `the login at ${endpoint.origin}${endpoint.pathname} answered ${start.status}: ${start.body.slice(0, 300)}`,
      );
    let url: string;
    try {
      url = (JSON.parse(start.body) as { login_url: string }).login_url;
    } catch {
      url = start.body.trim();
    }
    if (!/^https?:\/\//.test(url)) throw new Error(`unexpected login answer: ${url.slice(0, 200)}`);
    o.log(`Sign in to continue. Open this URL in your browser:\n\n  ${url}\n`);
    openBrowser(url, o.browserCmd);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error('no login within 5 minutes; run the command again')),
        LOGIN_WAIT_MS,
      );
    });
    try {
      return await Promise.race([token, timeout]);
    } finally {
      clearTimeout(timer);
    }
  } finally {
    server.close();
    server.closeAllConnections();
  }
}

function openBrowser(url: string, cmd: string | undefined): void {
  const program =
    cmd ??
    (process.platform === 'darwin'
      ? 'open'
      : process.env.DISPLAY || process.env.WAYLAND_DISPLAY
        ? 'xdg-open'
        : null);
  if (!program) return;
  try {
    const child = spawn(program, [url], { stdio: 'ignore', detached: true });
    child.on('error', () => {});
    child.unref();
  } catch {
    // The URL is printed: a missing browser is not an error.
  }
}
