import type { RequestContext } from '../../decide/types.js';
import { PolicyError, didYouMean, isPlainObject, typeName, type PolicyPath } from '../errors.js';
import { compileStringMatcher } from '../matchers.js';
import type { RequestCriterion } from './criterion.js';
import { oneOrMany, quoteList } from './helpers.js';

type ClientCert = NonNullable<RequestContext['clientCert']>;

const CERT_KEYS = ['fingerprint', 'spki_hash', 'san_dns', 'san_email', 'san_uri'] as const;
// A Map, not an object: `key in` an object would take "constructor" for a SAN kind.
const SAN_PREFIX = new Map([
  ['san_dns', 'dns:'],
  ['san_email', 'email:'],
  ['san_uri', 'uri:'],
]);

function normalizeFingerprint(raw: unknown, path: PolicyPath): string {
  if (typeof raw !== 'string' || !raw) {
    throw new PolicyError(
      path,
      `expected a SHA-256 certificate fingerprint string, got ${typeName(raw)}`,
    );
  }
  // Pomerium's two accepted forms: 64 lower-case hex digits, or 32 upper-case hex bytes joined by ":".
  if (/^[0-9a-f]{64}$/.test(raw)) return raw;
  if (/^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/.test(raw)) return raw.replace(/:/g, '').toLowerCase();
  throw new PolicyError(
    path,
    `"${raw}" is not a SHA-256 fingerprint; expected 64 lower-case hex digits ` +
      'or 32 upper-case hex bytes separated by ":" (openssl x509 -noout -fingerprint -sha256)',
  );
}

export const clientCertificate: RequestCriterion = {
  name: 'client_certificate',
  needsIdentity: false,
  compile(value, path) {
    if (!isPlainObject(value) || Object.keys(value).length === 0) {
      const keys = CERT_KEYS.join(', ');
      throw new PolicyError(
        path,
        `expected a certificate matcher object with ${keys}, got ${typeName(value)}`,
      );
    }
    const checks: ((cert: ClientCert) => boolean)[] = [];
    const labels: string[] = [];
    for (const [key, wanted] of Object.entries(value)) {
      const keyPath = [...path, key];
      if (key === 'fingerprint') {
        const { values, paths } = oneOrMany(wanted, keyPath, 'fingerprint');
        const fingerprints = new Set(values.map((raw, i) => normalizeFingerprint(raw, paths[i]!)));
        checks.push((cert) =>
          fingerprints.has(cert.fingerprint256.replace(/:/g, '').toLowerCase()),
        );
        labels.push(`fingerprint in [${quoteList([...fingerprints], 2)}]`);
      } else if (key === 'spki_hash') {
        throw new PolicyError(
          keyPath,
          'spki_hash is not supported yet: the TLS listener does not hand ' +
            "the certificate's public key to policy; use fingerprint",
        );
      } else if (SAN_PREFIX.has(key)) {
        const prefix = SAN_PREFIX.get(key)!;
        const matcher = compileStringMatcher(wanted, keyPath, { noun: key });
        // SAN entries arrive as Node renders them: "DNS:host", "email:addr", "URI:uri".
        checks.push((cert) => {
          for (const entry of cert.san) {
            if (
              entry.length <= prefix.length ||
              entry.slice(0, prefix.length).toLowerCase() !== prefix
            )
              continue;
            if (matcher.test(entry.slice(prefix.length))) return true;
          }
          return false;
        });
        labels.push(`${key} ${matcher.label}`);
      } else {
        const expected = `expected one of ${CERT_KEYS.join(', ')}${didYouMean(key, CERT_KEYS)}`;
        throw new PolicyError(keyPath, `unknown certificate matcher key "${key}"; ${expected}`);
      }
    }
    return {
      label: `client_certificate ${labels.join(' and ')}`,
      haveKey: 'cert',
      test: (ctx) => {
        const cert = ctx.clientCert;
        if (!cert) return false;
        for (const check of checks) if (!check(cert)) return false;
        return true;
      },
      need: `a client certificate with ${labels.join(' and ')}`,
      have: (ctx) =>
        ctx.clientCert
          ? `your certificate has fingerprint ${ctx.clientCert.fingerprint256.replace(/:/g, '').toLowerCase()}`
          : 'no client certificate was presented',
    };
  },
};
