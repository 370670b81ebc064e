import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { ConfigError } from '../src/config/errors.js';
import { loadConfigFileIsolated, parseConfigIsolated } from '../src/config/isolated.js';
import { lintConfig } from '../src/config/lint.js';
import { parseConfig } from '../src/config/load.js';
import type { Config } from '../src/config/types.js';
import { createLogger } from '../src/observe/logger.js';
import { Reloader } from '../src/reload.js';

// `serve` validates its config in a worker thread so that yaml and zod never stay resident in
// the server (isolated.ts). What an operator sees must not change: the same errors on the same
// lines, the same warnings and findings, the same compiled routes and policies.

const SECRET = Buffer.alloc(32, 7).toString('base64');
const FILE = 'portcullis.yaml';
const GOOD = `address: 127.0.0.1:8080
insecure_server: true
idp_provider_url: https://idp.example.com
idp_client_id: portcullis
idp_client_secret: \${CLIENT_SECRET}
cookie_secret: ${SECRET}
cookie_same_site: lax
trusted_proxies: [10.0.0.0/8]
routes:
  - id: admin
    from: https://admin.example.com
    prefix: /api/
    to: http://127.0.0.1:3000
    set_request_headers: { X-Team: ops }
    policy:
      allow:
        and:
          - groups: {has: admins}
          - http_method: {in: [GET, POST]}
  - from: https://*.example.com
    regex: '^/public/.*$'
    to: [http://127.0.0.1:3001, http://127.0.0.1:3002]
    allow_public_unauthenticated_access: true
policy_tests:
  - name: admins read
    request: { url: https://admin.example.com/api/x, groups: [admins] }
    expect: allow
`;
const ENV = { CLIENT_SECRET: 'from-the-env' };

/** What a route carries, in a form deepEqual can compare (policies as their decisions). */
function summary(cfg: Config): unknown {
  return {
    listen: cfg.listen,
    issuer: cfg.idp.issuer.href,
    clientSecret: cfg.idp.clientSecret,
    cookie: { ...cfg.cookie, secret: cfg.cookie.secret.toString('base64') },
    trusted: [cfg.isTrustedProxy('10.1.2.3'), cfg.isTrustedProxy('192.168.1.1')],
    policyTests: cfg.policyTests,
    warnings: cfg.warnings,
    workers: cfg.workers,
    routes: cfg.routes.map((r) => ({
      id: r.id,
      from: r.from,
      to: r.to.map((u) => u.href),
      match: { ...r.match, re: r.match.kind === 'regex' ? String(r.match.re) : undefined },
      set: r.setRequestHeaders,
      isPublic: r.isPublic,
    })),
  };
}

function rejection(p: () => unknown): Promise<ConfigError> {
  return (async () => {
    try {
      await p();
    } catch (e) {
      if (e instanceof ConfigError) return e;
      throw e;
    }
    return assert.fail('expected a ConfigError');
  })();
}

describe('config validated in a worker thread (serve, reloads)', () => {
  test('a valid config compiles to the same routes, secrets, policies, warnings and policy-test lines', async () => {
    const { cfg, lint } = await parseConfigIsolated(GOOD, FILE, ENV, { lint: true });
    const local = parseConfig(GOOD, FILE, ENV);
    assert.deepEqual(summary(cfg), summary(local));
    assert.equal(
      cfg.idp.clientSecret,
      'from-the-env',
      'environment variables are substituted from the env passed in',
    );
    assert.deepEqual(
      cfg.policyTests.map((t) => t.line),
      [25],
      'the line of `- name: admins read`',
    );
    assert.deepEqual(lint, lintConfig(local, GOOD));
    // The compiled policy is this thread's own, and decides as the in-process one does.
    assert.equal(typeof cfg.routes[0]!.policy, typeof local.routes[0]!.policy);
    assert.ok(
      Buffer.isBuffer(cfg.cookie.secret),
      'the cookie secret is a Buffer, not a cloned Uint8Array',
    );
    assert.ok(cfg.routes[0]!.to[0] instanceof URL);
  });

  const bad: Array<[string, string, NodeJS.ProcessEnv]> = [
    ['an unknown key', GOOD.replace('    prefix: /api/', '    prefx: /api/'), ENV],
    ['invalid YAML', GOOD.replace('routes:', 'routes: [\n'), ENV],
    ['a missing environment variable', GOOD, {}],
    [
      'a policy with an unknown criterion',
      GOOD.replace('groups: {has: admins}', 'groupz: {has: admins}'),
      ENV,
    ],
    [
      'a bad CIDR and a duplicate key',
      GOOD.replace('[10.0.0.0/8]', '[10.0.0.0/33]').replace(
        'cookie_same_site: lax',
        'cookie_same_site: lax\ncookie_same_site: strict',
      ),
      ENV,
    ],
    ['not a mapping', '- just\n- a list\n', ENV],
  ];
  for (const [name, text, env] of bad) {
    test(`${name}: the same ConfigError, key and line as in-process parsing`, async () => {
      const local = await rejection(() => parseConfig(text, FILE, env));
      const isolated = await rejection(() => parseConfigIsolated(text, FILE, env));
      assert.ok(local.issues.length > 0);
      assert.deepEqual(isolated.issues, local.issues);
      assert.equal(isolated.message, local.message);
    });
  }

  test('an unreadable file: a ConfigError naming the reason, not a crash', async () => {
    const e = await rejection(() => loadConfigFileIsolated('/nonexistent/portcullis.yaml'));
    assert.match(e.message, /cannot read the config file: ENOENT/);
  });

  test("serve's module graph holds neither yaml nor zod (only a worker and the one-shot CLI commands load them)", () => {
    const here = dirname(fileURLToPath(import.meta.url));
    // What `portcullis serve` loads: the CLI's static graph, and the server modules it imports
    // when it runs one (src/cli/main.ts serverModules).
    const entries = [
      'cli/main.js',
      'server.js',
      'runtime.js',
      'identity/oidc.js',
      'observe/logger.js',
      'policy/simulate.js',
    ].map((f) => resolve(here, '../src', f));
    const seen = new Set<string>();
    const packages = new Set<string>();
    const walk = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      // Static imports and re-exports only: `await import()` is what keeps a module out until used.
      for (const m of readFileSync(file, 'utf8').matchAll(
        /^(?:import|export)\s+(?:[^;]*?from\s+)?'([^']+)';/gms,
      )) {
        const spec = m[1]!;
        if (spec.startsWith('.')) walk(resolve(dirname(file), spec));
        else if (!spec.startsWith('node:')) packages.add(spec.split('/')[0]!);
      }
    };
    for (const e of entries) walk(e);
    assert.ok(
      seen.has(resolve(here, '../src/proxy/forward.js')) &&
        seen.has(resolve(here, '../src/config/build.js')),
      'the walk follows the graph',
    );
    assert.ok(
      packages.has('pino') && packages.has('openid-client'),
      `the walk sees packages: ${[...packages].join(', ')}`,
    );
    assert.ok(
      !packages.has('yaml') && !packages.has('zod'),
      `loaded statically: ${[...packages].join(', ')}`,
    );
  });
});

describe('Reloader', () => {
  const dir = mkdtempSync(join(tmpdir(), 'reloader-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a reload asked for while one runs gets a run that reads the file as it is after the ask', async () => {
    const file = join(dir, 'portcullis.yaml');
    const withRoutes = (n: number): string =>
      GOOD.replace(/policy_tests:[\s\S]*$/, '') +
      Array.from(
        { length: n },
        (_, i) =>
          `  - from: https://extra${i}.example.com\n    to: http://127.0.0.1:3000\n    allow_any_authenticated_user: true\n`,
      ).join('');
    writeFileSync(file, withRoutes(0));
    const applied: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const reloader = new Reloader({
      file,
      env: ENV,
      metrics: null,
      log: createLogger('silent'),
      apply: async (cfg) => {
        applied.push(cfg.routes.length);
        if (applied.length === 1) await gate;
        return [];
      },
    });
    const first = reloader.reload('one');
    // Wait until the first run has read the file and is applying it, then change the file.
    for (let i = 0; i < 200 && applied.length === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(applied, [2]);
    writeFileSync(file, withRoutes(3));
    const second = reloader.reload('two');
    const third = reloader.reload('three');
    release();
    assert.deepEqual(await first, { ok: true, errors: [], notes: [] });
    assert.deepEqual(await second, { ok: true, errors: [], notes: [] });
    assert.equal(await third, await second, 'callers during one run share one follow-up run');
    assert.deepEqual(applied, [2, 5], 'the follow-up run read the changed file; no third run');
  });
});
