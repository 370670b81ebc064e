import type { Identity } from '../../decide/types.js';
import { PolicyError, isPlainObject, type PolicyPath } from '../errors.js';

// Shared by several criteria; anything only one criterion needs lives in its own file.

export function quoteList(values: readonly unknown[], max = 5): string {
  const shown = values.slice(0, max).map(String).join(', ');
  return values.length > max ? `${shown}, … (${values.length} in all)` : shown;
}

/** The domain of an email, lower-cased; '' when the address does not have exactly one "@" with text on both sides. */
export function emailDomain(email: string): string {
  const at = email.indexOf('@');
  if (at <= 0 || at !== email.lastIndexOf('@') || at === email.length - 1) return '';
  return email.slice(at + 1).toLowerCase();
}

/** Groups from the session; a single group delivered as a bare string is one group, never split. */
export function groupsOf(identity: Identity): unknown {
  return identity.groups as unknown;
}

export function describeValues(value: unknown): string {
  if (Array.isArray(value)) {
    if (value.length === 0) return '(empty list)';
    return quoteList(value.map((item) => (typeof item === 'object' ? JSON.stringify(item) : item)));
  }
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** For criteria whose value PPL ignores, so `accept: false` would still accept everyone: refuse `false`. */
export function noFlag(name: string, value: unknown, path: PolicyPath): void {
  if (value === false) {
    const instead =
      name === 'accept'
        ? 'use "reject: true"'
        : name === 'reject'
          ? 'use "accept: true"'
          : 'put it under "not"';
    throw new PolicyError(
      path,
      `"${name}: false" would still match (PPL ignores the value of ${name}); ` +
        `remove the criterion or ${instead}`,
    );
  }
}

/** A value or a non-empty list of them, each with the path an error about it should point at. */
export function oneOrMany(
  raw: unknown,
  path: PolicyPath,
  what: string,
): { values: unknown[]; paths: PolicyPath[] } {
  if (Array.isArray(raw)) {
    if (raw.length === 0) throw new PolicyError(path, `expected at least one ${what}`);
    return { values: raw, paths: raw.map((_, i) => [...path, i]) };
  }
  return { values: [raw], paths: [path] };
}

/** Looks a claim up the way Pomerium does: the literal name first, then "." and "/" as nesting. */
export function claimLookup(name: string, groupsClaim: string): (identity: Identity) => unknown {
  const segments = name.replace(/\./g, '/').split('/');
  const nested = segments.length > 1;
  const isGroups = name === groupsClaim;
  return (identity) => {
    const claims = identity.claims;
    let value: unknown = Object.prototype.hasOwnProperty.call(claims, name)
      ? claims[name]
      : undefined;
    if (value === undefined && nested) value = walk(claims, segments);
    // Groups may come from a source other than the token (e.g. userinfo); Identity.groups holds them.
    if ((value === undefined || value === null) && isGroups) value = groupsOf(identity);
    return value;
  };
}

export function walk(root: unknown, segments: readonly string[]): unknown {
  let current: unknown = root;
  for (const segment of segments) {
    if (Array.isArray(current)) {
      // Pomerium stores every claim as a list; step into the objects of a list as into one object.
      const next: unknown[] = [];
      for (const element of current) {
        if (isPlainObject(element) && Object.prototype.hasOwnProperty.call(element, segment)) {
          const inner = element[segment];
          if (Array.isArray(inner)) next.push(...inner);
          else next.push(inner);
        }
      }
      if (next.length === 0) return undefined;
      current = next;
    } else if (isPlainObject(current) && Object.prototype.hasOwnProperty.call(current, segment)) {
      current = current[segment];
    } else {
      return undefined;
    }
  }
  return current;
}
