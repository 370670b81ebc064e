import type { Identity } from '../decide/types.js';

// oauth2-proxy's per-location restrictions (`/oauth2/auth?allowed_groups=admins`) keep
// restricting after a migration: an operator who switches must not find a location opened up.
// They only ever narrow: the route's policy has already allowed the request when they are read.
//
// oauth2-proxy docs, features/endpoints "Auth" (v7.13.x): allowed_groups, allowed_email_domains,
// allowed_emails, allowed_users (comma-separated); require_all_matches (default true: every
// restriction given must hold; false: one is enough); constraints_required (default false:
// true denies when the URL gives no restriction at all).

// The false spellings of Go's strconv.ParseBool, which oauth2-proxy reads these with.
const FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** oauth2-proxy /oauth2/auth query restrictions; null when met, else why not. */
export function oauth2Constraints(query: string, id: Identity | null): string | null {
  const q = new URLSearchParams(query.startsWith('?') ? query.slice(1) : query);
  const list = (k: string): string[] | null => {
    const all = q
      .getAll(k)
      .flatMap((v) => v.split(','))
      .map((v) => v.trim())
      .filter(Boolean);
    return all.length ? all : null;
  };
  // Read fail-closed: anything but a clear "false" keeps the stricter meaning, so a typo can
  // only narrow. require_all_matches is stricter when true, constraints_required when true.
  const falseOrAbsent = (k: string): boolean => q.getAll(k).every((v) => FALSE.has(v));
  const allRequired = !falseOrAbsent('require_all_matches') || !q.has('require_all_matches');
  const required = !falseOrAbsent('constraints_required');
  const groups = list('allowed_groups');
  const emails = list('allowed_emails');
  const domains = list('allowed_email_domains');
  const users = list('allowed_users');
  if (!groups && !emails && !domains && !users)
    return required ? 'this location requires restrictions in its auth URL and gives none' : null;
  if (!id) return 'this location requires a signed-in user';
  const email = id.email.toLowerCase();
  const unmet: string[] = [];
  if (groups && !groups.some((g) => id.groups.includes(g)))
    unmet.push(`needs one of the groups ${groups.join(', ')}`);
  if (emails && !emails.some((e) => e.toLowerCase() === email))
    unmet.push('email not allowed here');
  if (domains && !domains.some((d) => email.endsWith(`@${d.toLowerCase().replace(/^@/, '')}`)))
    unmet.push('email domain not allowed here');
  if (users && !users.includes(id.user) && !users.includes(id.preferredUsername))
    unmet.push('user not allowed here');
  const given = [groups, emails, domains, users].filter(Boolean).length;
  if (allRequired) return unmet.length ? unmet.join('; ') : null;
  return unmet.length === given ? unmet.join('; ') : null;
}
