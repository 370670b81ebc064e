// Every failure the differential fuzz has found, kept as a fixed case and replayed on every run
// (npm test and npm run fuzz) against the proxies named. Add the "as a regression case" line a
// failing run prints; say where it came from.
import type { ProxyName } from './deployment.js';
import type { FuzzRequest } from './generate.js';

export interface RegressionCase extends FuzzRequest {
  proxies: ProxyName[] | 'all';
  found: string;
}

const ALL: ProxyName[] | 'all' = 'all';

export const REGRESSIONS: RegressionCase[] = [
  // Found by the first runs (seeds 1 and 20240611, 150 per proxy) on c1ea550, before issue 15's fixes.
  {
    proxies: ALL,
    found: 'seed 20240611 nginx: dot segment before a restricted prefix',
    method: 'GET',
    target: '/42/../admin%20',
    hosts: ['app.fuzz.test:{port}'],
    headers: [],
    user: 'alice',
    accept: 'json',
  },
  {
    proxies: ALL,
    found: 'seed 1 haproxy/caddy: encoded dot segment',
    method: 'HEAD',
    target: '/%2E%2e/admin',
    hosts: ['app.fuzz.test:{port}'],
    headers: [],
    user: 'alice',
    accept: 'json',
  },
  {
    proxies: ALL,
    found: 'seed 1 caddy: a fragment Caddy re-encodes as %23, then dot segments',
    method: 'GET',
    target: '/#/../public',
    hosts: ['app.fuzz.test:{port}'],
    headers: [],
    user: 'alice',
    accept: 'json',
  },
  {
    proxies: ALL,
    found: 'seed 20240611 caddy/haproxy: a very long run of encoded dot segments',
    method: 'GET',
    target: `/admin/${'%2e%2e/'.repeat(200)}end`,
    hosts: ['app.fuzz.test:{port}'],
    headers: [],
    user: 'alice',
    accept: 'json',
  },
  {
    proxies: ALL,
    found: "seed 1 nginx/caddy: the Host names the same host on another deployment's port",
    method: 'GET',
    target: '/',
    hosts: ['app.fuzz.test:{other}'],
    headers: [],
    user: 'alice',
    accept: 'json',
  },
  // Found by `npm run fuzz -- --seed 777 --runs 5000` after the first fixes: escaped letters
  // judged decoded (`/admin`) but forwarded as sent, which an app matching raw bytes reads as
  // another route (`/%70ublic` the other way round would open a private area as public).
  {
    proxies: ALL,
    found: 'seed 777 nginx/caddy/haproxy: an escaped letter in a restricted prefix',
    method: 'GET',
    target: '/%61dmin',
    hosts: ['app.fuzz.test:{port}'],
    headers: [],
    user: 'alice',
    accept: 'json',
  },
  {
    proxies: ALL,
    found: 'seed 777 (by hand, the dangerous direction): an escaped letter in a public prefix',
    method: 'GET',
    target: '/%70ublic/../admin',
    hosts: ['app.fuzz.test:{port}'],
    headers: [],
    user: 'anonymous',
    accept: 'json',
  },
  {
    proxies: ALL,
    found: 'seed 1 caddy: identity header with a mixed dash/underscore spelling',
    method: 'GET',
    target: '/public/a',
    hosts: ['app.fuzz.test:{port}'],
    headers: [['X-Forwarded_Email', 'mallory@evil.test']],
    user: 'alice',
    accept: 'json',
  },
];

/** Cases written by hand from the issue, before the fuzz existed; kept with the found ones. */
export const SEEDED_BY_HAND: RegressionCase[] = [
  {
    proxies: ALL,
    found: 'issue 15: dot segment judged normalized, forwarded raw',
    method: 'GET',
    target: '/admin/../x',
    hosts: ['app.fuzz.test:{port}'],
    headers: [],
    user: 'bob',
    accept: 'json',
  },
  {
    proxies: ALL,
    found: 'issue 15: a public path before the dot segments',
    method: 'GET',
    target: '/public/../admin/panel',
    hosts: ['app.fuzz.test:{port}'],
    headers: [],
    user: 'anonymous',
    accept: 'json',
  },
  {
    proxies: ALL,
    found: 'issue 15: empty segment',
    method: 'GET',
    target: '//admin',
    hosts: ['app.fuzz.test:{port}'],
    headers: [],
    user: 'bob',
    accept: 'json',
  },
  {
    proxies: ALL,
    found: 'issue 15: Host of a route the server block does not serve',
    method: 'GET',
    target: '/admin',
    hosts: ['open.fuzz.test:{port}'],
    headers: [],
    user: 'anonymous',
    accept: 'json',
  },
  {
    proxies: ALL,
    found: 'Pomerium-style query that looks like a path',
    method: 'GET',
    target: '/admin?x=/.portcullis/',
    hosts: ['app.fuzz.test:{port}'],
    headers: [],
    user: 'anonymous',
    accept: 'json',
  },
  {
    proxies: ALL,
    found: 'oauth2-proxy-style forged X-Forwarded-Uri and X-Original-URL',
    method: 'GET',
    target: '/admin',
    hosts: ['app.fuzz.test:{port}'],
    headers: [
      ['X-Forwarded-Uri', '/public'],
      ['X-Original-URL', 'http://app.fuzz.test:{port}/public'],
    ],
    user: 'bob',
    accept: 'json',
  },
  {
    proxies: ALL,
    found: 'spoofed identity, underscore spelling',
    method: 'GET',
    target: '/public',
    hosts: ['app.fuzz.test:{port}'],
    headers: [
      ['X_Forwarded_User', 'mallory'],
      ['X-Forwarded-Email', 'mallory@evil.test'],
    ],
    user: 'bob',
    accept: 'json',
  },
];
