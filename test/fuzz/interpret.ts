// What an application could make of the request it received. Frameworks disagree: some route on
// the raw path (a prefix check on `/admin/../x` sees /admin), some decode first, some remove dot
// segments, Tomcat drops `;params`, Windows stacks read `\` as `/`, and a few apply NFKC. The
// property holds only if every one of these readings selects the route Portcullis judged.

export interface PathReading {
  /** Which kind of application reads the path this way. */
  how: string;
  path: string;
}

/** RFC 3986 5.2.4, on the string as given (no decoding); empty segments are kept. */
export function removeDotSegments(p: string): string {
  const out: string[] = [];
  const segs = p.split('/').slice(1);
  segs.forEach((s, i) => {
    const last = i === segs.length - 1;
    if (s === '..') {
      if (out.length) out.pop();
      if (last) out.push('');
    } else if (s === '.') {
      if (last) out.push('');
    } else out.push(s);
  });
  return `/${out.join('/')}`;
}

/** One pass of percent-decoding into UTF-8; invalid escapes and invalid UTF-8 stay as they are. */
export function percentDecode(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    return p.replace(/(?:%[0-9a-fA-F]{2})+/g, (run) => {
      try {
        return decodeURIComponent(run);
      } catch {
        return Buffer.from(run.replace(/%/g, ''), 'hex').toString('latin1');
      }
    });
  }
}

const mergeSlashes = (p: string) => p.replace(/\/{2,}/g, '/');

/** Splits a received request-target into authority (absolute form only), path and query. */
export function splitTarget(target: string): {
  authority: string | null;
  path: string | null;
  query: string;
} {
  let rest = target;
  let authority: string | null = null;
  const abs = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)(.*)$/s.exec(target);
  if (abs) {
    authority = abs[1]!;
    rest = abs[2]! || '/';
  }
  const q = rest.indexOf('?');
  const path = q === -1 ? rest : rest.slice(0, q);
  return {
    authority,
    path: path.startsWith('/') ? path : null,
    query: q === -1 ? '' : rest.slice(q),
  };
}

export function pathReadings(rawPath: string): PathReading[] {
  const noFragment = rawPath.split('#')[0]!;
  const decoded = percentDecode(noFragment);
  const readings: PathReading[] = [
    { how: 'raw path (prefix match on the bytes received)', path: rawPath },
    { how: 'raw path, fragment cut', path: noFragment },
    { how: 'dot segments removed, no decoding', path: removeDotSegments(noFragment) },
    {
      how: 'slashes merged, dot segments removed',
      path: removeDotSegments(mergeSlashes(noFragment)),
    },
    { how: 'percent-decoded, then dot segments removed', path: removeDotSegments(decoded) },
    {
      how: 'percent-decoded, slashes merged, dots removed',
      path: removeDotSegments(mergeSlashes(decoded)),
    },
    {
      how: 'backslash as slash (Windows stacks), decoded, dots removed',
      path: removeDotSegments(mergeSlashes(decoded.replace(/\\/g, '/'))),
    },
    {
      how: 'path parameters (;...) dropped (servlet containers), decoded, dots removed',
      path: removeDotSegments(percentDecode(noFragment.replace(/;[^/]*/g, ''))),
    },
    { how: 'decoded twice, dots removed', path: removeDotSegments(percentDecode(decoded)) },
    {
      how: 'decoded, NFKC, dots removed',
      path: removeDotSegments(mergeSlashes(decoded.normalize('NFKC').replace(/\\/g, '/'))),
    },
  ];
  const seen = new Set<string>();
  return readings.filter((r) => (seen.has(r.path) ? false : (seen.add(r.path), true)));
}

/** Host readings of a Host value or an absolute-form authority: userinfo dropped, case folded, trailing dot gone. */
export function hostReadings(value: string): Array<{ host: string; port: number | null }> {
  const out: Array<{ host: string; port: number | null }> = [];
  let v = value.trim().toLowerCase();
  const at = v.lastIndexOf('@');
  if (at !== -1) v = v.slice(at + 1);
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(v);
  if (!m) return out;
  let host = m[1]!;
  const port = m[2] ? Number(m[2]) : null;
  out.push({ host, port });
  if (host.endsWith('.')) {
    host = host.replace(/\.+$/, '');
    out.push({ host, port });
  }
  return out;
}
