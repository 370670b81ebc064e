import { createRequire } from 'node:module';
import type * as Undici from 'undici';

// Only the connection pool and its error classes. undici's index also loads fetch, the HTTP
// cache, WebSocket, EventSource and the mocks: about 10 MB of resident memory per process
// that the proxy never uses (docs/performance.md). These paths are inside the pinned version
// in package-lock.json; test/proxy-streaming.test.ts exercises each of them.
const require = createRequire(import.meta.url);

export const Pool = require('undici/lib/dispatcher/pool.js') as typeof Undici.Pool;
export type Pool = Undici.Pool;
export const errors = require('undici/lib/core/errors.js') as typeof Undici.errors;
export type { Dispatcher } from 'undici';
/** Dispatcher.prototype.upgrade, which undici's index would attach: called with the pool as `this`. */
export const upgrade = require('undici/lib/api/api-upgrade.js') as (
  this: Undici.Dispatcher,
  opts: Undici.Dispatcher.UpgradeOptions,
) => Promise<Undici.Dispatcher.UpgradeData>;
/** undici's socket connector, to pin a TLS server name that the Host header must not override. */
export const buildConnector = require('undici/lib/core/connect.js') as typeof Undici.buildConnector;
