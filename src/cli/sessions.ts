import { parseArgs } from 'node:util';
import { ConfigError } from '../config/errors.js';
import { createSessionStore } from '../session/create.js';
import { Sealer } from '../session/seal.js';
import { errorText } from '../session/server-store.js';
import { StoreUnavailableError, type SessionSummary } from '../session/types.js';

// `portcullis sessions list|revoke`: for when a laptop is stolen. Works on the shared store
// every replica reads, and announces the ends on the store's channel, so a revoked session is
// refused by the next request to any replica (docs/high-availability.md).

export const SESSIONS_HELP = `Usage: portcullis sessions list [--user EMAIL] [--config FILE] [--format text|json]
       portcullis sessions revoke --user EMAIL [--config FILE]
       portcullis sessions revoke --id ID [--config FILE]

Lists or ends sessions in the configured server-side session_storage (redis://…, postgres://…).
--user matches the e-mail address (any case), the user claim or the subject. The user's browser
is sent through the login again on its next request; every replica refuses the session from then
on (within 1 second when a replica has lost its channel to the store). Signing in again at the identity provider is still possible: disable the user there
too when the account itself is compromised.
The config must carry the same cookie_secret as the running proxies (user names are sealed with it).
Exit status: 0 done, 1 the store cannot be reached or --id names no session, 2 usage or config error.`;

export async function sessionsCommand(
  args: string[],
  configPath: (flag: string | undefined) => string,
): Promise<number> {
  let values: {
    config?: string | undefined;
    user?: string | undefined;
    id?: string | undefined;
    format?: string | undefined;
    help?: boolean | undefined;
  };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string', short: 'c' },
        user: { type: 'string' },
        id: { type: 'string' },
        format: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    console.error(`portcullis sessions: ${(e as Error).message}\n\n${SESSIONS_HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(SESSIONS_HELP);
    return 0;
  }
  const action = positionals[0];
  const usage = (msg: string): number => {
    console.error(`portcullis sessions: ${msg}\n\n${SESSIONS_HELP}`);
    return 2;
  };
  if (positionals.length !== 1 || (action !== 'list' && action !== 'revoke'))
    return usage('expected "list" or "revoke"');
  if (
    values.format !== undefined &&
    (action !== 'list' || !['text', 'json'].includes(values.format))
  )
    return usage('--format text|json applies to list only');
  if (action === 'revoke' && (values.user === undefined) === (values.id === undefined))
    return usage('revoke needs exactly one of --user EMAIL and --id ID');
  if (action === 'list' && values.id !== undefined) return usage('--id applies to revoke only');

  const file = configPath(values.config);
  let cfg;
  try {
    // yaml and zod load only for the commands that parse a config in this process.
    const { loadConfigFile } = await import('../config/load.js');
    cfg = loadConfigFile(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`portcullis sessions: invalid config\n${e.message}`);
      return 2;
    }
    throw e;
  }
  const kind = cfg.sessionStorage.kind;
  if (kind === 'cookie' || kind === 'memory') {
    console.error(
      kind === 'cookie'
        ? 'portcullis sessions: session_storage is cookie: sessions live only in browsers and cannot be listed or revoked one by one. Changing cookie_secret ends every session; use redis://… or postgres://… to revoke single sessions.'
        : 'portcullis sessions: session_storage is memory: sessions live inside the running proxy process and this command cannot reach them. Restarting the proxy ends every session.',
    );
    return 2;
  }
  const { createLogger } = await import('../observe/logger.js');
  const store = createSessionStore(cfg, new Sealer(cfg.cookie.secret), createLogger('silent'));
  try {
    const all = await store.list!(Date.now());
    const wanted = values.user?.trim().toLowerCase();
    const matches = (s: SessionSummary): boolean =>
      wanted === undefined ||
      s.email.toLowerCase() === wanted ||
      s.user.toLowerCase() === wanted ||
      s.sub.toLowerCase() === wanted;
    if (action === 'list') {
      const rows = all.filter(matches);
      if (values.format === 'json') {
        console.log(
          JSON.stringify(
            rows.map((s) => ({
              id: s.id,
              user: s.user,
              email: s.email,
              sub: s.sub,
              signed_in_at: iso(s.iat),
              expires_at: iso(s.exp),
              idp: s.idp,
              client_address: s.ip,
              user_agent: s.userAgent,
            })),
            null,
            2,
          ),
        );
      } else {
        for (const s of rows)
          console.log(
            `${s.id}  ${s.email || s.user}  signed in ${iso(s.iat)}  expires ${iso(s.exp)}`,
          );
        console.log(`${rows.length} session${rows.length === 1 ? '' : 's'}`);
      }
      return 0;
    }
    if (values.id !== undefined) {
      const n = await store.revoke!([values.id]);
      if (!n) {
        console.error(`portcullis sessions: no session with id ${values.id}`);
        return 1;
      }
      console.log(`revoked session ${values.id}`);
      return 0;
    }
    const ids = all.filter(matches).map((s) => s.id);
    const n = ids.length ? await store.revoke!(ids) : 0;
    console.log(`revoked ${n} session${n === 1 ? '' : 's'} of ${values.user}`);
    return 0;
  } catch (e) {
    if (e instanceof StoreUnavailableError) {
      console.error(
        `portcullis sessions: cannot reach the ${kind} session store: ${errorText((e as Error).cause ?? e)}`,
      );
      return 1;
    }
    throw e;
  } finally {
    await store.close().catch(() => {});
  }
}

function iso(ms: number): string {
  return ms ? new Date(ms).toISOString() : '?';
}
