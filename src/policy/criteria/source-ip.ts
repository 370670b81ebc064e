import { CidrError, compileCidrs } from '../../security/cidr.js';
import { PolicyError, typeName } from '../errors.js';
import type { RequestCriterion } from './criterion.js';
import { oneOrMany, quoteList } from './helpers.js';

export const sourceIp: RequestCriterion = {
  name: 'source_ip',
  needsIdentity: false,
  compile(value, path) {
    const { values, paths } = oneOrMany(value, path, 'IP address or CIDR');
    const cidrs: string[] = [];
    values.forEach((entry, i) => {
      if (typeof entry !== 'string') {
        throw new PolicyError(
          paths[i]!,
          `expected an IP address or CIDR string, got ${typeName(entry)}`,
        );
      }
      // Compiled one by one first so an error points at the entry that caused it.
      try {
        compileCidrs([entry]);
      } catch (e) {
        if (e instanceof CidrError) throw new PolicyError(paths[i]!, e.message);
        throw e;
      }
      cidrs.push(entry.trim());
    });
    const contains = compileCidrs(cidrs);
    // BlockList.check allocates per call; requests from one client repeat the same address.
    let lastIp = '';
    let lastResult = false;
    const cachedContains = (ip: string): boolean => {
      if (ip !== lastIp) {
        lastResult = contains(ip);
        lastIp = ip;
      }
      return lastResult;
    };
    return {
      label: `source_ip in [${quoteList(cidrs)}]`,
      haveKey: 'ip',
      test: (ctx) => cachedContains(ctx.clientIp),
      need: `an address in ${quoteList(cidrs)}`,
      have: (ctx) => `your address is ${ctx.clientIp || '(unknown)'}`,
    };
  },
};
