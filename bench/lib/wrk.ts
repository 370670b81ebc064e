// wrk (Debian package `wrk`) as the load generator: keep-alive, fixed connection count, and a
// Lua `done` hook that prints the figures wrk's own text output lacks (p99.9, error classes).
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface WrkResult {
  requests: number;
  durationS: number;
  rps: number;
  bytes: number;
  /** Latency in milliseconds. */
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  errors: { connect: number; read: number; write: number; timeout: number; status: number };
  /** Socket errors + HTTP statuses >= 400 (wrk counts those as `status`). */
  failed: number;
}

const DONE_LUA = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCHJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"bytes\\":%d,\\"connect\\":%d,\\"read\\":%d,\\"write\\":%d,\\"status\\":%d,\\"timeout\\":%d,\\"p50\\":%.0f,\\"p90\\":%.0f,\\"p99\\":%.0f,\\"p999\\":%.0f,\\"max\\":%.0f,\\"mean\\":%.2f}\\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
`;

// Each thread walks the cookie file from its own offset, one cookie per request, so every
// session in the file is used over and over while the run lasts.
const CYCLE_LUA = `
local cookies = {}
local idx = 0
local counter = 0
setup = function(thread)
  thread:set("offset", counter * 7919)
  counter = counter + 1
end
init = function(args)
  for line in io.lines(args[1]) do
    if #line > 0 then cookies[#cookies + 1] = line end
  end
  idx = (offset or 0) % #cookies
end
request = function()
  idx = idx + 1
  if idx > #cookies then idx = 1 end
  local h = {}
  for k, v in pairs(wrk.headers) do h[k] = v end
  h["Cookie"] = cookies[idx]
  return wrk.format(nil, nil, h)
end
`;

export function writeLuaScripts(dir: string): { done: string; cycle: string } {
  const done = join(dir, 'done.lua');
  const cycle = join(dir, 'cycle.lua');
  writeFileSync(done, DONE_LUA);
  writeFileSync(cycle, CYCLE_LUA + DONE_LUA);
  return { done, cycle };
}

export interface WrkOptions {
  url: string;
  connections: number;
  durationS: number;
  threads?: number;
  headers?: Record<string, string>;
  script: string;
  scriptArgs?: string[];
  timeoutS?: number;
}

export function runWrk(o: WrkOptions): Promise<WrkResult> {
  const threads = Math.min(o.threads ?? 2, o.connections);
  const args = [
    '-t',
    String(threads),
    '-c',
    String(o.connections),
    '-d',
    `${o.durationS}s`,
    '--timeout',
    `${o.timeoutS ?? 5}s`,
    '-s',
    o.script,
  ];
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(o.url);
  if (o.scriptArgs?.length) args.push('--', ...o.scriptArgs);
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    // wrk stops by itself after -d; this is only the bound if it hangs.
    const killer = setTimeout(() => child.kill('SIGKILL'), (o.durationS + 30) * 1000);
    child.once('error', (e) => {
      clearTimeout(killer);
      reject(e);
    });
    child.once('exit', () => {
      clearTimeout(killer);
      const line = out.split('\n').find((l) => l.startsWith('BENCHJSON '));
      if (!line) return reject(new Error(`wrk printed no result:\n${out}`));
      const j = JSON.parse(line.slice('BENCHJSON '.length)) as Record<string, number>;
      const durationS = j.duration_us! / 1e6;
      const errors = {
        connect: j.connect!,
        read: j.read!,
        write: j.write!,
        timeout: j.timeout!,
        status: j.status!,
      };
      resolve({
        requests: j.requests!,
        durationS,
        rps: j.requests! / durationS,
        bytes: j.bytes!,
        p50: j.p50! / 1000,
        p90: j.p90! / 1000,
        p99: j.p99! / 1000,
        p999: j.p999! / 1000,
        max: j.max! / 1000,
        mean: j.mean! / 1000,
        errors,
        failed: errors.connect + errors.read + errors.write + errors.timeout + errors.status,
      });
    });
  });
}
