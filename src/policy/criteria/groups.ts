import { compileListMatcher } from '../matchers.js';
import type { IdentityCriterion } from './criterion.js';
import { describeValues, groupsOf } from './helpers.js';

export const groups: IdentityCriterion = {
  name: 'groups',
  needsIdentity: true,
  compile(value, path) {
    const matcher = compileListMatcher(value, path, { noun: 'group', stringsOnly: true });
    return {
      label: `groups ${matcher.label}`,
      haveKey: 'groups',
      test: (_ctx, id) => matcher.test(groupsOf(id)),
      need: matcher.need,
      have: (_ctx, id) => {
        const held = groupsOf(id);
        if (
          held === undefined ||
          held === null ||
          (Array.isArray(held) && held.length === 0) ||
          held === ''
        ) {
          return 'no groups claim in your session';
        }
        return `you have ${describeValues(held)}`;
      },
    };
  },
};
