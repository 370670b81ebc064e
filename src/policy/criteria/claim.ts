import { PolicyError } from '../errors.js';
import { compileListMatcher } from '../matchers.js';
import type { IdentityCriterion } from './criterion.js';
import { claimLookup, describeValues } from './helpers.js';

/** claim/<name>: the one criterion whose key names what it checks. */
export const claim: IdentityCriterion = {
  name: 'claim',
  needsIdentity: true,
  takesSubPath: true,
  compile(value, path, opts, claimName) {
    if (!claimName)
      throw new PolicyError(path, 'claim needs a claim name, e.g. "claim/family_name: Smith"');
    const matcher = compileListMatcher(value, path, {
      noun: `claim ${claimName}`,
      stringsOnly: false,
    });
    const lookup = claimLookup(claimName, opts.groupsClaim);
    return {
      label: `claim/${claimName} ${matcher.label}`,
      haveKey: `claim/${claimName}`,
      test: (_ctx, id) => matcher.test(lookup(id)),
      need: matcher.need,
      have: (_ctx, id) => {
        const found = lookup(id);
        if (found === undefined || found === null || (Array.isArray(found) && found.length === 0)) {
          return `no ${claimName} claim in your session`;
        }
        return `your ${claimName} claim is ${describeValues(found)}`;
      },
    };
  },
};
