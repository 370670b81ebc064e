import type { IdentityCriterion } from './criterion.js';
import { noFlag } from './helpers.js';

export const authenticatedUser: IdentityCriterion = {
  name: 'authenticated_user',
  needsIdentity: true,
  compile(value, path) {
    noFlag('authenticated_user', value, path);
    return {
      label: 'authenticated_user',
      haveKey: 'identity',
      // Being asked at all means someone is signed in: without an identity the answer is "unknown".
      test: () => true,
      need: 'a signed-in user',
      have: (_ctx, id) => `you are signed in as ${id.email || id.user}`,
    };
  },
};
