import type { RequestContext } from '../../decide/types.js';
import type { RequestCriterion } from './criterion.js';
import { noFlag } from './helpers.js';

function headerPresent(ctx: RequestContext, name: string): boolean {
  const value = ctx.headers[name];
  if (value === undefined) return false;
  return Array.isArray(value) ? value.length > 0 : value !== '';
}

export const corsPreflight: RequestCriterion = {
  name: 'cors_preflight',
  needsIdentity: false,
  compile(value, path) {
    noFlag('cors_preflight', value, path);
    return {
      label: 'cors_preflight',
      haveKey: 'cors',
      test: (ctx) =>
        ctx.method === 'OPTIONS' &&
        headerPresent(ctx, 'access-control-request-method') &&
        headerPresent(ctx, 'origin'),
      need: 'a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method)',
      have: (ctx) =>
        ctx.method === 'OPTIONS'
          ? 'the request is an OPTIONS request without both Origin and Access-Control-Request-Method'
          : `the request is a ${ctx.method} request`,
    };
  },
};
