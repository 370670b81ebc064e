import { compileStringMatcher } from '../matchers.js';
import type { IdentityCriterion } from './criterion.js';

export const user: IdentityCriterion = {
  name: 'user',
  needsIdentity: true,
  compile(value, path) {
    const matcher = compileStringMatcher(value, path, { noun: 'user' });
    return {
      label: `user ${matcher.label}`,
      haveKey: 'user',
      test: (_ctx, id) => matcher.test(id.user),
      need: matcher.need,
      have: (_ctx, id) => `your user id is ${id.user || '(empty)'}`,
    };
  },
};
