import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Logger } from '../observe/logger.js';
import type { Sealer } from './seal.js';
import { StoreUnavailableError, type SessionData, type SessionStore, type SessionSummary } from './types.js';

// Server-side sessions (memory, Redis, PostgreSQL) share everything but the storage calls.
//
// The browser's cookie is sealed('store-key', key | sid) under cookie_secret: the session id
// and a random 256-bit key that exists nowhere else. The stored record is
//   data: AES-256-GCM(key, JSON session), bound to the id (a record cannot be moved to another id)
//   meta: sealed('store-meta', {user, email, sub, iat, exp}) under cookie_secret, for
//         `portcullis sessions list|revoke`
// so a dump of the store (or a backup) holds no token and no claim anyone can use: the tokens
// need the key from a browser, the user labels need cookie_secret.

export interface StoredRecord {
  id: string;
  meta: string;
  data: string;
  /** ms since the epoch: Redis uses it as the TTL, PostgreSQL's sweep deletes past it. */
  expiresAt: number;
}

/** The storage calls a backend provides. Any thrown error means "the store is unavailable". */
export interface Backend {
  readonly kind: string;
  start(): Promise<void>;
  /** A round trip to the store, for /ready. */
  ping(): Promise<void>;
  get(id: string, now: number): Promise<StoredRecord | null>;
  /** create: only when the id is new; update: only when it still exists (not revoked meanwhile). */
  put(rec: StoredRecord, now: number, mode: 'create' | 'update'): Promise<boolean>;
  delete(ids: string[]): Promise<number>;
  /** Sets the lock when nobody holds it (or it has expired); true when we now hold it. */
  lock(id: string, token: string, ttlMs: number): Promise<boolean>;
  unlock(id: string, token: string): Promise<void>;
  scan(now: number): Promise<Array<Pick<StoredRecord, 'id' | 'meta' | 'expiresAt'>>>;
  close(): Promise<void>;
}

const KEY_BYTES = 32;
const SID_RE = /^[A-Za-z0-9_-]{16,64}$/;
const RETRY_DESTROY_MS = 5_000;

interface Meta {
  u: string;
  e: string;
  s: string;
  iat: number;
  exp: number;
}

export class ServerSessionStore implements SessionStore {
  readonly serverSide = true;
  private down = false;
  /** Sign-outs that happened while the store was down: removed as soon as it is back. */
  private readonly pendingDestroy = new Set<string>();
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly backend: Backend,
    private readonly sealer: Sealer,
    private readonly cookieName: string,
    private readonly log: Logger,
    /** Where the store is, password masked, for the outage log line. */
    private readonly display: string,
    private readonly userClaim: (s: SessionData) => { user: string; email: string },
  ) {}

  get kind(): string {
    return this.backend.kind;
  }

  async start(): Promise<void> {
    await this.call(() => this.backend.start()).catch(() => {});
  }

  /** For /ready: resolves when the store answers. */
  async ping(): Promise<void> {
    await this.call(() => this.backend.ping());
  }

  async load(cookieValue: string, now: number): Promise<SessionData | null> {
    const ref = this.openCookie(cookieValue);
    if (!ref || this.pendingDestroy.has(ref.sid)) return null;
    const rec = await this.call(() => this.backend.get(ref.sid, now));
    if (!rec || rec.expiresAt <= now) return null;
    const plain = decrypt(ref.key, rec.data, ref.sid);
    if (!plain) return null;
    try {
      const s = JSON.parse(plain.toString('utf8')) as SessionData;
      if (s?.v !== 1 || s.sid !== ref.sid || typeof s.exp !== 'number' || s.exp <= now) return null;
      return s;
    } catch {
      return null;
    }
  }

  async save(session: SessionData): Promise<string> {
    const key = randomBytes(KEY_BYTES);
    if (!(await this.write(session, key, 'create'))) throw new Error('session id collision');
    return this.sealer.seal('store-key', Buffer.concat([key, Buffer.from(session.sid, 'utf8')]), this.cookieName);
  }

  /**
   * Rewrites an existing session under its cookie's key (token refresh), so the cookie stays the
   * same. false when it no longer exists: a sign-out or revocation that raced the refresh wins.
   */
  async update(session: SessionData, cookieValue: string): Promise<boolean> {
    const ref = this.openCookie(cookieValue);
    if (!ref || ref.sid !== session.sid) return false;
    return this.write(session, ref.key, 'update');
  }

  private async write(session: SessionData, key: Buffer, mode: 'create' | 'update'): Promise<boolean> {
    if (!SID_RE.test(session.sid)) throw new Error('session id has an unexpected shape');
    const { user, email } = this.userClaim(session);
    const meta: Meta = { u: user, e: email, s: session.sub, iat: session.iat, exp: session.exp };
    const rec: StoredRecord = {
      id: session.sid,
      meta: this.sealer.sealJson('store-meta', meta, session.sid),
      data: encrypt(key, Buffer.from(JSON.stringify(session)), session.sid),
      expiresAt: session.exp,
    };
    return this.call(() => this.backend.put(rec, Date.now(), mode));
  }

  async destroy(cookieValue: string): Promise<void> {
    const ref = this.openCookie(cookieValue);
    if (!ref) return;
    try {
      await this.call(() => this.backend.delete([ref.sid]));
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      // The browser's cookie is cleared anyway; the record goes as soon as the store is back.
      // Until then no process can load it either (the store is down), and this one refuses it.
      this.pendingDestroy.add(ref.sid);
      this.log.warn({ event: 'sign_out_deferred', store: this.kind }, 'signed out while the session store is unavailable; the session will be removed from the store when it returns');
      this.scheduleRetry();
    }
  }

  async lock(cookieValue: string, ttlMs: number): Promise<(() => Promise<void>) | null> {
    const ref = this.openCookie(cookieValue);
    if (!ref) return null;
    const token = randomBytes(12).toString('base64url');
    const got = await this.call(() => this.backend.lock(ref.sid, token, ttlMs));
    if (!got) return null;
    return async () => {
      // A lost unlock only delays the next refresh until the lock's TTL runs out.
      await this.backend.unlock(ref.sid, token).catch(() => {});
    };
  }

  async list(now: number): Promise<SessionSummary[]> {
    const rows = await this.call(() => this.backend.scan(now));
    const out: SessionSummary[] = [];
    for (const r of rows) {
      if (r.expiresAt <= now) continue;
      const m = this.sealer.openJson<Meta>('store-meta', r.meta, r.id, 0);
      // A record sealed under another cookie_secret (another deployment sharing the store, or a
      // rotated secret) is listed without a name rather than hidden.
      out.push(m ? { id: r.id, user: m.u, email: m.e, sub: m.s, iat: m.iat, exp: m.exp } : { id: r.id, user: '?', email: '', sub: '', iat: 0, exp: r.expiresAt });
    }
    return out.sort((a, b) => a.iat - b.iat);
  }

  async revoke(ids: string[]): Promise<number> {
    const valid = ids.filter((id) => SID_RE.test(id));
    if (!valid.length) return 0;
    return this.call(() => this.backend.delete(valid));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.backend.close();
  }

  private openCookie(value: string): { sid: string; key: Buffer } | null {
    const raw = this.sealer.open('store-key', value, this.cookieName);
    if (!raw || raw.length <= KEY_BYTES) return null;
    const sid = raw.subarray(KEY_BYTES).toString('utf8');
    return SID_RE.test(sid) ? { sid, key: raw.subarray(0, KEY_BYTES) } : null;
  }

  /** Every storage call: errors become StoreUnavailableError, and outages are logged once each. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await fn();
    } catch (e) {
      if (!this.down && !this.closed) {
        this.down = true;
        this.log.error({ event: 'session_store_unavailable', store: this.kind, at: this.display, detail: errorText(e) }, 'session store unavailable: requests that need a session get 503 until it is back');
      }
      throw new StoreUnavailableError(`the ${this.kind} session store is unavailable`, { cause: e });
    }
    if (this.down) {
      this.down = false;
      this.log.info({ event: 'session_store_recovered', store: this.kind, at: this.display }, 'session store is available again');
      if (this.pendingDestroy.size) void this.flushDestroys();
    }
    return result;
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.flushDestroys();
    }, RETRY_DESTROY_MS);
    this.retryTimer.unref();
  }

  private async flushDestroys(): Promise<void> {
    const ids = [...this.pendingDestroy];
    if (!ids.length) return;
    try {
      await this.call(() => this.backend.delete(ids));
      for (const id of ids) this.pendingDestroy.delete(id);
    } catch {
      this.scheduleRetry();
    }
  }
}

function encrypt(key: Buffer, plain: Buffer, sid: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(`portcullis/session-record/v1|${sid}`));
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([iv, ct, c.getAuthTag()]).toString('base64url');
}

function decrypt(key: Buffer, data: string, sid: string): Buffer | null {
  const buf = Buffer.from(data, 'base64url');
  if (buf.length < 29) return null;
  try {
    const d = createDecipheriv('aes-256-gcm', key, buf.subarray(0, 12));
    d.setAAD(Buffer.from(`portcullis/session-record/v1|${sid}`));
    d.setAuthTag(buf.subarray(buf.length - 16));
    return Buffer.concat([d.update(buf.subarray(12, buf.length - 16)), d.final()]);
  } catch {
    return null;
  }
}

export function errorText(e: unknown): string {
  if (e instanceof AggregateError && e.errors.length) return errorText(e.errors[0]);
  if (e instanceof Error) return `${(e as NodeJS.ErrnoException).code ? `${(e as NodeJS.ErrnoException).code}: ` : ''}${e.message}`.slice(0, 300);
  return String(e).slice(0, 300);
}
