import type { Identity, RequestContext } from '../decide/types.js';
import { CidrError, compileCidrs } from '../security/cidr.js';
import { PolicyError, didYouMean, isPlainObject, typeName, type PolicyPath } from './errors.js';
import { compileListMatcher, compileStringMatcher } from './matchers.js';
import { DAY_LABELS, formatMsOfDay, parseDaysOfWeek, parseIsoDate, parseTimeOfDay, utcDayOfWeek, zoneClock } from './time.js';

/** A compiled criterion: everything parsed up front, evaluation only compares. */
export interface LeafSpec {
  /** e.g. "groups has admins" */
  label: string;
  /** Evaluated as "unknown" (not false) when there is no identity, so the caller can offer a login. */
  needsIdentity: boolean;
  /** `id` is non-null whenever needsIdentity is true. */
  test: (ctx: RequestContext, id: Identity | null) => boolean;
  /** What satisfies it, e.g. "group admins"; used as "needs group admins". */
  need: string;
  /** What the request actually had, e.g. "you have eng"; only called to explain a decision. */
  have: (ctx: RequestContext, id: Identity | null) => string;
  /** Leaves with the same key describe the request identically, so one decision computes it once. */
  haveKey: string;
}

export interface CriterionOptions {
  groupsClaim: string;
}

export const CRITERIA = [
  'accept',
  'reject',
  'authenticated_user',
  'user',
  'email',
  'domain',
  'groups',
  'claim',
  'http_method',
  'http_path',
  'source_ip',
  'date',
  'day_of_week',
  'time_of_day',
  'client_certificate',
  'cors_preflight',
] as const;

// Pomerium criteria that need machinery Portcullis does not have (device enrollment, external
// data sources, the .pomerium routes, MCP). Named separately so the error does not read as a typo.
const UNSUPPORTED: Record<string, string> = {
  device: 'device identity is not supported',
  record: 'external data source records are not supported',
  invalid_client_certificate: 'client certificates are verified by the listener before policy runs',
  pomerium_routes: 'there are no .pomerium routes in Portcullis',
  mcp_tool: 'MCP routes are not supported',
};

const lower = (s: string) => s.toLowerCase();
const upper = (s: string) => s.toUpperCase();
const always = () => true;

function quoteList(values: readonly unknown[], max = 5): string {
  const shown = values.slice(0, max).map(String).join(', ');
  return values.length > max ? `${shown}, … (${values.length} in all)` : shown;
}

/** The domain of an email, lower-cased; '' when the address does not have exactly one "@" with text on both sides. */
export function emailDomain(email: string): string {
  const at = email.indexOf('@');
  if (at <= 0 || at !== email.lastIndexOf('@') || at === email.length - 1) return '';
  return email.slice(at + 1).toLowerCase();
}

/** Groups from the session; a single group delivered as a bare string is one group, never split. */
function groupsOf(id: Identity): unknown {
  return id.groups as unknown;
}

function describeValues(v: unknown): string {
  if (Array.isArray(v)) return v.length ? quoteList(v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : x))) : '(empty list)';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function noFlag(name: string, value: unknown, path: PolicyPath): void {
  // PPL ignores the value of these criteria, so `accept: false` would still accept everyone.
  if (value === false) {
    throw new PolicyError(path, `"${name}: false" would still match (PPL ignores the value of ${name}); remove the criterion${name === 'accept' ? ' or use "reject: true"' : name === 'reject' ? ' or use "accept: true"' : ' or put it under "not"'}`);
  }
}

/** Looks a claim up the way Pomerium does: the literal name first, then "." and "/" as nesting. */
function claimLookup(name: string, groupsClaim: string): (id: Identity) => unknown {
  const segments = name.replace(/\./g, '/').split('/');
  const nested = segments.length > 1;
  const isGroups = name === groupsClaim;
  return (id) => {
    const claims = id.claims;
    let v: unknown = Object.prototype.hasOwnProperty.call(claims, name) ? claims[name] : undefined;
    if (v === undefined && nested) v = walk(claims, segments);
    // Groups may come from a source other than the token (e.g. userinfo); Identity.groups holds them.
    if ((v === undefined || v === null) && isGroups) v = groupsOf(id);
    return v;
  };
}

function walk(root: unknown, segments: readonly string[]): unknown {
  let cur: unknown = root;
  for (const seg of segments) {
    if (Array.isArray(cur)) {
      // Pomerium stores every claim as a list; step into the objects of a list as into one object.
      const next: unknown[] = [];
      for (const el of cur) {
        if (isPlainObject(el) && Object.prototype.hasOwnProperty.call(el, seg)) {
          const x = el[seg];
          if (Array.isArray(x)) next.push(...x);
          else next.push(x);
        }
      }
      if (next.length === 0) return undefined;
      cur = next;
    } else if (isPlainObject(cur) && Object.prototype.hasOwnProperty.call(cur, seg)) {
      cur = cur[seg];
    } else {
      return undefined;
    }
  }
  return cur;
}

function normalizeFingerprint(raw: unknown, path: PolicyPath): string {
  if (typeof raw !== 'string' || !raw) throw new PolicyError(path, `expected a SHA-256 certificate fingerprint string, got ${typeName(raw)}`);
  // Pomerium's two accepted forms: 64 lower-case hex digits, or 32 upper-case hex bytes joined by ":".
  if (/^[0-9a-f]{64}$/.test(raw)) return raw;
  if (/^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/.test(raw)) return raw.replace(/:/g, '').toLowerCase();
  throw new PolicyError(path, `"${raw}" is not a SHA-256 fingerprint; expected 64 lower-case hex digits or 32 upper-case hex bytes separated by ":" (openssl x509 -noout -fingerprint -sha256)`);
}

function oneOrMany(raw: unknown, path: PolicyPath, what: string): { values: unknown[]; paths: PolicyPath[] } {
  if (Array.isArray(raw)) {
    if (raw.length === 0) throw new PolicyError(path, `expected at least one ${what}`);
    return { values: raw, paths: raw.map((_, i) => [...path, i]) };
  }
  return { values: [raw], paths: [path] };
}

const CERT_KEYS = ['fingerprint', 'spki_hash', 'san_dns', 'san_email', 'san_uri'] as const;
const SAN_PREFIX: Record<string, string> = { san_dns: 'dns:', san_email: 'email:', san_uri: 'uri:' };

function compileClientCertificate(raw: unknown, path: PolicyPath): LeafSpec {
  if (!isPlainObject(raw) || Object.keys(raw).length === 0) {
    throw new PolicyError(path, `expected a certificate matcher object with ${CERT_KEYS.join(', ')}, got ${typeName(raw)}`);
  }
  const tests: ((c: NonNullable<RequestContext['clientCert']>) => boolean)[] = [];
  const labels: string[] = [];
  for (const [key, v] of Object.entries(raw)) {
    const p = [...path, key];
    if (key === 'fingerprint') {
      const { values, paths } = oneOrMany(v, p, 'fingerprint');
      const set = new Set(values.map((x, i) => normalizeFingerprint(x, paths[i]!)));
      tests.push((c) => set.has(c.fingerprint256.replace(/:/g, '').toLowerCase()));
      labels.push(`fingerprint in [${quoteList([...set], 2)}]`);
    } else if (key === 'spki_hash') {
      throw new PolicyError(p, 'spki_hash is not supported yet: the TLS listener does not hand the certificate\'s public key to policy; use fingerprint');
    } else if (key in SAN_PREFIX) {
      const prefix = SAN_PREFIX[key]!;
      const m = compileStringMatcher(v, p, { noun: key });
      // SAN entries arrive as Node renders them: "DNS:host", "email:addr", "URI:uri".
      tests.push((c) => {
        for (const entry of c.san) {
          if (entry.length > prefix.length && entry.slice(0, prefix.length).toLowerCase() === prefix && m.test(entry.slice(prefix.length))) return true;
        }
        return false;
      });
      labels.push(`${key} ${m.label}`);
    } else {
      throw new PolicyError(p, `unknown certificate matcher key "${key}"; expected one of ${CERT_KEYS.join(', ')}${didYouMean(key, CERT_KEYS)}`);
    }
  }
  return {
    label: `client_certificate ${labels.join(' and ')}`,
    haveKey: 'cert',
    needsIdentity: false,
    test: (ctx) => {
      const c = ctx.clientCert;
      if (!c) return false;
      for (const t of tests) if (!t(c)) return false;
      return true;
    },
    need: `a client certificate with ${labels.join(' and ')}`,
    have: (ctx) =>
      ctx.clientCert ? `your certificate has fingerprint ${ctx.clientCert.fingerprint256.replace(/:/g, '').toLowerCase()}` : 'no client certificate was presented',
  };
}

function headerPresent(ctx: RequestContext, name: string): boolean {
  const v = ctx.headers[name];
  if (v === undefined) return false;
  return Array.isArray(v) ? v.length > 0 : v !== '';
}

export function compileCriterion(key: string, value: unknown, path: PolicyPath, opts: CriterionOptions): LeafSpec {
  const slash = key.indexOf('/');
  const name = slash === -1 ? key : key.slice(0, slash);
  const sub = slash === -1 ? '' : key.slice(slash + 1);
  const vp = [...path, key];
  if (sub && name !== 'claim') {
    throw new PolicyError([...path, key], `criterion "${name}" takes no "/" sub-path; only claim/<name> does${name === 'claims' ? ' (did you mean "claim"?)' : ''}`);
  }
  switch (name) {
    case 'accept':
      noFlag(name, value, vp);
      return { label: 'accept', haveKey: 'accept', needsIdentity: false, test: always, need: 'nothing', have: () => 'everyone is accepted' };
    case 'reject':
      noFlag(name, value, vp);
      return { label: 'reject', haveKey: 'reject', needsIdentity: false, test: () => false, need: 'something "reject" never allows', have: () => 'reject never matches' };
    case 'authenticated_user':
      noFlag(name, value, vp);
      return {
        label: 'authenticated_user',
        haveKey: 'identity',
        needsIdentity: true,
        test: always,
        need: 'a signed-in user',
        have: (_c, id) => (id ? `you are signed in as ${id.email || id.user}` : 'you are not signed in'),
      };
    case 'user': {
      const m = compileStringMatcher(value, vp, { noun: 'user' });
      return { label: `user ${m.label}`, haveKey: 'user', needsIdentity: true, test: (_c, id) => m.test(id!.user), need: m.need, have: (_c, id) => `your user id is ${id!.user || '(empty)'}` };
    }
    case 'email': {
      // Mail providers treat addresses case-insensitively, and IdPs differ in how they case them.
      const m = compileStringMatcher(value, vp, { noun: 'email', normalize: lower });
      return {
        label: `email ${m.label}`,
        haveKey: 'email',
        needsIdentity: true,
        test: (_c, id) => m.test(id!.email.toLowerCase()),
        need: m.need,
        have: (_c, id) => (id!.email ? `your email is ${id!.email}` : 'no email in your session'),
      };
    }
    case 'domain': {
      const m = compileStringMatcher(value, vp, { noun: 'email domain', normalize: lower });
      return {
        label: `domain ${m.label}`,
        haveKey: 'domain',
        needsIdentity: true,
        test: (_c, id) => {
          const d = emailDomain(id!.email);
          // No domain can satisfy any operator, not even not_in: "a@b@corp.com" must never pass as corp.com.
          return d !== '' && m.test(d);
        },
        need: m.need,
        have: (_c, id) => {
          if (!id!.email) return 'no email in your session';
          const d = emailDomain(id!.email);
          return d ? `your email domain is ${d}` : `your email "${id!.email}" has no valid domain`;
        },
      };
    }
    case 'groups': {
      const m = compileListMatcher(value, vp, { noun: 'group', stringsOnly: true });
      return {
        label: `groups ${m.label}`,
        haveKey: 'groups',
        needsIdentity: true,
        test: (_c, id) => m.test(groupsOf(id!)),
        need: m.need,
        have: (_c, id) => {
          const g = groupsOf(id!);
          if (g === undefined || g === null || (Array.isArray(g) && g.length === 0) || g === '') return 'no groups claim in your session';
          return `you have ${describeValues(g)}`;
        },
      };
    }
    case 'claim': {
      if (!sub) throw new PolicyError(vp, 'claim needs a claim name, e.g. "claim/family_name: Smith"');
      const m = compileListMatcher(value, vp, { noun: `claim ${sub}`, stringsOnly: false });
      const get = claimLookup(sub, opts.groupsClaim);
      return {
        label: `claim/${sub} ${m.label}`,
        haveKey: `claim/${sub}`,
        needsIdentity: true,
        test: (_c, id) => m.test(get(id!)),
        need: m.need,
        have: (_c, id) => {
          const v = get(id!);
          if (v === undefined || v === null || (Array.isArray(v) && v.length === 0)) return `no ${sub} claim in your session`;
          return `your ${sub} claim is ${describeValues(v)}`;
        },
      };
    }
    case 'http_method': {
      // ctx.method is upper-case; normalizing the policy side keeps "is: get" from silently never matching.
      const m = compileStringMatcher(value, vp, { noun: 'method', normalize: upper });
      return { label: `http_method ${m.label}`, haveKey: 'method', needsIdentity: false, test: (ctx) => m.test(ctx.method), need: m.need, have: (ctx) => `the request method is ${ctx.method}` };
    }
    case 'http_path': {
      const m = compileStringMatcher(value, vp, { noun: 'path' });
      return { label: `http_path ${m.label}`, haveKey: 'path', needsIdentity: false, test: (ctx) => m.test(ctx.path), need: m.need, have: (ctx) => `the request path is ${ctx.path}` };
    }
    case 'source_ip': {
      const { values, paths } = oneOrMany(value, vp, 'IP address or CIDR');
      let match: (ip: string) => boolean;
      const list: string[] = [];
      values.forEach((v, i) => {
        if (typeof v !== 'string') throw new PolicyError(paths[i]!, `expected an IP address or CIDR string, got ${typeName(v)}`);
        try {
          compileCidrs([v]);
        } catch (e) {
          if (e instanceof CidrError) throw new PolicyError(paths[i]!, e.message);
          throw e;
        }
        list.push(v.trim());
      });
      match = compileCidrs(list);
      // BlockList.check allocates per call; requests from one client repeat the same address.
      let lastIp = '';
      let lastResult = false;
      const cached = (ip: string): boolean => {
        if (ip !== lastIp) {
          lastResult = match(ip);
          lastIp = ip;
        }
        return lastResult;
      };
      return {
        label: `source_ip in [${quoteList(list)}]`,
        haveKey: 'ip',
        needsIdentity: false,
        test: (ctx) => cached(ctx.clientIp),
        need: `an address in ${quoteList(list)}`,
        have: (ctx) => `your address is ${ctx.clientIp || '(unknown)'}`,
      };
    }
    case 'date': {
      if (!isPlainObject(value) || Object.keys(value).length === 0) {
        throw new PolicyError(vp, `expected a date matcher object with "after" and/or "before", got ${typeName(value)}`);
      }
      let after = -Infinity;
      let before = Infinity;
      for (const [op, v] of Object.entries(value)) {
        if (op === 'after') after = parseIsoDate(v, [...vp, op]);
        else if (op === 'before') before = parseIsoDate(v, [...vp, op]);
        else throw new PolicyError([...vp, op], `unknown date matcher operator "${op}"; expected after or before${didYouMean(op, ['after', 'before'])}`);
      }
      const parts = [after > -Infinity ? `after ${new Date(after).toISOString()}` : '', before < Infinity ? `before ${new Date(before).toISOString()}` : ''].filter(Boolean).join(' and ');
      return {
        label: `date ${parts}`,
        haveKey: 'date',
        needsIdentity: false,
        test: (ctx) => ctx.now > after && ctx.now < before,
        need: `a time ${parts}`,
        have: (ctx) => `it is ${new Date(ctx.now).toISOString()}`,
      };
    }
    case 'day_of_week': {
      const mask = parseDaysOfWeek(value, vp);
      const days = DAY_LABELS.filter((_, i) => mask & (1 << i)).join(', ');
      return {
        label: `day_of_week ${String(value)}`,
        haveKey: 'day',
        needsIdentity: false,
        test: (ctx) => (mask & (1 << utcDayOfWeek(ctx.now))) !== 0,
        need: `a day among ${days} (UTC)`,
        have: (ctx) => `it is ${DAY_LABELS[utcDayOfWeek(ctx.now)]} (UTC)`,
      };
    }
    case 'time_of_day': {
      if (!isPlainObject(value)) throw new PolicyError(vp, `expected a time-of-day matcher object with timezone, after and/or before, got ${typeName(value)}`);
      for (const op of Object.keys(value)) {
        if (op !== 'timezone' && op !== 'after' && op !== 'before') {
          throw new PolicyError([...vp, op], `unknown time_of_day operator "${op}"; expected timezone, after or before${didYouMean(op, ['timezone', 'after', 'before'])}`);
        }
      }
      const tz = value['timezone'];
      if (tz === undefined) throw new PolicyError([...vp, 'timezone'], 'time_of_day needs a timezone, e.g. "timezone: Europe/Berlin"');
      if (typeof tz !== 'string' || !tz) throw new PolicyError([...vp, 'timezone'], `expected an IANA time zone name such as Europe/Berlin, got ${typeName(tz)}`);
      let clock;
      try {
        clock = zoneClock(tz);
      } catch {
        throw new PolicyError([...vp, 'timezone'], `unknown time zone "${tz}"; expected an IANA name such as Europe/Berlin, America/New_York or UTC`);
      }
      const after = value['after'] === undefined ? undefined : parseTimeOfDay(value['after'], [...vp, 'after']);
      const before = value['before'] === undefined ? undefined : parseTimeOfDay(value['before'], [...vp, 'before']);
      if (after === undefined && before === undefined) throw new PolicyError(vp, 'time_of_day needs "after" and/or "before"');
      let test: (t: number) => boolean;
      if (after !== undefined && before !== undefined) {
        // after > before is a window across midnight (e.g. 22:00-06:00), the only useful reading.
        test = after <= before ? (t) => t >= after && t < before : (t) => t >= after || t < before;
      } else if (after !== undefined) {
        test = (t) => t >= after;
      } else {
        test = (t) => t < before!;
      }
      const parts = [after !== undefined ? `after ${formatMsOfDay(after)}` : '', before !== undefined ? `before ${formatMsOfDay(before)}` : ''].filter(Boolean).join(' and ');
      const c = clock;
      return {
        label: `time_of_day ${parts} ${tz}`,
        haveKey: `time/${tz}`,
        needsIdentity: false,
        test: (ctx) => test(c.msOfDay(ctx.now)),
        need: `a time ${parts} in ${tz}`,
        have: (ctx) => `it is ${formatMsOfDay(c.msOfDay(ctx.now))} in ${tz}`,
      };
    }
    case 'client_certificate':
      return compileClientCertificate(value, vp);
    case 'cors_preflight':
      noFlag(name, value, vp);
      return {
        label: 'cors_preflight',
        haveKey: 'cors',
        needsIdentity: false,
        test: (ctx) => ctx.method === 'OPTIONS' && headerPresent(ctx, 'access-control-request-method') && headerPresent(ctx, 'origin'),
        need: 'a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method)',
        have: (ctx) => `the request is ${ctx.method === 'OPTIONS' ? 'an OPTIONS request without both Origin and Access-Control-Request-Method' : `a ${ctx.method} request`}`,
      };
    default: {
      const why = UNSUPPORTED[name];
      if (why) throw new PolicyError(vp, `criterion "${name}" is not supported by Portcullis: ${why}`);
      throw new PolicyError(vp, `unknown criterion "${name}"${didYouMean(name, [...CRITERIA, 'and', 'or', 'not', 'nor'])}; expected one of ${CRITERIA.join(', ')}, or a nested and/or/not/nor`);
    }
  }
}
