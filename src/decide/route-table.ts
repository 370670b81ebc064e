import type { Route } from '../config/types.js';

/**
 * Routes by host, compiled once per config. For a host, the candidate routes keep file order,
 * so the first match in the file wins even when exact and wildcard routes interleave.
 * Candidate lists are cached only for hosts that have routes, so unknown hosts (which an
 * attacker controls) cannot grow the cache.
 */
export class RouteTable {
  private readonly exact = new Map<string, Route[]>();
  private readonly wildcards: Route[] = [];
  private readonly cache = new Map<string, Route[]>();

  constructor(readonly routes: readonly Route[]) {
    for (const r of routes) {
      if (r.from.wildcard) this.wildcards.push(r);
      else {
        const k = key(r.from.scheme, r.from.host, r.from.port);
        const list = this.exact.get(k);
        if (list) list.push(r);
        else this.exact.set(k, [r]);
      }
    }
    for (const [k, list] of this.exact) this.exact.set(k, byRegexPriority(list));
  }

  candidates(scheme: string, host: string, port: number): Route[] {
    const k = key(scheme, host, port);
    const hit = this.cache.get(k);
    if (hit) return hit;
    const exact = this.exact.get(k) ?? [];
    if (!this.wildcards.length) return exact;
    const wild = this.wildcards.filter(
      (r) =>
        r.from.scheme === scheme &&
        r.from.port === port &&
        host.length > r.from.host.length &&
        host.endsWith(r.from.host),
    );
    if (!wild.length) return exact;
    const all = byRegexPriority([...exact, ...wild].sort((a, b) => a.index - b.index));
    if (this.cache.size > 4096) this.cache.clear();
    this.cache.set(k, all);
    return all;
  }

  match(scheme: string, host: string, port: number, path: string): Route | null {
    for (const r of this.candidates(scheme, host, port)) if (pathMatches(r, path)) return r;
    return null;
  }

  /** True when some route answers this host at all (to tell "unknown host" from "no such path"). */
  knowsHost(scheme: string, host: string, port: number): boolean {
    return this.candidates(scheme, host, port).length > 0;
  }

  /** True when every path on this host selects one route, so the host alone names the policy. */
  oneRouteForHost(scheme: string, host: string, port: number): boolean {
    const first = this.candidates(scheme, host, port)[0];
    return first !== undefined && first.match.kind === 'any';
  }

  hosts(): string[] {
    return [
      ...new Set(
        this.routes.map(
          (r) =>
            `${r.from.scheme}://${r.from.wildcard ? `*${r.from.host}` : r.from.host}${defaultPort(r.from.scheme) === r.from.port ? '' : `:${r.from.port}`}`,
        ),
      ),
    ];
  }
}

/**
 * regex_priority_order (https://www.pomerium.com/docs/reference/routes/regex-priority-order):
 * "Higher values are evaluated first" among the routes that match with `regex`. They trade
 * places among the slots regex routes hold; every other route keeps its place in file order.
 */
function byRegexPriority(routes: Route[]): Route[] {
  const regex = routes.filter((r) => r.match.kind === 'regex');
  if (regex.every((r) => r.regexPriority === 0)) return routes;
  const ordered = [...regex].sort((a, b) => b.regexPriority - a.regexPriority || a.index - b.index);
  let next = 0;
  return routes.map((r) => (r.match.kind === 'regex' ? ordered[next++]! : r));
}

function key(scheme: string, host: string, port: number): string {
  return `${scheme}://${host}:${port}`;
}

export function defaultPort(scheme: string): number {
  return scheme === 'https' ? 443 : 80;
}

export function pathMatches(r: Route, path: string): boolean {
  const m = r.match;
  switch (m.kind) {
    case 'any':
      return true;
    case 'prefix':
      return path.startsWith(m.value);
    case 'path':
      // Trailing-slash tolerant: /admin and /admin/ are the same page to users.
      return (
        path === m.value ||
        (m.value.endsWith('/') ? path === m.value.slice(0, -1) : path === `${m.value}/`)
      );
    case 'regex':
      return m.re.test(path);
  }
}
