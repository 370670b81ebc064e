import { BlockList, isIP } from 'node:net';

// One place that decides what an address is, so the trusted-proxy walk and the `source_ip`
// criterion can never disagree (e.g. about IPv4-mapped IPv6).

/** Unwraps IPv4-mapped IPv6 (`::ffff:10.0.0.1`) and strips brackets and zone ids; '' if not an IP. */
export function normalizeIp(raw: string): string {
  let ip = raw.trim();
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  const zone = ip.indexOf('%');
  if (zone !== -1) ip = ip.slice(0, zone);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) ip = mapped[1]!;
  return isIP(ip) ? ip.toLowerCase() : '';
}

export class CidrError extends Error {}

/** Per matcher: how many recent answers are remembered. */
const CIDR_CACHE_MAX = 1024;

/** Compiles CIDRs (or bare addresses) into a matcher. Throws CidrError naming the bad entry. */
export function compileCidrs(list: readonly string[]): (ip: string) => boolean {
  const bl = new BlockList();
  for (const entry of list) {
    if (typeof entry !== 'string')
      throw new CidrError(`expected a CIDR string, got ${typeof entry}`);
    const [addrRaw, bitsRaw, extra] = entry.trim().split('/');
    const addr = normalizeIp(addrRaw ?? '');
    const family = isIP(addr);
    if (!family || extra !== undefined)
      throw new CidrError(`"${entry}" is not an IP address or CIDR (e.g. 10.0.0.0/8, fd00::/8)`);
    const max = family === 4 ? 32 : 128;
    // An IPv4-mapped IPv6 prefix like ::ffff:10.0.0.0/104 becomes 10.0.0.0/8.
    let bits = bitsRaw === undefined ? max : Number(bitsRaw);
    if (family === 4 && /^::ffff:/i.test(addrRaw ?? '') && bitsRaw !== undefined) bits -= 96;
    if (
      !Number.isInteger(bits) ||
      bits < 0 ||
      bits > max ||
      (bitsRaw !== undefined && !/^\d+$/.test(bitsRaw))
    ) {
      throw new CidrError(`"${entry}" has an invalid prefix length (0-${max})`);
    }
    bl.addSubnet(addr, bits, family === 4 ? 'ipv4' : 'ipv6');
  }
  if (!list.length) return () => false;
  // BlockList.check builds a SocketAddress per call, and a request can ask up to four times.
  // A compiled matcher's answer for an address never changes, so recent answers are kept,
  // keyed by the normalized address (short, whatever the client sent), in a bounded map that
  // is simply emptied when full.
  const recent = new Map<string, boolean>();
  return (ip: string) => {
    const n = normalizeIp(ip);
    if (!n) return false;
    let hit = recent.get(n);
    if (hit === undefined) {
      hit = bl.check(n, isIP(n) === 4 ? 'ipv4' : 'ipv6');
      if (recent.size >= CIDR_CACHE_MAX) recent.clear();
      recent.set(n, hit);
    }
    return hit;
  };
}
