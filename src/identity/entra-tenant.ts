// Microsoft Entra's shared authorities (/common/v2.0, /organizations/v2.0) publish one issuer for
// every tenant, a template: https://login.microsoftonline.com/{tenantid}/v2.0. A token's real
// `iss` has its tenant in place of the placeholder, and that tenant must be the token's `tid`
// (learn.microsoft.com/en-us/entra/identity-platform/access-tokens#validate-the-issuer). Every
// check of such an issuer is made here, so sign-ins, refreshes and bearer tokens refuse the same
// forgeries with the same words.

export const TENANT_PLACEHOLDER = '{tenantid}';

/** Entra tenant ids are GUIDs; anything else (a domain, a path, the placeholder) is not one. */
export const TENANT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether a discovered issuer is the multi-tenant template rather than one issuer. */
export function isTenantTemplate(issuer: string): boolean {
  return issuer.includes(TENANT_PLACEHOLDER);
}

/**
 * Whether `iss` has the shape of an issuer of this template (a tenant id in the placeholder's
 * place), whatever tenant the token says it is from: enough to choose the IdP whose keys verify
 * the token, never enough to believe it (checkTenantIssuer is that).
 */
export function fitsTemplate(template: string, iss: string): boolean {
  const at = template.indexOf(TENANT_PLACEHOLDER);
  if (at < 0) return false;
  const head = template.slice(0, at);
  const tail = template.slice(at + TENANT_PLACEHOLDER.length);
  if (!iss.startsWith(head) || !iss.endsWith(tail)) return false;
  return TENANT_ID.test(iss.slice(head.length, iss.length - tail.length));
}

/** Attacker-chosen claim text, safe for a page, a log line or a WWW-Authenticate header. */
function safe(v: unknown): string {
  return String(v)
    .replace(/[^\x20-\x7e]|["\\]/g, '?')
    .slice(0, 80);
}

/**
 * Why a token's `iss` and `tid` do not make it a token of this template's IdP, or null when
 * they do: `tid` is a tenant id and `iss` is the template with exactly that tenant in it.
 * The token's signature is someone else's job; this only says whose token it claims to be.
 */
export function tenantIssuerRefusal(
  template: string,
  claims: { iss?: unknown; tid?: unknown },
): string | null {
  const { iss, tid } = claims;
  if (typeof iss !== 'string' || !iss) return 'the token names no issuer (iss)';
  if (tid === undefined)
    return 'the token names no tenant (tid), which a multi-tenant issuer needs';
  if (typeof tid !== 'string' || !TENANT_ID.test(tid))
    return `the token's tenant (tid) ${typeof tid === 'string' ? safe(tid) : `(a ${typeof tid})`} is not a tenant id`;
  if (iss === template.replace(TENANT_PLACEHOLDER, tid)) return null;
  if (fitsTemplate(template, iss))
    return `the token was issued by ${safe(iss)} but names the tenant ${tid} (tid): the two must be the same tenant`;
  return `the token was issued by ${safe(iss)}, not by the configured identity provider (expected ${safe(template.replace(TENANT_PLACEHOLDER, tid))})`;
}

/**
 * Why this tenant may not use the IdP (idp_allowed_tenants), or null. Tenant ids are compared
 * in lower case, as the configuration keeps them.
 */
export function tenantNotAllowed(allowed: readonly string[], tid: unknown): string | null {
  if (!allowed.length || allowed.includes('*')) return null;
  const t = typeof tid === 'string' ? tid.toLowerCase() : '';
  if (allowed.includes(t)) return null;
  return `the token's tenant ${t ? safe(t) : '(none)'} is not in idp_allowed_tenants`;
}
