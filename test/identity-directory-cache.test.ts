import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DirectoryCache } from '../src/identity/directory/cache.js';

// Issue 19, section 1: directory lookups "cached with a TTL, bounded"; "when the directory API
// is down, keep the last known groups for a stated time, then deny".

const ok = (groups: string[]) => async () => ({ kind: 'ok' as const, groups });
const down = async () => ({ kind: 'unavailable' as const, reason: 'down' });

test('fresh answers are reused for the TTL; then asked again', async () => {
  const cache = new DirectoryCache({ ttlMs: 1000, graceMs: 0, maxEntries: 10 });
  let asked = 0;
  const ask = async () => {
    asked++;
    return { kind: 'ok' as const, groups: [`g${asked}`] };
  };
  assert.deepEqual(await cache.lookup('u', ask, 0), { kind: 'ok', groups: ['g1'] });
  assert.deepEqual(await cache.lookup('u', ask, 999), { kind: 'ok', groups: ['g1'] });
  assert.equal(asked, 1);
  assert.deepEqual(await cache.lookup('u', ask, 1000), { kind: 'ok', groups: ['g2'] });
  assert.equal(asked, 2);
});

test('directory down: last-known groups within TTL + grace, marked stale; after that, unavailable', async () => {
  const cache = new DirectoryCache({ ttlMs: 1000, graceMs: 5000, maxEntries: 10 });
  await cache.lookup('u', ok(['admins']), 0);
  assert.deepEqual(await cache.lookup('u', down, 5999), {
    kind: 'ok',
    groups: ['admins'],
    stale: true,
  });
  assert.deepEqual(await cache.lookup('u', down, 6000), { kind: 'unavailable', reason: 'down' });
  // Another user never had an answer: nothing to fall back on.
  assert.equal((await cache.lookup('v', down, 1)).kind, 'unavailable');
});

test('bounded: past maxEntries the least recently used user is dropped', async () => {
  const cache = new DirectoryCache({ ttlMs: 60_000, graceMs: 0, maxEntries: 3 });
  for (const u of ['a', 'b', 'c']) await cache.lookup(u, ok([u]), 0);
  await cache.lookup('a', down, 1); // a fresh hit: a becomes the most recent
  await cache.lookup('d', ok(['d']), 2);
  assert.equal(cache.size, 3);
  assert.equal((await cache.lookup('b', down, 3)).kind, 'unavailable', 'b was dropped');
  assert.deepEqual(await cache.lookup('a', down, 4), { kind: 'ok', groups: ['a'] });
});

test('TTL 0 and grace 0: nothing is kept', async () => {
  const cache = new DirectoryCache({ ttlMs: 0, graceMs: 0, maxEntries: 10 });
  await cache.lookup('u', ok(['x']), 0);
  assert.equal(cache.size, 0);
  assert.equal((await cache.lookup('u', down, 0)).kind, 'unavailable');
});
