import type { Decision } from '../decide/decide.js';
import type { Identity, RequestContext } from '../decide/types.js';
import { unavailableCode } from '../http/outcomes.js';
import type { AuditFields } from './audit.js';
import { errorReason, isErrorOutcome, signInFailure } from './failure-reasons.js';

// What the admin console shows of the recent past, kept in this process's memory only and
// bounded: the denied and failed requests (from the very events that write the audit log and
// the access line), who was seen recently (for the policy tester), when each session was last
// used here, and the reloads. Nothing here is shared between replicas: each page says so.

/** denied by a policy, a sign-in that failed, or a request that ended in an error page. */
export type DenialKind = 'deny' | 'sign_in' | 'error';

export interface Denial {
  at: number;
  requestId: string;
  kind: DenialKind;
  /** '' when the event does not say (a sign-in's callback is a GET). */
  method: string;
  host: string;
  path: string;
  /**
   * scheme://host[:port]/path as the policy saw it, for the tester; '' for a sign-in. Never the
   * query: like the access and audit lines, a row leaves it out (it may carry a code or token).
   */
  url: string;
  /** The route's id, '(none)', or '' where no route was matched (a sign-in). */
  route: string;
  /** Who was refused: e-mail and user claim ('' when anonymous or not yet known). */
  email: string;
  user: string;
  groups: string[];
  clientIp: string;
  /** The outcome code (access_denied, invalid_state, upstream_unavailable, …). */
  code: string;
  /** The policy's reason for a denial; a fixed text of the code otherwise (failure-reasons.ts). */
  reason: string;
}

/** A request Portcullis could not even parse: what its log line says of it. */
export interface RawRequest {
  method: string;
  host: string;
  target: string;
  clientIp: string;
}

export interface RecentUser {
  user: string;
  email: string;
  groups: string[];
  at: number;
}

export interface ReloadRecord {
  at: number;
  ok: boolean;
  trigger: string;
  errors: string[];
  notes: string[];
}

const DENIALS = 500;
const USERS = 50;
const SEEN = 50_000;
const RELOADS = 20;
const FRESH_MS = 1000;

export class Recent {
  private readonly ring: Array<Denial | undefined> = new Array<Denial | undefined>(DENIALS);
  private next = 0;
  private readonly users = new Map<string, RecentUser>();
  private readonly seen = new Map<string, number>();
  readonly reloads: ReloadRecord[] = [];
  /** When this process started serving (ms). */
  readonly startedAt = Date.now();

  /**
   * Called with every request's decision, next to the access line and the audit line. A user or
   * session seen within the last second is left as it is (no allocation, no map write): this
   * runs on the hot path, and "last seen" only needs to be exact to a second.
   */
  request(
    ctx: RequestContext | null,
    d: Decision | undefined,
    requestId: string,
    outcome?: string,
  ): void {
    if (!ctx) return;
    if (!d) {
      // A Portcullis endpoint (sign-in, console): its error page is the only event here.
      if (outcome !== undefined && isErrorOutcome(outcome))
        this.denial(ctx, null, null, requestId, outcome);
      return;
    }
    const identity = 'identity' in d ? d.identity : null;
    if (identity) this.user(identity, ctx.now);
    if (d.kind === 'allow' && d.session) this.touch(d.session.sid, ctx.now);
    if (d.kind !== 'allow' || outcome !== undefined)
      this.denial(ctx, d, identity, requestId, outcome);
  }

  private user(identity: Identity, now: number): void {
    const key = identity.email || identity.user;
    const prev = this.users.get(key);
    if (prev !== undefined && now - prev.at < FRESH_MS) return;
    // Map order is insertion order: re-inserting keeps the most recent last.
    this.users.delete(key);
    this.users.set(key, {
      user: identity.user,
      email: identity.email,
      groups: identity.groups.slice(0, 50),
      at: now,
    });
    if (this.users.size > USERS) this.users.delete(this.users.keys().next().value!);
  }

  private touch(sid: string, now: number): void {
    const last = this.seen.get(sid);
    if (last !== undefined && now - last < FRESH_MS) return;
    this.seen.delete(sid);
    this.seen.set(sid, now);
    if (this.seen.size > SEEN) this.seen.delete(this.seen.keys().next().value!);
  }

  private denial(
    ctx: RequestContext,
    d: Decision | null,
    identity: Identity | null,
    requestId: string,
    outcome: string | undefined,
  ): void {
    const port = ctx.port === (ctx.scheme === 'https' ? 443 : 80) ? '' : `:${ctx.port}`;
    const base = {
      at: ctx.now,
      requestId,
      method: ctx.method,
      host: ctx.host,
      path: ctx.path,
      url: `${ctx.scheme}://${ctx.host}${port}${ctx.path}`,
      route: d === null ? '(portcullis)' : 'route' in d ? (d.route?.id ?? '(none)') : '(none)',
      email: identity?.email ?? '',
      user: identity?.user ?? '',
      groups: identity ? identity.groups.slice(0, 50) : [],
      clientIp: ctx.clientIp,
    };
    if (d?.kind === 'deny')
      this.push({ ...base, kind: 'deny', code: 'access_denied', reason: d.policy.reason });
    else if (d?.kind === 'unavailable' || d?.kind === 'bad_request')
      this.push({
        ...base,
        kind: 'error',
        code: d.kind === 'unavailable' ? unavailableCode(d.cause) : 'ambiguous_path',
        reason: d.reason,
      });
    else if (outcome !== undefined && isErrorOutcome(outcome))
      this.push({ ...base, kind: 'error', code: outcome, reason: errorReason(outcome) });
  }

  /** A request refused before it had a context (malformed Host, request-target). */
  unparsed(raw: RawRequest, requestId: string, reason: string): void {
    this.push({
      at: Date.now(),
      requestId,
      kind: 'error',
      method: raw.method.slice(0, 20),
      host: raw.host.slice(0, 200),
      path: raw.target.split('?')[0]!.slice(0, 500),
      url: '',
      route: '(none)',
      email: '',
      user: '',
      groups: [],
      clientIp: raw.clientIp,
      code: 'bad_request',
      reason: reason.slice(0, 200),
    });
  }

  /**
   * Fed by the audit log (Audit.listen): the very line an operator reads for a failed sign-in
   * (a refused callback, hand-over or rate-limited start: signInFailure) becomes the row. Only fields Portcullis set itself are kept: a known code, the host and path
   * it parsed, the user of a verified ID token; never the line's detail, which quotes the IdP.
   */
  audited(f: AuditFields): void {
    const failed = signInFailure(f);
    if (!failed) return;
    const text = (v: unknown, max: number): string =>
      typeof v === 'string' ? v.slice(0, max) : '';
    this.push({
      at: Date.now(),
      requestId: text(f.requestId, 100),
      kind: 'sign_in',
      method: '',
      host: text(f.host, 255),
      path: text(f.path, 500),
      url: '',
      route: '',
      email: text(f.email, 200),
      user: text(f.user, 200),
      groups: [],
      clientIp: text(f.client, 64),
      code: failed.code,
      reason: failed.reason,
    });
  }

  private push(d: Denial): void {
    this.ring[this.next] = d;
    this.next = (this.next + 1) % DENIALS;
  }

  /** Newest first. */
  denials(): Denial[] {
    const out: Denial[] = [];
    for (let i = 1; i <= DENIALS; i++) {
      const d = this.ring[(this.next - i + DENIALS) % DENIALS];
      if (d) out.push(d);
    }
    return out;
  }

  /** Newest first. */
  recentUsers(): RecentUser[] {
    return [...this.users.values()].reverse();
  }

  /** When this process last let a request through on the session (ms), or null. */
  lastSeen(sid: string): number | null {
    return this.seen.get(sid) ?? null;
  }

  reloaded(r: ReloadRecord): void {
    this.reloads.unshift(r);
    if (this.reloads.length > RELOADS) this.reloads.pop();
  }
}
