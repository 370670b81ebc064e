import { compileStringMatcher } from '../matchers.js';
import type { RequestCriterion } from './criterion.js';

export const httpMethod: RequestCriterion = {
  name: 'http_method',
  needsIdentity: false,
  compile(value, path) {
    // ctx.method is upper-case; normalizing the policy side keeps "is: get" from silently never matching.
    const matcher = compileStringMatcher(value, path, {
      noun: 'method',
      normalize: (s) => s.toUpperCase(),
    });
    return {
      label: `http_method ${matcher.label}`,
      haveKey: 'method',
      test: (ctx) => matcher.test(ctx.method),
      need: matcher.need,
      have: (ctx) => `the request method is ${ctx.method}`,
    };
  },
};
