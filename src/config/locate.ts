import { isMap, isPair, isScalar, isSeq, type LineCounter, type Document, type Node } from 'yaml';

/**
 * Finds where a key path sits in the YAML source. For a missing key the nearest existing
 * parent is used; `wantKey` points at the key itself rather than its value (for unknown keys).
 */
export function locate(
  doc: Document,
  lc: LineCounter,
  path: readonly PropertyKey[],
  wantKey = false,
): { line: number; column: number } {
  let node: unknown = doc.contents;
  let at: number | undefined = (node as Node | null)?.range?.[0];
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg),
      );
      if (!pair) break;
      const keyNode = pair.key as Node;
      at = keyNode.range?.[0] ?? at;
      node = pair.value;
      if (!wantKey || seg !== path[path.length - 1]) at = (node as Node | null)?.range?.[0] ?? at;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg];
      at = (node as Node | null)?.range?.[0] ?? at;
    } else break;
  }
  if (at === undefined) return { line: 0, column: 0 };
  const pos = lc.linePos(at);
  return { line: pos.line, column: pos.col };
}
