// `portcullis import` as an operator runs it: the built CLI in a child process, judged by what
// it writes, what it prints and its exit status. Shared by the test/cli-import*.test.ts files.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after } from 'node:test';
import { parse } from 'yaml';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const dir = mkdtempSync(join(tmpdir(), 'portcullis-import-'));
after(() => rmSync(dir, { recursive: true, force: true }));

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** This environment minus every OAUTH2_PROXY_* and PORTCULLIS_CONFIG: only a test sets them. */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('OAUTH2_PROXY_') && k !== 'PORTCULLIS_CONFIG') env[k] = v;
  return { ...env, ...extra };
}

export function run(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      cwd: dir,
      env: childEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`portcullis ${args.join(' ')} did not exit\n${stdout}\n${stderr}`));
    }, 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function write(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Imports, asserts exit 0, and returns the written config (parsed) and the printed notes. */
export async function importOk(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ cfg: Record<string, unknown>; yaml: string; stderr: string; file: string }> {
  const out = join(dir, `out-${randomBytes(4).toString('hex')}.yaml`);
  const dash = args.indexOf('--');
  const withOut =
    dash < 0
      ? [...args, '--out', out]
      : [...args.slice(0, dash), '--out', out, ...args.slice(dash)];
  const r = await run(['import', ...withOut], env);
  assert.equal(r.code, 0, r.stderr);
  const yaml = readFileSync(out, 'utf8');
  return { cfg: parse(yaml) as Record<string, unknown>, yaml, stderr: r.stderr, file: out };
}

export async function checkOk(file: string): Promise<string> {
  const r = await run(['check', '--config', file]);
  assert.equal(r.code, 0, `portcullis check failed:\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /OK \(\d+ routes?\)/);
  return r.stdout;
}

/** Every line the importer prints about a setting it did not carry over. */
export const notCarried = (stderr: string): string[] =>
  stderr.split('\n').filter((l) => l.startsWith('not carried over: '));

export type Route = Record<string, unknown>;
export const routesOf = (cfg: Record<string, unknown>): Route[] => cfg.routes as Route[];
