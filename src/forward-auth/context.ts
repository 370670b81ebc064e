import type { IncomingMessage } from 'node:http';
import { isBrowser, parseHostHeader } from '../decide/context.js';
import type { RequestContext } from '../decide/types.js';
import { normalizeIp } from '../security/cidr.js';
import { normalizeRequestTarget } from '../security/path.js';

// A forward-auth request is not the request to judge: the proxy describes the ORIGINAL request
// in headers (or, for Envoy, in the path after the endpoint prefix). Those headers are believed
// only from a trusted proxy; from anyone else the request is judged exactly as it arrived, so
// calling the endpoint directly with a forged X-Forwarded-Host or X-Original-URL gets the caller
// nothing it could not get by asking for that URL itself.
//
// Every proxy copies the client's own headers onto the auth request and overwrites only the ones
// it sets, so a header the proxy did not set is the client's. That is why each contract reads
// its own headers only (Traefik and Caddy always set X-Forwarded-*, so an X-Original-URL there
// is the client's), and why, where two descriptions of the same request are present, they must
// agree: a disagreement means one of them was written by the client.

/**
 * Where the original request is described:
 * - `original-url`: nginx auth_request / ingress-nginx: X-Original-URL, else X-Forwarded-Proto + -Host + -Uri
 * - `forwarded`: Traefik forwardAuth / Caddy forward_auth: X-Forwarded-Proto + -Host + -Uri only
 * - `path`: Envoy ext_authz: the request-target after the endpoint prefix, on the request's own Host
 */
export type OriginSource = 'original-url' | 'forwarded' | 'path';

export type OriginalRequest =
  | {
      ok: true;
      ctx: RequestContext;
      pathError: string | undefined;
      /** The path as the proxy will forward it, when it differs in its segments from ctx.path. */
      asSent: string | undefined;
      trusted: boolean;
    }
  // misconfigured: the proxy left out what every request must carry (the operator's to fix).
  | { ok: false; status: 400; reason: string; misconfigured?: true };

const METHOD_RE = /^[A-Za-z]{1,32}$/;
const ORIGINAL_URL_RE = /^(https?):\/\/([^/?#\\\s]+)(.*)$/i;

/**
 * The trimmed value of a header sent once: `undefined` when absent, '' when sent empty (a proxy
 * variable that expanded to nothing), `null` when sent more than once (which would it mean?).
 */
function single(req: IncomingMessage, name: string): string | undefined | null {
  let value: string | undefined;
  let count = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.length === name.length && raw[i]!.toLowerCase() === name) {
      count++;
      value = raw[i + 1]!;
    }
  }
  if (count > 1) return null;
  return value?.trim();
}

type Target =
  | {
      ok: true;
      path: string;
      query: string;
      pathError: string | undefined;
      asSent: string | undefined;
    }
  | { ok: false; reason: string };

/**
 * The reverse proxy forwards the path it normalized, so it may judge that form. A forward-auth
 * proxy forwards the target exactly as the client sent it: `/admin/../x` judged as `/x` would
 * reach an application that routes on the raw path as `/admin/...`, and `/%70ublic` judged as
 * the public `/public` would reach its private catch-all. So a target that normalization would
 * change for such an application (dot segments, `//`, escaped letters, digits and `-._~`) is an
 * ambiguous path here: refused unless the route allows ambiguous paths, and then only where
 * both spellings select that same route (decide(), step 2).
 */
export const RESTRUCTURED_PATH =
  'dot segment, empty segment (//) or escaped letter or digit in path: the proxy forwards the path unnormalized';

function normalizeTarget(target: string): Target {
  // Exactly what contextFromRequest does for the reverse proxy: the strict form decides; when it
  // refuses, the lenient form still finds the route, whose allow_ambiguous_paths then decides.
  const strict = normalizeRequestTarget(target);
  if (strict.ok) {
    const pathError = strict.asSent === undefined ? undefined : RESTRUCTURED_PATH;
    return { ok: true, path: strict.path, query: strict.query, pathError, asSent: strict.asSent };
  }
  const lenient = normalizeRequestTarget(target, { allowAmbiguous: true });
  if (!lenient.ok) return { ok: false, reason: `original request: ${strict.reason}` };
  return {
    ok: true,
    path: lenient.path,
    query: lenient.query,
    pathError: strict.reason,
    asSent: lenient.asSent,
  };
}

/** A request-target from X-Forwarded-Uri or the rest of X-Original-URL: origin-form, `?q` alone means `/?q`. */
function asTarget(rest: string): string {
  if (rest === '') return '/';
  if (rest.startsWith('?')) return `/${rest}`;
  return rest;
}

/**
 * The RequestContext of the original request.
 * @param arrival the context of the auth request itself (contextFromRequest), with its pathError
 * @param envoyTarget for `path`: the raw request-target after the endpoint prefix
 */
export function originalContext(
  req: IncomingMessage,
  arrival: { ctx: RequestContext; pathError: string | undefined },
  source: OriginSource,
  isTrusted: (ip: string) => boolean,
  envoyTarget?: string,
): OriginalRequest {
  const peer = normalizeIp(req.socket.remoteAddress ?? '');
  const trusted = isTrusted(peer);
  const base = arrival.ctx;

  if (source === 'path') {
    // The path is the request-target and the host is the Host header: both are what a client
    // calling us directly could ask for anyway, so they are read whoever the peer is. The scheme
    // and client address came through contextFromRequest's trusted-proxy rules already.
    const normalized = normalizeTarget(asTarget(envoyTarget ?? ''));
    if (!normalized.ok) return { ok: false, status: 400, reason: normalized.reason };
    return {
      ok: true,
      trusted,
      pathError: normalized.pathError,
      asSent: normalized.asSent,
      ctx: {
        ...base,
        path: normalized.path,
        query: normalized.query,
        browser: isBrowser(req.headers),
      },
    };
  }

  // Nobody forwards what an untrusted caller asks about: it is judged as it arrived.
  if (!trusted)
    return { ok: true, trusted, pathError: arrival.pathError, asSent: undefined, ctx: base };

  const dup = (n: string) => ({
    ok: false as const,
    status: 400 as const,
    reason: `more than one ${n} header`,
  });
  const xou = source === 'original-url' ? single(req, 'x-original-url') : undefined;
  const xfp = single(req, 'x-forwarded-proto');
  const xfh = single(req, 'x-forwarded-host');
  const xfu = single(req, 'x-forwarded-uri');
  const xom = source === 'original-url' ? single(req, 'x-original-method') : undefined;
  const xfm = single(req, 'x-forwarded-method');
  if (xou === null) return dup('X-Original-URL');
  if (xfp === null) return dup('X-Forwarded-Proto');
  if (xfh === null) return dup('X-Forwarded-Host');
  if (xfu === null) return dup('X-Forwarded-Uri');
  if (xom === null) return dup('X-Original-Method');
  if (xfm === null) return dup('X-Forwarded-Method');
  // Empty is not absent: it says the proxy meant to describe the request and its variable was
  // empty, which the operator must hear as such, not as "add this header".
  const empty = (
    [
      ['X-Original-URL', xou],
      ['X-Forwarded-Proto', xfp],
      ['X-Forwarded-Host', xfh],
      ['X-Forwarded-Uri', xfu],
      ['X-Original-Method', xom],
      ['X-Forwarded-Method', xfm],
    ] as const
  ).find(([, v]) => v === '');
  if (empty) return { ok: false, status: 400, reason: `the ${empty[0]} header is empty` };

  let scheme: 'http' | 'https';
  let hostValue: string;
  let target: string;
  if (xou !== undefined) {
    const m = ORIGINAL_URL_RE.exec(xou);
    if (!m)
      return { ok: false, status: 400, reason: 'X-Original-URL is not an absolute http(s) URL' };
    scheme = m[1]!.toLowerCase() as 'http' | 'https';
    hostValue = m[2]!;
    target = asTarget(m[3]!);
    // Two descriptions of one request must agree: the one the proxy did not set is the client's.
    if (xfu !== undefined && xfu !== target)
      return {
        ok: false,
        status: 400,
        reason: 'X-Original-URL and X-Forwarded-Uri name different requests',
      };
    if (xfh !== undefined) {
      const fromUrl = parseHostHeader(hostValue, scheme);
      const fromHeader = parseHostHeader(xfh, scheme);
      if (!fromUrl || !fromHeader || fromUrl.host !== fromHeader.host)
        return {
          ok: false,
          status: 400,
          reason: 'X-Original-URL and X-Forwarded-Host name different hosts',
        };
    }
  } else if (xfh !== undefined && xfu !== undefined) {
    if (xfp !== undefined && xfp !== 'http' && xfp !== 'https')
      return { ok: false, status: 400, reason: 'X-Forwarded-Proto is neither http nor https' };
    scheme = (xfp as 'http' | 'https' | undefined) ?? base.scheme;
    hostValue = xfh;
    target = asTarget(xfu);
  } else {
    // A trusted proxy that does not say which request it asks about is misconfigured. Judging the
    // auth request itself would apply the policy of the wrong path: refuse, and say what is missing.
    // A 4xx all the same (issue 17): a 500 reads as Portcullis failing, and a client that can
    // strip a header at some hop could otherwise turn its request into our 5xx.
    const only =
      xfh !== undefined
        ? ' (X-Forwarded-Uri is missing)'
        : xfu !== undefined
          ? ' (X-Forwarded-Host is missing)'
          : '';
    return {
      ok: false,
      status: 400,
      misconfigured: true,
      reason:
        source === 'original-url'
          ? `the proxy sent neither X-Original-URL nor X-Forwarded-Host and X-Forwarded-Uri${only} (nginx: proxy_set_header X-Original-URL $scheme://$http_host$request_uri;)`
          : `the proxy sent no X-Forwarded-Host and X-Forwarded-Uri${only}`,
    };
  }

  const hp = parseHostHeader(hostValue, scheme);
  if (!hp) return { ok: false, status: 400, reason: 'malformed host in the original request' };
  if (!target.startsWith('/'))
    return {
      ok: false,
      status: 400,
      reason: 'the original request-target is not an absolute path',
    };
  const normalized = normalizeTarget(target);
  if (!normalized.ok) return { ok: false, status: 400, reason: normalized.reason };

  if (xom !== undefined && xfm !== undefined && xom.toUpperCase() !== xfm.toUpperCase()) {
    return { ok: false, status: 400, reason: 'X-Original-Method and X-Forwarded-Method differ' };
  }
  const method = xom ?? xfm;
  if (method !== undefined && !METHOD_RE.test(method))
    return { ok: false, status: 400, reason: 'malformed original method' };

  return {
    ok: true,
    trusted,
    pathError: normalized.pathError,
    asSent: normalized.asSent,
    ctx: {
      ...base,
      // nginx's subrequest is always a GET: without X-Original-Method, GET is also the honest guess.
      method: method ? method.toUpperCase() : base.method,
      scheme,
      host: hp.host,
      port: hp.port,
      path: normalized.path,
      query: normalized.query,
      // The proxies pass the client's own headers (Cookie, Accept, Authorization) to the auth request.
      headers: req.headers,
      browser: isBrowser(req.headers),
    },
  };
}
