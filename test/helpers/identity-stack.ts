// A deployment for the identity tests: the real test IdP with the Portcullis client plus an
// API client (client_credentials) and a CLI client (authorization code on a loopback
// redirect), the whoami upstream, and Portcullis from YAML. Tokens are obtained from the IdP
// the way real API clients and CLIs obtain them.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as client from 'openid-client';
import { startIdp, type IdpClient, type IdpOptions, type RunningIdp } from '../../demo/idp.js';
import { startWhoami } from '../../demo/whoami.js';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../../src/server.js';
import { CookieJar, request } from './http.js';
import { loginThroughIdp } from './login.js';
import { globalYaml } from './stack.js';
import { freePort } from './ports.js';

export const API_AUDIENCE = 'https://api.corp.test';
export const SVC = { id: 'svc', secret: 'svc-secret-0123456789' };
export const CLI = { id: 'cli', secret: 'cli-secret-0123456789' };

export interface IdentityStack {
  idp: RunningIdp;
  proxy: RunningPortcullis;
  port: number;
  upstream: { url: string; close(): Promise<void> };
  yaml: string;
  /** Starts another Portcullis on a free port from a variant of the YAML. */
  startVariant(yaml: string): Promise<RunningPortcullis>;
  /** A client_credentials access token (a JWT for API_AUDIENCE) from `issuer` (default: the stack's IdP). */
  clientCredentials(issuer?: string): Promise<string>;
  /** A user's access token from the authorization-code flow; a JWT with `resource`, else opaque. */
  userToken(username: string, resource?: string): Promise<string>;
  /** Restarts the IdP on the same port (same issuer, same signing key) with other options. */
  restartIdp(opts: Partial<IdpOptions>): Promise<void>;
  close(): Promise<void>;
}

export async function startIdentityStack(o: {
  hosts: string[];
  body: string;
  globals?: string;
}): Promise<IdentityStack> {
  const port = await freePort();
  const clientSecret = randomBytes(24).toString('base64url');
  const cookieSecret = randomBytes(32).toString('base64');
  const origins = o.hosts.map((h) => `http://${h}:${port}`);
  const loopback = await startLoopback();
  const clients: IdpClient[] = [
    {
      client_id: 'portcullis',
      client_secret: clientSecret,
      redirect_uris: origins.map((h) => `${h}/.portcullis/callback`),
      post_logout_redirect_uris: origins.map((h) => `${h}/.portcullis/signed_out`),
    },
    {
      client_id: SVC.id,
      client_secret: SVC.secret,
      redirect_uris: [],
      grant_types: ['client_credentials'],
    },
    {
      client_id: CLI.id,
      client_secret: CLI.secret,
      redirect_uris: [`${loopback.url}/cb`],
      grant_types: ['authorization_code'],
    },
  ];
  const idpOptions: IdpOptions = { clients, jwtAccessTokenAudience: API_AUDIENCE };
  let idp = await startIdp(idpOptions);
  const idpPort = idp.port;
  const upstream = await startWhoami({ name: 'upstream' });
  const yaml = `${globalYaml({ port, cookieSecret, issuer: idp.issuer, clientSecret, logLevel: 'warn' })}
${o.globals ?? ''}
${o.body.replaceAll('${PORT}', String(port)).replaceAll('${UPSTREAM}', upstream.url)}`;
  const logger = createLogger('silent');
  const proxy = await startPortcullis(parseConfig(yaml, 'test.yaml'), {
    logger,
    listen: { host: '127.0.0.1', port },
  });
  await proxy.idp.start();
  const variants: RunningPortcullis[] = [];
  const extraIdps: RunningIdp[] = [];

  async function tokenEndpoint(issuer: string): Promise<string> {
    // The test client, not fetch: fetch would reuse a pooled connection to an IdP restarted since.
    return (await request(`${issuer}/.well-known/openid-configuration`)).json()
      .token_endpoint as string;
  }

  return {
    get idp() {
      return idp;
    },
    proxy,
    port,
    upstream,
    yaml,
    async startVariant(text) {
      const p = await startPortcullis(parseConfig(text, 'variant.yaml'), {
        logger,
        listen: { host: '127.0.0.1', port: 0 },
      });
      await p.idp.start();
      variants.push(p);
      return p;
    },
    async clientCredentials(issuer = idp.issuer) {
      const r = await request(await tokenEndpoint(issuer), {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`${SVC.id}:${SVC.secret}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: 'grant_type=client_credentials',
      });
      const j = r.json() as { access_token?: string; error?: string };
      if (!j.access_token) throw new Error(`client_credentials failed: ${JSON.stringify(j)}`);
      return j.access_token;
    },
    async userToken(username, resource) {
      const config = await client.discovery(
        new URL(idp.issuer),
        CLI.id,
        undefined,
        client.ClientSecretBasic(CLI.secret),
        { execute: [client.allowInsecureRequests] },
      );
      const verifier = client.randomPKCECodeVerifier();
      const state = client.randomState();
      const params: Record<string, string> = {
        redirect_uri: `${loopback.url}/cb`,
        scope: 'openid email profile groups',
        state,
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
      };
      if (resource) params.resource = resource;
      const { chain } = await loginThroughIdp(client.buildAuthorizationUrl(config, params).href, {
        jar: new CookieJar(),
        username,
        password: username,
      });
      const back = chain.at(-1)!;
      const tokens = await client.authorizationCodeGrant(
        config,
        new URL(back),
        { pkceCodeVerifier: verifier, expectedState: state },
        resource ? { resource } : undefined,
      );
      return tokens.access_token;
    },
    async restartIdp(opts) {
      await idp.close();
      idp = await startIdp({ ...idpOptions, ...opts, port: idpPort });
    },
    async close() {
      await Promise.allSettled([
        proxy.close(),
        ...variants.map((v) => v.close()),
        upstream.close(),
        idp.close(),
        loopback.close(),
        ...extraIdps.map((i) => i.close()),
      ]);
    },
  };
}

/** A loopback HTTP server like the one a CLI opens to receive its redirect; remembers what arrived. */
export async function startLoopback(): Promise<{
  url: string;
  port: number;
  hits: URL[];
  close(): Promise<void>;
}> {
  const hits: URL[] = [];
  const server = http.createServer((req, res) => {
    hits.push(new URL(req.url ?? '/', `http://127.0.0.1`));
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
    res.end('Login complete: you can close this window.\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
