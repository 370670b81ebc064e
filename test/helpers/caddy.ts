// Starts a real, throwaway Caddy for integration tests: no admin endpoint, no automatic HTTPS,
// and every file it would write (storage, autosave, HOME) kept inside one temp dir.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertPortsFree, killOnExit, stopProcess, waitForPorts } from './ports.js';

export interface CaddyOptions {
  /** Path of the caddy binary; defaults to $CADDY_BIN or /usr/bin/caddy. */
  binary?: string;
  startTimeoutMs?: number;
}

export interface StartedCaddy {
  dir: string;
  /** Ports taken from the site addresses, in order of appearance. */
  ports: number[];
  /** The Caddyfile as actually run (global options and `bind` lines added). */
  caddyfile: string;
  close(): Promise<void>;
  /** Everything Caddy printed (its JSON log goes to stderr). */
  log(): string;
}

interface SiteBlock {
  addresses: string[];
  openLine: number;
  hasBind: boolean;
}

/**
 * Finds the top-level site blocks of a Caddyfile. A deliberately small reading of the format:
 * braces that open a block end their line and closing braces stand alone, which `caddy fmt`
 * style and our tests follow; snippets `(name) { }` and the global `{ }` block are skipped.
 */
function siteBlocks(lines: string[]): SiteBlock[] {
  const sites: SiteBlock[] = [];
  let depth = 0;
  let current: SiteBlock | null = null;
  lines.forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (!line) return;
    const tokens = line.split(/\s+/);
    const opens = tokens.filter((t) => t === '{').length;
    const closes = tokens.filter((t) => t === '}').length;
    if (
      depth === 0 &&
      tokens[tokens.length - 1] === '{' &&
      tokens.length > 1 &&
      !/^&?\(/.test(tokens[0]!)
    ) {
      current = {
        addresses: tokens
          .slice(0, -1)
          .join(' ')
          .split(/[\s,]+/)
          .filter(Boolean),
        openLine: i,
        hasBind: false,
      };
      sites.push(current);
    } else if (depth === 1 && current && tokens[0] === 'bind') {
      current.hasBind = true;
    }
    depth += opens - closes;
    if (depth === 0) current = null;
  });
  return sites;
}

function addressPort(addr: string): number {
  const m = /^(?:(https?):\/\/)?(\[[^\]]*\]|[^:/]*)(?::(\d+))?/.exec(addr);
  if (!m) throw new Error(`startCaddy: cannot read site address ${addr}`);
  if (m[3]) return Number(m[3]);
  return m[1] === 'http' ? 80 : 443;
}

/** Returns the Caddyfile to run and the ports to wait for. Exported for its own unit tests. */
export function prepareCaddyfile(
  caddyfile: string,
  dir: string,
): { text: string; ports: number[] } {
  const lines = caddyfile.split('\n');
  const sites = siteBlocks(lines);
  if (sites.length === 0)
    throw new Error('startCaddy: no site block (`http://127.0.0.1:PORT {`) found');
  const ports: number[] = [];
  for (const s of sites)
    for (const a of s.addresses) {
      const p = addressPort(a);
      if (!ports.includes(p)) ports.push(p);
    }
  // Caddy 2.6 listens on every interface whatever host the site address names (and has no
  // default_bind yet), so each site gets an explicit loopback bind unless it chose its own.
  for (const s of [...sites].reverse()) {
    if (!s.hasBind) lines.splice(s.openLine + 1, 0, '\tbind 127.0.0.1');
  }
  // grace_period: the default waits forever for open connections on shutdown.
  const globals = [
    '\tadmin off',
    '\tauto_https off',
    `\tstorage file_system ${join(dir, 'data')}`,
    '\tgrace_period 2s',
  ];
  // Only one global options block is allowed and it must come first: merge into the test's own.
  const firstIdx = lines.findIndex((l) => l.replace(/(^|\s)#.*$/, '').trim() !== '');
  if (firstIdx >= 0 && lines[firstIdx]!.trim() === '{') {
    lines.splice(firstIdx + 1, 0, ...globals);
    return { text: lines.join('\n'), ports };
  }
  return { text: ['{', ...globals, '}', '', ...lines].join('\n'), ports };
}

export async function startCaddy(
  caddyfile: string,
  opts: CaddyOptions = {},
): Promise<StartedCaddy> {
  const binary = opts.binary ?? process.env['CADDY_BIN'] ?? '/usr/bin/caddy';
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-caddy-'));
  let prepared: { text: string; ports: number[] };
  try {
    prepared = prepareCaddyfile(caddyfile, dir);
    await assertPortsFree(prepared.ports, 'startCaddy');
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const { text, ports } = prepared;
  for (const d of ['data', 'config', 'home', 'xdg-data']) mkdirSync(join(dir, d));
  const confPath = join(dir, 'Caddyfile');
  writeFileSync(confPath, text);

  let output = '';
  let exited: string | null = null;
  const child = spawn(binary, ['run', '--config', confPath, '--adapter', 'caddyfile'], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    // Caddy autosaves its config under XDG_CONFIG_HOME and keeps data under XDG_DATA_HOME/HOME;
    // point them all into the temp dir so tests leave nothing behind in /root.
    env: {
      ...process.env,
      HOME: join(dir, 'home'),
      XDG_CONFIG_HOME: join(dir, 'config'),
      XDG_DATA_HOME: join(dir, 'xdg-data'),
    },
  });
  const untrack = killOnExit(child, dir);
  child.stdout!.on('data', (b: Buffer) => {
    output += b.toString();
  });
  child.stderr!.on('data', (b: Buffer) => {
    output += b.toString();
  });
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `caddy exited (code ${code}, signal ${signal})`;
      resolve();
    });
    child.once('error', (err) => {
      exited = `could not run ${binary}: ${err.message}`;
      resolve();
    });
  });
  const log = () => output;

  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    if (!exited && child.pid) await stopProcess(child.pid, exitPromise, 'SIGTERM');
    untrack();
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitForPorts(ports, {
      who: `caddy (${dir})`,
      timeoutMs: opts.startTimeoutMs ?? 10_000,
      failure: () => exited,
      diagnostics: () => `${output}\n--- Caddyfile ---\n${text}`,
    });
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }

  child.unref();
  (child.stdout as unknown as { unref?: () => void }).unref?.();
  (child.stderr as unknown as { unref?: () => void }).unref?.();

  return { dir, ports, caddyfile: text, close, log };
}
