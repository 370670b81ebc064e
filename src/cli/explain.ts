import { parseArgs } from 'node:util';
import { ConfigError } from '../config/errors.js';
import { RouteTable } from '../decide/route-table.js';
import {
  describeDecision,
  simulate,
  SimulationError,
  type SimulatedRequest,
} from '../policy/simulate.js';

export const EXPLAIN_HELP = `Usage: portcullis explain --url URL [--config FILE] [--method M] [--user U] [--email E]
                          [--groups a,b] [--claim k=v ...] [--ip A] [--time ISO] [--header k=v ...]
                          [--idp ID]

Evaluates the config's routes and policies for one request, exactly as the proxy would, and
prints ALLOW or DENY, the route that matched, and the policy trace. Without --user, --email,
--groups or --claim the request is anonymous. A --claim value is JSON when it parses as JSON
(e.g. --claim roles='["a","b"]'), else a string. --idp names the IdP (an id of \`idps\`) the
user signed in with; default: the default IdP.
Exit status: 0 allow, 1 deny, 2 usage or config error.`;

export async function explain(
  args: string[],
  configPath: (flag: string | undefined) => string,
): Promise<number> {
  let v;
  try {
    ({ values: v } = parseArgs({
      args,
      strict: true,
      options: {
        config: { type: 'string', short: 'c' },
        url: { type: 'string' },
        method: { type: 'string' },
        user: { type: 'string' },
        email: { type: 'string' },
        groups: { type: 'string' },
        claim: { type: 'string', multiple: true },
        ip: { type: 'string' },
        time: { type: 'string' },
        header: { type: 'string', multiple: true },
        idp: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    console.error(`portcullis explain: ${(e as Error).message}\n\n${EXPLAIN_HELP}`);
    return 2;
  }
  if (v.help) {
    console.log(EXPLAIN_HELP);
    return 0;
  }
  if (!v.url) {
    console.error(`portcullis explain: --url is required\n\n${EXPLAIN_HELP}`);
    return 2;
  }
  const pairs = (list: string[] | undefined, what: string): Record<string, string> | null => {
    const out: Record<string, string> = {};
    for (const kv of list ?? []) {
      const eq = kv.indexOf('=');
      if (eq <= 0) {
        console.error(
          `portcullis explain: expected --${what} name=value, got ${JSON.stringify(kv)}`,
        );
        return null;
      }
      out[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    return out;
  };
  const claimsText = pairs(v.claim, 'claim');
  const headers = pairs(v.header, 'header');
  if (!claimsText || !headers) return 2;
  const claims: Record<string, unknown> = {};
  for (const [k, text] of Object.entries(claimsText)) {
    try {
      claims[k] = JSON.parse(text);
    } catch {
      claims[k] = text;
    }
  }
  const file = configPath(v.config);
  let cfg;
  try {
    // yaml and zod load only for the commands that parse a config in this process.
    const { loadConfigFile } = await import('../config/load.js');
    cfg = loadConfigFile(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      return 2;
    }
    throw e;
  }
  const req: SimulatedRequest = {
    url: v.url,
    method: v.method,
    user: v.user,
    email: v.email,
    ip: v.ip,
    time: v.time,
    headers,
    idp: v.idp,
  };
  if (v.groups !== undefined)
    req.groups = v.groups
      .split(',')
      .map((g) => g.trim())
      .filter(Boolean);
  if (Object.keys(claims).length) req.claims = claims;
  try {
    const d = await simulate(cfg, new RouteTable(cfg.routes), req);
    for (const line of describeDecision(d)) console.log(line);
    return d.kind === 'allow' ? 0 : 1;
  } catch (e) {
    if (e instanceof SimulationError) {
      console.error(`portcullis explain: ${e.message}`);
      return 2;
    }
    throw e;
  }
}
