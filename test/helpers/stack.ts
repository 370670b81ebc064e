// A whole deployment for integration tests: the real test IdP, the whoami upstream and
// Portcullis, wired through a real YAML config, all on 127.0.0.1.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { startIdp, type IdpClient, type IdpOptions, type RunningIdp } from '../../demo/idp.js';
import { startWhoami } from '../../demo/whoami.js';
import { parseConfig } from '../../src/config/load.js';
import { startPortcullis, type RunningPortcullis } from '../../src/server.js';
import { memoryLog } from './logged-portcullis.js';
import { freePort } from './ports.js';

export interface Stack {
  idp: RunningIdp;
  upstream: { url: string; port: number; close(): Promise<void> };
  proxy: RunningPortcullis;
  port: number;
  /** Every log line Portcullis wrote, parsed. */
  logs: Array<Record<string, unknown>>;
  /** The raw log text, to assert no secret ever reaches it. */
  logText(): string;
  clientSecret: string;
  cookieSecret: string;
  yaml: string;
  /** Starts a second Portcullis process-equivalent with the same config (replicas, restarts). */
  startReplica(): Promise<RunningPortcullis>;
  close(): Promise<void>;
}

export interface StackOptions {
  /** Route hosts, e.g. ['app.corp.test', 'app.other.test']: callback URLs are registered for each. */
  hosts: string[];
  /** YAML for `routes:` and any extra globals; `${PORT}` and `${UPSTREAM}` are replaced. */
  body: string;
  idp?: Partial<IdpOptions>;
  /** More registration of the `portcullis` client (e.g. backchannel_logout_uri). */
  client?: Partial<IdpClient>;
  /** The redirect URI path registered at the IdP (authenticate_callback_path). */
  callbackPath?: string;
  port?: number;
  /** Writes the config here and names it so (the file `check` lints and a reload reads). */
  configFile?: string;
}

export async function startStack(o: StackOptions): Promise<Stack> {
  const port = o.port ?? (await freePort());
  const clientSecret = randomBytes(24).toString('base64url');
  const cookieSecret = randomBytes(32).toString('base64');
  const origins = o.hosts.map((h) => `http://${h}:${port}`);
  const idp = await startIdp({
    clients: [
      {
        client_id: 'portcullis',
        client_secret: clientSecret,
        redirect_uris: origins.map((h) => `${h}${o.callbackPath ?? '/.portcullis/callback'}`),
        post_logout_redirect_uris: origins.map((h) => `${h}/.portcullis/signed_out`),
        ...o.client,
      },
    ],
    ...o.idp,
  });
  const upstream = await startWhoami({ name: 'upstream' });
  const yaml = `${globalYaml({ port, cookieSecret, issuer: idp.issuer, clientSecret, logLevel: 'debug' })}
${o.body.replaceAll('${PORT}', String(port)).replaceAll('${UPSTREAM}', upstream.url)}`;
  const file = o.configFile ?? 'test.yaml';
  if (o.configFile) writeFileSync(o.configFile, yaml);
  const { logger, logs, text } = memoryLog();
  const start = () =>
    startPortcullis(parseConfig(yaml, file), {
      logger,
      listen: { host: '127.0.0.1', port: 0 },
    });
  const proxy = await startPortcullis(parseConfig(yaml, file), {
    logger,
    ...(o.configFile ? { configFile: o.configFile } : {}),
  });
  await proxy.idp.start();
  const extra: RunningPortcullis[] = [];
  return {
    idp,
    upstream,
    proxy,
    port,
    logs,
    clientSecret,
    cookieSecret,
    yaml,
    logText: text,
    async startReplica() {
      const r = await start();
      await r.idp.start();
      extra.push(r);
      return r;
    },
    async close() {
      await Promise.allSettled([
        proxy.close(),
        ...extra.map((e) => e.close()),
        upstream.close(),
        idp.close(),
      ]);
    },
  };
}

/** The global part every test deployment shares: plain HTTP on loopback, the test IdP's client. */
export function globalYaml(o: {
  port: number;
  cookieSecret: string;
  issuer: string;
  clientSecret: string;
  logLevel: string;
}): string {
  return `address: 127.0.0.1:${o.port}
insecure_server: true
cookie_secure: false
cookie_secret: ${o.cookieSecret}
idp_provider_url: ${o.issuer}
idp_client_id: portcullis
idp_client_secret: ${o.clientSecret}
idp_scopes: [openid, profile, email, groups, offline_access]
log_level: ${o.logLevel}`;
}
