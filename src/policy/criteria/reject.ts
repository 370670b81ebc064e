import type { RequestCriterion } from './criterion.js';
import { noFlag } from './helpers.js';

export const reject: RequestCriterion = {
  name: 'reject',
  needsIdentity: false,
  compile(value, path) {
    noFlag('reject', value, path);
    return {
      label: 'reject',
      haveKey: 'reject',
      test: () => false,
      need: 'something "reject" never allows',
      have: () => 'reject never matches',
    };
  },
};
