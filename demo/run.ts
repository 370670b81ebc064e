// `npm start`: a local identity provider, a sample upstream and Portcullis in front of it,
// all on 127.0.0.1. Only this file loads the demo IdP and upstream; `portcullis serve` never does.
import { randomBytes } from 'node:crypto';
import { parseConfig } from '../src/config/load.js';
import { startPortcullis } from '../src/server.js';
import { startIdp } from './idp.js';
import { startWhoami } from './whoami.js';

const PROXY_PORT = Number(process.env.DEMO_PORT ?? 8080);
const IDP_PORT = Number(process.env.DEMO_IDP_PORT ?? 9000);

export function demoConfigYaml(o: {
  proxyPort: number;
  issuer: string;
  upstream: string;
  clientSecret: string;
  cookieSecret: string;
}): string {
  return `# The demo's config: the same file format as portcullis.yaml.
address: 127.0.0.1:${o.proxyPort}
insecure_server: true          # plain HTTP on this machine only
cookie_secure: false           # so the browser keeps the cookie over http://
cookie_secret: ${o.cookieSecret}
idp_provider_url: ${o.issuer}
idp_client_id: portcullis-demo
idp_client_secret: ${o.clientSecret}
idp_scopes: [openid, profile, email, groups, offline_access]
cookie_expire: 12h
log_level: info
routes:
  - from: http://app.localhost:${o.proxyPort}
    to: ${o.upstream}
    allow_any_authenticated_user: true
    pass_identity_headers: true
    allow_websockets: true
  - from: http://admin.localhost:${o.proxyPort}
    to: ${o.upstream}
    pass_identity_headers: true
    policy:
      - allow:
          and:
            - groups: { has: admins }
  - from: http://public.localhost:${o.proxyPort}
    to: ${o.upstream}
    allow_public_unauthenticated_access: true
`;
}

async function main(): Promise<void> {
  const clientSecret = randomBytes(24).toString('base64url');
  const hosts = ['app', 'admin', 'public'].map((h) => `http://${h}.localhost:${PROXY_PORT}`);
  const idp = await startIdp({
    port: IDP_PORT,
    clients: [
      {
        client_id: 'portcullis-demo',
        client_secret: clientSecret,
        redirect_uris: hosts.map((h) => `${h}/.portcullis/callback`),
        post_logout_redirect_uris: hosts.map((h) => `${h}/.portcullis/signed_out`),
      },
    ],
  });
  const whoami = await startWhoami({ name: 'whoami' });
  const cfg = parseConfig(
    demoConfigYaml({
      proxyPort: PROXY_PORT,
      issuer: idp.issuer,
      upstream: whoami.url,
      clientSecret,
      cookieSecret: randomBytes(32).toString('base64'),
    }),
    'demo (embedded)',
  );
  const proxy = await startPortcullis(cfg);
  console.log(`
Portcullis demo is running.

  Open  http://app.localhost:${PROXY_PORT}/hello?from=demo   and sign in as alice / alice (groups admins, eng)
        http://admin.localhost:${PROXY_PORT}/                 only for group admins: try bob / bob to see the 403 and its reason
        http://public.localhost:${PROXY_PORT}/                public, no sign-in
        http://app.localhost:${PROXY_PORT}/.portcullis/       who you are, and the sign-out button

  Identity provider: ${idp.issuer} (users alice/alice, bob/bob)
  Press Ctrl+C to stop.
`);
  const stop = (): void => {
    void Promise.allSettled([proxy.close(), whoami.close(), idp.close()]).then(() =>
      process.exit(0),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e: unknown) => {
    console.error(`demo failed to start: ${(e as Error).message}`);
    process.exit(1);
  });
}
