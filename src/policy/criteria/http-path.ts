import { compileStringMatcher } from '../matchers.js';
import type { RequestCriterion } from './criterion.js';

export const httpPath: RequestCriterion = {
  name: 'http_path',
  needsIdentity: false,
  compile(value, path) {
    const matcher = compileStringMatcher(value, path, { noun: 'path' });
    return {
      label: `http_path ${matcher.label}`,
      haveKey: 'path',
      test: (ctx) => matcher.test(ctx.path),
      need: matcher.need,
      have: (ctx) => `the request path is ${ctx.path}`,
    };
  },
};
