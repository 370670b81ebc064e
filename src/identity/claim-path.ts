// Where in a token's claims a setting such as idp_groups_claim points. IdPs nest what an IAP
// needs: Keycloak puts realm roles at realm_access.roles and client roles at
// resource_access.<client>.roles; Auth0 insists on namespaced names that are URLs full of dots
// (https://corp.example.com/roles); Cognito's names carry a colon (cognito:groups).

const own = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The value at `path`: the claim literally named so first (a namespaced Auth0 claim), else the
 * dotted path, where at each level the longest run of segments that is a key wins, so a client
 * id with dots (resource_access.app.corp.roles) needs no quoting. Own properties only: a path
 * like `__proto__.x` finds nothing rather than the prototype.
 */
export function readClaim(claims: Record<string, unknown>, path: string): unknown {
  if (own(claims, path)) return claims[path];
  const segments = path.split('.');
  if (segments.length < 2 || segments.some((s) => s === '')) return undefined;
  return walk(claims, segments, 0);
}

function walk(node: unknown, segments: readonly string[], from: number): unknown {
  if (from === segments.length) return node;
  if (Array.isArray(node)) {
    const index = segments[from]!;
    if (!/^(0|[1-9][0-9]{0,5})$/.test(index)) return undefined;
    return walk(node[Number(index)], segments, from + 1);
  }
  if (!isObject(node)) return undefined;
  for (let end = segments.length; end > from; end--) {
    const key = segments.slice(from, end).join('.');
    if (!own(node, key)) continue;
    const found = walk(node[key], segments, end);
    if (found !== undefined) return found;
  }
  return undefined;
}

export const GROUP_SEPARATORS = ['none', 'comma', 'space'] as const;
export type GroupSeparator = (typeof GROUP_SEPARATORS)[number];

/**
 * Group names from a claim value: a list of strings, or one string. A single string is one
 * group unless the IdP is known to pack a list into it (idp_groups_separator): splitting by
 * default would turn a group named "ops,admins" into membership of "admins".
 */
export function claimStrings(value: unknown, separator: GroupSeparator): string[] {
  if (Array.isArray(value)) return value.filter((g): g is string => typeof g === 'string' && !!g);
  if (typeof value !== 'string' || !value) return [];
  if (separator === 'none') return [value];
  const parts = separator === 'comma' ? value.split(',') : value.split(/\s+/);
  return parts.map((p) => p.trim()).filter(Boolean);
}

/** The union of the groups at every path, in first-seen order, without duplicates. */
export function groupsAt(
  claims: Record<string, unknown>,
  paths: readonly string[],
  separator: GroupSeparator,
): string[] {
  if (paths.length === 1) {
    const only = claimStrings(readClaim(claims, paths[0]!), separator);
    return only.length < 2 ? only : [...new Set(only)];
  }
  const out = new Set<string>();
  for (const path of paths)
    for (const g of claimStrings(readClaim(claims, path), separator)) out.add(g);
  return [...out];
}
