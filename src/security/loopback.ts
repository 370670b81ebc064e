import { isIP } from 'node:net';

/** A host name or address that can only mean this machine: plain http to it never leaves it. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return (
    h === 'localhost' ||
    h.endsWith('.localhost') ||
    (isIP(h) === 4 && h.startsWith('127.')) ||
    h === '::1'
  );
}
