import type { RequestCriterion } from './criterion.js';
import { noFlag } from './helpers.js';

export const accept: RequestCriterion = {
  name: 'accept',
  needsIdentity: false,
  compile(value, path) {
    noFlag('accept', value, path);
    return {
      label: 'accept',
      haveKey: 'accept',
      test: () => true,
      need: 'nothing',
      have: () => 'everyone is accepted',
    };
  },
};
