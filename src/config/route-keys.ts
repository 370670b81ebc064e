import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { RawRoute } from './schema.js';
import type { ResponseHeaderRewrite, Route } from './types.js';

// Pomerium's route keys for the upstream connection and the headers around it, checked and
// compiled once at load so the proxy only reads the results:
//   rewrite_response_headers   https://www.pomerium.com/docs/reference/routes/headers
//   cors_allow_preflight       https://www.pomerium.com/docs/reference/routes/cors-preflight
//   tls_client_cert(_file), tls_client_key(_file), tls_upstream_server_name (tls_server_name)
//                              https://www.pomerium.com/docs/reference/routes/tls
//   regex_priority_order       https://www.pomerium.com/docs/reference/routes/regex-priority-order
//   kubernetes_service_account_token(_file)
//                              https://www.pomerium.com/docs/reference/routes/kubernetes-service-account-token

type At = (path: readonly PropertyKey[], msg: string) => void;

export type UpstreamKeys = Pick<
  Route,
  | 'responseHeaderRewrites'
  | 'corsAllowPreflight'
  | 'tlsClientCert'
  | 'tlsServerName'
  | 'kubernetesToken'
  | 'regexPriority'
>;

/** Response headers a rewrite would corrupt the framing of: the proxy owns them. */
const FRAMING = new Set([
  'connection',
  'content-length',
  'transfer-encoding',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
]);

export function compileUpstreamKeys(
  r: RawRoute,
  at: At,
  base: readonly PropertyKey[],
): UpstreamKeys {
  return {
    responseHeaderRewrites: responseRewrites(r, at, base),
    corsAllowPreflight: r.cors_allow_preflight === true,
    tlsClientCert: clientCert(r, at, base),
    tlsServerName: serverName(r, at, base),
    kubernetesToken: kubernetesToken(r, at, base),
    regexPriority: regexPriority(r, at, base),
  };
}

function responseRewrites(
  r: RawRoute,
  at: At,
  base: readonly PropertyKey[],
): UpstreamKeys['responseHeaderRewrites'] {
  if (!r.rewrite_response_headers?.length) return null;
  const byHeader = new Map<string, ResponseHeaderRewrite[]>();
  r.rewrite_response_headers.forEach((rule, j) => {
    const path = [...base, 'rewrite_response_headers', j];
    const header = rule.header.toLowerCase();
    if (FRAMING.has(header)) {
      at([...path, 'header'], `${rule.header} frames the response and cannot be rewritten`);
      return;
    }
    if (/[\r\n\0]/.test(rule.value)) {
      at([...path, 'value'], 'expected a value without CR, LF or NUL');
      return;
    }
    const list = byHeader.get(header) ?? [];
    list.push({ prefix: rule.prefix ?? '', value: rule.value });
    byHeader.set(header, list);
  });
  return byHeader.size ? byHeader : null;
}

/** Inline (base64 PEM, as Pomerium takes it) or `_file`, never both. */
function pemOf(
  r: RawRoute,
  key: 'tls_client_cert' | 'tls_client_key',
  at: At,
  base: readonly PropertyKey[],
): string | null {
  const inline = r[key];
  const file = r[`${key}_file`];
  if (inline !== undefined && file !== undefined) {
    at([...base, `${key}_file`], `set either ${key} or ${key}_file, not both`);
    return null;
  }
  if (file !== undefined) {
    try {
      return readFileSync(file, 'utf8');
    } catch (e) {
      at(
        [...base, `${key}_file`],
        `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      );
      return null;
    }
  }
  if (inline === undefined) return null;
  const text = Buffer.from(inline.replace(/\s+/g, ''), 'base64').toString('utf8');
  if (!text.includes('-----BEGIN')) {
    at(
      [...base, key],
      `expected a base64-encoded PEM (e.g. \`base64 -w0 client.pem\`); for a file path use ${key}_file`,
    );
    return null;
  }
  return text;
}

function clientCert(
  r: RawRoute,
  at: At,
  base: readonly PropertyKey[],
): UpstreamKeys['tlsClientCert'] {
  const cert = pemOf(r, 'tls_client_cert', at, base);
  const key = pemOf(r, 'tls_client_key', at, base);
  const certKey = r.tls_client_cert_file !== undefined ? 'tls_client_cert_file' : 'tls_client_cert';
  const keyKey = r.tls_client_key_file !== undefined ? 'tls_client_key_file' : 'tls_client_key';
  const certSet = r.tls_client_cert !== undefined || r.tls_client_cert_file !== undefined;
  const keySet = r.tls_client_key !== undefined || r.tls_client_key_file !== undefined;
  if (certSet !== keySet) {
    at(
      [...base, certSet ? certKey : keyKey],
      certSet
        ? 'a client certificate needs its private key: set tls_client_key or tls_client_key_file too'
        : 'a client key needs its certificate: set tls_client_cert or tls_client_cert_file too',
    );
    return null;
  }
  if (cert === null || key === null) return null;
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    at([...base, certKey], `expected a PEM certificate: ${(e as Error).message}`);
    return null;
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (e) {
    at([...base, keyKey], `expected a PEM private key: ${(e as Error).message}`);
    return null;
  }
  if (!x509.checkPrivateKey(privateKey)) {
    at([...base, keyKey], `this key does not belong to the certificate in ${certKey}`);
    return null;
  }
  return { cert, key };
}

/** Pomerium's older tls_server_name means the upstream name too; both must then agree. */
function serverName(r: RawRoute, at: At, base: readonly PropertyKey[]): string | null {
  const older = r.tls_server_name;
  const newer = r.tls_upstream_server_name;
  if (older !== undefined && newer !== undefined && older.toLowerCase() !== newer.toLowerCase()) {
    at(
      [...base, 'tls_server_name'],
      `names another server than tls_upstream_server_name (${newer}); keep only tls_upstream_server_name`,
    );
    return null;
  }
  const name = newer ?? older;
  return name === undefined ? null : name.toLowerCase().replace(/\.$/, '');
}

function kubernetesToken(r: RawRoute, at: At, base: readonly PropertyKey[]): string | null {
  const inline = r.kubernetes_service_account_token;
  const file = r.kubernetes_service_account_token_file;
  if (inline !== undefined && file !== undefined) {
    at(
      [...base, 'kubernetes_service_account_token_file'],
      'set either kubernetes_service_account_token or kubernetes_service_account_token_file, not both',
    );
    return null;
  }
  let token = inline;
  let key = 'kubernetes_service_account_token';
  if (file !== undefined) {
    key = 'kubernetes_service_account_token_file';
    try {
      token = readFileSync(file, 'utf8').trim();
    } catch (e) {
      at([...base, key], `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      return null;
    }
  }
  if (token === undefined) return null;
  // It goes out as `Authorization: Bearer <token>`: one line of visible characters.
  if (!/^[\x21-\x7e]+$/.test(token)) {
    at(
      [...base, key],
      token === ''
        ? 'the service account token is empty'
        : 'expected the token as one line of visible characters (a JWT like eyJhbGciOi...)',
    );
    return null;
  }
  return token;
}

/** "Determines the ordering of routes that use regex matching": without `regex` it means nothing. */
function regexPriority(r: RawRoute, at: At, base: readonly PropertyKey[]): number {
  if (r.regex_priority_order === undefined) return 0;
  if (r.regex === undefined) {
    at(
      [...base, 'regex_priority_order'],
      'orders routes that match with `regex`, and this route has none (add `regex`, or remove this key)',
    );
    return 0;
  }
  return r.regex_priority_order;
}
