import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { contextFromConnect } from '../decide/connect-context.js';
import { decide, type Decision } from '../decide/decide.js';
import type { RequestContext } from '../decide/types.js';
import { codes } from '../http/outcomes.js';
import { tunnelRefusal, type TunnelRefusal } from '../http/tunnel-answer.js';
import { writeAccessLine } from '../observe/access-log.js';
import { requestIdFor } from '../observe/logger.js';
import type { Runtime } from '../runtime.js';
import type { Route } from '../config/types.js';
import { upstreamLabel } from '../config/upstream-url.js';
import { affinityKey, type Balancer } from './balancer.js';
import type { ProxyState } from './handler.js';
import type { Upstreams } from './upstreams.js';

// TCP routes (Pomerium's tcp+https, https://www.pomerium.com/docs/capabilities/non-http/tcp):
// the client sends `CONNECT db.corp.example.com:5432`, the same decide() as for every HTTP
// request judges it, and only an allow ever opens a connection to the upstream. Then bytes flow
// both ways through stream.pipeline, whose backpressure bounds the memory a tunnel can take.

/** Where the CLI starts its login (authenticate/cli-login.ts). */
export const CLI_LOGIN_PATH = '/.portcullis/api/v1/login';
const CONNECT_TIMEOUT_MS = 10_000;

export function createConnectHandler(state: ProxyState) {
  return (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const rt = state.runtime;
    const requestId = requestIdFor(req, rt.cfg.isTrustedProxy);
    const started = performance.now();
    socket.on('error', () => socket.destroy());
    const refuse = (
      r: Omit<TunnelRefusal, 'requestId'>,
      ctx: RequestContext | null,
      decision: string,
      d?: Decision,
    ): void => {
      const answer = tunnelRefusal({ ...r, requestId });
      socket.end(answer.bytes);
      access(rt, ctx, req, answer.status, requestId, started, decision, r.message, d);
    };
    const parsed = contextFromConnect(req, rt.cfg.isTrustedProxy);
    if (!parsed.ok) {
      refuse({ code: codes.bad_request, message: parsed.reason }, null, 'bad_request');
      return;
    }
    const ctx = parsed.ctx;
    void (async () => {
      let d: Decision;
      try {
        d = await decide(ctx, rt);
      } catch (e) {
        rt.log.error({ requestId, err: e }, 'tunnel decision failed');
        refuse(
          { code: codes.internal_error, message: 'internal error', status: 503 },
          ctx,
          'error',
        );
        return;
      }
      switch (d.kind) {
        case 'allow':
          return open(
            rt,
            state.upstreams,
            d,
            ctx,
            parsed.target,
            socket,
            head,
            requestId,
            started,
            req,
          );
        case 'login': {
          const base = rt.cfg.authenticateUrl?.origin;
          const loginUrl = base ? `${base}${CLI_LOGIN_PATH}` : CLI_LOGIN_PATH;
          return refuse(
            {
              code: d.tokenError ? codes.invalid_token : codes.unauthenticated,
              status: 407,
              message: d.tokenError
                ? `${d.tokenError}; run \`portcullis tcp\` again to sign in`
                : `sign in first: \`portcullis tcp ${parsed.target}\` opens the login (${loginUrl})`,
              headers: {
                'proxy-authenticate': 'Portcullis realm="portcullis"',
                'x-portcullis-login-url': loginUrl,
              },
              extra: { login_url: loginUrl },
            },
            ctx,
            'login',
            d,
          );
        }
        case 'deny':
          return refuse(
            { code: codes.access_denied, message: `access denied: ${d.policy.reason}` },
            ctx,
            'deny',
            d,
          );
        case 'not_found':
          return refuse({ code: codes.no_route, message: d.reason }, ctx, 'not_found', d);
        case 'bad_request':
          return refuse({ code: codes.bad_request, message: d.reason }, ctx, 'bad_request', d);
        case 'unavailable':
          return refuse(
            {
              code:
                d.cause === 'session_store'
                  ? codes.session_store_unavailable
                  : d.cause === 'idp_keys' || d.cause === 'idp_introspection'
                    ? codes.token_check_unavailable
                    : codes.idp_unavailable,
              message: d.reason,
            },
            ctx,
            'unavailable',
            d,
          );
      }
    })();
  };
}

/** One connection attempt to a TCP upstream: the socket, or why it did not open. */
async function connectTo(url: URL): Promise<{ up: Socket } | { error: string }> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const up = connect({ host, port: Number(url.port) });
  const err = await new Promise<string | null>((resolve) => {
    const timer = setTimeout(() => resolve('connect timeout'), CONNECT_TIMEOUT_MS);
    up.once('connect', () => {
      clearTimeout(timer);
      resolve(null);
    });
    up.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code ?? e.message);
    });
  });
  if (!err) return { up };
  up.destroy();
  return { error: err };
}

interface Dialed {
  up: Socket;
  index: number;
  /** Counts this tunnel in flight until it ends (null for a route with one `to`). */
  balancer: Balancer | null;
}

/**
 * Connects to the upstream the route's balancer picks (src/proxy/balancer.ts, as for HTTP
 * requests: its policy, skipping upstreams down by health checks or ejected), and on a failed
 * connection to the next untried one. A retry is always safe here: the client's bytes wait
 * until the tunnel is established, so no upstream has seen any. Each failure counts toward
 * outlier detection, each success resets the count.
 */
async function dial(
  rt: Runtime,
  upstreams: Upstreams,
  route: Route,
  key: string | null,
  requestId: string,
  client: Duplex,
): Promise<Dialed | { errors: string[] }> {
  const { index: first, balancer } = upstreams.pickTunnel(route, key);
  const tried: number[] = [];
  const errors: string[] = [];
  for (let i = first; i >= 0 && !client.destroyed; i = balancer ? balancer.retry(tried) : -1) {
    balancer?.started(i);
    const r = await connectTo(route.to[i]!);
    if ('up' in r) {
      balancer?.outcome(i, false);
      return { up: r.up, index: i, balancer };
    }
    balancer?.ended(i, true);
    tried.push(i);
    const upstream = upstreamLabel(route.to[i]!);
    errors.push(`${upstream}: ${r.error}`);
    rt.log.warn(
      { event: 'tunnel_upstream_failed', requestId, route: route.id, upstream, detail: r.error },
      `tcp upstream ${upstream} of route ${route.id} could not be reached (${r.error})${route.to.length > tried.length ? ': trying another' : ''}`,
    );
    if (!balancer) break;
  }
  return { errors };
}

async function open(
  rt: Runtime,
  upstreams: Upstreams,
  d: Extract<Decision, { kind: 'allow' }>,
  ctx: RequestContext,
  target: string,
  client: Duplex,
  head: Buffer,
  requestId: string,
  started: number,
  req: IncomingMessage,
): Promise<void> {
  const route = d.route;
  const key = affinityKey(route, d.session?.sid, d.identity?.sub, ctx.clientIp);
  const dialed = await dial(rt, upstreams, route, key, requestId, client);
  if (client.destroyed) {
    if ('up' in dialed) {
      dialed.up.destroy();
      dialed.balancer?.ended(dialed.index, null);
    }
    return;
  }
  if ('errors' in dialed) {
    const answer = tunnelRefusal({
      code: codes.upstream_unavailable,
      message:
        route.to.length > 1
          ? `none of the ${route.to.length} upstreams of ${target} can be reached`
          : `the upstream of ${target} cannot be reached`,
      requestId,
    });
    client.end(answer.bytes);
    const detail = dialed.errors.join('; ');
    rt.log.warn({ requestId, route: route.id, detail }, 'tcp upstream unreachable');
    access(rt, ctx, req, answer.status, requestId, started, 'upstream_error', detail, d);
    return;
  }
  const { up } = dialed;
  const url = route.to[dialed.index]!;
  // Nagle off so interactive keystrokes are not held back.
  up.setNoDelay(true);
  client.write('HTTP/1.1 200 Connection established\r\n\r\n');
  // Bytes the client sent right behind its CONNECT head belong to the upstream.
  if (head.length) up.write(head);
  const user = d.identity?.email || d.identity?.user;
  rt.observer.audit.info(
    { event: 'tunnel_open', requestId, route: d.route.id, target, upstream: url.host, user },
    'tcp tunnel opened',
  );
  // idle_timeout: a tunnel with no byte either way for that long is closed (0, the default on
  // a TCP route as in Pomerium, keeps an idle SSH session open). The upstream socket sees
  // both directions, reading one and writing the other, and a net.Socket's inactivity timer
  // is reset by either, so its own timer is the tunnel's.
  let reason = 'closed';
  const idleMs = d.route.idleTimeoutMs;
  if (idleMs > 0)
    up.setTimeout(idleMs, () => {
      reason = 'idle_timeout';
      rt.log.info(
        { event: 'tunnel_idle_timeout', requestId, route: d.route.id, target, idleMs },
        `tcp tunnel to ${target} closed: no byte either way for ${formatMs(idleMs)} (the route's idle_timeout)`,
      );
      up.destroy();
      client.destroy();
    });
  // A TLS socket from the https server already carries most of the default 10 'close'
  // listeners (TLS, the HTTP server, shutdown tracking); the pipeline adds a fixed few more.
  client.setMaxListeners(client.getMaxListeners() + 10);
  // One pipeline, client -> upstream -> client: each direction ends (half-close) when its
  // source does, an error on either side destroys both, and each write waits for the reader.
  await pipeline(client, up, client).catch(() => {});
  dialed.balancer?.ended(dialed.index, null);
  const ms = Math.round(performance.now() - started);
  rt.observer.audit.info(
    {
      event: 'tunnel_closed',
      requestId,
      route: d.route.id,
      target,
      upstream: url.host,
      user,
      bytesIn: up.bytesWritten,
      bytesOut: up.bytesRead,
      durationMs: ms,
      reason,
    },
    reason === 'idle_timeout' ? 'tcp tunnel closed: idle timeout' : 'tcp tunnel closed',
  );
  access(rt, ctx, req, 200, requestId, started, 'allow', d.policy?.reason ?? 'public route', d);
}

/** 1500 -> "1.5 s", 300000 -> "5 min": how an operator wrote it, roughly. */
function formatMs(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms / 1000} s`;
}

function access(
  rt: Runtime,
  ctx: RequestContext | null,
  req: IncomingMessage,
  status: number,
  requestId: string,
  started: number,
  decision: string,
  reason: string,
  d?: Decision,
): void {
  rt.observer.request(ctx, status, requestId, started, decision, reason, d);
  const identity = d && 'identity' in d ? d.identity : null;
  writeAccessLine(rt.log, {
    requestId,
    route: d && 'route' in d && d.route ? d.route.id : undefined,
    method: 'CONNECT',
    host: ctx?.host ?? req.headers.host,
    path: ctx ? `${ctx.host}:${ctx.port}` : String(req.url ?? '(unparsed)'),
    status,
    upstreamStatus: undefined,
    upstreamMs: undefined,
    ms: Math.round((performance.now() - started) * 100) / 100,
    user: identity?.email || identity?.user,
    decision,
    reason,
  });
}
