import { PolicyError, didYouMean, isPlainObject, typeName } from '../errors.js';
import { formatMsOfDay, parseTimeOfDay, zoneClock } from '../time.js';
import type { RequestCriterion } from './criterion.js';

const OPERATORS = ['timezone', 'after', 'before'];

export const timeOfDay: RequestCriterion = {
  name: 'time_of_day',
  needsIdentity: false,
  compile(value, path) {
    if (!isPlainObject(value)) {
      const expected = 'expected a time-of-day matcher object with timezone, after and/or before';
      throw new PolicyError(path, `${expected}, got ${typeName(value)}`);
    }
    for (const operator of Object.keys(value)) {
      if (!OPERATORS.includes(operator)) {
        const hint = didYouMean(operator, OPERATORS);
        const message = `unknown time_of_day operator "${operator}"; expected timezone, after or before${hint}`;
        throw new PolicyError([...path, operator], message);
      }
    }
    const zone = value['timezone'];
    const zonePath = [...path, 'timezone'];
    if (zone === undefined) {
      throw new PolicyError(
        zonePath,
        'time_of_day needs a timezone, e.g. "timezone: Europe/Berlin"',
      );
    }
    if (typeof zone !== 'string' || !zone) {
      throw new PolicyError(
        zonePath,
        `expected an IANA time zone name such as Europe/Berlin, got ${typeName(zone)}`,
      );
    }
    let clock: ReturnType<typeof zoneClock>;
    try {
      clock = zoneClock(zone);
    } catch {
      const expected = 'expected an IANA name such as Europe/Berlin, America/New_York or UTC';
      throw new PolicyError(zonePath, `unknown time zone "${zone}"; ${expected}`);
    }
    const after =
      value['after'] === undefined ? undefined : parseTimeOfDay(value['after'], [...path, 'after']);
    const before =
      value['before'] === undefined
        ? undefined
        : parseTimeOfDay(value['before'], [...path, 'before']);
    if (after === undefined && before === undefined) {
      throw new PolicyError(path, 'time_of_day needs "after" and/or "before"');
    }
    let inWindow: (msOfDay: number) => boolean;
    if (after !== undefined && before !== undefined) {
      // after > before is a window across midnight (e.g. 22:00-06:00), the only useful reading.
      inWindow =
        after <= before ? (t) => t >= after && t < before : (t) => t >= after || t < before;
    } else if (after !== undefined) {
      inWindow = (t) => t >= after;
    } else {
      inWindow = (t) => t < before!;
    }
    const window = [
      after !== undefined ? `after ${formatMsOfDay(after)}` : '',
      before !== undefined ? `before ${formatMsOfDay(before)}` : '',
    ]
      .filter(Boolean)
      .join(' and ');
    return {
      label: `time_of_day ${window} ${zone}`,
      haveKey: `time/${zone}`,
      test: (ctx) => inWindow(clock.msOfDay(ctx.now)),
      need: `a time ${window} in ${zone}`,
      have: (ctx) => `it is ${formatMsOfDay(clock.msOfDay(ctx.now))} in ${zone}`,
    };
  },
};
