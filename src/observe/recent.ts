import type { Decision } from '../decide/decide.js';
import type { Identity, RequestContext } from '../decide/types.js';

// What the admin console shows of the recent past, kept in this process's memory only and
// bounded: the denied and failed requests (from the very events that write the audit log and
// the access line), who was seen recently (for the policy tester), when each session was last
// used here, and the reloads. Nothing here is shared between replicas: each page says so.

export interface Denial {
  at: number;
  requestId: string;
  /** deny (policy), unavailable (a dependency down), bad_request (refused path or header). */
  kind: 'deny' | 'unavailable' | 'bad_request';
  method: string;
  /** scheme://host[:port]/path?query as the policy saw it. */
  url: string;
  route: string;
  /** Who was refused: e-mail and user claim ('' when anonymous). */
  email: string;
  user: string;
  groups: string[];
  clientIp: string;
  /** The rule or step that settled it (the policy's reason; the cause for a failure). */
  rule: string;
  reason: string;
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
  request(ctx: RequestContext | null, d: Decision | undefined, requestId: string): void {
    if (!ctx || !d) return;
    const identity = 'identity' in d ? d.identity : null;
    if (identity) this.user(identity, ctx.now);
    if (d.kind === 'allow' && d.session) this.touch(d.session.sid, ctx.now);
    this.denial(ctx, d, identity, requestId);
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
    d: Decision,
    identity: Identity | null,
    requestId: string,
  ): void {
    if (d.kind !== 'deny' && d.kind !== 'unavailable' && d.kind !== 'bad_request') return;
    const port = ctx.port === (ctx.scheme === 'https' ? 443 : 80) ? '' : `:${ctx.port}`;
    this.ring[this.next] = {
      at: ctx.now,
      requestId,
      kind: d.kind,
      method: ctx.method,
      url: `${ctx.scheme}://${ctx.host}${port}${ctx.path}${ctx.query}`,
      route: d.route?.id ?? '(none)',
      email: identity?.email ?? '',
      user: identity?.user ?? '',
      groups: identity ? identity.groups.slice(0, 50) : [],
      clientIp: ctx.clientIp,
      rule: d.kind === 'deny' ? d.policy.reason : d.kind === 'unavailable' ? d.cause : 'request',
      reason: d.kind === 'deny' ? d.policy.reason : d.reason,
    };
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
