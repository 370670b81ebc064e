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
      /** The URL with every credential masked, for logs and messages. */
      display: string;
      /** The URL's secrets as written and decoded, to blank out of client error messages. */
      secrets: string[];
    }
  | { kind: 'postgres'; url: string; display: string; secrets: string[] };

export type RedisStorage = Extract<SessionStorage, { kind: 'redis' }>;
export type PostgresStorage = Extract<SessionStorage, { kind: 'postgres' }>;

const REDIS_OPTIONS = new Set(['sentinel', 'sentinel_password', 'cluster', 'key_prefix', 'db']);

// Query parameters whose values a displayed URL shows; every other value is masked. A list of
// the harmless ones, not of the secret ones: pg-connection-string copies every query parameter
// into the client's config (password, sslpassword, sslkey, passfile, ...), ioredis takes any of
// its options from the query (password, sentinelPassword, ...), and a list of secret names
// would miss the next one.
const SHOWN_PARAMS = new Set([
  'host',
  'hostaddr',
  'port',
  'dbname',
  'user',
  'sslmode',
  'ssl',
  'sslnegotiation',
  'sslrootcert',
  'sslcert',
  'application_name',
  'fallback_application_name',
  'connect_timeout',
  'client_encoding',
  'target_session_attrs',
  'keepalives',
  'keepalives_idle',
  'sentinel',
  'cluster',
  'key_prefix',
  'db',
]);
const PLAIN_NAME = /^[A-Za-z0-9_.-]{1,40}$/;
/** Shorter values are not blanked out of error text: "1" would garble every address in it. */
const MIN_SCRUBBED = 4;

const AT_AFTER_HOST =
  "has an '@' where only the one after the user name and password may be: percent-encode " +
  "'@', '/', '?' and '#' in the password (%40, %2F, %3F, %23)";
const ENCODE_HINT = "(percent-encode '@', '/', '?' and '#' in the password)";

function decode(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** A secret as written, percent-decoded, and form-decoded ('+' as a space), as clients may read it. */
function forms(raw: string): string[] {
  return [raw, decode(raw), decode(raw.replace(/\+/g, ' '))];
}

/** The query with every value but the harmless ones masked, and the masked values. */
function maskQuery(query: string): { shown: string; secrets: string[] } {
  const secrets: string[] = [];
  const parts = query.split('&').map((part) => {
    if (!part) return part;
    const eq = part.indexOf('=');
    const rawKey = eq < 0 ? part : part.slice(0, eq);
    const key = decode(rawKey.replace(/\+/g, ' '));
    if (eq >= 0 && SHOWN_PARAMS.has(key)) return part;
    const value = eq < 0 ? '' : part.slice(eq + 1);
    if (value) secrets.push(...forms(value));
    // A name that is not a plain word may be a pasted secret itself.
    if (!PLAIN_NAME.test(key)) {
      secrets.push(...forms(rawKey));
      return '***';
    }
    return eq < 0 ? rawKey : `${rawKey}=***`;
  });
  return { shown: parts.join('&'), secrets };
}

function scrubList(values: string[]): string[] {
  return [...new Set(values.filter((v) => v.length >= MIN_SCRUBBED))].sort(
    (a, b) => b.length - a.length,
  );
}

/** `text` with every secret blanked out (longest first, so no part of a longer one is left). */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join('***');
  return out;
}

/** Words that are safe to quote back in a config error: never a URL, which may hold a password. */
function quoted(v: string): string {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]{0,20}):/.exec(v);
  if (scheme) return `a ${scheme[1]}: URL`;
  return PLAIN_NAME.test(v) ? JSON.stringify(v) : 'something else';
}

/** The parsed setting, or a message saying what was expected. Neither ever holds a password from the URL. */
export function parseSessionStorage(text: string): SessionStorage | string {
  const v = text.trim();
  if (v === 'cookie' || v === '') return { kind: 'cookie' };
  if (v === 'memory') return { kind: 'memory' };
  if (/^rediss?:\/\//i.test(v)) return parseRedis(v);
  if (/^postgres(ql)?:\/\//i.test(v)) return parsePostgres(v);
  return `expected cookie, memory, redis://…, rediss://… or postgres://…, got ${quoted(v)}`;
}

function parsePostgres(v: string): SessionStorage | string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return `expected a PostgreSQL URL like postgres://user:password@db.internal:5432/portcullis ${ENCODE_HINT}`;
  }
  // An unencoded '/', '?' or '#' in the password ends the authority early: the rest of the
  // password then sits in the path, query or fragment, where no mask would look for it.
  if (u.pathname.includes('@') || u.search.includes('@') || u.hash) {
    return u.hash && !u.hash.includes('@')
      ? 'a PostgreSQL URL has no #fragment'
      : `the PostgreSQL URL ${AT_AFTER_HOST}`;
  }
  if (!u.hostname && !u.searchParams.get('host'))
    return 'expected a host in the PostgreSQL URL, e.g. postgres://user@db.internal:5432/portcullis';
  const secrets: string[] = [];
  let auth = '';
  if (u.username || u.password) {
    auth = `${u.username}${u.password ? ':***' : ''}@`;
    if (u.password) secrets.push(...forms(u.password));
  }
  const q = u.search ? maskQuery(u.search.slice(1)) : { shown: '', secrets: [] };
  secrets.push(...q.secrets);
  const display = `${u.protocol}//${auth}${u.host}${u.pathname}${u.search ? `?${q.shown}` : ''}`;
  return { kind: 'postgres', url: v, display, secrets: scrubList(secrets) };
}

function parseRedis(v: string): SessionStorage | string {
  // Not WHATWG URL: Sentinel and Cluster list several host:port pairs in the authority.
  const m = /^(rediss?):\/\/(?:([^@/?#]*)@)?([^/?#]+)(?:\/([^?#]*))?(?:\?([^#]*))?$/i.exec(v);
  if (!m) return `expected a Redis URL like redis://:password@redis.internal:6379/0 ${ENCODE_HINT}`;
  const [, scheme, userinfo, hostlist, path, query] = m;
  // Only the user info's own '@' may be there; any other means an unencoded character of the
  // password moved part of it into the host list, the path or the query.
  if ((v.match(/@/g) ?? []).length !== (userinfo === undefined ? 0 : 1))
    return `the Redis URL ${AT_AFTER_HOST}`;
  let username: string | undefined;
  let password: string | undefined;
  const secrets: string[] = [];
  if (userinfo !== undefined) {
    const i = userinfo.indexOf(':');
    if (i >= 0) secrets.push(...forms(userinfo.slice(i + 1)));
    try {
      username = decodeURIComponent(i < 0 ? userinfo : userinfo.slice(0, i)) || undefined;
      password = i < 0 ? undefined : decodeURIComponent(userinfo.slice(i + 1)) || undefined;
    } catch {
      return 'the user name or password in the Redis URL is not valid percent-encoding';
    }
  }
  const nodes: RedisNode[] = [];
  const hosts = hostlist!.split(',');
  for (let n = 0; n < hosts.length; n++) {
    const part = hosts[n]!.trim();
    const hm = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9._-]+))(?::(\d{1,5}))?$/.exec(part);
    const port = hm?.[3] ? Number(hm[3]) : 6379;
    if (!hm || port < 1 || port > 65535) {
      const got = PLAIN_NAME.test(part.replace(/:/g, ''))
        ? JSON.stringify(part)
        : `something else as host ${n + 1}`;
      return `expected host:port in the Redis URL, got ${got}`;
    }
    nodes.push({ host: hm[1] ?? hm[2]!, port });
  }
  const params = new URLSearchParams(query ?? '');
  for (const k of params.keys()) {
    if (REDIS_OPTIONS.has(k)) continue;
    if (/pass|user|auth|secret|token/i.test(k)) {
      return (
        'the Redis URL takes its user name and password in the user info (redis://user:password@host), ' +
        `not as ?${PLAIN_NAME.test(k) ? k : '…'}=`
      );
    }
    const named = PLAIN_NAME.test(k) ? JSON.stringify(k) : 'that is not a plain name';
    return `unknown Redis URL option ${named}; expected one of ${[...REDIS_OPTIONS].join(', ')}`;
  }
  const dbText = path || params.get('db') || '0';
  if (!/^\d{1,2}$/.test(dbText)) {
    const got = PLAIN_NAME.test(dbText) ? JSON.stringify(dbText) : 'something else';
    return `expected a database number after the host in the Redis URL, got ${got}`;
  }
  const sentinelName = params.get('sentinel') || undefined;
  const cluster = params.get('cluster');
  if (cluster !== null && cluster !== 'true' && cluster !== 'false')
    return 'expected cluster=true or cluster=false in the Redis URL';
  if (sentinelName && cluster === 'true')
    return 'a Redis URL is either Sentinel (sentinel=NAME) or Cluster (cluster=true), not both';
  const mode = sentinelName ? 'sentinel' : cluster === 'true' ? 'cluster' : 'single';
  if (mode === 'single' && nodes.length > 1)
    return 'several Redis hosts need sentinel=MASTER_NAME or cluster=true in the URL';
  if (mode === 'cluster' && Number(dbText) !== 0) return 'Redis Cluster has only database 0';
  const prefix = params.get('key_prefix') ?? 'portcullis:';
  const q = query !== undefined ? maskQuery(query) : { shown: '', secrets: [] };
  secrets.push(...q.secrets);
  const auth =
    userinfo === undefined
      ? ''
      : `${userinfo.split(':')[0]}${userinfo.includes(':') ? ':***' : ''}@`;
  return {
    kind: 'redis',
    mode,
    nodes,
    username,
    password,
    db: Number(dbText),
    tls: scheme!.toLowerCase() === 'rediss',
    prefix,
    sentinelName,
    sentinelPassword: params.get('sentinel_password') ?? undefined,
    display: `${scheme}://${auth}${hostlist}${path !== undefined ? `/${path}` : ''}${query !== undefined ? `?${q.shown}` : ''}`,
    secrets: scrubList(secrets),
  };
}
