import { compileStringMatcher } from '../matchers.js';
import type { IdentityCriterion } from './criterion.js';

export const email: IdentityCriterion = {
  name: 'email',
  needsIdentity: true,
  compile(value, path) {
    // Mail providers treat addresses case-insensitively, and IdPs differ in how they case them.
    const matcher = compileStringMatcher(value, path, {
      noun: 'email',
      normalize: (s) => s.toLowerCase(),
    });
    return {
      label: `email ${matcher.label}`,
      haveKey: 'email',
      test: (_ctx, id) => matcher.test(id.email.toLowerCase()),
      need: matcher.need,
      have: (_ctx, id) => (id.email ? `your email is ${id.email}` : 'no email in your session'),
    };
  },
};
