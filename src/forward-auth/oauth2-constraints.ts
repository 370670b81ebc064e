import type { Identity } from '../decide/types.js';

// oauth2-proxy's per-location restrictions (`/oauth2/auth?allowed_groups=admins`) keep
// restricting after a migration: an operator who switches must not find a location opened up.

/** oauth2-proxy /oauth2/auth query restrictions: each one given must hold (any value of its list). Null when met. */
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
  const groups = list('allowed_groups');
  const emails = list('allowed_emails');
  const domains = list('allowed_email_domains');
  const users = list('allowed_users');
  if (!groups && !emails && !domains && !users) return null;
  if (!id) return 'this location requires a signed-in user';
  const email = id.email.toLowerCase();
  if (groups && !groups.some((g) => id.groups.includes(g)))
    return `needs one of the groups ${groups.join(', ')}`;
  if (emails && !emails.some((e) => e.toLowerCase() === email)) return 'email not allowed here';
  if (domains && !domains.some((d) => email.endsWith(`@${d.toLowerCase().replace(/^@/, '')}`)))
    return 'email domain not allowed here';
  if (users && !users.includes(id.user) && !users.includes(id.preferredUsername))
    return 'user not allowed here';
  return null;
}
