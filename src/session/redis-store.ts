import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Backend, StoredRecord } from './server-store.js';
import type { RedisStorage } from './storage-url.js';

// Keys (all under the URL's key_prefix, default "portcullis:"):
//   <prefix>s:<session id>  "<meta>.<data>", with a TTL = the session's own expiry
//   <prefix>l:<session id>  refresh lock, a few seconds
//   <prefix>o:<hash>        a spent login state or handoff link, until it would have expired
//   <prefix>i:<name>        a set of session ids filed under an index name (an IdP session, a
//                           user; server-store.ts), kept as long as its longest-lived session
//   <prefix>ended           the pub/sub channel for sessions ended or rewritten (server-store.ts)
// Every command names one key, so the same code runs on a single node, behind Sentinel, and on
// a Cluster (no cross-slot commands).

const UNLOCK =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
// Adds the id and stretches the set's TTL to the session's; never shortens it.
const INDEX =
  "redis.call('sadd', KEYS[1], ARGV[1]) if redis.call('pttl', KEYS[1]) < tonumber(ARGV[2]) then redis.call('pexpire', KEYS[1], ARGV[2]) end return 1";
const FIRST_CONNECT_WAIT_MS = 2_000;

export class RedisBackend implements Backend {
  readonly kind = 'redis';
  private readonly client: Redis | Cluster;
  private everReady = false;
  private subscriber: Redis | Cluster | null = null;

  constructor(private readonly s: RedisStorage) {
    // Fail fast while disconnected: a request waiting on a reconnect would hang instead of
    // getting the 503 page, so commands are never queued and never retried.
    const common = {
      username: s.username,
      password: s.password,
      tls: s.tls ? {} : undefined,
      connectTimeout: 2_000,
      commandTimeout: 2_000,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      lazyConnect: true,
    } satisfies RedisOptions;
    const retryStrategy = (times: number): number => Math.min(100 * 2 ** Math.min(times, 5), 2_000);
    if (s.mode === 'cluster') {
      this.client = new Cluster(s.nodes, {
        redisOptions: common,
        enableOfflineQueue: false,
        lazyConnect: true,
        clusterRetryStrategy: retryStrategy,
      });
    } else if (s.mode === 'sentinel') {
      this.client = new Redis({
        ...common,
        db: s.db,
        sentinels: s.nodes,
        name: s.sentinelName!,
        sentinelPassword: s.sentinelPassword,
        sentinelRetryStrategy: retryStrategy,
        retryStrategy,
      });
    } else {
      this.client = new Redis({
        ...common,
        host: s.nodes[0]!.host,
        port: s.nodes[0]!.port,
        db: s.db,
        retryStrategy,
      });
    }
    // Outages are reported by the store, once; without a listener ioredis prints every retry.
    this.client.on('error', () => {});
    this.client.on('ready', () => {
      this.everReady = true;
    });
  }

  private key(kind: 's' | 'l' | 'o' | 'i', id: string): string {
    return `${this.s.prefix}${kind}:${id}`;
  }

  async start(): Promise<void> {
    await this.ping();
  }

  async ping(): Promise<void> {
    await this.ready();
    await this.client.ping();
  }

  private async ready(): Promise<void> {
    if (this.client.status === 'ready') return;
    if (this.client.status === 'wait') this.client.connect().catch(() => {});
    // Only the very first connection is waited for (requests racing the start); during an
    // outage commands fail at once and the request gets its 503.
    if (this.everReady) return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        this.client.off('ready', ok);
        reject(new Error(`could not connect to Redis within ${FIRST_CONNECT_WAIT_MS} ms`));
      }, FIRST_CONNECT_WAIT_MS);
      const ok = (): void => {
        clearTimeout(t);
        resolve();
      };
      this.client.once('ready', ok);
    });
  }

  async get(id: string): Promise<StoredRecord | null> {
    await this.ready();
    const v = await this.client.get(this.key('s', id));
    return v ? parse(id, v) : null;
  }

  async put(rec: StoredRecord, now: number, mode: 'create' | 'update'): Promise<boolean> {
    await this.ready();
    const ttl = Math.max(1, rec.expiresAt - now);
    const k = this.key('s', rec.id);
    const v = `${rec.meta}.${rec.data}`;
    const r =
      mode === 'create'
        ? await this.client.set(k, v, 'PX', ttl, 'NX')
        : await this.client.set(k, v, 'PX', ttl, 'XX');
    if (r !== 'OK') return false;
    // One key per command (Cluster). Should this fail, the login fails with the store's 503:
    // a session that a logout from the IdP could not find is never handed out.
    for (const name of mode === 'create' ? (rec.index ?? []) : [])
      await this.client.eval(INDEX, 1, this.key('i', name), rec.id, String(ttl));
    return true;
  }

  async indexed(name: string): Promise<string[]> {
    await this.ready();
    return this.client.smembers(this.key('i', name));
  }

  async unindex(name: string, ids: string[]): Promise<void> {
    if (ids.length) await this.client.srem(this.key('i', name), ...ids);
  }

  async delete(ids: string[]): Promise<number> {
    await this.ready();
    const n = await Promise.all(ids.map((id) => this.client.del(this.key('s', id))));
    return n.reduce((a, b) => a + b, 0);
  }

  async lock(id: string, token: string, ttlMs: number): Promise<boolean> {
    await this.ready();
    return (await this.client.set(this.key('l', id), token, 'PX', ttlMs, 'NX')) === 'OK';
  }

  async unlock(id: string, token: string): Promise<void> {
    await this.client.eval(UNLOCK, 1, this.key('l', id), token);
  }

  async scan(): Promise<StoredRecord[]> {
    await this.ready();
    const match = `${this.s.prefix.replace(/[*?[\]\\]/g, '\\$&')}s:*`;
    const nodes: Redis[] =
      this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    const keys: string[] = [];
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, batch] = await node.scan(cursor, 'MATCH', match, 'COUNT', 500);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0');
    }
    const out: StoredRecord[] = [];
    for (let i = 0; i < keys.length; i += 200) {
      const slice = keys.slice(i, i + 200);
      const vals = await Promise.all(slice.map((k) => this.client.get(k)));
      vals.forEach((v, j) => {
        const rec = v ? parse(slice[j]!.slice(this.s.prefix.length + 2), v) : null;
        if (rec) out.push(rec);
      });
    }
    return out;
  }

  async publish(message: string): Promise<void> {
    await this.ready();
    await this.client.publish(`${this.s.prefix}ended`, message);
  }

  listen(message: (m: string) => void, state: (up: boolean) => void): void {
    const channel = `${this.s.prefix}ended`;
    // A connection of its own: a subscribed connection can run no other command. Subscribed
    // again by hand on every (re)connect, so `state(true)` comes only once SUBSCRIBE is done.
    const sub =
      this.client instanceof Cluster
        ? this.client.duplicate()
        : this.client.duplicate({ autoResubscribe: false });
    this.subscriber = sub;
    let up = false;
    const down = (): void => {
      if (up) state((up = false));
    };
    sub.on('error', () => {});
    sub.on('close', down);
    sub.on('end', down);
    sub.on('ready', () => {
      sub.subscribe(channel).then(
        () => {
          if (!up && sub.status === 'ready') state((up = true));
        },
        () => sub.disconnect(true),
      );
    });
    sub.on('message', (ch: string, m: string) => {
      if (ch === channel) message(m);
    });
    sub.connect().catch(() => {});
  }

  async spend(key: string, expiresAt: number, now: number): Promise<boolean> {
    await this.ready();
    const ttl = Math.max(1, expiresAt - now);
    return (await this.client.set(this.key('o', key), '1', 'PX', ttl, 'NX')) === 'OK';
  }

  async close(): Promise<void> {
    this.subscriber?.disconnect();
    if (this.client.status === 'wait') {
      this.client.disconnect();
      return;
    }
    await this.client.quit().catch(() => this.client.disconnect());
  }
}

function parse(id: string, v: string): StoredRecord | null {
  const dot = v.indexOf('.');
  if (dot < 0) return null;
  // Redis drops the key at its TTL; the session's own exp inside the record is checked too.
  return { id, meta: v.slice(0, dot), data: v.slice(dot + 1), expiresAt: Number.MAX_SAFE_INTEGER };
}
