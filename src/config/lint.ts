import { LineCounter, parseDocument } from 'yaml';
import { pathMatches } from '../decide/route-table.js';
import { keyPath, type ConfigIssue } from './errors.js';
import { locate } from './locate.js';
import { upstreamLabel } from './upstream-url.js';
import type { Config, PathMatch, Route } from './types.js';

// The deployment mistakes of the field reports (docs/operations.md, PITFALLS.md) that a valid
// config can still contain. Each finding says what will go wrong and what to change. Findings
// of severity "error" make `portcullis check` fail: the config loads, but part of it can never
// work as written.

/** Characters that env files, shells and compose files drop, expand or cut at. */
const MANGLED = /[$`'"\s\\#;&|()<>!*?[\]{}]/g;
const WEAK_WORDS = /secret|passw|changeme|example|default|admin|portcullis|letmein|qwerty|12345/i;

export function lintConfig(cfg: Config, text: string): ConfigIssue[] {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const raw = (doc.toJS({ maxAliasCount: 100 }) ?? {}) as Record<string, unknown>;
  const rawRoutes = Array.isArray(raw.routes) ? (raw.routes as Array<Record<string, unknown>>) : [];
  const out: ConfigIssue[] = [];
  const add = (
    path: readonly PropertyKey[],
    severity: ConfigIssue['severity'],
    message: string,
    fix: string,
    wantKey = false,
  ): void => {
    out.push({ key: keyPath(path), ...locate(doc, lc, path, wantKey), severity, message, fix });
  };
  // Routes that failed to compile are not in cfg.routes; index keeps the operator's numbering.
  const routePath = (r: Route, ...rest: string[]): PropertyKey[] => ['routes', r.index, ...rest];
  const hostPort = (scheme: string, host: string, port: number): string =>
    `${host}${port === (scheme === 'https' ? 443 : 80) ? '' : `:${port}`}`;

  // Pitfall 1: the authenticate service on an app's own host.
  const auth = cfg.authenticateUrl;
  if (auth) {
    const authPort = auth.port ? Number(auth.port) : auth.protocol === 'https:' ? 443 : 80;
    for (const r of cfg.routes) {
      if (
        !r.from.wildcard &&
        r.from.host === auth.hostname.toLowerCase() &&
        r.from.port === authPort &&
        `${r.from.scheme}:` === auth.protocol
      ) {
        add(
          routePath(r, 'from'),
          'warning',
          `the authenticate service (${auth.origin}) is also this route's host: the app and the login service share one origin, so the app's own paths, cookies and scripts live next to the login`,
          `give the authenticate service a host of its own, e.g. authenticate_service_url: https://auth.<parent domain>, and set cookie_domain to the parent domain`,
        );
      }
    }
    // Hosts the session cookie set on the authenticate host cannot reach get a one-time handoff.
    const under = (host: string): boolean =>
      !!cfg.cookie.domain && (host === cfg.cookie.domain || host.endsWith(`.${cfg.cookie.domain}`));
    const authCovered = under(auth.hostname.toLowerCase());
    const seen = new Set<string>();
    for (const r of cfg.routes) {
      // A tunnel carries no cookie: the CLI presents its token on every CONNECT.
      if (r.from.scheme === 'tcp') continue;
      const host = r.from.wildcard ? `*${r.from.host}` : r.from.host;
      if (seen.has(host) || host === auth.hostname.toLowerCase()) continue;
      seen.add(host);
      const covered =
        authCovered &&
        (r.from.wildcard
          ? r.from.host.endsWith(`.${cfg.cookie.domain}`) || r.from.host === `.${cfg.cookie.domain}`
          : under(r.from.host));
      if (!covered) {
        add(
          routePath(r, 'from'),
          'info',
          `${host} is not under cookie_domain${cfg.cookie.domain ? ` (${cfg.cookie.domain})` : ' (not set)'}${authCovered || !cfg.cookie.domain ? '' : ', and neither is the authenticate host'}: after a login the session is handed over to it with a one-time /.portcullis/handoff redirect (one extra hop per host and session)`,
          cfg.cookie.domain
            ? `nothing, if ${host} is meant to be on another parent domain; otherwise move it under ${cfg.cookie.domain}`
            : 'set cookie_domain to the parent domain the authenticate host shares with the routes',
        );
      }
    }
  }

  // Secure cookies are never sent back over plain HTTP, but a non-Secure cookie on an HTTPS site leaks to any http:// request.
  const https =
    !!cfg.tls || auth?.protocol === 'https:' || cfg.routes.some((r) => r.from.scheme === 'https');
  if (!cfg.cookie.secure && https) {
    add(
      ['cookie_secure'],
      'warning',
      'cookie_secure is false while the site is served over HTTPS: the session cookie will also be sent over plain http:// and can be read on the network',
      'remove `cookie_secure: false` (the default is true)',
    );
  }

  // Pitfall 3: secrets that env files and shells mangle, and weak ones: every IdP's.
  const rawIdps = Array.isArray(raw.idps) ? (raw.idps as Array<Record<string, unknown>>) : [];
  const topLevel =
    raw.idps === undefined || raw.idp_provider_url !== undefined || raw.idp_client_id !== undefined;
  for (const idp of cfg.idps) {
    // `default` is the top-level keys' IdP; any other is an entry of `idps`, found by its id.
    const at = idp.id === 'default' && topLevel ? -1 : rawIdps.findIndex((e) => e.id === idp.id);
    const keys = at < 0 ? raw : rawIdps[at]!;
    const base: PropertyKey[] = at < 0 ? [] : ['idps', at];
    const key =
      keys.idp_client_secret_file !== undefined ? 'idp_client_secret_file' : 'idp_client_secret';
    const who = cfg.idps.length > 1 ? ` of the IdP ${idp.id}` : '';
    for (const f of secretFindings(idp.clientSecret, key === 'idp_client_secret'))
      add([...base, key], 'warning', f.message.replace('{who}', who), f.fix);
  }
  if (cfg.cookie.secret.length && new Set(cfg.cookie.secret).size < 16) {
    add(
      [raw.cookie_secret_file !== undefined ? 'cookie_secret_file' : 'cookie_secret'],
      'warning',
      `cookie_secret decodes to 32 bytes with only ${new Set(cfg.cookie.secret).size} distinct values: it is not random, and anyone who guesses it can forge sessions`,
      'generate one with `portcullis gen-secret`',
    );
  }

  // Pitfall 5: sessions kept in one process's memory.
  if (
    typeof raw.session_storage === 'string' &&
    raw.session_storage.trim().toLowerCase() === 'memory'
  ) {
    add(
      ['session_storage'],
      'warning',
      'session_storage is memory: every restart or reload-by-restart signs everyone out, and replicas do not share sessions',
      'use the default cookie storage, or redis://… / postgres://… for server-side sessions',
    );
  }

  // Pitfall 7: a route that can never match because an earlier one takes all its requests.
  for (let j = 0; j < cfg.routes.length; j++) {
    const b = cfg.routes[j]!;
    for (let i = 0; i < j; i++) {
      const a = cfg.routes[i]!;
      if (!hostCovers(a, b) || !pathCovers(a.match, b.match)) continue;
      const line = locate(doc, lc, ['routes', a.index]).line;
      add(
        routePath(b),
        'error',
        `this route never matches: routes[${a.index}]${a.id !== `routes[${a.index}]` ? ` (${a.id})` : ''} on line ${line} comes first and takes every request it would get (the first matching route wins)${b.isPublic && !a.isPublic ? '; these public paths are therefore behind the login' : ''}`,
        `move this route above routes[${a.index}], or narrow routes[${a.index}] with prefix, path or regex`,
      );
      break;
    }
  }

  // Pitfall 8: group policies without the scope that makes the IdP send groups.
  const noGroupsScope = (p: Config['idp']): boolean =>
    !p.groupsWithoutScope && !p.scopes.some((s) => /group/i.test(s));
  // Several IdPs (`idps`): each IdP a group-deciding route accepts must be asked for groups.
  if (cfg.idps.length > 1)
    rawRoutes.forEach((r, i) => {
      const where =
        r.allowed_groups !== undefined
          ? ['routes', i, 'allowed_groups']
          : usesGroups(r.policy, cfg.idp.groupsClaim)
            ? ['routes', i, 'policy']
            : null;
      const route = cfg.routes.find((x) => x.index === i);
      const lacking = cfg.idps.filter(
        (p) => (!route || route.idps.includes(p.id)) && noGroupsScope(p),
      );
      if (!where || !lacking.length) return;
      add(
        where,
        'warning',
        `this route decides by group, but the idp_scopes of ${lacking.map((p) => `idps ${p.id} (${p.scopes.join(' ')})`).join(', ')} do not ask for groups: such an IdP then sends no groups claim and every group rule silently denies its users`,
        'add groups to that IdP’s idp_scopes and map the groups claim at the IdP, or limit the route to IdPs that send groups with `idps`',
        true,
      );
    });
  else if (noGroupsScope(cfg.idp)) {
    rawRoutes.forEach((r, i) => {
      const where =
        r.allowed_groups !== undefined
          ? ['routes', i, 'allowed_groups']
          : usesGroups(r.policy, cfg.idp.groupsClaim)
            ? ['routes', i, 'policy']
            : null;
      if (!where) return;
      add(
        where,
        'warning',
        `this route decides by group, but idp_scopes (${cfg.idp.scopes.join(' ')}) does not ask for groups: many IdPs (Authentik, Keycloak, Okta) then send no groups claim and every group rule silently denies`,
        `add groups to idp_scopes (e.g. idp_scopes: [openid, profile, email, groups, offline_access]) and map the groups claim at the IdP`,
        true,
      );
    });
  }

  // Auth0 refuses `groups` and `roles` as custom claim names: an Action must add a namespaced
  // claim, and Portcullis must be told its name, or every group rule denies.
  if (cfg.idp.provider === 'auth0' && raw.idp_groups_claim === undefined) {
    const where = rawRoutes.findIndex(
      (r) => r.allowed_groups !== undefined || usesGroups(r.policy, cfg.idp.groupsClaim),
    );
    if (where >= 0)
      add(
        ['idp_provider'],
        'warning',
        `routes[${where}] decides by group, but Auth0 cannot send a claim named "groups": groups reach a token only as a namespaced claim that an Auth0 Action adds`,
        'add the claim in a post-login Action (api.idToken.setCustomClaim("https://<your domain>/groups", …)) and set idp_groups_claim to that name',
        true,
      );
  }

  // GitHub and Google: scopes and settings that make group or email rules deny everyone.
  const groupRoute = rawRoutes.findIndex(
    (r) => r.allowed_groups !== undefined || usesGroups(r.policy, cfg.idp.groupsClaim),
  );
  const scopes = cfg.idp.scopes;
  if (cfg.idp.provider === 'github') {
    // docs.github.com "Scopes for OAuth apps": read:org (or write:/admin:org) lists private
    // memberships and teams; user:email (or user) reads private addresses.
    if (groupRoute >= 0 && !scopes.some((x) => /^(read|write|admin):org$/.test(x)))
      add(
        ['idp_scopes'],
        'warning',
        `routes[${groupRoute}] decides by group (organization or team), but idp_scopes has no read:org: GitHub then shows only public organization memberships and no teams, so group rules deny`,
        'add read:org to idp_scopes, or remove idp_scopes (the github preset asks for read:user user:email read:org)',
        true,
      );
    if (!scopes.includes('user:email') && !scopes.includes('user'))
      add(
        ['idp_scopes'],
        'warning',
        'idp_scopes has no user:email: GitHub then hides private addresses, so most users sign in without a verified email and email rules deny them',
        'add user:email to idp_scopes, or remove idp_scopes to use the github preset',
        true,
      );
    if (groupRoute >= 0)
      add(
        ['idp_provider'],
        'info',
        `routes[${groupRoute}] decides by GitHub organization or team: an organization with OAuth app access restrictions (the default for new organizations) hides its members and teams from this app until an owner approves it, and until then those rules deny`,
        'have an owner approve the app: Organization settings → Third-party Access → OAuth app policy',
        true,
      );
  }
  if (cfg.idp.provider === 'google') {
    const refused = scopes.filter((x) => /group/i.test(x));
    if (refused.length)
      add(
        ['idp_scopes'],
        'error',
        `Google refuses the scope ${refused.join(', ')} (invalid_scope): every sign-in would fail`,
        'remove it: Workspace groups come from the Directory API (idp_service_account_file and idp_admin_email)',
        true,
      );
    if (groupRoute >= 0 && !cfg.idp.googleDirectory)
      add(
        ['routes', groupRoute],
        'warning',
        "this route decides by group, but Google's tokens carry no groups and no idp_service_account_file is set: its group rules deny everyone",
        'set idp_service_account_file and idp_admin_email (docs/identity-providers.md, Google)',
      );
  }

  // TLS to the upstream needs an https upstream: on plain ones these keys are silently unused.
  const TLS_KEYS = [
    'tls_skip_verify',
    'tls_custom_ca',
    'tls_custom_ca_file',
    'tls_client_cert',
    'tls_client_cert_file',
    'tls_client_key',
    'tls_client_key_file',
    'tls_server_name',
    'tls_upstream_server_name',
  ];
  const withoutTls = new Set<Route>();
  for (const r of cfg.routes) {
    if (r.to.length === 0 || r.to.some((u) => u.protocol === 'https:')) continue;
    withoutTls.add(r);
    const rawRoute = rawRoutes[r.index] ?? {};
    const shown = r.to.slice(0, 2).map(upstreamLabel).join(', ') + (r.to.length > 2 ? ', ...' : '');
    for (const key of TLS_KEYS)
      if (rawRoute[key] !== undefined)
        add(
          routePath(r, key),
          'warning',
          `${key} has no effect: every \`to\` upstream of this route is reached without TLS (${shown}), so there is no certificate to check, present or name`,
          'use an https:// (or https+unix://) upstream if the traffic to it should be encrypted, or remove this key',
          true,
        );
  }

  cfg.routes.forEach((r) => {
    if (r.tlsSkipVerify && !withoutTls.has(r)) {
      add(
        routePath(r, 'tls_skip_verify'),
        'warning',
        'tls_skip_verify turns off certificate checks to the upstream: anyone on the path to it can read and change the traffic, identity headers included',
        "give the upstream's CA with tls_custom_ca_file (or tls_custom_ca) instead",
      );
    }
  });

  // Pitfall 21: the IdP itself behind Portcullis.
  const iss = cfg.idp.issuer;
  const issScheme = iss.protocol === 'https:' ? 'https' : 'http';
  const issPort = iss.port ? Number(iss.port) : issScheme === 'https' ? 443 : 80;
  const issHost = iss.hostname.toLowerCase();
  const fronting = cfg.routes.find(
    (r) =>
      r.from.scheme === issScheme &&
      r.from.port === issPort &&
      (r.from.wildcard ? issHost.endsWith(r.from.host) : r.from.host === issHost) &&
      pathMatches(r, iss.pathname),
  );
  if (fronting && !fronting.isPublic) {
    add(
      routePath(fronting, 'from'),
      'error',
      `the identity provider (${iss.href}) is served by this route, which requires a login: signing in needs the IdP, and the IdP needs a signed-in user, so every login loops`,
      "make the IdP's route public (allow_public_unauthenticated_access: true) in a route listed before this one, or serve the IdP outside Portcullis",
    );
  }
  for (const r of cfg.routes) {
    if (r.isPublic || r === fronting) continue;
    const to = r.to.find(
      (u) =>
        u.hostname.toLowerCase() === issHost &&
        (u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80) === issPort,
    );
    if (to) {
      add(
        routePath(r, 'to'),
        'warning',
        `this route proxies to the identity provider (${hostPort(issScheme, issHost, issPort)}) behind a login: if browsers are sent to the IdP through this host, signing in loops`,
        'if this is the IdP users sign in at, make the route public (allow_public_unauthenticated_access: true); an admin-only route to the IdP is fine',
      );
    }
  }
  // Load balancing needs something to balance: on a single `to` these keys change nothing.
  for (const r of cfg.routes) {
    if (r.to.length !== 1) continue;
    const rawRoute = rawRoutes[r.index] ?? {};
    for (const key of ['load_balancing_policy', 'lb_policy', 'health_checks', 'outlier_detection'])
      if (rawRoute[key] !== undefined)
        add(
          routePath(r, key),
          'warning',
          `${key} has no effect: this route has a single \`to\` upstream, so there is nothing to balance or to take out of rotation`,
          'list the other upstreams in `to`, or remove this key',
          true,
        );
  }
  // A TCP route's host serves no web pages, so `portcullis tcp` cannot sign in there.
  const tcp = cfg.routes.find((r) => r.from.scheme === 'tcp' && !r.isPublic);
  if (tcp && !cfg.authenticateUrl)
    add(
      routePath(tcp, 'from'),
      'info',
      `\`portcullis tcp\` signs in at its --portcullis-url (by default https://${tcp.from.host}), but a TCP route's host serves no sign-in page`,
      'set authenticate_service_url (the CLI learns it from the 407 answer), or have users pass --portcullis-url with one of your HTTP route hosts',
    );
  return out;
}

function entropyPerChar(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

function hostCovers(a: Route, b: Route): boolean {
  if (a.from.scheme !== b.from.scheme || a.from.port !== b.from.port) return false;
  if (!a.from.wildcard) return !b.from.wildcard && a.from.host === b.from.host;
  // a.from.host is ".example.com": it covers x.example.com and *.x.example.com, and *.example.com itself.
  return b.from.wildcard
    ? b.from.host.endsWith(a.from.host)
    : b.from.host.endsWith(a.from.host) && b.from.host.length > a.from.host.length;
}

function pathCovers(a: PathMatch, b: PathMatch): boolean {
  const trim = (p: string): string => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p);
  switch (a.kind) {
    case 'any':
      return true;
    case 'prefix':
      if (b.kind === 'prefix') return b.value.startsWith(a.value);
      // path matching is trailing-slash tolerant: both spellings must be under the prefix.
      if (b.kind === 'path')
        return b.value.startsWith(a.value) && trim(b.value).startsWith(a.value);
      return false;
    case 'path':
      return b.kind === 'path' && trim(a.value) === trim(b.value);
    case 'regex':
      return (
        b.kind === 'path' &&
        a.re.test(b.value) &&
        a.re.test(b.value.endsWith('/') ? trim(b.value) : `${b.value}/`)
      );
  }
}

/** A policy that reads groups: a `groups` criterion anywhere, or a claim criterion on the groups claim. */
function usesGroups(policy: unknown, groupsClaim: string): boolean {
  if (policy === null || typeof policy !== 'object') return false;
  if (Array.isArray(policy)) return policy.some((p) => usesGroups(p, groupsClaim));
  for (const [k, v] of Object.entries(policy)) {
    if (k === 'groups' || k === `claim/${groupsClaim}` || k === 'allowed_groups') return true;
    if (usesGroups(v, groupsClaim)) return true;
  }
  return false;
}

/** What is wrong with a client secret; `{who}` in a message stands for the IdP's name. */
function secretFindings(s: string, inline: boolean): Array<{ message: string; fix: string }> {
  if (!s) return [];
  const out: Array<{ message: string; fix: string }> = [];
  if (inline) {
    const bad = [
      ...new Set(
        (s.match(MANGLED) ?? []).map((c) =>
          /\s/.test(c)
            ? 'whitespace'
            : c === '`'
              ? 'backtick'
              : c === '"'
                ? 'double quote'
                : c === "'"
                  ? 'single quote'
                  : `\`${c}\``,
        ),
      ),
    ];
    if (bad.length)
      out.push({
        message: `the client secret{who} contains ${bad.join(', ')}: docker compose env files and shells silently drop, expand or cut at these, and the IdP then answers invalid_client`,
        fix: 'read it from a file with idp_client_secret_file, or regenerate a letters-and-digits secret at the IdP (Authentik: generate_id rather than generate_key); `portcullis probe` proves which one the IdP accepts',
      });
  }
  const fix = 'register a random secret of 32 or more characters at the IdP';
  if (s.length < 16)
    out.push({
      message: `the client secret{who} is only ${s.length} characters long: it can be guessed`,
      fix,
    });
  else if (entropyPerChar(s) < 3 || WEAK_WORDS.test(s))
    out.push({
      message:
        'the client secret{who} looks low-entropy (repeated characters or a dictionary word): it can be guessed',
      fix,
    });
  return out;
}
