import type { Config } from './config/types.js';
import { RouteTable, defaultPort } from './decide/route-table.js';
import type { RequestContext } from './decide/types.js';
import { AssertionSigner } from './identity/assertion.js';
import { TokenAuthenticator } from './identity/bearer.js';
import { createProvider } from './identity/create-provider.js';
import { Idp } from './identity/oidc.js';
import type { Provider } from './identity/provider.js';
import { IdentityProviders, type IdentityProvider } from './identity/registry.js';
import type { Logger } from './observe/logger.js';
import { silentObserver, type Observer } from './observe/observer.js';
import { OnceCache } from './authenticate/once.js';
import { RateLimiter } from './security/rate-limit.js';
import { identityHeaderSet } from './security/headers.js';
import { createRedirectValidator } from './security/redirect.js';
import { createSessionStore } from './session/create.js';
import { SessionManager } from './session/manager.js';
import { ProviderRefresher, RefresherByIdp } from './session/refresh.js';
import { Sealer } from './session/seal.js';
import type { SessionStore } from './session/types.js';

export interface RuntimeDeps {
  /** The previous runtime's store, kept across a reload that did not change it. */
  store?: SessionStore | undefined;
  observer?: Observer | undefined;
  /**
   * The discovered IdPs of `idps:` besides the default one, by id (the server starts them and
   * keeps them across reloads); one missing here is made undiscovered (check, explain).
   */
  idps?: ReadonlyMap<string, Idp> | undefined;
}

/**
 * Everything compiled from one config: route table, sealer, session manager, redirect
 * validator. A reload builds a new Runtime and swaps it in; requests in flight keep theirs.
 */
export class Runtime {
  readonly routes: RouteTable;
  readonly sealer: Sealer;
  readonly sessions: SessionManager;
  /** How users sign in and are re-read: OpenID Connect, or GitHub's OAuth 2.0 (identity/provider.ts). */
  readonly provider: Provider;
  /** Every IdP users may sign in with (`idps:`), the default first; one for a single-IdP config. */
  readonly identities: IdentityProviders;
  readonly once = new OnceCache();
  // A sign-in start keeps no state here (the login state is a sealed cookie), so these limits
  // guard the IdP: every start sends a browser to its authorization endpoint under our client
  // and may come back as a token request. Per client address (an IPv6 /64), a budget for a
  // whole office behind one NAT; across all addresses, a rate the IdP can take. Null = off.
  readonly loginStarts: RateLimiter | null;
  readonly loginStartsGlobal: RateLimiter | null;
  // Handoff links minted from an existing session (no IdP round trip), per session: 20 at once,
  // then 20 a minute. A person opens a few other parent domains; a script minting links stops.
  readonly handoffMints = new RateLimiter(20, 1 / 3);
  readonly validateRedirect: (target: string, base?: URL) => URL | null;
  /** Signs X-Portcullis-Jwt-Assertion and serves the JWKS; built once per config. */
  readonly assertions: AssertionSigner;
  /** Authorization: Bearer / Portcullis tokens; decide() asks it before the cookie. */
  readonly tokens: TokenAuthenticator;
  /** Configured header names Portcullis sets (claim and token headers), stripped from every client request. */
  readonly extraIdentityHeaders: ReadonlySet<string>;

  /** Metrics and the audit log of the running instance; silent for `check`, `explain`, tests. */
  readonly observer: Observer;
  /** When this config went live in this process (ms): the admin console's health page. */
  readonly builtAt = Date.now();

  constructor(
    readonly cfg: Config,
    readonly idp: Idp,
    readonly log: Logger,
    deps: RuntimeDeps = {},
  ) {
    const store = deps.store;
    this.observer = deps.observer ?? silentObserver(log);
    const { perAddressPerHour, globalPerSecond } = cfg.loginRateLimit;
    this.loginStarts =
      perAddressPerHour > 0 ? new RateLimiter(perAddressPerHour, perAddressPerHour / 3600) : null;
    this.loginStartsGlobal =
      globalPerSecond > 0 ? new RateLimiter(globalPerSecond * 60, globalPerSecond, 1) : null;
    this.routes = new RouteTable(cfg.routes);
    this.sealer = new Sealer(cfg.cookie.secret);
    this.identities = new IdentityProviders(
      cfg.idps.map((settings): IdentityProvider => {
        const own =
          settings.id === cfg.idp.id ? idp : (deps.idps?.get(settings.id) ?? new Idp(settings));
        const provider = createProvider(settings, own, (detail) =>
          log.warn(
            { event: 'userinfo_failed', idp: settings.id, detail },
            'userinfo request failed; using ID token claims only',
          ),
        );
        return { id: settings.id, name: settings.name, settings, idp: own, provider };
      }),
    );
    this.provider = this.identities.default.provider;
    const refreshers = new Map(
      this.identities.all().map((p) => [p.id, new ProviderRefresher(p.provider, p.settings)]),
    );
    this.sessions = new SessionManager(cfg, store ?? createSessionStore(cfg, this.sealer, log), {
      refresher:
        refreshers.size === 1
          ? refreshers.get(cfg.idp.id)!
          : new RefresherByIdp(refreshers, cfg.idp.id),
      log,
    });
    this.assertions = new AssertionSigner(
      cfg.assertion.keys,
      cfg.assertion.claims,
      cfg.idps.length > 1,
    );
    this.tokens = new TokenAuthenticator(cfg, idp, () => this.sessions, this.identities);
    this.extraIdentityHeaders = identityHeaderSet(cfg.extraIdentityHeaders);
    const hosts: string[] = [];
    const domains: string[] = [];
    for (const r of cfg.routes) {
      // A TCP route's host:port is no web page: never a place to send a browser back to.
      if (r.from.scheme === 'tcp') continue;
      if (r.from.wildcard) domains.push(r.from.host);
      else
        hosts.push(
          r.from.port === defaultPort(r.from.scheme)
            ? r.from.host
            : `${r.from.host}:${r.from.port}`,
        );
    }
    if (cfg.authenticateUrl) hosts.push(cfg.authenticateUrl.host.toLowerCase());
    this.validateRedirect = createRedirectValidator({
      allowedHosts: [...hosts, ...cfg.allowedRedirects.allowedHosts],
      allowedDomains: [...domains, ...cfg.allowedRedirects.allowedDomains],
    });
  }

  /**
   * The IdP whose issuer is exactly `iss`, or null: how a bearer token, a callback's `iss` or a
   * back-channel logout token finds the IdP that must verify it.
   */
  providerForIssuer(iss: unknown): IdentityProvider | null {
    return this.identities.forIssuer(iss);
  }

  /** scheme://host[:port] of the request, as the browser sees it. */
  origin(ctx: Pick<RequestContext, 'scheme' | 'host' | 'port'>): string {
    return `${ctx.scheme}://${ctx.host}${ctx.port === defaultPort(ctx.scheme) ? '' : `:${ctx.port}`}`;
  }

  /** Where logins for this host start and end: the authenticate service, or the host itself. */
  authOrigin(ctx: Pick<RequestContext, 'scheme' | 'host' | 'port'>): string {
    return this.cfg.authenticateUrl ? this.cfg.authenticateUrl.origin : this.origin(ctx);
  }

  isAuthHost(ctx: Pick<RequestContext, 'scheme' | 'host' | 'port'>): boolean {
    return !this.cfg.authenticateUrl || this.cfg.authenticateUrl.origin === this.origin(ctx);
  }

  /** Every callback URL the IdP must have registered, character for character. */
  callbackUrls(): string[] {
    if (this.cfg.authenticateUrl)
      return [
        `${this.cfg.authenticateUrl.origin}${this.cfg.callbackPath}${this.cfg.callbackQuery}`,
      ];
    return this.routes
      .hosts()
      .filter((h) => !h.includes('*') && !h.startsWith('tcp://'))
      .map((h) => `${h}${this.cfg.callbackPath}${this.cfg.callbackQuery}`);
  }
}
