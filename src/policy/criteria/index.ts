import { PolicyError, didYouMean, type PolicyPath } from '../errors.js';
import { accept } from './accept.js';
import { authenticatedUser } from './authenticated-user.js';
import { claim } from './claim.js';
import { clientCertificate } from './client-certificate.js';
import { corsPreflight } from './cors-preflight.js';
import type { Criterion, CriterionOptions, LeafSpec } from './criterion.js';
import { date } from './date.js';
import { dayOfWeek } from './day-of-week.js';
import { domain } from './domain.js';
import { email } from './email.js';
import { groups } from './groups.js';
import { httpMethod } from './http-method.js';
import { httpPath } from './http-path.js';
import { idp } from './idp.js';
import { reject } from './reject.js';
import { sourceIp } from './source-ip.js';
import { timeOfDay } from './time-of-day.js';
import { user } from './user.js';

export type { Criterion, CriterionOptions, LeafSpec } from './criterion.js';
export { emailDomain } from './helpers.js';

// Every criterion a policy may use, in the order error messages list them. A new criterion is
// a file in this folder and a line here.
const REGISTRY: readonly Criterion[] = [
  accept,
  reject,
  authenticatedUser,
  user,
  email,
  domain,
  groups,
  claim,
  idp,
  httpMethod,
  httpPath,
  sourceIp,
  date,
  dayOfWeek,
  timeOfDay,
  clientCertificate,
  corsPreflight,
];

export const CRITERIA: readonly string[] = REGISTRY.map((criterion) => criterion.name);

const BY_NAME = new Map(REGISTRY.map((criterion) => [criterion.name, criterion]));

/** How the keys that take a sub-path are written, for the error about a "/" anywhere else. */
const SUB_PATH_FORMS = REGISTRY.filter((criterion) => criterion.takesSubPath)
  .map((criterion) => `${criterion.name}/<name>`)
  .join(', ');

// Pomerium criteria that need machinery Portcullis does not have (device enrollment, external
// data sources, the .pomerium routes, MCP). Named separately so the error does not read as a typo.
// A Map, not an object: a key such as "constructor" must not find Object.prototype's members.
const UNSUPPORTED = new Map([
  ['device', 'device identity is not supported'],
  ['record', 'external data source records are not supported'],
  [
    'invalid_client_certificate',
    'client certificates are verified by the listener before policy runs',
  ],
  ['pomerium_routes', 'there are no .pomerium routes in Portcullis'],
  ['mcp_tool', 'MCP routes are not supported'],
]);

/** Compiles one `key: value` criterion found at `path`; throws PolicyError for anything it cannot use. */
export function compileCriterion(
  key: string,
  value: unknown,
  path: PolicyPath,
  opts: CriterionOptions,
): LeafSpec {
  const slash = key.indexOf('/');
  const name = slash === -1 ? key : key.slice(0, slash);
  const subPath = slash === -1 ? '' : key.slice(slash + 1);
  const valuePath = [...path, key];
  const criterion = BY_NAME.get(name);
  if (subPath && !criterion?.takesSubPath) {
    const hint = name === 'claims' ? ' (did you mean "claim"?)' : '';
    throw new PolicyError(
      valuePath,
      `criterion "${name}" takes no "/" sub-path; only ${SUB_PATH_FORMS} does${hint}`,
    );
  }
  if (!criterion) {
    const why = UNSUPPORTED.get(name);
    if (why) {
      throw new PolicyError(
        valuePath,
        `criterion "${name}" is not supported by Portcullis: ${why}`,
      );
    }
    const hint = didYouMean(name, [...CRITERIA, 'and', 'or', 'not', 'nor']);
    const expected = `expected one of ${CRITERIA.join(', ')}, or a nested and/or/not/nor`;
    throw new PolicyError(valuePath, `unknown criterion "${name}"${hint}; ${expected}`);
  }
  if (!criterion.needsIdentity) {
    const { label, test, need, have, haveKey } = criterion.compile(value, valuePath, opts, subPath);
    return { label, needsIdentity: false, test, need, have, haveKey };
  }
  const { label, test, need, have, haveKey } = criterion.compile(value, valuePath, opts, subPath);
  // The evaluator answers "unknown" for an identity leaf without calling it when nobody is
  // signed in (src/policy/index.ts), so these never see the null they are widened to.
  return {
    label,
    needsIdentity: true,
    test: test as LeafSpec['test'],
    need,
    have: have as LeafSpec['have'],
    haveKey,
  };
}
