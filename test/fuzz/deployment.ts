// One Portcullis (reverse proxy and forward-auth server at once), the real demo IdP, real nginx,
// Caddy and HAProxy configured from docs/recipes, and a recording upstream per application.
// Every deployment gets the same route table on its own port; the table is built so that path
// and host confusion changes the outcome (restricted prefix next to a catch-all, a public path
// next to a private one, a regex route, several hosts behind one server block, wildcard hosts,
// and a host the proxies have no block for).
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { startIdp, type RunningIdp } from '../../demo/idp.js';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../../src/server.js';
import { startCaddy, type StartedCaddy } from '../helpers/caddy.js';
import { startHaproxy, type StartedHaproxy } from '../helpers/haproxy.js';
import { CookieJar } from '../helpers/http.js';
import { loginThroughIdp } from '../helpers/login.js';
import { startNginx, type StartedNginx } from '../helpers/nginx.js';
import { freePort } from '../helpers/ports.js';
import { recipe, sub } from '../helpers/recipes.js';
import type { User } from './generate.js';
import { startRecorder, type Recorder } from './wire.js';

export const PROXIES = ['nginx', 'caddy', 'haproxy', 'portcullis'] as const;
export type ProxyName = (typeof PROXIES)[number];

export interface Upstream {
  recorder: Recorder;
  /** Host names this application answers (`*.x` = any subdomain), on the deployment's port. */
  hosts: string[];
  /** True when the application picks its site by Host (one server block for several hosts). */
  byHost: boolean;
}

export interface Deployment {
  name: ProxyName;
  port: number;
  upstreams: Upstream[];
}

export interface FuzzWorld {
  portcullis: RunningPortcullis;
  deployments: Deployment[];
  cookies: Record<User, string>;
  /** Portcullis' log lines, parsed, in order. */
  logs: Array<Record<string, unknown>>;
  proxyLog(name: ProxyName): string;
  close(): Promise<void>;
}

function routes(
  name: string,
  port: number,
  up: { app: number; multi: number; open: number },
): string {
  const r = (id: string, from: string, to: number, rest: string) => `  - id: ${name}/${id}
    from: http://${from}:${port}
    to: http://127.0.0.1:${to}
    preserve_host_header: true
${rest.replace(/^/gm, '    ')}`;
  return [
    r('app-admin', 'app.fuzz.test', up.app, 'prefix: /admin\nallowed_groups: [admins]'),
    r(
      'app-public-page',
      'app.fuzz.test',
      up.app,
      'path: /public\nallow_public_unauthenticated_access: true',
    ),
    r(
      'app-static',
      'app.fuzz.test',
      up.app,
      'prefix: /static/\nallow_public_unauthenticated_access: true',
    ),
    r(
      'app-api-user-admin',
      'app.fuzz.test',
      up.app,
      "regex: '/api/v[0-9]+/users/[0-9]+/admin(/.*)?'\nallowed_groups: [admins]",
    ),
    r('app-any', 'app.fuzz.test', up.app, 'allow_any_authenticated_user: true'),
    r('ops', 'ops.fuzz.test', up.multi, 'allowed_groups: [admins]'),
    r('wild-secret', '*.wild.fuzz.test', up.multi, 'prefix: /secret\nallowed_groups: [admins]'),
    r('wild-public', '*.wild.fuzz.test', up.multi, 'allow_public_unauthenticated_access: true'),
    r('open', 'open.fuzz.test', up.open, 'allow_public_unauthenticated_access: true'),
  ].join('\n');
}

export async function startWorld(): Promise<FuzzWorld> {
  const closers: Array<() => Promise<void>> = [];
  try {
    return await startParts(closers);
  } catch (e) {
    // A setup that fails half-way must not leave proxies and servers holding the test open.
    await Promise.allSettled(closers.reverse().map((close) => close()));
    throw e;
  }
}

async function startParts(closers: Array<() => Promise<void>>): Promise<FuzzWorld> {
  const ports: Record<ProxyName, number> = {
    nginx: await freePort(),
    caddy: await freePort(),
    haproxy: await freePort(),
    portcullis: await freePort(),
  };
  const recorders: Record<string, Recorder> = {};
  for (const p of PROXIES)
    for (const app of ['app', 'multi', 'open']) {
      const rec = await startRecorder(`${p}-${app}`);
      recorders[`${p}-${app}`] = rec;
      closers.push(() => rec.close());
    }
  const up = (p: ProxyName) => ({
    app: recorders[`${p}-app`]!.port,
    multi: recorders[`${p}-multi`]!.port,
    open: recorders[`${p}-open`]!.port,
  });
  const loginOrigin = `http://app.fuzz.test:${ports.portcullis}`;
  const secret = randomBytes(24).toString('base64url');
  const idp: RunningIdp = await startIdp({
    clients: [
      {
        client_id: 'portcullis',
        client_secret: secret,
        redirect_uris: [`${loginOrigin}/.portcullis/callback`],
        post_logout_redirect_uris: [`${loginOrigin}/.portcullis/signed_out`],
      },
    ],
  });
  closers.push(() => idp.close());

  const yaml = `address: 127.0.0.1:${ports.portcullis}
insecure_server: true
cookie_secure: false
cookie_secret: ${randomBytes(32).toString('base64')}
idp_provider_url: ${idp.issuer}
idp_client_id: portcullis
idp_client_secret: ${secret}
idp_scopes: [openid, profile, email, groups]
trusted_proxies: [127.0.0.1/32]
log_level: info
routes:
${PROXIES.map((p) => routes(p, ports[p], up(p))).join('\n')}
`;
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      for (const line of c.toString('utf8').split('\n'))
        if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const portcullis = await startPortcullis(parseConfig(yaml, 'fuzz.yaml'), {
    logger: createLogger('info', sink),
  });
  closers.push(() => portcullis.close());
  await portcullis.idp.start();

  const pc = `127.0.0.1:${ports.portcullis}`;
  const n = ports.nginx;
  // The recipe is a default_server block that closes unknown hosts, then the application's
  // block; the second application repeats only the latter (one default per port).
  const nginxRecipe = (names: string, bind: string, upstream: number) =>
    sub(recipe('nginx.md', 'nginx'), [
      ['listen 80 default_server;', `listen 127.0.0.1:${n} default_server;`],
      ['listen 80;', `listen 127.0.0.1:${n};`],
      ['server_name app.example.com;', `server_name ${names};`],
      ['?host=app.example.com;', `?host=${bind};`],
      ['127.0.0.1:4180', pc],
      ['127.0.0.1:8080', `127.0.0.1:${upstream}`],
    ]);
  const appBlock = nginxRecipe('app.fuzz.test', `app.fuzz.test:${n}`, up('nginx').app);
  const multi = nginxRecipe(
    'ops.fuzz.test .wild.fuzz.test',
    `ops.fuzz.test:${n},*.wild.fuzz.test:${n}`,
    up('nginx').multi,
  );
  const secondServer = multi.indexOf('server {', multi.indexOf('default_server') + 1);
  const nginx: StartedNginx = await startNginx(`${appBlock}\n${multi.slice(secondServer)}`);
  closers.push(() => nginx.close());

  const c = ports.caddy;
  const caddySite = (addresses: string, bind: string, upstream: number) =>
    sub(recipe('caddy.md', 'caddy'), [
      ['app.example.com {', `${addresses} {`],
      ['?host=app.example.com', `?host=${bind}`],
      ['127.0.0.1:4180', pc],
      ['127.0.0.1:8080', `127.0.0.1:${upstream}`],
    ]);
  const caddy: StartedCaddy = await startCaddy(
    `${caddySite(`http://app.fuzz.test:${c}`, `app.fuzz.test:${c}`, up('caddy').app)}\n${caddySite(`http://ops.fuzz.test:${c}, http://*.wild.fuzz.test:${c}`, `ops.fuzz.test:${c},*.wild.fuzz.test:${c}`, up('caddy').multi)}`,
  );
  closers.push(() => caddy.close());

  const h = ports.haproxy;
  const haproxy: StartedHaproxy = await startHaproxy(
    sub(recipe('haproxy.md', 'haproxy'), [
      ['bind :80', `bind 127.0.0.1:${h}`],
      ['-m str app.example.com', `-m str app.fuzz.test:${h} ops.fuzz.test:${h}`],
      ['127.0.0.1:4180', pc],
      ['127.0.0.1:8080', `127.0.0.1:${up('haproxy').multi}`],
    ]),
    {
      '/etc/haproxy/portcullis.lua': sub(recipe('haproxy.md', 'haproxy-lua'), [
        ['127.0.0.1:4180', pc],
        ['?host=app.example.com', `?host=app.fuzz.test:${h},ops.fuzz.test:${h}`],
      ]),
    },
  );
  closers.push(() => haproxy.close());

  const cookies: Record<User, string> = { anonymous: '', alice: '', bob: '' };
  for (const user of ['alice', 'bob'] as const) {
    const jar = new CookieJar();
    const { final } = await loginThroughIdp(`${loginOrigin}/`, {
      jar,
      username: user,
      password: user,
    });
    if (final.status !== 200)
      throw new Error(
        `fuzz setup: ${user} could not sign in (${final.status}): ${final.body.slice(0, 300)}`,
      );
    cookies[user] = jar.header(new URL(loginOrigin)) ?? '';
    if (!cookies[user]) throw new Error(`fuzz setup: no session cookie for ${user}`);
  }

  const deployment = (name: ProxyName, apps: Array<[string, string[], boolean]>): Deployment => ({
    name,
    port: ports[name],
    upstreams: apps.map(([app, hosts, byHost]) => ({
      recorder: recorders[`${name}-${app}`]!,
      hosts,
      byHost,
    })),
  });
  const standard: Array<[string, string[], boolean]> = [
    ['app', ['app.fuzz.test'], false],
    ['multi', ['ops.fuzz.test', '*.wild.fuzz.test'], true],
    ['open', ['open.fuzz.test'], false],
  ];
  return {
    portcullis,
    cookies,
    logs,
    deployments: [
      deployment('nginx', standard),
      deployment('caddy', standard),
      // The recipe's one backend serves both hosts its ACL lets through and picks the site by Host.
      deployment('haproxy', [
        ['app', [], false],
        ['multi', ['app.fuzz.test', 'ops.fuzz.test'], true],
        ['open', [], false],
      ]),
      deployment('portcullis', standard),
    ],
    proxyLog: (name) =>
      name === 'nginx'
        ? nginx.errorLog()
        : name === 'caddy'
          ? caddy.log()
          : name === 'haproxy'
            ? haproxy.log()
            : '',
    async close() {
      for (const close of closers.reverse()) await close().catch(() => undefined);
    },
  };
}
