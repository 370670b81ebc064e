import type { IncomingMessage } from 'node:http';
import { isBrowser, parseHostHeader } from '../decide/context.js';
import type { RouteTable } from '../decide/route-table.js';
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
 * What a trusted proxy left out, as the operator must hear it: the header to add, for their proxy.
 * A 4xx all the same (issue 17): a 500 reads as Portcullis failing, and a client that can strip
 * a header at some hop could otherwise turn its request into our 5xx.
 */
function missing(
  source: OriginSource,
  hasPath: boolean,
  hasForwardedHost: boolean,
): OriginalRequest {
  let reason: string;
  if (source !== 'original-url') {
    const only = hasForwardedHost
      ? ' (X-Forwarded-Uri is missing)'
      : hasPath
        ? ' (X-Forwarded-Host is missing)'
        : '';
    reason = `the proxy sent no X-Forwarded-Host and X-Forwarded-Uri${only}`;
  } else if (!hasPath)
    reason =
      'the proxy sent neither X-Original-URL nor X-Forwarded-Uri' +
      (hasForwardedHost ? ' (X-Forwarded-Uri is missing)' : '') +
      ", and the host's routes have different policies (or it has none), so the path decides" +
      ' (nginx: proxy_set_header X-Forwarded-Uri $request_uri; in the auth location)';
  else
    reason =
      'the proxy sent the path but no host of the original request (X-Forwarded-Host is missing)' +
      ' (nginx: proxy_set_header X-Original-URL $scheme://$http_host$request_uri;)';
  return { ok: false, status: 400, misconfigured: true, reason };
}

/**
 * The RequestContext of the original request.
 * @param arrival the context of the auth request itself (contextFromRequest), with its pathError
 * @param envoyTarget for `path`: the raw request-target after the endpoint prefix
 * @param routes to judge a host alone, and to tell a `Host $host` from the proxy's own address
 */
export function originalContext(
  req: IncomingMessage,
  arrival: { ctx: RequestContext; pathError: string | undefined },
  source: OriginSource,
  isTrusted: (ip: string) => boolean,
  envoyTarget?: string,
  routes?: Pick<RouteTable, 'oneRouteForHost' | 'knowsHost'>,
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
  const nginxStyle = source === 'original-url';
  const xou = nginxStyle ? single(req, 'x-original-url') : undefined;
  const xouri = nginxStyle ? single(req, 'x-original-uri') : undefined;
  const xscheme = nginxStyle ? single(req, 'x-scheme') : undefined;
  const xfp = single(req, 'x-forwarded-proto');
  const xfh = single(req, 'x-forwarded-host');
  const xfu = single(req, 'x-forwarded-uri');
  const xom = nginxStyle ? single(req, 'x-original-method') : undefined;
  const xfm = single(req, 'x-forwarded-method');
  if (xou === null) return dup('X-Original-URL');
  if (xouri === null) return dup('X-Original-URI');
  if (xscheme === null) return dup('X-Scheme');
  if (xfp === null) return dup('X-Forwarded-Proto');
  if (xfh === null) return dup('X-Forwarded-Host');
  if (xfu === null) return dup('X-Forwarded-Uri');
  if (xom === null) return dup('X-Original-Method');
  if (xfm === null) return dup('X-Forwarded-Method');
  const named = [
    ['X-Original-URL', xou],
    ['X-Original-URI', xouri],
    ['X-Scheme', xscheme],
    ['X-Forwarded-Proto', xfp],
    ['X-Forwarded-Host', xfh],
    ['X-Forwarded-Uri', xfu],
    ['X-Original-Method', xom],
    ['X-Forwarded-Method', xfm],
  ] as const;
  // Empty is not absent: it says the proxy meant to describe the request and its variable was
  // empty, which the operator must hear as such, not as "add this header".
  const empty = named.find(([, v]) => v === '');
  if (empty) return { ok: false, status: 400, reason: `the ${empty[0]} header is empty` };

  // Every path the auth request carries. nginx-style snippets set one of them and pass the
  // client's copies of the others, so they must all agree: a client that adds X-Original-URL to
  // a snippet that sets only X-Forwarded-Uri (oauth2-proxy's) cannot move the judged path.
  let target: string | undefined;
  let pathFrom = '';
  for (const [name, value] of [
    ['X-Original-URL', xou === undefined ? undefined : ORIGINAL_URL_RE.exec(xou)?.[3]],
    ['X-Forwarded-Uri', xfu],
    ['X-Original-URI', xouri],
  ] as const) {
    if (value === undefined) continue;
    const t = asTarget(value);
    if (target === undefined) {
      target = t;
      pathFrom = name;
    } else if (t !== target)
      return { ok: false, status: 400, reason: `${pathFrom} and ${name} name different requests` };
  }

  let scheme: 'http' | 'https';
  let hostValue: string;
  if (xou !== undefined) {
    const m = ORIGINAL_URL_RE.exec(xou);
    if (!m)
      return { ok: false, status: 400, reason: 'X-Original-URL is not an absolute http(s) URL' };
    scheme = m[1]!.toLowerCase() as 'http' | 'https';
    hostValue = m[2]!;
    target = asTarget(m[3]!);
    // X-Original-URL alone names the host, and an X-Forwarded-Host beside it is not compared.
    // The nginx recipes (ours, Authentik's, Authelia's, ingress-nginx's) set X-Original-URL, so
    // nginx overwrites any client copy of it; a client's X-Forwarded-Host reaches us untouched
    // wherever the snippet does not set it, and refusing on a mismatch let any client turn its
    // own signed-in request into a 403. Where a snippet does not set X-Original-URL (oauth2-proxy's
    // sets `Host $host` and X-Forwarded-Uri), a client's copy reaches us: the loop above keeps it
    // from moving the path, and here the snippet's Host keeps it from moving the host. The auth
    // request's Host names a route only where a snippet passes `Host $host` (a proxy_pass address
    // is Portcullis's own), and then it is the host nginx served. Names are compared, not ports:
    // $host carries none while X-Original-URL's $http_host may.
    const own = nginxStyle ? parseHostHeader(req.headers.host, scheme) : null;
    if (own && routes?.knowsHost(scheme, own.host, own.port)) {
      const named = parseHostHeader(hostValue, scheme);
      if (!named || named.host !== own.host)
        return { ok: false, status: 400, reason: 'X-Original-URL and Host name different hosts' };
    }
  } else {
    // oauth2-proxy's snippets: X-Scheme (older ones) or X-Forwarded-Proto, and `Host $host`.
    if (xfp !== undefined && xscheme !== undefined && xfp.toLowerCase() !== xscheme.toLowerCase())
      return { ok: false, status: 400, reason: 'X-Forwarded-Proto and X-Scheme differ' };
    const proto = (xfp ?? xscheme)?.toLowerCase();
    if (proto !== undefined && proto !== 'http' && proto !== 'https')
      return {
        ok: false,
        status: 400,
        reason: `${xfp ? 'X-Forwarded-Proto' : 'X-Scheme'} is neither http nor https`,
      };
    scheme = (proto as 'http' | 'https' | undefined) ?? base.scheme;
    // Traefik and Caddy always send X-Forwarded-Host; the auth request's own Host is the
    // original one only in nginx snippets that pass `Host $host` (oauth2-proxy's).
    const own = nginxStyle ? parseHostHeader(req.headers.host, scheme) : null;
    const ownIsRoute = own !== null && routes?.knowsHost(scheme, own.host, own.port) === true;
    let forwardedHost = xfh;
    if (xfh !== undefined && ownIsRoute) {
      // The auth request's Host names a route only where the snippet passes `Host $host`
      // (oauth2-proxy's): a proxy_pass address is Portcullis's own. An X-Forwarded-Host beside
      // it, which that snippet does not set, is the client's. One naming no route is stray and
      // ignored, so it cannot turn a signed-in user's request into a 403. One naming another
      // route is refused rather than ignored: should the proxy_pass address itself be a route
      // host, Host would be the wrong one, and refusing is the answer no client turns into an allow.
      const fromHeader = parseHostHeader(xfh, scheme);
      if (!fromHeader || !routes?.knowsHost(scheme, fromHeader.host, fromHeader.port))
        forwardedHost = undefined;
      else if (fromHeader.host !== own.host || fromHeader.port !== own.port)
        return { ok: false, status: 400, reason: 'X-Forwarded-Host and Host name different hosts' };
    }
    const host = forwardedHost ?? (nginxStyle ? req.headers.host : undefined);
    if (host === undefined) return missing(source, target !== undefined, false);
    if (target === undefined) {
      const hp = parseHostHeader(host, scheme);
      // A snippet that sends no path (oauth2-proxy's before X-Forwarded-Uri) can still be
      // answered where the host alone selects the route: every path there has the same policy.
      if (hp && routes?.oneRouteForHost(scheme, hp.host, hp.port)) target = '/';
      else return missing(source, false, xfh !== undefined);
    }
    hostValue = host;
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
