/**
 * Per-identity caches keep a short newest-first list instead of a Map: nearly every session is
 * seen under one route and audience, and with 10,000 sessions cached a Map and a key string
 * each cost ~0.5 KB apiece.
 *
 * Returns `entry` followed by copies of the entries from `first` that `replaces` does not
 * match, at most `max` in all (the oldest fall off).
 */
export function prependBounded<T extends { next: T | null }>(
  first: T | null,
  entry: T,
  replaces: (e: T) => boolean,
  max: number,
): T {
  let tail = entry;
  let kept = 1;
  for (let e = first; e !== null && kept < max; e = e.next) {
    if (replaces(e)) continue;
    tail = tail.next = { ...e, next: null };
    kept++;
  }
  return entry;
}
