import { readFileSync } from 'node:fs';

export interface ConfigIssue {
  /** Key path as an operator reads it, e.g. `routes[2].policy[0].allow.or[1].groups`. */
  key: string;
  line: number;
  column: number;
  message: string;
  severity: 'error' | 'warning' | 'info';
  /** What to do about it, for warnings from `portcullis check`. */
  fix?: string | undefined;
}

export class ConfigError extends Error {
  constructor(
    public readonly file: string,
    public readonly issues: ConfigIssue[],
  ) {
    super(issues.map((i) => formatIssue(file, i)).join('\n'));
    this.name = 'ConfigError';
  }
}

export function formatIssue(file: string, i: ConfigIssue): string {
  const where = i.line ? `${file}:${i.line}:${i.column}` : file;
  return `${where}: ${i.severity}: ${i.key ? `${i.key}: ` : ''}${i.message}${i.fix ? ` (fix: ${i.fix})` : ''}`;
}

export function keyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

/** The config file's text; an unreadable file is a ConfigError naming the reason. */
export function readConfigText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, [
      {
        key: '',
        line: 0,
        column: 0,
        severity: 'error',
        message: `cannot read the config file: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      },
    ]);
  }
}
