import type { Identity } from '../decide/types.js';

// Header sets for upstreams written against another proxy, so an application that reads
// Remote-User behind Authelia or X-authentik-username behind Authentik runs unchanged behind
// Portcullis. Every name here is in IDENTITY_HEADER_NAMES (src/security/headers.ts), so a
// client-sent copy is stripped before the proxy adds the real one.

export const IDENTITY_PRESETS = ['portcullis', 'oauth2-proxy', 'authentik', 'authelia'] as const;
export type IdentityPreset = (typeof IDENTITY_PRESETS)[number];

type Build = (id: Identity) => Array<[string, string]>;

const forwarded: Build = (id) => [
  ['x-forwarded-user', id.user],
  ['x-forwarded-email', id.email],
  ['x-forwarded-groups', id.groups.join(',')],
  ['x-forwarded-preferred-username', id.preferredUsername],
];

const PRESETS: Record<IdentityPreset, Build> = {
  portcullis: forwarded,
  // oauth2-proxy sends X-Forwarded-* upstream (--pass-user-headers) and X-Auth-Request-* to an
  // auth_request caller (--set-xauthrequest); applications are written against either.
  'oauth2-proxy': (id) => [
    ...forwarded(id),
    ['x-auth-request-user', id.user],
    ['x-auth-request-email', id.email],
    ['x-auth-request-groups', id.groups.join(',')],
    ['x-auth-request-preferred-username', id.preferredUsername],
  ],
  // The Authentik outpost separates groups with "|" (group names there may contain commas).
  authentik: (id) => [
    ['x-authentik-username', id.preferredUsername || id.user],
    ['x-authentik-groups', id.groups.join('|')],
    ['x-authentik-email', id.email],
    ['x-authentik-name', id.name],
    ['x-authentik-uid', id.sub],
  ],
  authelia: (id) => [
    ['remote-user', id.user],
    ['remote-groups', id.groups.join(',')],
    ['remote-email', id.email],
    ['remote-name', id.name],
  ],
};

/** The headers of the given presets, de-duplicated by name (first preset wins). */
export function presetHeaders(
  presets: readonly IdentityPreset[],
  identity: Identity,
): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const seen = new Set<string>();
  for (const p of presets) {
    for (const [k, v] of PRESETS[p](identity)) {
      if (seen.has(k)) continue;
      seen.add(k);
      out.push([k, v]);
    }
  }
  return out;
}

/**
 * A header-safe value. Node and undici refuse characters above U+00FF, so a name like "山田"
 * would otherwise fail the whole request; UTF-8 bytes are what Go, Python and nginx upstreams
 * read anyway. CR, LF and NUL cannot be made safe: such a value is dropped (null).
 */
export function headerValue(v: string): string | null {
  if (/[\r\n\0]/.test(v)) return null;

  return /^[\t\x20-\x7e]*$/.test(v) ? v : Buffer.from(v, 'utf8').toString('latin1');
}

/** A claim as a header value: lists comma-joined, objects as JSON. */
export function claimHeaderValue(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return headerValue(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (
    Array.isArray(v) &&
    v.every((x) => typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean')
  )
    return headerValue(v.join(','));
  return headerValue(JSON.stringify(v));
}
