// The servers the bench runs, all on 127.0.0.1 in throwaway directories: nginx (upstream and
// proxies), Apache httpd with mod_auth_openidc, redis-server and Portcullis itself.
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { request } from '../../test/helpers/http.js';
import { portAccepts } from '../../test/helpers/ports.js';
import { spawnTracked, type Tracked } from './proc.js';

export async function waitUntil(
  what: string,
  cond: () => Promise<boolean>,
  proc: Tracked | null,
  timeoutMs = 20_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (proc?.hasExited())
      throw new Error(`${what} exited while starting:\n${proc.output().slice(-3000)}`);
    if (await cond().catch(() => false)) return;
    if (Date.now() > end)
      throw new Error(
        `${what} did not come up within ${timeoutMs} ms${proc ? `:\n${proc.output().slice(-3000)}` : ''}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An nginx of our own: `-p dir`, foreground, `worker_processes` as given. */
export async function startNginx(
  name: string,
  dir: string,
  httpBlock: string,
  port: number,
  workers: number | 'auto',
): Promise<Tracked> {
  mkdirSync(dir, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  const conf = `${asRoot ? 'user root;\n' : ''}daemon off;
master_process on;
worker_processes ${workers};
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'client_body_temp')};
  proxy_temp_path ${join(dir, 'proxy_temp')};
  fastcgi_temp_path ${join(dir, 'fastcgi_temp')};
  uwsgi_temp_path ${join(dir, 'uwsgi_temp')};
  scgi_temp_path ${join(dir, 'scgi_temp')};
  default_type text/plain;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
${httpBlock}
}
`;
  const confPath = join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  const p = spawnTracked(name, '/usr/sbin/nginx', [
    '-p',
    `${dir}/`,
    '-c',
    confPath,
    '-e',
    join(dir, 'error.log'),
  ]);
  await waitUntil(name, () => portAccepts(port), p);
  return p;
}

export const UPSTREAM_BODY =
  'Portcullis benchmark upstream: a fixed answer from nginx, so the upstream is never the bottleneck. '
    .repeat(4)
    .slice(0, 300);

/** The fixed upstream: `return 200` with ~300 bytes; echoes the identity headers it received so checks can see them. */
export function upstreamBlock(port: number): string {
  return `  server {
    listen 127.0.0.1:${port};
    underscores_in_headers on;
    location = /_stub { stub_status; }
    location / {
      add_header X-Saw-User $http_x_forwarded_user always;
      add_header X-Saw-Email $http_x_forwarded_email always;
      add_header X-Saw-Groups $http_x_forwarded_groups always;
      return 200 '${UPSTREAM_BODY}';
    }
  }`;
}

/** Requests the upstream nginx has handled so far (stub_status), to see that load really reached it. */
export async function upstreamRequests(port: number): Promise<number> {
  const r = await request(`http://127.0.0.1:${port}/_stub`);
  const m = /\n\s*\d+\s+\d+\s+(\d+)/.exec(r.body);
  if (!m) throw new Error(`unexpected stub_status: ${r.body}`);
  // stub_status counts itself too.
  return Number(m[1]);
}

/**
 * The upstream's count once requests from an earlier load (a warm-up's last in-flight ones,
 * still leaving a proxy's queue) have stopped arriving: two reads 100 ms apart differ only by
 * the first read itself. Gives up after 3 s and returns the last count.
 */
export async function settledUpstreamRequests(port: number): Promise<number> {
  let last = await upstreamRequests(port);
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await upstreamRequests(port);
    if (now - last === 1) return now;
    last = now;
  }
  return last;
}

/** (b) nginx as a plain reverse proxy with upstream keep-alive. */
export function nginxProxyBlock(port: number, upstreamPort: number): string {
  return `  upstream fixed { server 127.0.0.1:${upstreamPort}; keepalive 256; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://fixed;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
    }
  }`;
}

/**
 * (e) nginx auth_request in front of Portcullis's forward-auth endpoint, following
 * docs/recipes/nginx.md; the only addition is keep-alive to both upstreams (the recipe's plain
 * proxy_pass opens a new connection per subrequest, which at these rates runs out of ports).
 */
export function nginxAuthRequestBlock(
  port: number,
  upstreamPort: number,
  portcullisPort: number,
): string {
  return `  upstream fixed { server 127.0.0.1:${upstreamPort}; keepalive 256; }
  upstream portcullis { server 127.0.0.1:${portcullisPort}; keepalive 256; }
  server {
    listen 127.0.0.1:${port};
    location /.portcullis/ {
      proxy_pass http://portcullis;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
    location ^~ /.portcullis/auth/ { return 403; }
    location = /_portcullis_auth {
      internal;
      proxy_pass http://portcullis/.portcullis/auth/nginx;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
    location @portcullis_signin {
      if ($portcullis_signin = "") { return 401; }
      return 302 $portcullis_signin;
    }
    location / {
      auth_request /_portcullis_auth;
      auth_request_set $portcullis_signin $upstream_http_location;
      auth_request_set $portcullis_user $upstream_http_x_forwarded_user;
      auth_request_set $portcullis_email $upstream_http_x_forwarded_email;
      auth_request_set $portcullis_groups $upstream_http_x_forwarded_groups;
      auth_request_set $portcullis_username $upstream_http_x_forwarded_preferred_username;
      error_page 401 = @portcullis_signin;
      proxy_set_header X-Forwarded-User $portcullis_user;
      proxy_set_header X-Forwarded-Email $portcullis_email;
      proxy_set_header X-Forwarded-Groups $portcullis_groups;
      proxy_set_header X-Forwarded-Preferred-Username $portcullis_username;
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://fixed;
    }
  }`;
}

/**
 * (ec) (e) plus the cache of docs/recipes/nginx.md's high-throughput recipe: allow answers kept
 * for 1 s per Cookie, Authorization, client address, method and URL.
 */
export function nginxAuthCacheBlock(
  port: number,
  upstreamPort: number,
  portcullisPort: number,
  cacheDir: string,
): string {
  const cache = `proxy_cache_path ${cacheDir} levels=1:2 keys_zone=portcullis_auth:10m max_size=64m inactive=10s use_temp_path=off;
`;
  const block =
    cache +
    nginxAuthRequestBlock(port, upstreamPort, portcullisPort)
      .replace(
        '      proxy_set_header X-Forwarded-For $remote_addr;\n    }\n    location @portcullis_signin',
        `      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_cache portcullis_auth;
      proxy_cache_key "$http_cookie|$http_authorization|$remote_addr|$request_method|$http_origin|$http_access_control_request_method|$scheme://$http_host$request_uri";
      proxy_cache_valid 200 1s;
      proxy_ignore_headers Cache-Control Expires X-Accel-Expires;
    }
    location @portcullis_signin`,
      )
      .replace(
        '      error_page 401 = @portcullis_signin;',
        `      auth_request_set $portcullis_assertion $upstream_http_x_portcullis_jwt_assertion;
      error_page 401 = @portcullis_signin;
      proxy_set_header X-Portcullis-Jwt-Assertion $portcullis_assertion;`,
      );
  if (!block.includes('proxy_cache portcullis_auth;') || !block.includes('$portcullis_assertion;'))
    throw new Error('nginxAuthCacheBlock: the (e) block changed; update the cache lines');
  return block;
}

export interface ApacheOptions {
  dir: string;
  port: number;
  upstreamPort: number;
  whoamiPort: number;
  issuer: string;
  clientId: string;
  clientSecret: string;
  passphrase: string;
}

/**
 * (c) Apache httpd (event MPM) with mod_auth_openidc: the default server-side session cache
 * (shm), claims passed to the upstream as headers, proxying to the same upstream.
 */
export async function startApache(o: ApacheOptions): Promise<Tracked> {
  mkdirSync(o.dir, { recursive: true });
  // Workers run as www-data: they must be able to enter the directory (nothing secret is in it
  // but the config, which holds a throwaway client secret for a throwaway IdP).
  chmodSync(o.dir, 0o755);
  const mod = (m: string): string => `LoadModule ${m}_module /usr/lib/apache2/modules/mod_${m}.so`;
  const conf = `ServerRoot ${o.dir}
ServerName 127.0.0.1
Listen 127.0.0.1:${o.port}
PidFile ${join(o.dir, 'httpd.pid')}
DefaultRuntimeDir ${o.dir}
ErrorLog ${join(o.dir, 'error.log')}
LogLevel warn
# The access log on, as Debian ships Apache (apache2.conf's combined format, one line per
# request to a file): (d) is measured with its access log on too. mod_log_config is built
# into Debian's httpd; loaded only where it is not.
<IfModule !log_config_module>
LoadModule log_config_module /usr/lib/apache2/modules/mod_log_config.so
</IfModule>
LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" \\"%{User-Agent}i\\"" combined
CustomLog ${join(o.dir, 'access.log')} combined
User www-data
Group www-data
${mod('mpm_event')}
${['authz_core', 'authn_core', 'authz_user', 'auth_openidc', 'proxy', 'proxy_http', 'headers', 'socache_shmcb'].map(mod).join('\n')}
Mutex pthread default
# Every thread exists from the start: spawning or reaping children under load closes keep-alive
# connections (wrk read errors), which would measure Apache's process management, not the module.
StartServers 8
ServerLimit 8
ThreadsPerChild 50
MaxRequestWorkers 400
MinSpareThreads 50
MaxSpareThreads 400
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60
Timeout 30

OIDCProviderMetadataURL ${o.issuer}/.well-known/openid-configuration
OIDCClientID ${o.clientId}
OIDCClientSecret ${o.clientSecret}
OIDCProviderTokenEndpointAuth client_secret_basic
OIDCRedirectURI http://127.0.0.1:${o.port}/redirect_uri
OIDCCryptoPassphrase ${o.passphrase}
OIDCScope "openid email profile groups"
OIDCPKCEMethod S256
OIDCRemoteUserClaim email
OIDCPassClaimsAs headers
OIDCClaimPrefix X-Forwarded-
OIDCSessionInactivityTimeout 3600
OIDCSessionMaxDuration 28800
OIDCCacheType shm

ProxyRequests Off
ProxyPreserveHost On
<Location />
  AuthType openid-connect
  Require claim groups:eng
  OIDCUnAuthAction auth
  RequestHeader set X-Forwarded-User "expr=%{REMOTE_USER}"
</Location>
ProxyPass /redirect_uri !
ProxyPass /whoami/ http://127.0.0.1:${o.whoamiPort}/whoami/
ProxyPass / http://127.0.0.1:${o.upstreamPort}/
`;
  const confPath = join(o.dir, 'httpd.conf');
  writeFileSync(confPath, conf);
  const p = spawnTracked('apache', '/usr/sbin/apache2', ['-f', confPath, '-DFOREGROUND'], {
    env: { ...process.env, APACHE_RUN_DIR: o.dir, APACHE_LOCK_DIR: o.dir, APACHE_LOG_DIR: o.dir },
  });
  await waitUntil('apache', () => portAccepts(o.port), p).catch((e: Error) => {
    throw new Error(`${e.message}\n${readTail(join(o.dir, 'error.log'))}`);
  });
  return p;
}

export async function startRedis(dir: string, port: number): Promise<Tracked> {
  mkdirSync(dir, { recursive: true });
  const p = spawnTracked('redis', 'redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
  ]);
  await waitUntil('redis-server', () => portAccepts(port), p);
  return p;
}

export interface PortcullisProc {
  proc: Tracked;
  port: number;
  configFile: string;
  stdoutFile?: string | undefined;
}

/** Portcullis as its own process, exactly as deployed: `node dist/src/cli/main.js serve --config FILE`. */
export interface PortcullisStart {
  /** The node binary (default: the one running the bench). */
  node?: string | undefined;
  /**
   * stdout (the log) goes to this file, as systemd or Docker would take it; without it, to a
   * pipe the bench reads.
   */
  stdoutFile?: string | undefined;
}

export async function startPortcullis(
  name: string,
  configFile: string,
  yaml: string,
  port: number,
  mainJs: string,
  nodeArgs: string[] = [],
  o: PortcullisStart = {},
): Promise<PortcullisProc> {
  writeFileSync(configFile, yaml);
  const out = o.stdoutFile ? openSync(o.stdoutFile, 'w') : null;
  let proc: Tracked;
  try {
    proc = spawnTracked(
      name,
      o.node ?? process.execPath,
      [...nodeArgs, mainJs, 'serve', '--config', configFile],
      out === null ? {} : { stdio: ['ignore', out, 'pipe'] },
    );
  } finally {
    // The child has its own copy of the descriptor.
    if (out !== null) closeSync(out);
  }
  await waitUntil(
    name,
    async () =>
      (
        await request(`http://127.0.0.1:${port}/.portcullis/ping`, {
          headers: { host: `127.0.0.1:${port}` },
        })
      ).status === 200,
    proc,
  );
  return { proc, port, configFile, stdoutFile: o.stdoutFile };
}

export function binaryPresent(path: string): boolean {
  return existsSync(path);
}

function readTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-3000);
  } catch {
    return '';
  }
}
