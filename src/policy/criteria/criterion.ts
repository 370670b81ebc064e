import type { Identity, RequestContext } from '../../decide/types.js';
import type { PolicyPath } from '../errors.js';

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
  /** The configured IdP ids (absent where no config is known, e.g. policy unit tests). */
  idps?: readonly string[] | undefined;
}

/**
 * What one criterion compiles to. `Who` is Identity for criteria about the user: the evaluator
 * answers "unknown" without calling them when nobody is signed in, so they never see null.
 */
export interface LeafBody<Who> {
  label: string;
  need: string;
  haveKey: string;
  test: (ctx: RequestContext, id: Who) => boolean;
  have: (ctx: RequestContext, id: Who) => string;
}

interface CriterionBase {
  /** The key as written in a policy, e.g. "groups". */
  readonly name: string;
  /** Whether the key carries a name after "/", as claim/<name> does; every other criterion refuses one. */
  readonly takesSubPath?: boolean;
}

/** A criterion about the signed-in user. `path` locates the value; `subPath` is the text after "/" in the key. */
export interface IdentityCriterion extends CriterionBase {
  readonly needsIdentity: true;
  compile(
    value: unknown,
    path: PolicyPath,
    opts: CriterionOptions,
    subPath: string,
  ): LeafBody<Identity>;
}

/** A criterion about the request alone (method, path, address, time, certificate): decidable without a login. */
export interface RequestCriterion extends CriterionBase {
  readonly needsIdentity: false;
  compile(
    value: unknown,
    path: PolicyPath,
    opts: CriterionOptions,
    subPath: string,
  ): LeafBody<Identity | null>;
}

export type Criterion = IdentityCriterion | RequestCriterion;
