import type { Config } from '../config/types.js';
import { GitHubProvider } from './github.js';
import { OidcProvider } from './oidc-provider.js';
import type { Idp } from './oidc.js';
import type { Provider } from './provider.js';

/** The provider `idp_provider` names: GitHub speaks OAuth 2.0 and its REST API, the rest OIDC. */
export function createProvider(
  settings: Config['idp'],
  idp: Idp,
  log: (detail: string) => void,
): Provider {
  if (settings.provider === 'github') return new GitHubProvider(settings, idp.fetch);
  // Google issues a refresh token only for access_type=offline, and only at a consent
  // (developers.google.com/identity/protocols/oauth2/web-server#offline).
  const extra: Record<string, string> =
    settings.provider === 'google' ? { access_type: 'offline', prompt: 'consent' } : {};
  return new OidcProvider(idp, settings.scopes, log, extra);
}
