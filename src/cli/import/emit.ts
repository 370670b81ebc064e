import { stringify } from 'yaml';

// What every importer hands back: the Portcullis config it built, every setting it could not
// carry over (with why), and the problems that make the result unusable or unsafe. Notes never
// carry a secret's value: they name the setting and, for secrets, at most its length.

export interface ImportNote {
  /** The peer's setting, as its user wrote it (e.g. `skip_auth_regex`, `routes[2].prefix_rewrite`). */
  setting: string;
  why: string;
}

export interface ImportResult {
  config: Record<string, unknown>;
  notes: ImportNote[];
  /** Problems that stop the import: the config would be invalid or let in whom the peer kept out. */
  errors: ImportNote[];
  /** Where the settings came from, for the header comment. */
  source: string;
}

export class ImportNotes {
  readonly notes: ImportNote[] = [];
  readonly errors: ImportNote[] = [];
  skip(setting: string, why: string): void {
    this.notes.push({ setting, why });
  }
  refuse(setting: string, why: string): void {
    this.errors.push({ setting, why });
  }
}

/** The YAML written for the operator: a header naming the source, then the keys in a stable order. */
export function renderConfig(result: ImportResult): string {
  const header = [
    `# Imported by \`portcullis import\` from ${result.source}.`,
    '# Check it with `portcullis check --config <this file>` before serving it.',
    ...(result.notes.length
      ? [
          '# Not carried over (also printed when importing):',
          ...result.notes.map((n) => `#   ${n.setting}: ${n.why.replace(/\s+/g, ' ')}`),
        ]
      : []),
  ];
  return `${header.join('\n')}\n${stringify(result.config, { lineWidth: 0 })}`;
}

/** `not carried over: <setting> — <why>` lines for stderr. */
export function formatNotes(result: ImportResult): string[] {
  return [
    ...result.errors.map((n) => `cannot import: ${n.setting} — ${n.why}`),
    ...result.notes.map((n) => `not carried over: ${n.setting} — ${n.why}`),
  ];
}
