import { PolicyError } from '../errors.js';
import { compileStringMatcher } from '../matchers.js';
import type { IdentityCriterion } from './criterion.js';

// Portcullis's own criterion (Pomerium has one IdP per deployment, so no such key): which of
// the configured IdPs (`idps:`) the user signed in with, or issued their bearer token. Values
// are IdP ids as written in `idps[].id`; `default` is the IdP of the top-level idp_* keys.
export const idp: IdentityCriterion = {
  name: 'idp',
  needsIdentity: true,
  compile(value, path, opts) {
    const matcher = compileStringMatcher(value, path, { noun: 'identity provider' });
    // A typo in an id would make the rule silently never match: named ids must exist.
    const named = namedIds(value);
    if (opts.idps)
      for (const id of named)
        if (!opts.idps.includes(id))
          throw new PolicyError(
            path,
            `unknown identity provider "${id}"; expected one of ${opts.idps.join(', ')}`,
          );
    return {
      label: `idp ${matcher.label}`,
      haveKey: 'idp',
      test: (_ctx, id) => matcher.test(id.idp ?? ''),
      need: matcher.need,
      have: (_ctx, id) =>
        id.idp ? `you signed in with ${id.idp}` : 'your session names no identity provider',
    };
  },
};

/** The ids an `is`, `in` or `not_in` (or a bare string) names; prefixes and substrings are not ids. */
function namedIds(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [];
  const o = value as Record<string, unknown>;
  const out: string[] = [];
  for (const k of ['is', 'in', 'not_in'] as const) {
    const v = o[k];
    if (typeof v === 'string') out.push(v);
    else if (Array.isArray(v)) out.push(...v.filter((x): x is string => typeof x === 'string'));
  }
  return out;
}
