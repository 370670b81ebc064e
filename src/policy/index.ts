import type {
  CompiledPolicy,
  Identity,
  PolicyInput,
  PolicyResult,
  RequestContext,
  TraceStep,
} from '../decide/types.js';
import { compileCriterion, type LeafSpec } from './criteria/index.js';
import {
  PolicyError,
  didYouMean,
  formatPath,
  isPlainObject,
  typeName,
  type PolicyPath,
} from './errors.js';

export { PolicyError } from './errors.js';
export { emailDomain } from './criteria/index.js';

export interface PolicyOptions {
  /** Claim that carries group membership (default "groups"). Identity.groups is already filled from it. */
  groupsClaim?: string;
  /** The configured IdP ids, so `idp:` can refuse one that does not exist. */
  idps?: readonly string[];
}

export interface RoutePolicySource {
  policy?: unknown;
  allow_public_unauthenticated_access?: boolean;
  allow_any_authenticated_user?: boolean;
  allowed_groups?: unknown;
  allowed_emails?: unknown;
  allowed_email_domains?: unknown;
}

// Evaluation is three-valued: a criterion about the user is UNKNOWN (not false) when nobody is
// signed in, and unknown survives `not`. An anonymous request therefore can never be let in
// through a negated identity check such as `not: [email: {is: x}]`; when the unknown part decides
// the outcome, the caller is told to offer a login instead of a 403.
const F = 0;
const T = 1;
const U = 2;
type Tri = 0 | 1 | 2;
const NEG: readonly Tri[] = [T, F, U];

type Op = 'and' | 'or' | 'not' | 'nor';
const OPS: readonly Op[] = ['and', 'or', 'not', 'nor'];
const NO_TRACE: readonly TraceStep[] = Object.freeze([]);

interface Leaf extends LeafSpec {
  at: string;
  /** Under an odd number of not/nor: the step is satisfied when the criterion does NOT match. */
  negated: boolean;
  parent: Op;
  shown: string;
  denyReason: string;
  /** What an allow settled by this step returns when no trace is asked for: built once, not per request. */
  allowed: PolicyResult;
}

/** Per-evaluation scratch. Evaluation is synchronous, so one instance per compiled policy is reused. */
interface State {
  ctx: RequestContext;
  id: Identity | null;
  n: number;
  term: number;
  leaves: Leaf[];
  results: Uint8Array;
  terms: Int32Array;
}

type Node = (s: State) => Tri;

interface Term {
  action: 'allow' | 'deny';
  at: string;
  node: Node;
}

class Compiler {
  readonly leaves: Leaf[] = [];
  readonly terms: Term[] = [];
  constructor(
    private readonly groupsClaim: string,
    private readonly idps?: readonly string[],
  ) {}

  leaf(spec: LeafSpec, at: string, negated: boolean, parent: Op): Node {
    const shown = negated ? `not ${spec.label}` : spec.label;
    const allowed: PolicyResult = Object.freeze({
      allow: true,
      reason: `allowed by ${at}: ${shown}`,
      trace: NO_TRACE,
      needsIdentity: false,
    });
    const leaf: Leaf = {
      ...spec,
      at,
      negated,
      parent,
      shown,
      denyReason: `denied by ${at}: ${shown}`,
      allowed,
    };
    this.leaves.push(leaf);
    const { test, needsIdentity } = leaf;
    return (s) => {
      const r: Tri = needsIdentity && s.id === null ? U : test(s.ctx, s.id) ? T : F;
      const i = s.n++;
      s.leaves[i] = leaf;
      s.results[i] = r;
      s.terms[i] = s.term;
      return r;
    };
  }

  /** One logical operator with its list of criteria (which may nest further operators). */
  op(op: Op, list: unknown, path: PolicyPath, negated: boolean): Node {
    const p = [...path, op];
    if (!Array.isArray(list)) {
      throw new PolicyError(
        p,
        `expected a list of criteria under "${op}", got ${typeName(list)}${isPlainObject(list) ? ' (start each criterion with "- ")' : ''}`,
      );
    }
    if (list.length === 0)
      throw new PolicyError(
        p,
        `"${op}" has no criteria; an empty list would match ${op === 'and' || op === 'not' ? 'everything' : 'nothing'}`,
      );
    const childNegated = op === 'not' || op === 'nor' ? !negated : negated;
    const children = list.map((item, i) => this.item(item, [...p, i], childNegated, op));
    return combine(op, children);
  }

  private item(item: unknown, path: PolicyPath, negated: boolean, parent: Op): Node {
    if (!isPlainObject(item))
      throw new PolicyError(
        path,
        `expected a criterion object such as "email: {is: alice@example.com}", got ${typeName(item)}`,
      );
    const keys = Object.keys(item);
    if (keys.length !== 1) {
      throw new PolicyError(
        path,
        keys.length === 0
          ? 'empty criterion'
          : `each criterion must have exactly one key, got ${keys.join(', ')}; put each one in its own list item`,
      );
    }
    const key = keys[0]!;
    if ((OPS as readonly string[]).includes(key))
      return this.op(key as Op, item[key], path, negated);
    const spec = compileCriterion(key, item[key], path, {
      groupsClaim: this.groupsClaim,
      idps: this.idps,
    });
    return this.leaf(spec, formatPath(path), negated, parent);
  }

  /** The value of `allow:` or `deny:`; its operators are alternatives, as in Pomerium's generator. */
  block(action: 'allow' | 'deny', body: unknown, path: PolicyPath): void {
    const p = [...path, action];
    if (!isPlainObject(body))
      throw new PolicyError(
        p,
        `expected an object with and/or/not/nor under "${action}", got ${typeName(body)}`,
      );
    const keys = Object.keys(body);
    if (keys.length === 0)
      throw new PolicyError(
        p,
        `empty "${action}"; expected and/or/not/nor with a list of criteria`,
      );
    for (const k of keys) {
      if (!(OPS as readonly string[]).includes(k)) {
        throw new PolicyError(
          [...p, k],
          `unknown logical operator "${k}" under "${action}"; expected and, or, not or nor${didYouMean(k, OPS)}`,
        );
      }
    }
    for (const k of keys) {
      const node = this.op(k as Op, body[k], p, false);
      this.terms.push({ action, at: formatPath([...p, k]), node });
    }
  }

  rule(rule: unknown, path: PolicyPath): void {
    if (!isPlainObject(rule))
      throw new PolicyError(
        path,
        `expected a rule object with "allow" and/or "deny", got ${typeName(rule)}`,
      );
    const keys = Object.keys(rule);
    for (const k of keys) {
      if (k !== 'allow' && k !== 'deny') {
        throw new PolicyError(
          [...path, k],
          `unknown rule key "${k}"; a rule has "allow" and/or "deny"${didYouMean(k, ['allow', 'deny'])}`,
        );
      }
    }
    if (!keys.length) throw new PolicyError(path, 'rule has neither "allow" nor "deny"');
    // Deny blocks are registered first only for evaluation order; both are checked regardless.
    if ('deny' in rule) this.block('deny', rule['deny'], path);
    if ('allow' in rule) this.block('allow', rule['allow'], path);
  }

  /** A synthetic allow term, e.g. for allow_any_authenticated_user. */
  shortcut(at: string, nodes: Node[]): void {
    this.terms.push({ action: 'allow', at, node: combine('or', nodes) });
  }
}

function combine(op: Op, children: Node[]): Node {
  if (children.length === 1) {
    const c = children[0]!;
    return op === 'not' || op === 'nor' ? (s) => NEG[c(s)]! : c;
  }
  switch (op) {
    case 'and':
      return (s) => {
        let r: Tri = T;
        for (const c of children) {
          const x = c(s);
          if (x === F) return F;
          if (x === U) r = U;
        }
        return r;
      };
    case 'or':
      return (s) => {
        let r: Tri = F;
        for (const c of children) {
          const x = c(s);
          if (x === T) return T;
          if (x === U) r = U;
        }
        return r;
      };
    case 'not': // ¬A ∧ ¬B
      return (s) => {
        let r: Tri = T;
        for (const c of children) {
          const x = NEG[c(s)]!;
          if (x === F) return F;
          if (x === U) r = U;
        }
        return r;
      };
    case 'nor': // ¬A ∨ ¬B
      return (s) => {
        let r: Tri = F;
        for (const c of children) {
          const x = NEG[c(s)]!;
          if (x === T) return T;
          if (x === U) r = U;
        }
        return r;
      };
  }
}

function stringList(v: unknown, key: string): string[] {
  if (!Array.isArray(v))
    throw new PolicyError([key], `expected a list of strings, got ${typeName(v)}`);
  if (v.length === 0)
    throw new PolicyError(
      [key],
      `${key} is empty; it would allow nobody (remove it, or list at least one value)`,
    );
  return v.map((x, i) => {
    if (typeof x !== 'string' || !x.trim())
      throw new PolicyError([key, i], `expected a non-empty string, got ${typeName(x)}`);
    return x.trim();
  });
}

function checkFlag(v: unknown, key: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean')
    throw new PolicyError([key], `expected true or false, got ${typeName(v)}`);
  return v;
}

function effective(leaf: Leaf, r: number): Tri {
  return (leaf.negated ? NEG[r]! : r) as Tri;
}

/** `have` texts computed during one decision, shared by leaves that describe the same thing. */
type HaveCache = Map<string, string>;

function haveOf(leaf: Leaf, s: State, cache: HaveCache): string {
  let h = cache.get(leaf.haveKey);
  if (h === undefined) {
    h = leaf.have(s.ctx, s.id);
    cache.set(leaf.haveKey, h);
  }
  return h;
}

function stepDetail(leaf: Leaf, eff: Tri, s: State, cache: HaveCache): string {
  if (eff === U) return 'sign-in required';
  const have = haveOf(leaf, s, cache);
  if (eff === T) return have;
  return leaf.negated ? `must not match ${leaf.label}; ${have}` : `needs ${leaf.need}; ${have}`;
}

function listSome(items: readonly string[], joiner: string, max = 5): string {
  return items.length > max
    ? `${items.slice(0, max).join(joiner)} (${items.length - max} more)`
    : items.join(joiner);
}

/** "needs group admins or group ops; you have eng" from the unmet steps. */
function explainFailures(s: State, allowTerms: readonly boolean[], cache: HaveCache): string {
  const byHave = new Map<string, Leaf[]>();
  let anyOr = false;
  let anyAnd = false;
  for (let i = 0; i < s.n; i++) {
    const leaf = s.leaves[i]!;
    if (!allowTerms[s.terms[i]!] || effective(leaf, s.results[i]!) !== F) continue;
    const have = haveOf(leaf, s, cache);
    const list = byHave.get(have);
    if (list) list.push(leaf);
    else byHave.set(have, [leaf]);
    if (leaf.parent === 'or' || leaf.parent === 'nor') anyOr = true;
    else anyAnd = true;
  }
  if (byHave.size === 0) return 'no rule allows this request';
  const joiner = anyOr && !anyAnd ? ' or ' : anyAnd && !anyOr ? ' and ' : '; ';
  const parts: string[] = [];
  for (const [have, leaves] of byHave) {
    // Sets keep this linear: a 50-criterion policy has as many unmet steps.
    const needs = new Set<string>();
    const excluded = new Set<string>();
    for (const l of leaves) {
      if (l.negated) excluded.add(l.label);
      else needs.add(l.need);
    }
    const segs: string[] = [];
    if (needs.size) segs.push(`needs ${listSome([...needs], joiner)}`);
    if (excluded.size) segs.push(`must not match ${listSome([...excluded], joiner)}`);
    parts.push(`${segs.join(joiner)}; ${have}`);
  }
  const shown = parts.slice(0, 3).join(joiner === ' and ' ? '; and ' : '; or ');
  return parts.length > 3 ? `${shown} (and ${parts.length - 3} more)` : shown;
}

/**
 * Compiles a route's authorization settings (PPL `policy` plus the allow_* shortcuts) into a
 * decision function. Throws PolicyError on any invalid input; nothing is returned half-built.
 */
export function compileRoutePolicy(
  src: RoutePolicySource,
  opts: PolicyOptions = {},
): CompiledPolicy {
  const groupsClaim = opts.groupsClaim ?? 'groups';
  const c = new Compiler(groupsClaim, opts.idps);
  const isPublic = checkFlag(
    src.allow_public_unauthenticated_access,
    'allow_public_unauthenticated_access',
  );
  const anyUser = checkFlag(src.allow_any_authenticated_user, 'allow_any_authenticated_user');
  const groups =
    src.allowed_groups === undefined || src.allowed_groups === null
      ? undefined
      : stringList(src.allowed_groups, 'allowed_groups');
  const emails =
    src.allowed_emails === undefined || src.allowed_emails === null
      ? undefined
      : stringList(src.allowed_emails, 'allowed_emails');
  const domains =
    src.allowed_email_domains === undefined || src.allowed_email_domains === null
      ? undefined
      : stringList(src.allowed_email_domains, 'allowed_email_domains');
  const lists = (
    [
      ['allowed_groups', groups],
      ['allowed_emails', emails],
      ['allowed_email_domains', domains],
    ] as const
  ).filter(([, v]) => v);

  // Same combinations Pomerium's Policy.Validate rejects: they would make the narrower setting meaningless.
  if (isPublic && anyUser) {
    throw new PolicyError(
      ['allow_any_authenticated_user'],
      'allow_public_unauthenticated_access already allows everyone; remove allow_any_authenticated_user',
    );
  }
  if ((isPublic || anyUser) && lists.length) {
    const flag = isPublic ? 'allow_public_unauthenticated_access' : 'allow_any_authenticated_user';
    throw new PolicyError(
      [lists[0]![0]],
      `${lists[0]![0]} has no effect together with ${flag}, which already allows ${isPublic ? 'everyone' : 'every signed-in user'}; remove one of them`,
    );
  }

  if (isPublic) {
    const spec = compileCriterion('accept', true, ['allow_public_unauthenticated_access'], {
      groupsClaim,
    });
    c.shortcut('allow_public_unauthenticated_access', [
      c.leaf(spec, 'allow_public_unauthenticated_access', false, 'or'),
    ]);
  }
  if (anyUser) {
    const spec = compileCriterion('authenticated_user', true, ['allow_any_authenticated_user'], {
      groupsClaim,
    });
    c.shortcut('allow_any_authenticated_user', [
      c.leaf(spec, 'allow_any_authenticated_user', false, 'or'),
    ]);
  }
  // The oauth2-proxy style lists become the criteria PPL would use (Pomerium's ToPPL does the same).
  const shortcutLists: [string, string[] | undefined, (v: string) => unknown, string][] = [
    ['allowed_groups', groups, (g) => ({ has: g }), 'groups'],
    ['allowed_emails', emails, (e) => ({ is: e }), 'email'],
    ['allowed_email_domains', domains, (d) => ({ is: d }), 'domain'],
  ];
  for (const [key, values, data, criterion] of shortcutLists) {
    if (!values) continue;
    const nodes = values.map((v, i) =>
      c.leaf(
        compileCriterion(criterion, data(v), [key, i], { groupsClaim }),
        `${key}[${i}]`,
        false,
        'or',
      ),
    );
    c.shortcut(key, nodes);
  }

  const policy = src.policy;
  if (policy !== undefined && policy !== null) {
    if (Array.isArray(policy)) {
      if (policy.length === 0)
        throw new PolicyError(
          ['policy'],
          'policy is an empty list; give at least one rule or remove it',
        );
      policy.forEach((r, i) => c.rule(r, ['policy', i]));
    } else {
      c.rule(policy, ['policy']);
    }
  }

  const denyTerms = c.terms.filter((t) => t.action === 'deny');
  const allowTerms = c.terms.filter((t) => t.action === 'allow');
  const ordered = [...denyTerms, ...allowTerms];
  const nDeny = denyTerms.length;
  const isAllowTerm = ordered.map((t) => t.action === 'allow');
  const size = Math.max(1, c.leaves.length);
  const s: State = {
    ctx: undefined as unknown as RequestContext,
    id: null,
    n: 0,
    term: 0,
    leaves: new Array<Leaf>(size),
    results: new Uint8Array(size),
    terms: new Int32Array(size),
  };

  /** Steps of the terms `include` selects; `onlyMet` keeps just the satisfied ones (what decided it). */
  const trace = (
    include: (term: number) => boolean,
    onlyMet: boolean,
    cache: HaveCache,
  ): TraceStep[] => {
    const out: TraceStep[] = [];
    for (let i = 0; i < s.n; i++) {
      if (!include(s.terms[i]!)) continue;
      const leaf = s.leaves[i]!;
      const eff = effective(leaf, s.results[i]!);
      if (onlyMet && eff !== T) continue;
      out.push({
        at: leaf.at,
        criterion: leaf.shown,
        result: eff === T,
        detail: stepDetail(leaf, eff, s, cache),
      });
    }
    return out;
  };

  /** The last satisfied step of a term is the one that settled it. */
  const decidingLeaf = (term: number): Leaf | undefined => {
    for (let i = s.n - 1; i >= 0; i--) {
      if (s.terms[i] === term && effective(s.leaves[i]!, s.results[i]!) === T) return s.leaves[i];
    }
    return undefined;
  };

  return function decide(input: PolicyInput): PolicyResult {
    s.ctx = input.ctx;
    s.id = input.identity ?? null;
    s.n = 0;
    // The trace (every step, with "you have ..." details) is for `explain` and policy tests; the
    // request path needs only the outcome and its reason, so an allow there allocates nothing.
    const withTrace = input.trace === true;
    let denyUnknown = false;
    for (let k = 0; k < nDeny; k++) {
      s.term = k;
      const r = ordered[k]!.node(s);
      if (r === T) {
        const leaf = decidingLeaf(k);
        const result: PolicyResult = {
          allow: false,
          reason: leaf ? leaf.denyReason : `denied by ${ordered[k]!.at}`,
          trace: withTrace ? trace((t) => t === k, true, new Map()) : NO_TRACE,
          needsIdentity: false,
        };
        s.ctx = undefined as unknown as RequestContext;
        s.id = null;
        return result;
      }
      if (r === U) denyUnknown = true;
    }
    let allowed = -1;
    let allowUnknown = false;
    for (let k = nDeny; k < ordered.length; k++) {
      s.term = k;
      const r = ordered[k]!.node(s);
      if (r === T) {
        allowed = k;
        break;
      }
      if (r === U) allowUnknown = true;
    }
    let result: PolicyResult;
    if (allowed !== -1 && !denyUnknown) {
      const leaf = decidingLeaf(allowed);
      if (leaf && !withTrace) result = leaf.allowed;
      else
        result = {
          allow: true,
          reason: leaf ? leaf.allowed.reason : `allowed by ${ordered[allowed]!.at}`,
          trace: withTrace ? trace((t) => t === allowed, true, new Map()) : NO_TRACE,
          needsIdentity: false,
        };
    } else if (allowed !== -1 || allowUnknown) {
      // Only a signed-in user can settle the unknown part; logging in may change the answer.
      result = {
        allow: false,
        reason: 'sign-in required',
        trace: withTrace ? trace((t) => t >= nDeny || denyUnknown, false, new Map()) : NO_TRACE,
        needsIdentity: true,
      };
    } else if (ordered.length === nDeny) {
      result = {
        allow: false,
        reason: 'no policy allows access to this route',
        trace: NO_TRACE,
        needsIdentity: false,
      };
    } else {
      const cache: HaveCache = new Map();
      result = {
        allow: false,
        reason: explainFailures(s, isAllowTerm, cache),
        trace: withTrace ? trace((t) => t >= nDeny, false, cache) : NO_TRACE,
        needsIdentity: false,
      };
    }
    s.ctx = undefined as unknown as RequestContext;
    s.id = null;
    return result;
  };
}
