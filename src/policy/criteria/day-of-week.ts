import { DAY_LABELS, parseDaysOfWeek, utcDayOfWeek } from '../time.js';
import type { RequestCriterion } from './criterion.js';

export const dayOfWeek: RequestCriterion = {
  name: 'day_of_week',
  needsIdentity: false,
  compile(value, path) {
    // Bit i set: day i (0 = Sunday) is allowed.
    const dayMask = parseDaysOfWeek(value, path);
    const days = DAY_LABELS.filter((_, i) => dayMask & (1 << i)).join(', ');
    return {
      label: `day_of_week ${String(value)}`,
      haveKey: 'day',
      test: (ctx) => (dayMask & (1 << utcDayOfWeek(ctx.now))) !== 0,
      need: `a day among ${days} (UTC)`,
      have: (ctx) => `it is ${DAY_LABELS[utcDayOfWeek(ctx.now)]} (UTC)`,
    };
  },
};
