import { execFileSync } from 'node:child_process';

/** openssl's options for a fresh P-256 key without a passphrase. */
export const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/**
 * A self-signed certificate `${name}.crt` and its key `${name}.key` in `dir`, valid one day,
 * made by openssl (a CA for the tests, or a server certificate with a subjectAltName in `extra`).
 */
export function selfSigned(dir: string, name: string, subject: string, extra: string[] = []): void {
  execFileSync(
    'openssl',
    ['req', '-x509', ...EC_KEY, '-days', '1', '-subj', subject, ...extra].concat([
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
    ]),
    { stdio: 'ignore', cwd: dir },
  );
}
