import { parseHostHeader } from '../decide/context.js';
import type { RawRoute } from './schema.js';
import type { HostRewrite, PathMatch, RedirectAction, RegexRewrite } from './types.js';

// Pomerium's rewrite, redirect and direct-response route keys, checked and compiled once at
// load so a request only applies them. Pomerium hands these to Envoy, whose RE2 substitutions
// write capture groups as \1 (Pomerium's example: regex_rewrite_substitution "\\2/instance/\\1").

type At = (path: readonly PropertyKey[], msg: string) => void;

/**
 * A pattern + substitution pair, or null after reporting why not. Envoy replaces every match
 * in the path (RE2 GlobalReplace) and refuses a substitution naming a group the pattern lacks.
 */
export function compileRegexRewrite(
  pattern: string,
  substitution: string,
  at: At,
  patternKey: readonly PropertyKey[],
  substitutionKey: readonly PropertyKey[],
): RegexRewrite | null {
  let re: RegExp;
  try {
    re = new RegExp(pattern, 'gu');
  } catch (e) {
    at(patternKey, `invalid regular expression: ${(e as Error).message}`);
    return null;
  }
  const groups = new RegExp(`${pattern}|`, 'u').exec('')!.length - 1;
  const parts: Array<string | number> = [];
  let literal = '';
  for (let i = 0; i < substitution.length; i++) {
    const ch = substitution[i]!;
    if (ch !== '\\') {
      literal += ch;
      continue;
    }
    const next = substitution[i + 1];
    if (next === '\\') {
      literal += '\\';
    } else if (next !== undefined && next >= '0' && next <= '9') {
      const n = Number(next);
      if (n > groups) {
        at(
          substitutionKey,
          `\\${n} names capture group ${n}, but the pattern has ${groups} group${groups === 1 ? '' : 's'}`,
        );
        return null;
      }
      if (literal) parts.push(literal);
      literal = '';
      parts.push(n);
    } else {
      at(
        substitutionKey,
        'expected \\1 … \\9 for capture groups and \\\\ for a backslash; a lone \\ is ambiguous',
      );
      return null;
    }
    i++;
  }
  if (literal) parts.push(literal);
  return { re, parts };
}

function validHost(value: string): boolean {
  return parseHostHeader(value, 'http') !== null && !value.includes(' ');
}

/** redirect: the route's answer instead of an upstream. */
export function compileRedirect(
  raw: NonNullable<RawRoute['redirect']>,
  match: PathMatch,
  at: At,
  base: readonly PropertyKey[],
): RedirectAction | null {
  const key = [...base, 'redirect'];
  let ok = true;
  const fail = (sub: string, msg: string): void => {
    at([...key, sub], msg);
    ok = false;
  };
  // Envoy's RedirectAction holds the scheme and the path each as a one-of.
  if (raw.https_redirect === true && raw.scheme_redirect !== undefined)
    fail('scheme_redirect', 'set either https_redirect or scheme_redirect, not both');
  if (raw.path_redirect !== undefined && raw.prefix_rewrite !== undefined)
    fail('prefix_rewrite', 'set either path_redirect or prefix_rewrite, not both');
  if (
    raw.host_redirect !== undefined &&
    (!validHost(raw.host_redirect) || /:/.test(raw.host_redirect))
  )
    fail('host_redirect', 'expected a host name like example.com (the port goes in port_redirect)');
  for (const sub of ['path_redirect', 'prefix_rewrite'] as const) {
    const v = raw[sub];
    if (v !== undefined && !/^\/[\x21-\x7e]*$/.test(v))
      fail(sub, 'expected a path starting with / with no spaces or control characters');
  }
  if (raw.prefix_rewrite !== undefined && match.kind === 'regex')
    fail(
      'prefix_rewrite',
      'prefix_rewrite swaps a matched prefix: use it with prefix or path, not regex',
    );
  if (!ok) return null;
  return {
    scheme: raw.https_redirect === true ? 'https' : (raw.scheme_redirect ?? null),
    host: raw.host_redirect?.toLowerCase() ?? null,
    port: raw.port_redirect ?? null,
    path: raw.path_redirect ?? null,
    prefixRewrite: raw.prefix_rewrite ?? null,
    status: raw.response_code ?? 301,
    stripQuery: raw.strip_query === true,
  };
}

/** host_rewrite, host_rewrite_header, host_path_regex_rewrite_*: at most one, with preserve_host_header. */
export function compileHostRewrite(
  r: RawRoute,
  at: At,
  base: readonly PropertyKey[],
): HostRewrite | null {
  const set = (
    [
      'preserve_host_header',
      'host_rewrite',
      'host_rewrite_header',
      'host_path_regex_rewrite_pattern',
    ] as const
  ).filter((k) => r[k] !== undefined && r[k] !== false);
  if (set.length > 1) {
    at([...base, set[1]!], `use only one of ${set.join(' and ')}: each sets the upstream's Host`);
    return null;
  }
  if (
    (r.host_path_regex_rewrite_pattern === undefined) !==
    (r.host_path_regex_rewrite_substitution === undefined)
  ) {
    at(
      [
        ...base,
        r.host_path_regex_rewrite_pattern === undefined
          ? 'host_path_regex_rewrite_substitution'
          : 'host_path_regex_rewrite_pattern',
      ],
      'set host_path_regex_rewrite_pattern and host_path_regex_rewrite_substitution together',
    );
    return null;
  }
  if (r.host_rewrite !== undefined) {
    if (!validHost(r.host_rewrite)) {
      at(
        [...base, 'host_rewrite'],
        'expected a host name, optionally with a port, like app.internal:8080',
      );
      return null;
    }
    return { kind: 'literal', value: r.host_rewrite.toLowerCase() };
  }
  if (r.host_rewrite_header !== undefined)
    return { kind: 'header', name: r.host_rewrite_header.toLowerCase() };
  if (r.host_path_regex_rewrite_pattern !== undefined) {
    const rewrite = compileRegexRewrite(
      r.host_path_regex_rewrite_pattern,
      r.host_path_regex_rewrite_substitution!,
      at,
      [...base, 'host_path_regex_rewrite_pattern'],
      [...base, 'host_path_regex_rewrite_substitution'],
    );
    return rewrite && { kind: 'path_regex', rewrite };
  }
  return null;
}

/** prefix_rewrite and regex_rewrite_* on a proxied route. */
export function compilePathRewrite(
  r: RawRoute,
  match: PathMatch,
  at: At,
  base: readonly PropertyKey[],
): { prefixRewrite: string | null; regexRewrite: RegexRewrite | null } {
  const none = { prefixRewrite: null, regexRewrite: null };
  if ((r.regex_rewrite_pattern === undefined) !== (r.regex_rewrite_substitution === undefined)) {
    at(
      [
        ...base,
        r.regex_rewrite_pattern === undefined
          ? 'regex_rewrite_substitution'
          : 'regex_rewrite_pattern',
      ],
      'set regex_rewrite_pattern and regex_rewrite_substitution together',
    );
    return none;
  }
  if (r.prefix_rewrite !== undefined && r.regex_rewrite_pattern !== undefined) {
    at(
      [...base, 'regex_rewrite_pattern'],
      'use either prefix_rewrite or regex_rewrite_pattern, not both',
    );
    return none;
  }
  if (r.prefix_rewrite !== undefined) {
    if (match.kind === 'regex') {
      at(
        [...base, 'prefix_rewrite'],
        'prefix_rewrite swaps a matched prefix: use it with prefix or path, or use regex_rewrite_pattern with regex',
      );
      return none;
    }
    if (!/^\/[\x21-\x7e]*$/.test(r.prefix_rewrite) || r.prefix_rewrite.includes('?')) {
      at(
        [...base, 'prefix_rewrite'],
        'expected a path starting with / with no query, spaces or control characters',
      );
      return none;
    }
    return { prefixRewrite: r.prefix_rewrite, regexRewrite: null };
  }
  if (r.regex_rewrite_pattern !== undefined) {
    const regexRewrite = compileRegexRewrite(
      r.regex_rewrite_pattern,
      r.regex_rewrite_substitution!,
      at,
      [...base, 'regex_rewrite_pattern'],
      [...base, 'regex_rewrite_substitution'],
    );
    return { prefixRewrite: null, regexRewrite };
  }
  return none;
}
