import type { Config } from '../config/types.js';
import { fitsTemplate } from './entra-tenant.js';
import type { Idp } from './oidc.js';
import type { Provider } from './provider.js';

// Several IdPs in one deployment (`idps:`): each has its own client, discovery, keys and
// provider. A login names its IdP in the sealed login state, a session keeps its id, a token
// is matched by its issuer: nothing is ever tried against another IdP's keys or endpoints.

export interface IdentityProvider {
  /** `idps[].id`, or `default` for the top-level idp_* keys. */
  id: string;
  /** Shown on the sign-in chooser. */
  name: string;
  settings: Config['idp'];
  idp: Idp;
  provider: Provider;
}

export class IdentityProviders {
  private readonly byId = new Map<string, IdentityProvider>();
  /** The one the top-level keys describe, else the first of `idps`. */
  readonly default: IdentityProvider;

  constructor(list: readonly IdentityProvider[]) {
    if (!list.length) throw new Error('at least one identity provider is needed');
    for (const p of list) this.byId.set(p.id, p);
    this.default = list[0]!;
  }

  get(id: string): IdentityProvider | undefined {
    return this.byId.get(id);
  }

  /** In configuration order, the default first. */
  all(): IdentityProvider[] {
    return [...this.byId.values()];
  }

  /**
   * The IdP whose issuer is exactly `iss` (the discovered issuer once discovery has answered,
   * the configured one before), else the Entra IdP whose multi-tenant template `iss` fits, or
   * null: a token, a logout token or a callback's `iss` names its IdP this way and only this
   * way. A template match only chooses the keys; the token's `tid` is checked once it is
   * verified (Idp.issuerRefusal).
   */
  forIssuer(iss: unknown): IdentityProvider | null {
    if (typeof iss !== 'string' || !iss) return null;
    for (const p of this.byId.values()) if (issuerOf(p) === iss) return p;
    for (const p of this.byId.values())
      if (p.settings.provider === 'azure' && fitsTemplate(issuerOf(p), iss)) return p;
    return null;
  }
}

/** The issuer tokens from this IdP carry. */
export function issuerOf(p: IdentityProvider): string {
  if (p.idp.status.ready && p.settings.provider !== 'github') {
    try {
      return p.idp.get().serverMetadata().issuer;
    } catch {
      // not discovered after all: the configured issuer below
    }
  }
  // URL.href adds a slash to a bare origin ("https://idp.example.com/"); issuers rarely have it.
  const href = p.settings.issuer.href;
  return p.settings.issuer.pathname === '/' && href.endsWith('/') ? href.slice(0, -1) : href;
}
