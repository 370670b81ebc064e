// The demo's identity provider and sample upstream as one process, for deploy/compose: the
// same IdP (users alice/alice, bob/bob) and whoami app that `npm start` runs, on fixed
// loopback ports, with the Portcullis client's secret read from a file (a compose secret).
import { readFileSync } from 'node:fs';
import { startIdp } from './idp.js';
import { startWhoami } from './whoami.js';

const env = (name: string, fallback: string): string => process.env[name] ?? fallback;

async function main(): Promise<void> {
  const proxyPort = Number(env('DEMO_PORT', '8080'));
  const secretFile = env('DEMO_CLIENT_SECRET_FILE', '/run/secrets/idp_client_secret');
  // One final newline is dropped, as Portcullis does for idp_client_secret_file.
  const clientSecret = readFileSync(secretFile, 'utf8').replace(/\r?\n$/, '');
  const hosts = ['app', 'admin', 'public'].map((h) => `http://${h}.localhost:${proxyPort}`);
  const idp = await startIdp({
    port: Number(env('DEMO_IDP_PORT', '9000')),
    clients: [
      {
        client_id: 'portcullis-demo',
        client_secret: clientSecret,
        redirect_uris: hosts.map((h) => `${h}/.portcullis/callback`),
        post_logout_redirect_uris: hosts.map((h) => `${h}/.portcullis/signed_out`),
      },
    ],
  });
  const whoami = await startWhoami({
    port: Number(env('DEMO_UPSTREAM_PORT', '8081')),
    name: 'whoami',
  });
  console.log(
    JSON.stringify({ event: 'demo_services_listening', issuer: idp.issuer, upstream: whoami.url }),
  );
  const stop = (): void => {
    void Promise.allSettled([whoami.close(), idp.close()]).then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((e: unknown) => {
  console.error(`demo services failed to start: ${(e as Error).message}`);
  process.exit(1);
});
