// `session_storage` parsing, shared by the config loader (errors at load time, with the key and
// line) and the stores themselves. No I/O here: `portcullis check` must not connect anywhere.

export interface RedisNode {
  host: string;
  port: number;
}

export type SessionStorage =
  | { kind: 'cookie' }
  | { kind: 'memory' }
  | {
      kind: 'redis';
      mode: 'single' | 'sentinel' | 'cluster';
      nodes: RedisNode[];
      username: string | undefined;
      password: string | undefined;
      db: number;
      tls: boolean;
      /** Every key Portcullis writes starts with this, so one Redis can serve several deployments. */
      prefix: string;
      sentinelName: string | undefined;
      sentinelPassword: string | undefined;
      /** The URL with the password masked, for logs and messages. */
      display: string;
    }
  | { kind: 'postgres'; url: string; display: string };

export type RedisStorage = Extract<SessionStorage, { kind: 'redis' }>;
export type PostgresStorage = Extract<SessionStorage, { kind: 'postgres' }>;

const REDIS_OPTIONS = new Set(['sentinel', 'sentinel_password', 'cluster', 'key_prefix', 'db']);

/** The parsed setting, or a message saying what was expected. */
export function parseSessionStorage(text: string): SessionStorage | string {
  const v = text.trim();
  if (v === 'cookie' || v === '') return { kind: 'cookie' };
  if (v === 'memory') return { kind: 'memory' };
  if (/^rediss?:\/\//i.test(v)) return parseRedis(v);
  if (/^postgres(ql)?:\/\//i.test(v)) {
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      return 'expected a PostgreSQL URL like postgres://user:password@db.internal:5432/portcullis';
    }
    if (!u.hostname && !u.searchParams.get('host')) return 'expected a host in the PostgreSQL URL, e.g. postgres://user@db.internal:5432/portcullis';
    const shown = new URL(v);
    if (shown.password) shown.password = '***';
    return { kind: 'postgres', url: v, display: shown.href };
  }
  return `expected cookie, memory, redis://…, rediss://… or postgres://…, got ${JSON.stringify(v.replace(/\/\/[^@/]*@/, '//***@'))}`;
}

function parseRedis(v: string): SessionStorage | string {
  // Not WHATWG URL: Sentinel and Cluster list several host:port pairs in the authority.
  const m = /^(rediss?):\/\/(?:([^@/?#]*)@)?([^/?#]+)(?:\/([^?#]*))?(?:\?([^#]*))?$/i.exec(v);
  if (!m) return 'expected a Redis URL like redis://:password@redis.internal:6379/0';
  const [, scheme, userinfo, hostlist, path, query] = m;
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined) {
    const i = userinfo.indexOf(':');
    try {
      username = decodeURIComponent(i < 0 ? userinfo : userinfo.slice(0, i)) || undefined;
      password = i < 0 ? undefined : decodeURIComponent(userinfo.slice(i + 1)) || undefined;
    } catch {
      return 'the user name or password in the Redis URL is not valid percent-encoding';
    }
  }
  const nodes: RedisNode[] = [];
  for (const part of hostlist!.split(',')) {
    const hm = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9._-]+))(?::(\d{1,5}))?$/.exec(part.trim());
    const port = hm?.[3] ? Number(hm[3]) : 6379;
    if (!hm || port < 1 || port > 65535) return `expected host:port in the Redis URL, got ${JSON.stringify(part)}`;
    nodes.push({ host: hm[1] ?? hm[2]!, port });
  }
  const params = new URLSearchParams(query ?? '');
  for (const k of params.keys()) {
    if (!REDIS_OPTIONS.has(k)) return `unknown Redis URL option ${JSON.stringify(k)}; expected one of ${[...REDIS_OPTIONS].join(', ')}`;
  }
  const dbText = path || params.get('db') || '0';
  if (!/^\d{1,2}$/.test(dbText)) return `expected a database number after the host in the Redis URL, got ${JSON.stringify(dbText)}`;
  const sentinelName = params.get('sentinel') || undefined;
  const cluster = params.get('cluster');
  if (cluster !== null && cluster !== 'true' && cluster !== 'false') return 'expected cluster=true or cluster=false in the Redis URL';
  if (sentinelName && cluster === 'true') return 'a Redis URL is either Sentinel (sentinel=NAME) or Cluster (cluster=true), not both';
  const mode = sentinelName ? 'sentinel' : cluster === 'true' ? 'cluster' : 'single';
  if (mode === 'single' && nodes.length > 1) return 'several Redis hosts need sentinel=MASTER_NAME or cluster=true in the URL';
  if (mode === 'cluster' && Number(dbText) !== 0) return 'Redis Cluster has only database 0';
  const prefix = params.get('key_prefix') ?? 'portcullis:';
  const display = userinfo !== undefined && password !== undefined ? v.replace(`${userinfo}@`, `${userinfo.split(':')[0]}:***@`) : v;
  return {
    kind: 'redis', mode, nodes, username, password, db: Number(dbText), tls: scheme!.toLowerCase() === 'rediss', prefix,
    sentinelName, sentinelPassword: params.get('sentinel_password') ?? undefined,
    display: display.replace(/sentinel_password=[^&]*/, 'sentinel_password=***'),
  };
}
