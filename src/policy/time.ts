import { PolicyError, typeName, type PolicyPath } from './errors.js';

const DAY_MS = 86_400_000;

/** Milliseconds since local midnight in a zone, DST-correct. One instance per zone. */
export interface ZoneClock {
  readonly zone: string;
  msOfDay(now: number): number;
}

const clocks = new Map<string, ZoneClock>();

/** Throws RangeError for a zone Intl does not know. Instances are shared per zone name. */
export function zoneClock(zone: string): ZoneClock {
  const cached = clocks.get(zone);
  if (cached) return cached;
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone: zone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
  // UTC offsets only change on whole-minute instants, so the offset found for one minute holds
  // for all of it; a busy route then asks Intl about once a minute instead of per request.
  let cachedMinute = NaN;
  let cachedOffset = 0;
  const offsetAt = (minuteStart: number): number => {
    let y = 0,
      mo = 0,
      d = 0,
      h = 0,
      mi = 0,
      s = 0;
    for (const part of fmt.formatToParts(minuteStart)) {
      switch (part.type) {
        case 'year':
          y = Number(part.value);
          break;
        case 'month':
          mo = Number(part.value);
          break;
        case 'day':
          d = Number(part.value);
          break;
        case 'hour':
          h = Number(part.value);
          break;
        case 'minute':
          mi = Number(part.value);
          break;
        case 'second':
          s = Number(part.value);
          break;
        default:
          break;
      }
    }
    return Date.UTC(y, mo - 1, d, h, mi, s) - minuteStart;
  };
  const clock: ZoneClock = {
    zone,
    msOfDay(now: number): number {
      const minute = Math.floor(now / 60_000);
      if (minute !== cachedMinute) {
        cachedOffset = offsetAt(minute * 60_000);
        cachedMinute = minute;
      }
      return (((now + cachedOffset) % DAY_MS) + DAY_MS) % DAY_MS;
    },
  };
  clocks.set(zone, clock);
  return clock;
}

// Layouts accepted by Pomerium's time_of_day matcher (docs: "3:04 PM", "3:04PM", "3 PM", "3PM",
// "15:04:05.999999999", "15:04:05", "15:04"); Go's parser takes one- or two-digit hours in both.
const TWELVE_HOUR = /^(\d{1,2})(?::(\d{2}))?\s?([AaPp][Mm])$/;
const TWENTY_FOUR_HOUR = /^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?$/;

/** Parses a time of day into milliseconds since midnight. */
export function parseTimeOfDay(raw: unknown, path: PolicyPath): number {
  if (typeof raw !== 'string') {
    throw new PolicyError(
      path,
      `expected a time of day such as "9:00", "17:30:00" or "5:30PM" (quoted), got ${typeName(raw)}`,
    );
  }
  const s = raw.trim();
  let m = TWELVE_HOUR.exec(s);
  if (m) {
    const h = Number(m[1]);
    const min = m[2] === undefined ? 0 : Number(m[2]);
    if (h >= 1 && h <= 12 && min <= 59) {
      const pm = m[3]!.toLowerCase() === 'pm';
      return (((h % 12) + (pm ? 12 : 0)) * 60 + min) * 60_000;
    }
  }
  m = TWENTY_FOUR_HOUR.exec(s);
  if (m) {
    const h = Number(m[1]);
    const min = Number(m[2]);
    const sec = m[3] === undefined ? 0 : Number(m[3]);
    const ms = m[4] === undefined ? 0 : Math.floor(Number(`0.${m[4]}`) * 1000);
    if (h <= 23 && min <= 59 && sec <= 59) return ((h * 60 + min) * 60 + sec) * 1000 + ms;
  }
  throw new PolicyError(
    path,
    `"${raw}" is not a time of day; expected e.g. "9:00", "17:30:00", "5:30PM" or "5 PM"`,
  );
}

export function formatMsOfDay(ms: number): string {
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}${s ? `:${String(s).padStart(2, '0')}` : ''}`;
}

const ISO_DATE =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * Parses an ISO-8601 date or date-time to epoch ms. A value without an offset is read as UTC:
 * a policy must not mean different instants on servers in different zones.
 */
export function parseIsoDate(raw: unknown, path: PolicyPath): number {
  if (raw instanceof Date) {
    if (Number.isNaN(raw.getTime())) throw new PolicyError(path, 'invalid date');
    return raw.getTime();
  }
  if (typeof raw !== 'string')
    throw new PolicyError(
      path,
      `expected an ISO-8601 date such as "2030-01-02T16:20:00Z", got ${typeName(raw)}`,
    );
  const m = ISO_DATE.exec(raw.trim());
  if (!m)
    throw new PolicyError(
      path,
      `"${raw}" is not an ISO-8601 date; expected e.g. "2030-01-02" or "2030-01-02T16:20:00Z"`,
    );
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '', zoneRaw] = m;
  let zone = zoneRaw ?? 'Z';
  if (/^[+-]\d{4}$/.test(zone)) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const t = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}${frac}${zone.toUpperCase()}`);
  // Date.parse rolls 2030-02-30 over to March; a typo in a date must not silently move it.
  const check = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (
    Number.isNaN(t) ||
    check.getUTCMonth() !== Number(mo) - 1 ||
    check.getUTCDate() !== Number(d) ||
    Number(h) > 23 ||
    Number(mi) > 59 ||
    Number(s) > 59
  ) {
    throw new PolicyError(path, `"${raw}" is not a valid date`);
  }
  return t;
}

const DAY_NAMES = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
const DAY_ABBR = DAY_NAMES.map((d) => d.slice(0, 3));
export const DAY_LABELS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

function parseDay(raw: string, path: PolicyPath, whole: string): number {
  const d = raw.trim().toLowerCase();
  let i = DAY_ABBR.indexOf(d);
  if (i === -1) i = DAY_NAMES.indexOf(d);
  if (i === -1) {
    throw new PolicyError(
      path,
      `"${raw.trim()}" in day_of_week "${whole}" is not a day; expected English day names or 3-letter abbreviations (mon, tue, ...), "*", lists (mon,wed) or ranges (mon-fri)`,
    );
  }
  return i;
}

/**
 * Parses PPL's day-of-week string into a 7-bit mask (bit 0 = Sunday). Accepts "*", comma lists
 * and dash ranges, mixed ("mon-wed,fri"); a range that runs past Saturday wraps ("fri-mon").
 */
export function parseDaysOfWeek(raw: unknown, path: PolicyPath): number {
  if (typeof raw !== 'string')
    throw new PolicyError(
      path,
      `expected a day-of-week string such as "mon-fri", "sat,sun" or "*", got ${typeName(raw)}`,
    );
  const s = raw.trim();
  if (s === '*') return 0x7f;
  if (!s) throw new PolicyError(path, 'empty day_of_week; expected e.g. "mon-fri"');
  let mask = 0;
  for (const item of s.split(',')) {
    const ends = item.split('-');
    if (ends.length === 1) {
      mask |= 1 << parseDay(ends[0]!, path, s);
    } else if (ends.length === 2) {
      const from = parseDay(ends[0]!, path, s);
      const to = parseDay(ends[1]!, path, s);
      for (let d = from; ; d = (d + 1) % 7) {
        mask |= 1 << d;
        if (d === to) break;
      }
    } else {
      throw new PolicyError(
        path,
        `"${item}" in day_of_week "${s}" is not a day or a range like mon-fri`,
      );
    }
  }
  return mask;
}

/** Day of week in UTC (0 = Sunday) without allocating a Date. 1970-01-01 was a Thursday. */
export function utcDayOfWeek(now: number): number {
  const days = Math.floor(now / DAY_MS);
  return (((days + 4) % 7) + 7) % 7;
}
