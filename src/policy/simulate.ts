import { decide, type Decision } from '../decide/decide.js';
import type { RouteTable } from '../decide/route-table.js';
import type { Config } from '../config/types.js';
import type { Identity, RequestContext } from '../decide/types.js';
import { identityFromClaims } from '../identity/claims.js';
import { normalizeRequestTarget } from '../security/path.js';

// `portcullis explain` and `policy_tests` ask the very same decide() the proxy asks, with an
// identity described on the command line or in the config instead of a session cookie.

export interface SimulatedRequest {
  url: string;
  method?: string | undefined;
  user?: string | undefined;
  email?: string | undefined;
  groups?: string[] | undefined;
  claims?: Record<string, unknown> | undefined;
  ip?: string | undefined;
  time?: string | undefined;
  headers?: Record<string, string> | undefined;
  /** The IdP the simulated user signed in with (`idps[].id`); default: the default IdP. */
  idp?: string | undefined;
}

export class SimulationError extends Error {}

export async function simulate(
  cfg: Config,
  routes: RouteTable,
  r: SimulatedRequest,
): Promise<Decision> {
  let u: URL;
  try {
    u = new URL(r.url);
  } catch {
    throw new SimulationError(
      `expected an absolute URL like https://app.example.com/path, got ${JSON.stringify(r.url)}`,
    );
  }
  // tcp+https://host:port: the CONNECT a `portcullis tcp` client sends for a TCP route.
  const tunnel = u.protocol === 'tcp+https:';
  if (!tunnel && u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new SimulationError(`expected an http(s) or tcp+https URL, got ${r.url}`);
  if (tunnel && (!u.port || (u.pathname !== '' && u.pathname !== '/') || u.search))
    throw new SimulationError(`expected a TCP destination as tcp+https://host:port, got ${r.url}`);
  const now = r.time === undefined ? Date.now() : Date.parse(r.time);
  if (Number.isNaN(now))
    throw new SimulationError(
      `expected an ISO 8601 time like 2026-03-29T08:30:00Z, got ${JSON.stringify(r.time)}`,
    );
  const scheme = u.protocol === 'http:' ? 'http' : 'https';
  const target = tunnel ? '/' : `${u.pathname}${u.search}`;
  let norm = normalizeRequestTarget(target);
  let pathError: string | undefined;
  if (!norm.ok) {
    pathError = norm.reason;
    norm = normalizeRequestTarget(target, { allowAmbiguous: true });
    if (!norm.ok) throw new SimulationError(`the path is refused: ${pathError}`);
  }
  const headers: Record<string, string> = { host: u.host, accept: 'text/html' };
  for (const [k, v] of Object.entries(r.headers ?? {})) headers[k.toLowerCase()] = v;
  const ctx: RequestContext = {
    method: tunnel ? 'CONNECT' : (r.method ?? 'GET').toUpperCase(),
    scheme,
    host: u.hostname.toLowerCase(),
    port: u.port ? Number(u.port) : scheme === 'https' ? 443 : 80,
    path: norm.path,
    query: norm.query,
    clientIp: r.ip ?? '203.0.113.10',
    headers,
    browser: !tunnel,
    now,
    tunnel,
  };
  let identity: Identity | null = null;
  // The user's claims are named by their own IdP's settings (claim paths differ per IdP).
  const idp = r.idp === undefined ? cfg.idp : cfg.idps.find((i) => i.id === r.idp);
  if (!idp)
    throw new SimulationError(
      `unknown identity provider ${JSON.stringify(r.idp)}; expected one of ${cfg.idps.map((i) => i.id).join(', ')}`,
    );
  if (
    r.user !== undefined ||
    r.email !== undefined ||
    r.groups !== undefined ||
    r.claims !== undefined ||
    r.idp !== undefined
  ) {
    const claims: Record<string, unknown> = { ...(r.claims ?? {}) };
    if (r.email !== undefined) claims[idp.emailClaim] = r.email;
    if (r.email !== undefined && claims.email_verified === undefined) claims.email_verified = true;
    if (r.groups !== undefined) claims[idp.groupsClaim] = r.groups;
    const sub =
      r.user ?? (typeof claims.sub === 'string' ? claims.sub : (r.email ?? 'simulated-user'));
    if (r.user !== undefined && idp.userClaim !== 'sub') claims[idp.userClaim] = r.user;
    identity = identityFromClaims(sub, claims, idp, 'session');
  }
  return decide(
    ctx,
    { routes, sessions: { lookup: async () => ({ identity, session: null, setCookies: [] }) } },
    { pathError, trace: true },
  );
}

export function outcomeOf(
  d: Decision,
): 'allow' | 'deny' | 'login' | 'not_found' | 'bad_request' | 'unavailable' {
  return d.kind;
}

/** Human-readable lines: the verdict, the route, and the policy trace. */
export function describeDecision(d: Decision): string[] {
  const lines: string[] = [];
  const verdict =
    d.kind === 'allow'
      ? 'ALLOW'
      : d.kind === 'login'
        ? 'DENY (sign-in required)'
        : d.kind === 'deny'
          ? 'DENY'
          : d.kind === 'not_found'
            ? 'DENY (no route)'
            : d.kind === 'bad_request'
              ? 'DENY (bad request)'
              : 'DENY (unavailable)';
  lines.push(verdict);
  if ('route' in d && d.route)
    lines.push(
      `route: ${d.route.id} (${d.route.from.raw}${d.route.match.kind === 'any' ? '' : ` ${d.route.match.kind} ${d.route.match.value}`})`,
    );
  if (d.kind === 'allow' && !d.policy)
    lines.push('reason: public route (allow_public_unauthenticated_access)');
  const policy = d.kind === 'allow' || d.kind === 'deny' ? d.policy : null;
  if (policy) {
    lines.push(`reason: ${policy.reason}`);
    for (const t of policy.trace)
      lines.push(
        `  ${t.result ? '✓' : '✗'} ${t.at}: ${t.criterion}${t.detail ? ` — ${t.detail}` : ''}`,
      );
  } else if (d.kind !== 'allow' && d.kind !== 'deny') {
    lines.push(`reason: ${d.reason}`);
  }
  return lines;
}

export interface PolicyTestFailure {
  name: string;
  key: string;
  line: number;
  expected: string;
  got: string;
  explanation: string[];
}

/** Runs the config's policy_tests; an empty list means every test got the outcome it expects. */
export async function runPolicyTests(
  cfg: Config,
  routes: RouteTable,
): Promise<PolicyTestFailure[]> {
  const failures: PolicyTestFailure[] = [];
  for (const t of cfg.policyTests) {
    let d: Decision;
    try {
      d = await simulate(cfg, routes, t.request);
    } catch (e) {
      failures.push({
        name: t.name,
        key: t.key,
        line: t.line,
        expected: t.expect,
        got: 'error',
        explanation: [(e as Error).message],
      });
      continue;
    }
    // "deny" covers every way in which the request does not get through.
    const got =
      d.kind === 'allow' ? 'allow' : d.kind === 'login' && t.expect === 'login' ? 'login' : 'deny';
    if (got !== t.expect)
      failures.push({
        name: t.name,
        key: t.key,
        line: t.line,
        expected: t.expect,
        got: d.kind === 'login' ? 'login' : got,
        explanation: describeDecision(d),
      });
  }
  return failures;
}
