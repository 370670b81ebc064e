import { PolicyError, didYouMean, isPlainObject, typeName } from '../errors.js';
import { parseIsoDate } from '../time.js';
import type { RequestCriterion } from './criterion.js';

export const date: RequestCriterion = {
  name: 'date',
  needsIdentity: false,
  compile(value, path) {
    if (!isPlainObject(value) || Object.keys(value).length === 0) {
      throw new PolicyError(
        path,
        `expected a date matcher object with "after" and/or "before", got ${typeName(value)}`,
      );
    }
    let after = -Infinity;
    let before = Infinity;
    for (const [operator, bound] of Object.entries(value)) {
      if (operator === 'after') after = parseIsoDate(bound, [...path, operator]);
      else if (operator === 'before') before = parseIsoDate(bound, [...path, operator]);
      else {
        const hint = didYouMean(operator, ['after', 'before']);
        const message = `unknown date matcher operator "${operator}"; expected after or before${hint}`;
        throw new PolicyError([...path, operator], message);
      }
    }
    const window = [
      after > -Infinity ? `after ${new Date(after).toISOString()}` : '',
      before < Infinity ? `before ${new Date(before).toISOString()}` : '',
    ]
      .filter(Boolean)
      .join(' and ');
    return {
      label: `date ${window}`,
      haveKey: 'date',
      test: (ctx) => ctx.now > after && ctx.now < before,
      need: `a time ${window}`,
      have: (ctx) => `it is ${new Date(ctx.now).toISOString()}`,
    };
  },
};
