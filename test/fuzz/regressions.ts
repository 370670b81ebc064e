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

export const REGRESSIONS: RegressionCase[] = [];

/** Cases written by hand from the issue, before the fuzz existed; kept with the found ones. */
export const SEEDED_BY_HAND: RegressionCase[] = [
  { proxies: ALL, found: 'issue 15: dot segment judged normalized, forwarded raw', method: 'GET', target: '/admin/../x', hosts: ['app.fuzz.test:{port}'], headers: [], user: 'bob', accept: 'json' },
  { proxies: ALL, found: 'issue 15: a public path before the dot segments', method: 'GET', target: '/public/../admin/panel', hosts: ['app.fuzz.test:{port}'], headers: [], user: 'anonymous', accept: 'json' },
  { proxies: ALL, found: 'issue 15: empty segment', method: 'GET', target: '//admin', hosts: ['app.fuzz.test:{port}'], headers: [], user: 'bob', accept: 'json' },
  { proxies: ALL, found: 'issue 15: Host of a route the server block does not serve', method: 'GET', target: '/admin', hosts: ['open.fuzz.test:{port}'], headers: [], user: 'anonymous', accept: 'json' },
  { proxies: ALL, found: 'Pomerium-style query that looks like a path', method: 'GET', target: '/admin?x=/.portcullis/', hosts: ['app.fuzz.test:{port}'], headers: [], user: 'anonymous', accept: 'json' },
  { proxies: ALL, found: 'oauth2-proxy-style forged X-Forwarded-Uri and X-Original-URL', method: 'GET', target: '/admin', hosts: ['app.fuzz.test:{port}'], headers: [['X-Forwarded-Uri', '/public'], ['X-Original-URL', 'http://app.fuzz.test:{port}/public']], user: 'bob', accept: 'json' },
  { proxies: ALL, found: 'spoofed identity, underscore spelling', method: 'GET', target: '/public', hosts: ['app.fuzz.test:{port}'], headers: [['X_Forwarded_User', 'mallory'], ['X-Forwarded-Email', 'mallory@evil.test']], user: 'bob', accept: 'json' },
];
