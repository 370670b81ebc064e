import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { isSecretName } from './cfg-parser.js';
import { parseGoDuration } from './go-duration.js';

// The shape of oauth2-proxy's alpha configuration file and its reader. oauth2-proxy reads the
// file with yaml.UnmarshalStrict and DisallowUnknownFields (pkg/apis/options/load.go), through
// encoding/json, whose field names match without regard to case; an unknown key stops it, and
// so it stops the import here, naming the line. Field names and types:
// pkg/apis/options/{alpha_options,providers,upstreams,header,secret_source,server}.go and the
// "Alpha Configuration" page.

export class AlphaSyntaxError extends Error {}

type Kind =
  | 'string'
  | 'bool'
  | 'int'
  | 'duration'
  | 'strings'
  | 'any'
  | { fields: Record<string, Kind> }
  | { list: Kind };

const SECRET: Kind = { fields: { value: 'string', fromEnv: 'string', fromFile: 'string' } };
const CLAIM: Kind = { fields: { claim: 'string', prefix: 'string', basicAuthPassword: SECRET } };
const HEADER: Kind = {
  fields: {
    name: 'string',
    preserveRequestValue: 'bool',
    values: {
      list: {
        fields: {
          // Squashed (up to v7.13) and nested (v7.14 on) forms of the same sources.
          value: 'string',
          fromEnv: 'string',
          fromFile: 'string',
          claim: 'string',
          prefix: 'string',
          basicAuthPassword: SECRET,
          claimSource: CLAIM,
          secretSource: SECRET,
        },
      },
    },
  },
};
const SERVER: Kind = {
  fields: {
    BindAddress: 'string',
    SecureBindAddress: 'string',
    TLS: {
      fields: { Key: SECRET, Cert: SECRET, MinVersion: 'string', CipherSuites: 'strings' },
    },
    ShutdownDuration: 'duration',
  },
};
const PROVIDER: Kind = {
  fields: {
    id: 'string',
    provider: 'string',
    name: 'string',
    clientID: 'string',
    clientSecret: 'string',
    clientSecretFile: 'string',
    keycloakConfig: { fields: { groups: 'strings', roles: 'strings' } },
    azureConfig: { fields: { tenant: 'string', graphGroupField: 'string' } },
    microsoftEntraIDConfig: { fields: { allowedTenants: 'strings', federatedTokenAuth: 'bool' } },
    ADFSConfig: { fields: { skipScope: 'bool' } },
    bitbucketConfig: { fields: { team: 'string', repository: 'string' } },
    githubConfig: {
      fields: { org: 'string', team: 'string', repo: 'string', token: 'string', users: 'strings' },
    },
    gitlabConfig: { fields: { group: 'strings', projects: 'strings' } },
    googleConfig: {
      fields: {
        group: 'strings',
        adminEmail: 'string',
        serviceAccountJson: 'string',
        useApplicationDefaultCredentials: 'bool',
        targetPrincipal: 'string',
      },
    },
    oidcConfig: {
      fields: {
        issuerURL: 'string',
        insecureAllowUnverifiedEmail: 'bool',
        insecureSkipIssuerVerification: 'bool',
        insecureSkipNonce: 'bool',
        skipDiscovery: 'bool',
        jwksURL: 'string',
        publicKeys: 'strings',
        emailClaim: 'string',
        groupsClaim: 'string',
        userIDClaim: 'string',
        audienceClaims: 'strings',
        extraAudiences: 'strings',
      },
    },
    loginGovConfig: { fields: { jwtKey: 'string', jwtKeyFile: 'string', pubjwkURL: 'string' } },
    caFiles: 'strings',
    useSystemTrustStore: 'bool',
    loginURL: 'string',
    loginURLParameters: { list: 'any' },
    redeemURL: 'string',
    profileURL: 'string',
    skipClaimsFromProfileURL: 'bool',
    resource: 'string',
    validateURL: 'string',
    scope: 'string',
    allowedGroups: 'strings',
    code_challenge_method: 'string',
    backendLogoutURL: 'string',
  },
};
const ROOT: Kind = {
  fields: {
    upstreamConfig: {
      fields: {
        proxyRawPath: 'bool',
        upstreams: {
          list: {
            fields: {
              id: 'string',
              path: 'string',
              rewriteTarget: 'string',
              uri: 'string',
              insecureSkipTLSVerify: 'bool',
              static: 'bool',
              staticCode: 'int',
              flushInterval: 'duration',
              passHostHeader: 'bool',
              proxyWebSockets: 'bool',
              timeout: 'duration',
            },
          },
        },
      },
    },
    injectRequestHeaders: { list: HEADER },
    injectResponseHeaders: { list: HEADER },
    server: SERVER,
    metricsServer: SERVER,
    providers: { list: PROVIDER },
  },
};

export type Obj = Record<string, unknown>;

/** The alpha file as plain values, with the line of every path (`providers[0].clientID`). */
export interface AlphaFile {
  file: string;
  root: Obj;
  lines: Map<string, number>;
}

/** Reads and checks the file against oauth2-proxy's alpha structure; errors name key and line. */
export function parseAlpha(text: string, file: string): { alpha: AlphaFile; errors: string[] } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    const pos = lc.linePos(Math.min(e.pos[0], Math.max(0, text.trimEnd().length)));
    throw new AlphaSyntaxError(`${file}:${pos.line}: ${e.message.split('\n')[0]}`);
  }
  const lines = new Map<string, number>();
  const errors: string[] = [];
  const lineOf = (n: Node | null | undefined): number =>
    n?.range ? lc.linePos(n.range[0]).line : 1;

  const walk = (node: unknown, kind: Kind, path: string): unknown => {
    const n = node as Node | null;
    const line = lineOf(n);
    if (path) lines.set(path, line);
    const where = `${file}:${line}: ${path}`;
    if (kind === 'any') return (n as { toJSON?: () => unknown })?.toJSON?.() ?? null;
    if (typeof kind === 'object' && 'fields' in kind) {
      if (n === null || (isScalar(n) && n.value === null)) return {};
      if (!isMap(n)) {
        errors.push(`${where}: expected a map of settings`);
        return {};
      }
      const out: Obj = {};
      const byLower = new Map(Object.keys(kind.fields).map((k) => [k.toLowerCase(), k]));
      for (const pair of n.items) {
        const rawKey = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        const key = byLower.get(rawKey.toLowerCase());
        const childPath = path ? `${path}.${rawKey}` : rawKey;
        if (!key) {
          errors.push(
            `${file}:${lineOf(pair.key as Node)}: ${childPath} is not an oauth2-proxy alpha setting${hint(rawKey, Object.keys(kind.fields))}`,
          );
          continue;
        }
        out[key] = walk(pair.value, kind.fields[key]!, path ? `${path}.${key}` : key);
      }
      return out;
    }
    if (typeof kind === 'object' && 'list' in kind) {
      if (n === null || (isScalar(n) && n.value === null)) return [];
      if (!isSeq(n)) {
        errors.push(`${where}: expected a list`);
        return [];
      }
      return n.items.map((item, i) => walk(item, kind.list, `${path}[${i}]`));
    }
    const v = isScalar(n) ? n.value : undefined;
    const show = isSecretName(path) ? 'a value (not shown: a secret)' : JSON.stringify(v ?? null);
    switch (kind) {
      case 'string':
        if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')
          return String(v);
        errors.push(`${where}: expected a string, got ${show}`);
        return undefined;
      case 'bool':
        if (typeof v === 'boolean') return v;
        errors.push(`${where}: expected true or false, got ${show}`);
        return undefined;
      case 'int':
        if (typeof v === 'number' && Number.isInteger(v)) return v;
        errors.push(`${where}: expected a whole number, got ${show}`);
        return undefined;
      case 'duration': {
        const ms = typeof v === 'string' ? parseGoDuration(v) : null;
        if (ms !== null) return ms;
        errors.push(`${where}: expected a duration like "30s" or "1m30s", got ${show}`);
        return undefined;
      }
      case 'strings':
        if (isSeq(n)) return n.items.map((item, i) => walk(item, 'string', `${path}[${i}]`) ?? '');
        errors.push(`${where}: expected a list of strings`);
        return [];
    }
  };
  const contents = doc.contents as Node | null;
  const root = walk(contents, ROOT, '') as Obj;
  return { alpha: { file, root, lines }, errors };
}

function hint(key: string, known: string[]): string {
  const k = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = 3;
  for (const name of known) {
    const d = distance(k, name.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best ? ` (did you mean ${best}?)` : '';
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(
        prev[j]! + 1,
        row[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    prev = row;
  }
  return prev[b.length]!;
}
