import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { Logger } from '../observe/logger.js';
import type { Sealer } from './seal.js';
import {
  StoreUnavailableError,
  type IdpLogout,
  type SessionData,
  type SessionStore,
  type SessionSummary,
} from './types.js';

// Server-side sessions (memory, Redis, PostgreSQL) share everything but the storage calls.
//
// The browser's cookie is sealed('store-key', key | sid) under cookie_secret: the session id
// and a random 256-bit key that exists nowhere else. The stored record is
//   data: AES-256-GCM(key, JSON session), bound to the id (a record cannot be moved to another id)
//   meta: sealed('store-meta', {user, email, sub, iat, exp}) under cookie_secret, for
//         `portcullis sessions list|revoke`
// so a dump of the store (or a backup) holds no token and no claim anyone can use: the tokens
// need the key from a browser, the user labels need cookie_secret.
// A new record is also filed under index names (keyed hashes, Sealer.indexName) of its IdP
// session and its user, so an IdP-initiated logout finds it without reading every record.

export interface StoredRecord {
  id: string;
  meta: string;
  data: string;
  /** ms since the epoch: Redis uses it as the TTL, PostgreSQL's sweep deletes past it. */
  expiresAt: number;
  /** Index names to file a new record under (put 'create' only; see indexNames). */
  index?: string[] | undefined;
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
  /** The ids filed under an index name (some may have ended since). */
  indexed(name: string, now: number): Promise<string[]>;
  /** Takes ended ids out of an index name (where deleting the record does not already). */
  unindex(name: string, ids: string[]): Promise<void>;
  /** Sets the lock when nobody holds it (or it has expired); true when we now hold it. */
  lock(id: string, token: string, ttlMs: number): Promise<boolean>;
  unlock(id: string, token: string): Promise<void>;
  scan(now: number): Promise<Array<Pick<StoredRecord, 'id' | 'meta' | 'expiresAt'>>>;
  /** Shared stores: sends a message to every process listening (Redis PUBLISH, PostgreSQL NOTIFY). */
  publish?(message: string): Promise<void>;
  /**
   * Shared stores: hears every published message from now on, reconnecting by itself; `state(true)`
   * once messages published from then on are sure to arrive, `state(false)` when that stops.
   */
  listen?(message: (m: string) => void, state: (up: boolean) => void): void;
  /** Shared stores: sets the mark when it is not set (or has expired); true when this call set it. */
  spend?(key: string, expiresAt: number, now: number): Promise<boolean>;
  close(): Promise<void>;
}

// The invalidation channel carries "e <nonce> <sid> <sid>..." (sessions ended or rewritten) and
// "p" (a heartbeat). Without a heartbeat heard for QUIET_MS the channel counts as down even when
// its connection looks open (a silent network partition), and the manager falls back to its
// short bound (docs/high-availability.md).
const HEARTBEAT_MS = 250;
const QUIET_MS = 1_000;
/** How long an ending waits for its own message to come back, so every replica has it when the answer leaves. */
const ECHO_WAIT_MS = 100;
/** Ids per message: a PostgreSQL NOTIFY payload is limited to 8000 bytes. */
const IDS_PER_MESSAGE = 200;

const KEY_BYTES = 32;
const SID_RE = /^[A-Za-z0-9_-]{16,64}$/;
const RETRY_DESTROY_MS = 5_000;

interface Meta {
  u: string;
  e: string;
  s: string;
  iat: number;
  exp: number;
  /** Issuer, client address and user agent at sign-in (the admin console); absent in older records. */
  i?: string | undefined;
  a?: string | undefined;
  g?: string | undefined;
}

export class ServerSessionStore implements SessionStore {
  readonly serverSide = true;
  private down = false;
  /** Sign-outs that happened while the store was down: removed as soon as it is back. */
  private readonly pendingDestroy = new Set<string>();
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private ended: ((sids: ReadonlySet<string>) => void) | null = null;
  private listening = false;
  /** When the current subscription started (null: not subscribed) and when the channel last spoke. */
  private upSince: number | null = null;
  private lastHeard = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly echoes = new Map<string, () => void>();
  /** Set only for shared stores, so callers fall back to their process-local check otherwise. */
  readonly spend?: (id: string, expiresAt: number, now: number) => Promise<boolean>;

  constructor(
    private readonly backend: Backend,
    private readonly sealer: Sealer,
    private readonly cookieName: string,
    private readonly log: Logger,
    /** Where the store is, password masked, for the outage log line. */
    private readonly display: string,
    private readonly userClaim: (s: SessionData) => { user: string; email: string },
  ) {
    const spend = backend.spend?.bind(backend);
    if (spend) {
      // Hashed: the store never holds a value that could be replayed, whatever its length.
      const hash = (id: string): string => createHash('sha256').update(id).digest('base64url');
      this.spend = (id, expiresAt, now) => this.call(() => spend(hash(id), expiresAt, now));
    }
  }

  get kind(): string {
    return this.backend.kind;
  }

  async start(): Promise<void> {
    this.listen();
    await this.call(() => this.backend.start()).catch(() => {});
  }

  watch(ended: (sids: ReadonlySet<string>) => void): void {
    this.ended = ended;
  }

  watchedSince(now: number): number | null {
    // This process is the only one using a memory store: every ending is heard at once.
    if (!this.backend.listen) return 0;
    return this.upSince !== null && now - this.lastHeard < QUIET_MS ? this.upSince : null;
  }

  /** Subscribes on first use: `portcullis check` and the sessions CLI build a store but never listen. */
  private listen(): void {
    if (this.listening || this.closed || !this.backend.listen || !this.backend.publish) return;
    this.listening = true;
    this.backend.listen(
      (m) => this.heard(m),
      (up) => {
        if (this.closed) return;
        const now = Date.now();
        // Whatever was published while unsubscribed is lost: only sessions confirmed after this
        // instant are covered, older cached ones are checked against the store again.
        this.upSince = up ? now : null;
        if (up) this.lastHeard = now;
        if (up) {
          this.log.info(
            { event: 'session_channel_up', store: this.kind },
            'listening for sign-outs and revocations from every replica',
          );
        } else {
          this.log.warn(
            { event: 'session_channel_down', store: this.kind },
            'the channel for sign-outs and revocations is down: cached sessions are checked against the store ' +
              'every second',
          );
        }
      },
    );
    const publish = this.backend.publish.bind(this.backend);
    let pending = false;
    this.heartbeat = setInterval(() => {
      // One at a time: while the store hangs, beats must not pile up and take the pool's connections.
      if (pending) return;
      pending = true;
      publish('p')
        .catch(() => {})
        .finally(() => (pending = false));
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  private heard(m: string): void {
    this.lastHeard = Date.now();
    if (!m.startsWith('e ')) return;
    const parts = m.split(' ');
    this.echoes.get(parts[1]!)?.();
    const sids = new Set(parts.slice(2).filter((id) => SID_RE.test(id)));
    if (sids.size) this.ended?.(sids);
  }

  /**
   * Tells every process that these sessions ended (or changed). Waits, briefly, for the message to
   * come back: every replica subscribed hears it at about the same time as this one, so when the
   * sign-out's answer leaves, the copied cookie is already refused everywhere.
   */
  private async announce(ids: string[]): Promise<void> {
    const publish = this.backend.publish;
    if (!publish) {
      this.ended?.(new Set(ids));
      return;
    }
    for (let i = 0; i < ids.length; i += IDS_PER_MESSAGE) {
      const nonce = randomBytes(9).toString('base64url');
      const live = this.watchedSince(Date.now()) !== null;
      const echoed = live
        ? new Promise<void>((resolve) => {
            const t = setTimeout(done, ECHO_WAIT_MS);
            function done(): void {
              clearTimeout(t);
              resolve();
            }
            this.echoes.set(nonce, done);
          })
        : null;
      try {
        await publish.call(
          this.backend,
          `e ${nonce} ${ids.slice(i, i + IDS_PER_MESSAGE).join(' ')}`,
        );
        await echoed;
      } catch (e) {
        // The session is gone from the store; the other replicas find that out within their
        // short bound, since their channel is down as well when the store is.
        this.log.warn(
          { event: 'session_end_not_announced', store: this.kind, detail: errorText(e) },
          'a session ended but the other replicas could not be told at once; they refuse it within a second',
        );
      } finally {
        this.echoes.delete(nonce);
      }
    }
  }

  /** For /ready: resolves when the store answers. */
  async ping(): Promise<void> {
    await this.call(() => this.backend.ping());
  }

  async load(cookieValue: string, now: number): Promise<SessionData | null> {
    if (!this.listening) this.listen();
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
    return this.sealer.seal(
      'store-key',
      Buffer.concat([key, Buffer.from(session.sid, 'utf8')]),
      this.cookieName,
    );
  }

  /**
   * Rewrites an existing session under its cookie's key (token refresh), so the cookie stays the
   * same. false when it no longer exists: a sign-out or revocation that raced the refresh wins.
   */
  async update(session: SessionData, cookieValue: string): Promise<boolean> {
    const ref = this.openCookie(cookieValue);
    if (!ref || ref.sid !== session.sid) return false;
    const ok = await this.write(session, ref.key, 'update');
    // Other replicas drop their decoded copy and read the new claims at their next request.
    if (ok) await this.announce([session.sid]);
    return ok;
  }

  private async write(
    session: SessionData,
    key: Buffer,
    mode: 'create' | 'update',
  ): Promise<boolean> {
    if (!SID_RE.test(session.sid)) throw new Error('session id has an unexpected shape');
    const { user, email } = this.userClaim(session);
    const meta: Meta = { u: user, e: email, s: session.sub, iat: session.iat, exp: session.exp };
    if (session.client) {
      meta.i = session.client.idp;
      meta.a = session.client.ip;
      meta.g = session.client.ua;
    }
    const rec: StoredRecord = {
      id: session.sid,
      meta: this.sealer.sealJson('store-meta', meta, session.sid),
      data: encrypt(key, Buffer.from(JSON.stringify(session)), session.sid),
      expiresAt: session.exp,
    };
    // A refresh keeps the IdP session and the user: the names filed at creation stand.
    if (mode === 'create' && session.idpIss !== undefined) {
      const n = this.indexNames(session.idpIss);
      rec.index =
        session.idpSid !== undefined
          ? [n.sid(session.idpSid), n.sub(session.sub)]
          : [n.sub(session.sub), n.noSid(session.sub)];
    }
    return this.call(() => this.backend.put(rec, Date.now(), mode));
  }

  /** Index names are keyed hashes: the store learns neither the IdP's session ids nor the users. */
  private indexNames(iss: string) {
    const name = (kind: string, v: string): string =>
      this.sealer.indexName(JSON.stringify([kind, iss, v]));
    return {
      sid: (sid: string) => name('sid', sid),
      sub: (sub: string) => name('sub', sub),
      /** The user's sessions whose ID token carried no sid. */
      noSid: (sub: string) => name('nosid', sub),
    };
  }

  async endByIdp(logout: IdpLogout, now: number): Promise<number> {
    const n = this.indexNames(logout.iss);
    const read = (name: string) => this.call(() => this.backend.indexed(name, now));
    const names: string[] = [];
    let ids: string[];
    if (logout.sid !== undefined) {
      names.push(n.sid(logout.sid));
      ids = await read(names[0]!);
      if (logout.sub !== undefined) {
        // Both named: that IdP session of that user, and the user's sessions that cannot say
        // which IdP session they belong to (ending one too many is the safe mistake).
        const sub = logout.sub;
        names.push(n.sub(sub), n.noSid(sub));
        const ofUser = new Set(await read(names[1]!));
        ids = [...ids.filter((id) => ofUser.has(id)), ...(await read(names[2]!))];
      }
    } else if (logout.sub !== undefined) {
      names.push(n.sub(logout.sub), n.noSid(logout.sub));
      ids = await read(names[0]!);
    } else {
      return 0;
    }
    const unique = [...new Set(ids)].filter((id) => SID_RE.test(id));
    if (!unique.length) return 0;
    const ended = await this.revoke(unique);
    for (const name of names)
      await this.backend.unindex(name, unique).catch(() => {
        // Left behind, the ids only point at records that no longer exist until the name expires.
      });
    return ended;
  }

  async destroy(cookieValue: string): Promise<void> {
    const ref = this.openCookie(cookieValue);
    if (!ref) return;
    try {
      await this.call(() => this.backend.delete([ref.sid]));
      await this.announce([ref.sid]);
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      // The browser's cookie is cleared anyway; the record goes as soon as the store is back.
      // Until then no process can load it either (the store is down), and this one refuses it.
      this.pendingDestroy.add(ref.sid);
      this.log.warn(
        { event: 'sign_out_deferred', store: this.kind },
        'signed out while the session store is unavailable; the session will be removed from the store when it returns',
      );
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
      out.push(
        m
          ? {
              id: r.id,
              user: m.u,
              email: m.e,
              sub: m.s,
              iat: m.iat,
              exp: m.exp,
              idp: m.i,
              ip: m.a,
              userAgent: m.g,
            }
          : { id: r.id, user: '?', email: '', sub: '', iat: 0, exp: r.expiresAt },
      );
    }
    return out.sort((a, b) => a.iat - b.iat);
  }

  async revoke(ids: string[]): Promise<number> {
    const valid = ids.filter((id) => SID_RE.test(id));
    if (!valid.length) return 0;
    const n = await this.call(() => this.backend.delete(valid));
    await this.announce(valid);
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.upSince = null;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.heartbeat) clearInterval(this.heartbeat);
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
        this.log.error(
          {
            event: 'session_store_unavailable',
            store: this.kind,
            at: this.display,
            detail: errorText(e),
          },
          'session store unavailable: requests that need a session get 503 until it is back',
        );
      }
      throw new StoreUnavailableError(`the ${this.kind} session store is unavailable`, {
        cause: e,
      });
    }
    if (this.down) {
      this.down = false;
      this.log.info(
        { event: 'session_store_recovered', store: this.kind, at: this.display },
        'session store is available again',
      );
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
      await this.announce(ids);
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
  if (e instanceof Error)
    return `${(e as NodeJS.ErrnoException).code ? `${(e as NodeJS.ErrnoException).code}: ` : ''}${e.message}`.slice(
      0,
      300,
    );
  return String(e).slice(0, 300);
}
