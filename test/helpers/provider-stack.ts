// One real test IdP and several Portcullis deployments against it, each with its own provider
// settings (idp_provider, claim paths): the provider tests compare how each setting reads the
// same kind of token. Every deployment's callback is registered at the IdP up front.
import { randomBytes } from 'node:crypto';
import { startIdp, type DemoUser, type RunningIdp } from '../../demo/idp.js';
import { startWhoami, type RunningWhoami } from '../../demo/whoami.js';
import { parseConfig } from '../../src/config/load.js';
import type { RunningPortcullis } from '../../src/server.js';
import { CookieJar, type Resp } from './http.js';
import { startLoggedPortcullis } from './logged-portcullis.js';
import { loginThroughIdp } from './login.js';
import { freePort } from './ports.js';
import { globalYaml } from './stack.js';

export interface Deployment {
  port: number;
  proxy: RunningPortcullis;
  logs: Array<Record<string, unknown>>;
  /** Signs `user` in (password = user name) at `path` and returns the final answer. */
  signIn(user: string, path?: string): Promise<{ final: Resp; jar: CookieJar }>;
}

export interface ProviderStack {
  idp: RunningIdp;
  upstream: RunningWhoami;
  /** A Portcullis on the next pre-registered port; `globals` is YAML placed before `routes`. */
  deploy(globals: string, routes?: string): Promise<Deployment>;
  close(): Promise<void>;
}

export const HOST = 'app.corp.test';

export const DEFAULT_ROUTES = `routes:
  - from: http://${HOST}:\${PORT}
    to: \${UPSTREAM}
    pass_identity_headers: true
    allow_any_authenticated_user: true
`;

export async function startProviderStack(o: {
  users: DemoUser[];
  extraClaims?: string[];
  /** How many deployments the test will start (each needs a registered callback). */
  deployments: number;
}): Promise<ProviderStack> {
  const ports: number[] = [];
  for (let i = 0; i < o.deployments; i++) ports.push(await freePort());
  const clientSecret = randomBytes(24).toString('base64url');
  const idp = await startIdp({
    users: o.users,
    extraClaims: o.extraClaims ?? [],
    clients: [
      {
        client_id: 'portcullis',
        client_secret: clientSecret,
        redirect_uris: ports.map((p) => `http://${HOST}:${p}/.portcullis/callback`),
        post_logout_redirect_uris: ports.map((p) => `http://${HOST}:${p}/.portcullis/signed_out`),
      },
    ],
  });
  const upstream = await startWhoami({ name: 'upstream' });
  const started: RunningPortcullis[] = [];
  return {
    idp,
    upstream,
    async deploy(globals, routes = DEFAULT_ROUTES) {
      const port = ports.shift();
      if (port === undefined) throw new Error('startProviderStack: raise `deployments`');
      const cookieSecret = randomBytes(32).toString('base64');
      const yaml = `${globalYaml({ port, cookieSecret, issuer: idp.issuer, clientSecret, logLevel: 'debug' })}
${globals}
${routes.replaceAll('${PORT}', String(port)).replaceAll('${UPSTREAM}', upstream.url)}`;
      const { proxy, logs } = await startLoggedPortcullis(parseConfig(yaml, 'provider.yaml'), {
        listen: { host: '127.0.0.1', port },
      });
      started.push(proxy);
      return {
        port,
        proxy,
        logs,
        async signIn(user, path = '/?format=json') {
          const jar = new CookieJar();
          const { final } = await loginThroughIdp(`http://${HOST}:${port}${path}`, {
            jar,
            username: user,
            password: user,
          });
          return { final, jar };
        },
      };
    },
    async close() {
      await Promise.allSettled([...started.map((p) => p.close()), upstream.close(), idp.close()]);
    },
  };
}

/** The headers the whoami upstream received, lower-cased names, every value kept. */
export function upstreamHeaders(r: Resp): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of r.json().rawHeaders as Array<[string, string]>)
    (out[k.toLowerCase()] ??= []).push(v);
  return out;
}
