import { isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document } from 'yaml';
import type { z } from 'zod';
import { buildConfig } from './build.js';
import { ConfigError, keyPath, readConfigText, type ConfigIssue } from './errors.js';
import { locate } from './locate.js';
import {
  configSchema,
  KNOWN_GLOBAL_KEYS,
  KNOWN_IDP_KEYS,
  KNOWN_ROUTE_KEYS,
  type RawConfig,
} from './schema.js';
import { didYouMean } from './suggest.js';
import type { Config } from './types.js';

export { parseFrom } from './build.js';
export { isLoopback } from '../security/loopback.js';

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  return parseConfig(readConfigText(file), file, env);
}

/** Parses, validates and compiles a config. Throws ConfigError listing every problem found. */
export function parseConfig(
  text: string,
  file = 'portcullis.yaml',
  env: NodeJS.ProcessEnv = process.env,
): Config {
  return validateConfig(text, file, env).cfg;
}

/** parseConfig, also returning the schema-valid raw config that buildConfig turned into `cfg`. */
export function validateConfig(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv,
): { cfg: Config; raw: RawConfig } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => {
        // With prettyErrors off the parser leaves linePos unset: the offset is all there is.
        // An error at end of input points past the final newline; the operator's last line is nearer the truth.
        const offset = Math.min(e.pos[0], text.trimEnd().length);
        const pos = lc.linePos(offset);
        const dup = e.code === 'DUPLICATE_KEY' ? pairPathAt(doc, e.pos[0]) : null;
        return {
          key: dup ? keyPath(dup) : '',
          line: pos.line,
          column: pos.col,
          severity: 'error' as const,
          message: dup
            ? 'duplicate key: it is already set earlier in the same mapping (YAML keeps only one, so remove the other)'
            : /call stack/i.test(e.message)
              ? 'invalid YAML: the document is nested too deeply'
              : `invalid YAML: ${e.message.split('\n')[0]}`,
        };
      }),
    );
  }
  const issues: ConfigIssue[] = [];
  const at = (path: readonly PropertyKey[], message: string, wantKey = false): void => {
    issues.push({
      key: keyPath(path),
      ...locate(doc, lc, path, wantKey),
      severity: 'error',
      message,
    });
  };

  substituteEnv(doc, lc, env, issues);
  if (issues.length) throw new ConfigError(file, issues);

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // The yaml package refuses alias "billion laughs" expansions; that is an invalid file, not a crash.
    throw new ConfigError(file, [
      {
        key: '',
        line: 1,
        column: 1,
        severity: 'error',
        message: `invalid YAML: ${(e as Error).message} (too many or too deeply nested aliases)`,
      },
    ]);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(file, [
      {
        key: '',
        line: 1,
        column: 1,
        severity: 'error',
        message: 'expected a YAML mapping of settings (address, idp_provider_url, routes, ...)',
      },
    ]);
  }
  const parsed = configSchema.safeParse(data);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) reportZodIssue(issue, at, data);
    throw new ConfigError(file, issues);
  }
  const raw = parsed.data;
  const cfg = buildConfig(raw, file, at, (path) => locate(doc, lc, path).line);
  if (cfg)
    cfg.policyTests = (raw.policy_tests ?? []).map((t, i) => ({
      ...t,
      key: `policy_tests[${i}]`,
      line: locate(doc, lc, ['policy_tests', i]).line,
    }));
  if (issues.length) throw new ConfigError(file, issues);
  return { cfg: cfg as Config, raw };
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v = data;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return v;
}

function reportZodIssue(
  issue: z.core.$ZodIssue,
  at: (path: readonly PropertyKey[], msg: string, wantKey?: boolean) => void,
  data: unknown,
): void {
  if (issue.code === 'unrecognized_keys') {
    const known =
      issue.path.length === 0
        ? KNOWN_GLOBAL_KEYS
        : issue.path[0] === 'routes' && issue.path.length === 2
          ? KNOWN_ROUTE_KEYS
          : issue.path[0] === 'idps' && issue.path.length === 2
            ? KNOWN_IDP_KEYS
            : [];
    for (const k of issue.keys) {
      const guess = didYouMean(k, known);
      at([...issue.path, k], `unknown key${guess ? `; did you mean \`${guess}\`?` : ''}`, true);
    }
    return;
  }
  // zod 4 leaves issue.input unset by default, so "missing" is read from the data: a present
  // value of the wrong type must not be reported as a missing key.
  if (issue.code === 'invalid_type' && valueAt(data, issue.path) === undefined) {
    at(issue.path, `is required: ${issue.message.replace(/^Invalid input: /, '')}`);
    return;
  }
  at(issue.path, issue.message.replace(/^Invalid input: /, ''));
}

/** The operator's key path of a node, from the ancestors `visit` hands over. */
function ancestorsPath(ancestors: readonly unknown[], node: unknown): PropertyKey[] {
  const out: PropertyKey[] = [];
  for (let i = 0; i < ancestors.length; i++) {
    const a = ancestors[i];
    const child = i + 1 < ancestors.length ? ancestors[i + 1] : node;
    if (isPair(a) && isScalar(a.key)) out.push(String(a.key.value));
    else if (isSeq(a)) out.push(a.items.indexOf(child as never));
  }
  return out;
}

/** Key path of the mapping entry whose key starts at `offset` (for parser errors), or null. */
function pairPathAt(doc: Document, offset: number): PropertyKey[] | null {
  let found: PropertyKey[] | null = null;
  visit(doc, {
    Pair(_k, pair, ancestors) {
      if (isScalar(pair.key) && pair.key.range?.[0] === offset) {
        found = [...ancestorsPath(ancestors, pair), String(pair.key.value)];
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return found;
}

/** `${VAR}` in scalar values (never in keys, never re-parsed as YAML, so a value cannot inject structure). */
function substituteEnv(
  doc: Document,
  lc: LineCounter,
  env: NodeJS.ProcessEnv,
  issues: ConfigIssue[],
): void {
  visit(doc, {
    Scalar(_key, node, path) {
      if (typeof node.value !== 'string' || !node.value.includes('$')) return;
      const isKey = path.length > 0 && (path[path.length - 1] as { key?: unknown }).key === node;
      if (isKey) return;
      const where = keyPath(ancestorsPath(path, node));
      node.value = node.value.replace(
        /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g,
        (m, name?: string) => {
          if (m === '$$') return '$';
          const v = env[name!];
          if (v === undefined) {
            const pos = lc.linePos(node.range?.[0] ?? 0);
            issues.push({
              key: where,
              line: pos.line,
              column: pos.col,
              severity: 'error',
              message: `environment variable ${name} is not set (referenced as \${${name}}; write $$ for a literal $)`,
            });
            return '';
          }
          return v;
        },
      );
    },
  });
  // Keys are left alone: the key path in every error must be what the operator wrote.
}
