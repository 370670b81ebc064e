// The configurations of docs/recipes, read from the files themselves, so the tests run exactly
// what the documentation tells users to deploy; only addresses and host names are substituted.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

/** The fenced block of a recipe whose first line is `# recipe: <name>` (or `-- recipe:` in Lua). */
export function recipe(file: string, name: string): string {
  const md = readFileSync(new URL(`../../../docs/recipes/${file}`, import.meta.url), 'utf8');
  for (const m of md.matchAll(/```[a-z]*\n([\s\S]*?)```/g)) {
    const body = m[1]!;
    if (body.startsWith(`# recipe: ${name}\n`) || body.startsWith(`-- recipe: ${name}\n`)) return body;
  }
  throw new Error(`no \`recipe: ${name}\` block in docs/recipes/${file}`);
}

/** Replaces each `from` (which must occur) in one pass: a replacement is never searched again. */
export function substitute(text: string, pairs: Array<[string, string]>): string {
  for (const [from] of pairs) assert.ok(text.includes(from), `the recipe no longer contains ${from}`);
  const to = new Map(pairs);
  const any = new RegExp(pairs.map(([from]) => from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
  return text.replace(any, (m) => to.get(m)!);
}
