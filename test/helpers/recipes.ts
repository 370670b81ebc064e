// The proxy configurations of docs/recipes, read from the files themselves so that the tests
// run exactly what a user copies; only addresses and host names are substituted.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

/** The fenced block of a recipe whose first line is `# recipe: <name>` (`-- recipe: <name>` in Lua). */
export function recipe(file: string, name: string): string {
  const md = readFileSync(new URL(`../../../docs/recipes/${file}`, import.meta.url), 'utf8');
  for (const m of md.matchAll(/```[a-z]*\n([\s\S]*?)```/g)) {
    const body = m[1]!;
    if (body.startsWith(`# recipe: ${name}\n`) || body.startsWith(`-- recipe: ${name}\n`))
      return body;
  }
  throw new Error(`no \`# recipe: ${name}\` block in docs/recipes/${file}`);
}

export function sub(text: string, pairs: Array<[string, string]>): string {
  for (const [from] of pairs)
    assert.ok(text.includes(from), `the recipe no longer contains ${from}`);
  // One pass over the recipe: a replacement is never searched again, so a test port that
  // happens to begin with 4180 or 8080 (listen 127.0.0.1:41803) is not rewritten by a later pair.
  const to = new Map(pairs);
  const any = new RegExp(
    pairs.map(([from]) => from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'),
    'g',
  );
  return text.replace(any, (m) => to.get(m)!);
}
