// Route-key misuse tests: a minimal valid config with one route, the lines under test appended
// to that route from line 10, and the one config error it must produce (key, line, message).
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/config/errors.js';
import { parseConfig } from '../../src/config/load.js';

const SECRET = Buffer.alloc(32, 7).toString('base64');
/** The globals (lines 1-6), `routes:` (7) and one route (8-9). */
export const HEAD: readonly string[] = [
  'address: 127.0.0.1:8080', // 1
  'insecure_server: true', // 2
  'idp_provider_url: https://idp.example.com', // 3
  'idp_client_id: portcullis', // 4
  'idp_client_secret: s3cret', // 5
  `cookie_secret: ${SECRET}`, // 6
  'routes:', // 7
  '  - from: https://app.example.com', // 8
  '    allow_any_authenticated_user: true', // 9
];

/** The config with the route's further lines, from line 10. */
export const route = (...lines: string[]): string =>
  `${[...HEAD, ...lines.map((l) => `    ${l}`)].join('\n')}\n`;

/** The one config error `text` makes (the test fails if there is none, or more than one). */
export function issue(text: string): { line: number; key: string; message: string } {
  try {
    parseConfig(text, 'p.yaml', {});
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    assert.equal(e.issues.length, 1, e.message);
    return e.issues[0]!;
  }
  return assert.fail(`expected a config error for:\n${text}`);
}
