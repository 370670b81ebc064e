import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { lintConfig } from '../src/config/lint.js';
import { parseConfig } from '../src/config/load.js';
import type { ConfigIssue } from '../src/config/errors.js';

// `portcullis check` beyond the schema: each deployment mistake from the field reports, with a
// config that makes it and one that does not.

const COOKIE = 'q4Nf0pX9V2mH7sLr8cTz1wYb3eKj6uGd5aRi0oPn2Ms=';
const CLIENT = 'Zk3Lm9Qp2Wx7Rt5Yv8Nb4Hc6Jd1Fg0Sa';

function base(over: { globals?: string; routes?: string } = {}): string {
  return `address: 127.0.0.1:8080
insecure_server: true
cookie_secret: ${COOKIE}
idp_provider_url: https://idp.example.net/realms/corp
idp_client_id: portcullis
idp_client_secret: ${CLIENT}
${over.globals ?? ''}
routes:
${
  over.routes ??
  `  - from: https://app.example.com
    to: http://10.0.0.5:3000
    allow_any_authenticated_user: true
`
}`;
}

function lint(yaml: string, env: NodeJS.ProcessEnv = {}): ConfigIssue[] {
  return lintConfig(parseConfig(yaml, 'lint.yaml', env), yaml);
}

function find(issues: ConfigIssue[], re: RegExp): ConfigIssue | undefined {
  return issues.find((i) => re.test(i.message));
}

describe('portcullis check lints', () => {
  test('a clean config has no findings', () => {
    assert.deepEqual(lint(base()), []);
  });

  test('authenticate host equal to a route host (an auth host that is also an app host loses the return URL)', () => {
    const bad = lint(
      base({
        globals: 'authenticate_service_url: https://app.example.com\ncookie_domain: example.com',
      }),
    );
    const w = find(bad, /authenticate service .* is also this route's host/);
    assert.ok(w, JSON.stringify(bad));
    assert.equal(w.severity, 'warning');
    assert.equal(w.key, 'routes[0].from');
    assert.ok(w.line > 0);
    assert.match(w.fix!, /auth\.<parent domain>/);
    assert.equal(
      find(
        lint(
          base({
            globals:
              'authenticate_service_url: https://auth.example.com\ncookie_domain: example.com',
          }),
        ),
        /is also this route's host/,
      ),
      undefined,
    );
  });

  test('a route host outside cookie_domain needs the handoff (info)', () => {
    const routes = `  - from: https://app.example.com
    to: http://10.0.0.5:3000
    allow_any_authenticated_user: true
  - from: https://wiki.other.org
    to: http://10.0.0.6:3000
    allow_any_authenticated_user: true
`;
    const issues = lint(
      base({
        globals: 'authenticate_service_url: https://auth.example.com\ncookie_domain: example.com',
        routes,
      }),
    );
    const i = find(issues, /wiki\.other\.org is not under cookie_domain/);
    assert.ok(i, JSON.stringify(issues));
    assert.equal(i.severity, 'info');
    assert.match(i.message, /handoff/);
    assert.equal(i.key, 'routes[1].from');
    assert.equal(find(issues, /app\.example\.com is not under/), undefined);
  });

  test('cookie_secure: false with TLS', () => {
    const https = base({
      globals: 'cookie_secure: false',
      routes:
        '  - from: https://app.example.com\n    to: http://10.0.0.5:3000\n    allow_any_authenticated_user: true\n',
    });
    const w = find(lint(https), /cookie_secure is false/);
    assert.ok(w);
    assert.equal(w.key, 'cookie_secure');
    // Plain HTTP everywhere (a lab, or TLS terminated elsewhere on http routes): nothing to say.
    const http = base({
      globals: 'cookie_secure: false',
      routes:
        '  - from: http://app.example.com\n    to: http://10.0.0.5:3000\n    allow_any_authenticated_user: true\n',
    });
    assert.equal(find(lint(http), /cookie_secure/), undefined);
  });

  test('client secrets that env files mangle, short ones and weak ones', () => {
    const mangled = lint(base().replace(CLIENT, "'Zk3$Lm9`Qp2 Wx7Rt5Yv8Nb4Hc6Jd1'"));
    const m = find(mangled, /env files and shells/);
    assert.ok(m, JSON.stringify(mangled));
    assert.match(m.message, /`\$`/);
    assert.match(m.message, /backtick/);
    assert.match(m.message, /whitespace/);
    assert.ok(!m.message.includes('Zk3'), 'the finding never prints the secret');
    assert.match(m.fix!, /idp_client_secret_file/);

    const short = find(lint(base().replace(CLIENT, 'abc123')), /only 6 characters/);
    assert.ok(short);
    assert.ok(
      find(lint(base().replace(CLIENT, 'aaaaaaaaaaaaaaaaaaaaaaaabbbbbbbb')), /low-entropy/),
    );
    assert.ok(
      find(lint(base().replace(CLIENT, 'my-portcullis-client-secret-2024')), /low-entropy/),
    );

    // A secret read from a file does not pass through an env file.
    const dir = mkdtempSync(join(tmpdir(), 'lint-'));
    writeFileSync(join(dir, 'secret'), 'Zk3$Lm9Qp2Wx7Rt5Yv8Nb4Hc6Jd1Fg0Sa\n');
    const fromFile = base().replace(
      `idp_client_secret: ${CLIENT}`,
      `idp_client_secret_file: ${join(dir, 'secret')}`,
    );
    assert.deepEqual(lint(fromFile), []);
  });

  test('every IdP of `idps:` has its client secret linted, each finding at its own key', () => {
    const idps = (partner: string, extra = '') => `address: 127.0.0.1:8080
insecure_server: true
cookie_secret: ${COOKIE}
${extra}
idps:
  - id: corp
    idp_provider_url: https://idp.example.net/realms/corp
    idp_client_id: portcullis
    idp_client_secret: ${CLIENT}
  - id: partner
    idp_provider_url: https://login.partner.example/
    idp_client_id: portcullis
    idp_client_secret: ${partner}
routes:
  - from: https://app.example.com
    to: http://10.0.0.5:3000
    allow_any_authenticated_user: true
`;
    assert.deepEqual(lint(idps('Vb7Nq2Lx9Ws4Kd8Pr3Fm6Ht1Jc5Gz0Ya')), []);
    const weak = lint(idps('changeme-changeme-changeme'));
    assert.equal(weak.length, 1, JSON.stringify(weak));
    assert.equal(weak[0]!.key, 'idps[1].idp_client_secret');
    assert.match(weak[0]!.message, /the client secret of the IdP partner looks low-entropy/);
    assert.ok(weak[0]!.line > 0);
    const mangled = lint(idps("'Vb7N$q2Lx9Ws4Kd8Pr3Fm6Ht1Jc5Gz'"));
    const m = find(mangled, /env files and shells/);
    assert.ok(m, JSON.stringify(mangled));
    assert.equal(m.key, 'idps[1].idp_client_secret');
    assert.ok(!m.message.includes('Vb7N'), 'the finding never prints the secret');

    // The top-level keys and an `idps` entry side by side: each at its own place.
    const both = lint(
      idps(
        'abc123',
        'idp_provider_url: https://sso.example.org\nidp_client_id: portcullis\nidp_client_secret: short-one',
      ),
    );
    assert.deepEqual(
      both.map((f) => [
        f.key,
        /only \d+ characters/.test(f.message),
        /of the IdP (\w+)/.exec(f.message)?.[1],
      ]),
      [
        ['idp_client_secret', true, 'default'],
        ['idps[1].idp_client_secret', true, 'partner'],
      ],
    );
  });

  test('a non-random cookie secret', () => {
    const weak = Buffer.from('0123456789abcdef0123456789abcdef').toString('base64');
    const w = find(
      lint(base().replace(COOKIE, weak)),
      /cookie_secret decodes to 32 bytes with only 16/,
    );
    assert.equal(w, undefined, 'sixteen distinct values is the threshold, not below it');
    const weaker = Buffer.from('abababababababababababababababab').toString('base64');
    assert.ok(
      find(
        lint(base().replace(COOKIE, weaker)),
        /cookie_secret decodes to 32 bytes with only 2 distinct/,
      ),
    );
  });

  test('memory session storage: lost on restart', () => {
    const yaml = base({ globals: 'session_storage: memory' });
    let cfg;
    try {
      cfg = parseConfig(yaml, 'lint.yaml', {});
    } catch {
      // session_storage arrives with the session stores; until then the raw lint is checked alone.
      cfg = parseConfig(base(), 'lint.yaml', {});
    }
    const w = find(lintConfig(cfg, yaml), /session_storage is memory/);
    assert.ok(w);
    assert.equal(w.key, 'session_storage');
    assert.equal(find(lintConfig(cfg, base()), /session_storage/), undefined);
  });

  test('a public prefix listed after the catch-all on the same host is an error (public paths that must stay public)', () => {
    const shadowed = `  - from: https://videos.example.com
    to: http://10.0.0.5:9000
    allow_any_authenticated_user: true
  - from: https://videos.example.com
    prefix: /static/
    to: http://10.0.0.5:9000
    allow_public_unauthenticated_access: true
`;
    const issues = lint(base({ routes: shadowed }));
    const e = find(issues, /never matches/);
    assert.ok(e, JSON.stringify(issues));
    assert.equal(e.severity, 'error');
    assert.equal(e.key, 'routes[1]');
    assert.match(e.message, /routes\[0\] on line \d+ comes first/);
    assert.match(e.message, /public paths are therefore behind the login/);
    assert.match(e.fix!, /move this route above routes\[0\]/);

    const fixed = `  - from: https://videos.example.com
    prefix: /static/
    to: http://10.0.0.5:9000
    allow_public_unauthenticated_access: true
  - from: https://videos.example.com
    to: http://10.0.0.5:9000
    allow_any_authenticated_user: true
  - from: https://other.example.com
    prefix: /static/
    to: http://10.0.0.5:9000
    allow_public_unauthenticated_access: true
`;
    assert.equal(find(lint(base({ routes: fixed })), /never matches/), undefined);

    // A wider prefix and a wildcard host shadow too.
    const wide = `  - from: https://*.example.com
    prefix: /api/
    to: http://10.0.0.5:9000
    allow_any_authenticated_user: true
  - from: https://app.example.com
    path: /api/health
    to: http://10.0.0.5:9000
    allow_public_unauthenticated_access: true
`;
    assert.ok(find(lint(base({ routes: wide })), /never matches/));
  });

  test('group policies without a groups scope silently fail', () => {
    const routes = `  - from: https://app.example.com
    to: http://10.0.0.5:3000
    policy:
      - allow:
          or:
            - groups: {has: admins}
`;
    const w = find(lint(base({ routes })), /decides by group/);
    assert.ok(w);
    assert.equal(w.key, 'routes[0].policy');
    assert.equal(
      find(
        lint(base({ routes, globals: 'idp_scopes: [openid, profile, email, groups]' })),
        /decides by group/,
      ),
      undefined,
    );
    const legacy = `  - from: https://app.example.com
    to: http://10.0.0.5:3000
    allowed_groups: [admins]
`;
    assert.equal(
      find(lint(base({ routes: legacy })), /decides by group/)?.key,
      'routes[0].allowed_groups',
    );
  });

  test('tls_skip_verify', () => {
    const routes = `  - from: https://app.example.com
    to: https://10.0.0.5:8443
    tls_skip_verify: true
    allow_any_authenticated_user: true
`;
    const w = find(lint(base({ routes })), /tls_skip_verify turns off/);
    assert.ok(w);
    assert.equal(w.key, 'routes[0].tls_skip_verify');
    assert.deepEqual(lint(base({ routes: routes.replace('    tls_skip_verify: true\n', '') })), []);
  });

  test('the IdP behind a login is an error (the IdP behind its own login loops)', () => {
    const behind = `  - from: https://*.example.net
    to: http://10.0.0.9:8080
    allow_any_authenticated_user: true
`;
    const e = find(lint(base({ routes: behind })), /every login loops/);
    assert.ok(e);
    assert.equal(e.severity, 'error');
    // Published through Portcullis as a public route first: fine.
    const publicFirst = `  - from: https://idp.example.net
    to: http://10.0.0.9:8080
    allow_public_unauthenticated_access: true
${behind}`;
    assert.equal(find(lint(base({ routes: publicFirst })), /every login loops/), undefined);
  });

  test('the CLI exits 1 on errors and 0 with warnings, in text and JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'check-'));
    const run = (file: string, ...args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          ['dist/src/cli/main.js', 'check', '--config', file, ...args],
          { cwd: process.cwd() },
          (err, stdout, stderr) => {
            resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr });
          },
        );
      });
    const warnOnly = join(dir, 'warn.yaml');
    writeFileSync(
      warnOnly,
      base({
        routes:
          '  - from: https://app.example.com\n    to: https://10.0.0.5:8443\n    tls_skip_verify: true\n    allow_any_authenticated_user: true\n',
      }),
    );
    const w = await run(warnOnly);
    assert.equal(w.code, 0, w.stderr);
    assert.match(
      w.stdout,
      /warn\.yaml:\d+:\d+: warning: routes\[0\]\.tls_skip_verify: .*\(fix: give the upstream's CA/,
    );

    const broken = join(dir, 'broken.yaml');
    writeFileSync(
      broken,
      base({
        routes:
          '  - from: https://a.example.com\n    to: http://10.0.0.5:1\n  - from: https://a.example.com\n    prefix: /socket.io/\n    to: http://10.0.0.5:1\n    allow_public_unauthenticated_access: true\n',
      }),
    );
    const b = await run(broken);
    assert.equal(b.code, 1);
    assert.match(b.stderr, /error: routes\[1\]: this route never matches/);
    const j = await run(broken, '--format', 'json');
    assert.equal(j.code, 1);
    const out = JSON.parse(j.stdout) as { ok: boolean; issues: ConfigIssue[] };
    assert.equal(out.ok, false);
    assert.ok(out.issues.some((i) => i.severity === 'error' && i.key === 'routes[1]' && i.fix));
  });
});
