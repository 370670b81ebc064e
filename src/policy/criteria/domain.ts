import { compileStringMatcher } from '../matchers.js';
import type { IdentityCriterion } from './criterion.js';
import { emailDomain } from './helpers.js';

export const domain: IdentityCriterion = {
  name: 'domain',
  needsIdentity: true,
  compile(value, path) {
    const matcher = compileStringMatcher(value, path, {
      noun: 'email domain',
      normalize: (s) => s.toLowerCase(),
    });
    return {
      label: `domain ${matcher.label}`,
      haveKey: 'domain',
      test: (_ctx, id) => {
        const found = emailDomain(id.email);
        // No domain can satisfy any operator, not even not_in: "a@b@corp.com" must never pass as corp.com.
        return found !== '' && matcher.test(found);
      },
      need: matcher.need,
      have: (_ctx, id) => {
        if (!id.email) return 'no email in your session';
        const found = emailDomain(id.email);
        return found
          ? `your email domain is ${found}`
          : `your email "${id.email}" has no valid domain`;
      },
    };
  },
};
