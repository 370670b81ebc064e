// Portcullis as the forward-auth server of a reverse proxy under test: the real test IdP with
// one client registered for the app's origin, and Portcullis on its own port with the given
// routes, its log lines kept for failure messages. The reverse proxy and the upstream are the
// test's own (each forward-auth test fronts a different one).
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { startIdp, type RunningIdp } from '../../demo/idp.js';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observe/logger.js';
import { startPortcullis, type RunningPortcullis } from '../../src/server.js';

export interface AuthServer {
  idp: RunningIdp;
  portcullis: RunningPortcullis;
  /** Every chunk Portcullis logged (info and above). */
  logs: string[];
  close(): Promise<void>;
}

/** admins-only /admin, a public /public/, anyone signed in elsewhere: the recipes' example. */
export const ADMIN_PUBLIC_ANY = (app: string): string => `  - from: ${app}
    prefix: /admin
    allowed_groups: [admins]
  - from: ${app}
    prefix: /public/
    allow_public_unauthenticated_access: true
  - from: ${app}
    allow_any_authenticated_user: true
`;

export async function startAuthServer(o: {
  /** The origin the browser sees (the reverse proxy's), e.g. http://app.corp.test:4711. */
  app: string;
  /** Where Portcullis listens. */
  port: number;
  /** The `routes:` entries. */
  routes: string;
  /** YAML placed after the IdP settings (compat, callback path...). */
  globals?: string;
  /** Registered at the IdP (default: Portcullis's own callback and signed-out page). */
  redirectUris?: string[];
  postLogoutRedirectUris?: string[];
  /** Where log chunks go (default: a new array, AuthServer.logs). */
  logs?: string[];
}): Promise<AuthServer> {
  const secret = randomBytes(24).toString('base64url');
  const idp = await startIdp({
    clients: [
      {
        client_id: 'portcullis',
        client_secret: secret,
        redirect_uris: o.redirectUris ?? [`${o.app}/.portcullis/callback`],
        post_logout_redirect_uris: o.postLogoutRedirectUris ?? [`${o.app}/.portcullis/signed_out`],
      },
    ],
  });
  const yaml = `address: 127.0.0.1:${o.port}
insecure_server: true
cookie_secure: false
cookie_secret: ${randomBytes(32).toString('base64')}
idp_provider_url: ${idp.issuer}
idp_client_id: portcullis
idp_client_secret: ${secret}
idp_scopes: [openid, profile, email, groups]
${o.globals ?? ''}
routes:
${o.routes}`;
  const logs = o.logs ?? [];
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      logs.push(c.toString());
      cb();
    },
  });
  let portcullis: RunningPortcullis;
  try {
    portcullis = await startPortcullis(parseConfig(yaml, 'test.yaml'), {
      logger: createLogger('info', sink),
    });
    await portcullis.idp.start();
  } catch (e) {
    await idp.close();
    throw e;
  }
  return {
    idp,
    portcullis,
    logs,
    close: async () => {
      await Promise.allSettled([portcullis.close(), idp.close()]);
    },
  };
}
