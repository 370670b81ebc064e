import { PolicyError, didYouMean, isPlainObject, typeName, type PolicyPath } from './errors.js';

// PPL's two matcher shapes (https://www.pomerium.com/docs/internals/ppl#string-matcher and
// #string-list-matcher; operator sets from pomerium/pomerium pkg/policy/criteria/matchers.go).
// Several operators in one matcher object must all hold, as in Pomerium where each operator
// appends a condition to the same rule body.

export const STRING_OPERATORS = [
  'is',
  'starts_with',
  'ends_with',
  'contains',
  'in',
  'not_in',
] as const;
export const LIST_OPERATORS = ['has', 'is', 'exclude'] as const;

export interface StringMatcher {
  test: (s: string) => boolean;
  /** e.g. 'is alice@example.com', for trace labels. */
  label: string;
  /** e.g. 'email alice@example.com', for "needs ..." explanations. */
  need: string;
}

export interface StringMatcherOptions {
  /** How the value is named in explanations, e.g. "email". */
  noun: string;
  /** Applied to configured values at compile time so evaluation compares like with like. */
  normalize?: (s: string) => string;
}

function requireString(v: unknown, path: PolicyPath, what: string): string {
  if (typeof v !== 'string') {
    throw new PolicyError(
      path,
      `expected ${what} as a string, got ${typeName(v)}${typeof v === 'number' ? ' (quote it in YAML)' : ''}`,
    );
  }
  return v;
}

function requireStringList(v: unknown, path: PolicyPath, what: string): string[] {
  if (!Array.isArray(v))
    throw new PolicyError(path, `expected a list of ${what}, got ${typeName(v)}`);
  if (v.length === 0) throw new PolicyError(path, `expected a non-empty list of ${what}`);
  return v.map((item, i) => requireString(item, [...path, i], what));
}

const and2 = (a: (s: string) => boolean, b: (s: string) => boolean) => (s: string) => a(s) && b(s);

export function compileStringMatcher(
  raw: unknown,
  path: PolicyPath,
  opts: StringMatcherOptions,
): StringMatcher {
  const norm = opts.normalize ?? ((s: string) => s);
  // Bare scalar is shorthand for `is` (PPL docs: "same as the `is` operator").
  if (!isPlainObject(raw)) {
    if (Array.isArray(raw)) {
      throw new PolicyError(
        path,
        `expected a string or a string matcher object (is, starts_with, ends_with, contains, in, not_in), got a list; to match any of several values use "in: [...]"`,
      );
    }
    raw = { is: requireString(raw, path, 'a string matcher value') };
  }
  const obj = raw as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.length === 0) {
    throw new PolicyError(
      path,
      `empty string matcher; expected one of ${STRING_OPERATORS.join(', ')}`,
    );
  }
  let test: ((s: string) => boolean) | undefined;
  const labels: string[] = [];
  const needs: string[] = [];
  for (const op of keys) {
    const p = [...path, op];
    const v = obj[op];
    let t: (s: string) => boolean;
    switch (op) {
      case 'is': {
        const x = norm(requireString(v, p, '"is" value'));
        t = (s) => s === x;
        labels.push(`is ${x}`);
        needs.push(`${opts.noun} ${x}`);
        break;
      }
      case 'starts_with': {
        const x = norm(requireString(v, p, '"starts_with" value'));
        t = (s) => s.startsWith(x);
        labels.push(`starts_with ${x}`);
        needs.push(`${opts.noun} starting with "${x}"`);
        break;
      }
      case 'ends_with': {
        const x = norm(requireString(v, p, '"ends_with" value'));
        t = (s) => s.endsWith(x);
        labels.push(`ends_with ${x}`);
        needs.push(`${opts.noun} ending with "${x}"`);
        break;
      }
      case 'contains': {
        const x = norm(requireString(v, p, '"contains" value'));
        t = (s) => s.includes(x);
        labels.push(`contains ${x}`);
        needs.push(`${opts.noun} containing "${x}"`);
        break;
      }
      case 'in':
      case 'not_in': {
        const list = requireStringList(v, p, 'strings').map(norm);
        const set = new Set(list);
        t = op === 'in' ? (s) => set.has(s) : (s) => !set.has(s);
        labels.push(`${op} [${list.join(', ')}]`);
        needs.push(`${opts.noun} ${op === 'in' ? '' : 'not '}one of ${list.join(', ')}`);
        break;
      }
      default:
        throw new PolicyError(
          p,
          `unknown string matcher operator "${op}"; expected one of ${STRING_OPERATORS.join(', ')}${didYouMean(op, STRING_OPERATORS)}`,
        );
    }
    test = test ? and2(test, t) : t;
  }
  return { test: test!, label: labels.join(' and '), need: needs.join(' and ') };
}

/** A claim or group value; PPL compares them with JSON equality, so 1 and "1" differ. */
export type Scalar = string | number | boolean;

export interface ListMatcher {
  /** `values` is a list, a single value (a claim given as a string is one value), or null/undefined (none). */
  test: (values: unknown) => boolean;
  label: string;
  need: string;
}

export interface ListMatcherOptions {
  /** Singular noun, e.g. "group" or "claim department". */
  noun: string;
  /** Groups are names: a YAML number there (e.g. 00123 -> 123) is almost certainly a mistake. */
  stringsOnly: boolean;
}

function countMatches(values: unknown, x: Scalar): number {
  if (values === undefined || values === null) return 0;
  if (!Array.isArray(values)) return values === x ? 1 : 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) if (values[i] === x) n++;
  return n;
}

function length(values: unknown): number {
  if (values === undefined || values === null) return 0;
  return Array.isArray(values) ? values.length : 1;
}

export function compileListMatcher(
  raw: unknown,
  path: PolicyPath,
  opts: ListMatcherOptions,
): ListMatcher {
  // Bare scalar is shorthand for `has` (PPL docs: "same as the `has` operator").
  if (!isPlainObject(raw)) raw = { has: raw };
  const obj = raw as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.length === 0)
    throw new PolicyError(
      path,
      `empty string list matcher; expected one of ${LIST_OPERATORS.join(', ')}`,
    );
  let test: ((v: unknown) => boolean) | undefined;
  const labels: string[] = [];
  const needs: string[] = [];
  for (const op of keys) {
    const p = [...path, op];
    if (!(LIST_OPERATORS as readonly string[]).includes(op)) {
      throw new PolicyError(
        p,
        `unknown string list matcher operator "${op}"; expected one of ${LIST_OPERATORS.join(', ')}${didYouMean(op, LIST_OPERATORS)}`,
      );
    }
    const v = obj[op];
    const okType =
      typeof v === 'string' ||
      (!opts.stringsOnly && (typeof v === 'number' || typeof v === 'boolean'));
    if (!okType) {
      const hint = Array.isArray(v)
        ? `; "${op}" takes one value, to accept any of several list them under "or"`
        : typeof v === 'number'
          ? ' (quote it in YAML)'
          : '';
      throw new PolicyError(
        p,
        `expected a single ${opts.stringsOnly ? 'string' : 'string, number or boolean'} for "${op}", got ${typeName(v)}${hint}`,
      );
    }
    const x = v as Scalar;
    let t: (values: unknown) => boolean;
    if (op === 'has') {
      t = (values) => countMatches(values, x) > 0;
      needs.push(`${opts.noun} ${String(x)}`);
    } else if (op === 'is') {
      t = (values) => length(values) === 1 && countMatches(values, x) === 1;
      needs.push(`exactly ${opts.noun} ${String(x)}`);
    } else {
      t = (values) => countMatches(values, x) === 0;
      needs.push(`no ${opts.noun} ${String(x)}`);
    }
    labels.push(`${op} ${String(x)}`);
    const prev = test;
    test = prev ? (values) => prev(values) && t(values) : t;
  }
  return { test: test!, label: labels.join(' and '), need: needs.join(' and ') };
}
