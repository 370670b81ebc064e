// A user's JWT access token for target (f): a throwaway relying party does the authorization
// code flow (PKCE, resource indicator for the audience) and the scripted login fills the form.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as client from 'openid-client';
import { CookieJar } from '../../test/helpers/http.js';
import { loginThroughIdp } from '../../test/helpers/login.js';

export interface TokenRp {
  clientId: string;
  secret: string;
  redirectUri: string;
  /** Logs `username` in and returns the access token issued for `resource`. */
  fetchToken(issuer: string, username: string, password: string, resource: string): Promise<string>;
  close(): Promise<void>;
}

export async function startTokenRp(port: number): Promise<TokenRp> {
  const clientId = 'bench-token-rp';
  const secret = randomBytes(16).toString('hex');
  const origin = `http://127.0.0.1:${port}`;
  const redirectUri = `${origin}/callback`;
  let cfg: client.Configuration | null = null;
  let pending: {
    verifier: string;
    state: string;
    resolve: (t: string) => void;
    reject: (e: Error) => void;
  } | null = null;

  const server = http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', origin);
      if (url.pathname === '/callback' && pending && cfg) {
        const p = pending;
        try {
          const tokens = await client.authorizationCodeGrant(cfg, url, {
            pkceCodeVerifier: p.verifier,
            expectedState: p.state,
          });
          p.resolve(tokens.access_token);
          res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
        } catch (e) {
          p.reject(e as Error);
          res.writeHead(400, { 'content-type': 'text/plain' }).end('failed');
        }
        return;
      }
      res.writeHead(404).end();
    })();
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const actualPort = (server.address() as AddressInfo).port;
  if (actualPort !== port) throw new Error('token rp port mismatch');

  return {
    clientId,
    secret,
    redirectUri,
    async fetchToken(issuer, username, password, resource) {
      cfg ??= await client.discovery(new URL(issuer), clientId, secret, undefined, {
        execute: [client.allowInsecureRequests],
      });
      const verifier = client.randomPKCECodeVerifier();
      const state = client.randomState();
      const token = new Promise<string>((resolve, reject) => {
        pending = { verifier, state, resolve, reject };
      });
      const start = client.buildAuthorizationUrl(cfg, {
        redirect_uri: redirectUri,
        scope: 'openid profile email groups',
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        resource,
      });
      await loginThroughIdp(start.href, { jar: new CookieJar(), username, password });
      const t = await Promise.race([
        token,
        new Promise<never>((_, rej) =>
          setTimeout(() => rej(new Error('no token within 10 s')), 10_000).unref(),
        ),
      ]);
      pending = null;
      return t;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
