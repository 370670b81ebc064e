import type { Runtime } from '../runtime.js';

/** How long a login may take, from the first redirect to the IdP's answer. */
export const LOGIN_TTL_MS = 10 * 60_000;

/**
 * A return address sealed by Portcullis itself (`?return=`): only we can make one, so it is
 * trusted without checking it against the configured hosts again.
 */
export interface ReturnState {
  url: string;
  exp: number;
  /**
   * Hash of the handoff nonce the browser was given on the return host (see handoff.ts). Only
   * a return address made there carries it, and only with it is a handoff minted.
   */
  nh?: string | undefined;
  /**
   * A depends_on stop (flow.ts dependsOnChain): the sign_in carrying it is on a host the login
   * must also reach; once that host has a session it sends the browser on to `url`.
   */
  dep?: true | undefined;
}

export function sealReturn(
  rt: Pick<Runtime, 'sealer'>,
  now: number,
  url: string,
  nh?: string,
  dep?: boolean,
): string {
  const r: ReturnState = nh
    ? { url, exp: now + LOGIN_TTL_MS, nh }
    : { url, exp: now + LOGIN_TTL_MS };
  if (dep) r.dep = true;
  return rt.sealer.sealJson('return', r);
}

export function openReturn(
  rt: Pick<Runtime, 'sealer'>,
  sealed: string,
  now: number,
): ReturnState | null {
  const r = rt.sealer.openJson<ReturnState>('return', sealed, '', now);
  if (!r || typeof r.url !== 'string') return null;
  const out: ReturnState = { url: r.url, exp: r.exp };
  if (typeof r.nh === 'string') out.nh = r.nh;
  if (r.dep === true) out.dep = true;
  return out;
}
