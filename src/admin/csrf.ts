import { createHmac, timingSafeEqual } from 'node:crypto';

// Every admin action (a POST) carries a token bound to the admin's session: an HMAC of the
// session id under cookie_secret. A page from another site cannot read it, a stolen token
// dies with the session, and nothing has to be stored to check it.

export function csrfToken(secret: Buffer, sid: string): string {
  return createHmac('sha256', secret).update(`portcullis/admin-csrf/v1|${sid}`).digest('base64url');
}

export function csrfValid(secret: Buffer, sid: string, presented: string | null): boolean {
  if (presented === null) return false;
  const want = Buffer.from(csrfToken(secret, sid));
  const got = Buffer.from(presented);
  // timingSafeEqual needs equal lengths; the length of a valid token is no secret.
  return got.length === want.length && timingSafeEqual(got, want);
}
