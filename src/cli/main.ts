#!/usr/bin/env node
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfigFileIsolated } from '../config/isolated.js';
import { ConfigError, formatIssue } from '../config/errors.js';
import { SESSIONS_HELP, sessionsCommand } from './sessions.js';
import { EXPLAIN_HELP, explain } from './explain.js';
import { IMPORT_HELP } from './import/help.js';
import { TCP_HELP } from './tcp-help.js';
import { isClusterWorker, runCluster } from '../cluster.js';
import { CLUSTER_SIGNING_KEY_ENV, generatedSigningKeyPem } from '../identity/assertion.js';

const HELP: Record<string, string> = {
  main: `portcullis — an identity-aware proxy

Usage: portcullis <command> [options]

Commands:
  serve       run the proxy
  check       validate a config file without serving, run its policy_tests, and list what to register at the IdP
  explain     show whether one request would be allowed, by which route and policy rule, and why
  probe       prove a running deployment can log users in: IdP, client secret, upstreams, store
  sessions    list or revoke sessions in a redis/postgres session_storage
  gen-secret  print a fresh cookie_secret (32 random bytes, base64)
  import      write a Portcullis config from an oauth2-proxy or Pomerium one, listing what did not carry over
  tcp         tunnel TCP (SSH, databases, RTMP) through a tcp+https route: --listen, or stdin/stdout

Run "portcullis <command> --help" for a command's options.
The config file is --config FILE, else $PORTCULLIS_CONFIG, else ./portcullis.yaml.`,
  serve: `Usage: portcullis serve [--config FILE]

Runs the proxy with the given config. The process exits with status 2 and an error naming
the key and line when the config is invalid: a bad config never starts a half-working server.`,
  check: `Usage: portcullis check [--config FILE] [--format text|json]

Validates the config: schema, secrets, routes and policies, then looks for deployment mistakes
(authenticate host shared with an app, non-Secure cookies over HTTPS, secrets that env files
mangle or that are weak, memory sessions, routes shadowed by earlier ones, group rules without
a groups scope, tls_skip_verify, the IdP behind a login). Prints every finding with its key,
line and fix, and the callback and sign-out URLs to register at the identity provider.
Exit status: 0 valid (warnings are printed), 1 invalid.`,
  probe: `Usage: portcullis probe [--config FILE] [--format text|json|prometheus] [--timeout SECONDS]

Checks, without a user: the IdP's discovery document and signing keys; that the IdP still
accepts the client id and secret (a token request with a made-up code must answer invalid_grant;
invalid_client means the client was deleted or the secret is wrong); that every route's upstream
answers; and a write and read in the session store. One line per check with its time, then a
summary. Run it from cron or a Kubernetes CronJob (docs/operations.md).
Exit status: 0 every check passed, 1 a check failed or the config is invalid.`,
  sessions: SESSIONS_HELP,
  explain: EXPLAIN_HELP,
  import: IMPORT_HELP,
  tcp: TCP_HELP,
  'gen-secret': `Usage: portcullis gen-secret

Prints 32 random bytes, base64-encoded: a value for cookie_secret.`,
};

/**
 * The server's modules, loaded by the commands that run it: the primary of `workers: N` only
 * validates the config and supervises, and is ~9 MB smaller without them (64.7 -> 55.8 MB RSS).
 */
async function serverModules() {
  const [server, runtime, oidc, logger, simulate] = await Promise.all([
    import('../server.js'),
    import('../runtime.js'),
    import('../identity/oidc.js'),
    import('../observe/logger.js'),
    import('../policy/simulate.js'),
  ]);
  return {
    ...server,
    Runtime: runtime.Runtime,
    Idp: oidc.Idp,
    createLogger: logger.createLogger,
    runPolicyTests: simulate.runPolicyTests,
  };
}

function configPath(flag: string | undefined): string {
  return flag ?? process.env.PORTCULLIS_CONFIG ?? './portcullis.yaml';
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(HELP.main);
    return command ? 0 : 2;
  }
  if (!(command in HELP) || command === 'main') {
    console.error(`portcullis: unknown command "${command}"\n\n${HELP.main}`);
    return 2;
  }
  // Its own options (list|revoke, --user, --id): parsed in src/cli/sessions.ts.
  if (command === 'sessions') return sessionsCommand(rest, configPath);
  if (command === 'explain') return explain(rest, configPath);
  // A workstation command: no config file, its own options (src/cli/tcp.ts).
  if (command === 'tcp') {
    const { tcpCommand } = await import('./tcp.js');
    return tcpCommand(rest);
  }
  // Its own options (the peer, --from, --out, the peer's flags after --): src/cli/import/.
  if (command === 'import') {
    const { importCommand } = await import('./import/command.js');
    return importCommand(rest);
  }
  let values: {
    config?: string | undefined;
    format?: string | undefined;
    timeout?: string | undefined;
    help?: boolean | undefined;
  };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        config: { type: 'string', short: 'c' },
        format: { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (e) {
    console.error(`portcullis ${command}: ${(e as Error).message}\n\n${HELP[command]}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP[command]);
    return 0;
  }
  // A typo here would otherwise silently print text to a script that expects JSON.
  if (
    values.format !== undefined &&
    command === 'probe' &&
    !['text', 'json', 'prometheus'].includes(values.format)
  ) {
    console.error(
      `portcullis probe: --format must be text, json or prometheus, got "${values.format}"\n\n${HELP.probe}`,
    );
    return 2;
  }
  if (
    values.format !== undefined &&
    command !== 'probe' &&
    (command !== 'check' || (values.format !== 'text' && values.format !== 'json'))
  ) {
    console.error(
      `portcullis ${command}: ${command === 'check' ? `--format must be text or json, got "${values.format}"` : '--format applies only to check and probe'}\n\n${HELP[command]}`,
    );
    return 2;
  }
  const timeoutS = values.timeout === undefined ? 5 : Number(values.timeout);
  if (values.timeout !== undefined && (command !== 'probe' || !(timeoutS > 0 && timeoutS <= 300))) {
    console.error(
      `portcullis ${command}: ${command === 'probe' ? `--timeout must be a number of seconds between 0 and 300, got "${values.timeout}"` : '--timeout applies only to probe'}\n\n${HELP[command]}`,
    );
    return 2;
  }
  switch (command) {
    case 'gen-secret':
      console.log(randomBytes(32).toString('base64'));
      return 0;
    case 'check':
      return check(configPath(values.config), values.format === 'json');
    case 'serve':
      return serve(configPath(values.config));
    case 'probe':
      return probe(
        configPath(values.config),
        (values.format ?? 'text') as 'text' | 'json' | 'prometheus',
        timeoutS * 1000,
      );
  }
  return 2;
}

async function check(file: string, json: boolean): Promise<number> {
  try {
    const { loadConfigFile } = await import('../config/load.js');
    const { lintConfig } = await import('../config/lint.js');
    const { Runtime, Idp, createLogger, runPolicyTests } = await serverModules();
    const cfg = loadConfigFile(file);
    const rt = new Runtime(cfg, new Idp(cfg.idp), createLogger('silent'));
    const issues = [...cfg.warnings, ...lintConfig(cfg, readFileSync(file, 'utf8'))];
    for (const f of await runPolicyTests(cfg, rt.routes)) {
      issues.push({
        key: f.key,
        line: f.line,
        column: 1,
        severity: 'error',
        message: `policy test "${f.name}" expected ${f.expected} but got ${f.got}: ${f.explanation.join('; ')}`,
      });
    }
    const ok = !issues.some((i) => i.severity === 'error');
    // Any host Portcullis answers on serves the logout endpoints; the first one is named.
    const logoutOrigin =
      cfg.idp.provider === 'github'
        ? null
        : (URL.parse(rt.callbackUrls()[0] ?? '')?.origin ?? null);
    const register = {
      ...(cfg.idps.length > 1 ? { idps: cfg.idps.map((i) => i.id) } : {}),
      redirect_uris: rt.callbackUrls(),
      post_logout_redirect_uris: rt
        .callbackUrls()
        .map((u) => u.replace(/\/callback$/, '/signed_out')),
      ...(logoutOrigin
        ? {
            backchannel_logout_uri: `${logoutOrigin}/.portcullis/backchannel-logout`,
            frontchannel_logout_uri: `${logoutOrigin}/.portcullis/frontchannel-logout`,
          }
        : {}),
    };
    if (json) {
      console.log(JSON.stringify({ ok, file, issues, register }, null, 2));
    } else {
      for (const w of issues)
        (w.severity === 'error' ? console.error : console.log)(formatIssue(file, w));
      const errors = issues.filter((i) => i.severity === 'error').length;
      console.log(
        ok
          ? `${file}: OK (${cfg.routes.length} route${cfg.routes.length === 1 ? '' : 's'})`
          : `${file}: ${errors} error${errors === 1 ? '' : 's'}: the config loads, but will not work as written`,
      );
      // Several IdPs share the one callback: each must have it registered.
      console.log(
        cfg.idps.length > 1
          ? `Register these at each identity provider (${cfg.idps.map((i) => i.id).join(', ')}), character for character:`
          : 'Register these at the identity provider, character for character:',
      );
      for (const u of register.redirect_uris) console.log(`  redirect URI:             ${u}`);
      for (const u of register.post_logout_redirect_uris)
        console.log(`  post-logout redirect URI: ${u}`);
      if (register.backchannel_logout_uri) {
        console.log(`  back-channel logout URI:  ${register.backchannel_logout_uri}`);
        console.log(
          `  front-channel logout URI: ${register.frontchannel_logout_uri} (only where the IdP has no back-channel logout)`,
        );
        if (cfg.sessionStorage.kind === 'cookie')
          console.log(
            '  note: with session_storage cookie, a logout from the IdP is refused only by the process that receives it (docs/identity-providers.md)',
          );
      }
    }
    return ok ? 0 : 1;
  } catch (e) {
    if (e instanceof ConfigError) {
      if (json) console.log(JSON.stringify({ ok: false, file, issues: e.issues }, null, 2));
      else console.error(e.message);
      return 1;
    }
    throw e;
  }
}

async function serve(file: string): Promise<number> {
  let cfg;
  let findings;
  try {
    // The same findings as `portcullis check`, so a deployment that skipped it still hears them.
    // (Printed once: by the primary when there are several workers.)
    ({ cfg, lint: findings } = await loadConfigFileIsolated(file, process.env, {
      lint: !isClusterWorker(),
    }));
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`portcullis: invalid config, not starting\n${e.message}`);
      return 2;
    }
    throw e;
  }
  for (const i of findings) if (i.severity !== 'info') console.error(formatIssue(file, i));
  // workers > 1: this process only supervises; each worker runs this same serve() (src/cluster.ts).
  if (cfg.workers > 1 && !isClusterWorker()) {
    if (!cfg.assertion.generated) return runCluster(cfg.workers);
    // No signing_key: the workers would each generate their own, and upstreams would see
    // assertions from several keys behind one address. The primary generates it once instead,
    // hands it to its workers (only to them: their environment, read once), and warns once.
    const w = cfg.warnings.find((i) => i.key === 'signing_key');
    console.error(
      formatIssue(file, {
        key: 'signing_key',
        line: w?.line ?? 0,
        column: w?.column ?? 0,
        severity: 'warning',
        message: `no signing_key: X-Portcullis-Jwt-Assertion is signed with a key generated at start and shared by the ${cfg.workers} workers, so upstreams see a new key after every restart and replicas disagree; set signing_key_file to a PEM private key (e.g. \`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256\`)`,
      }),
    );
    return runCluster(cfg.workers, undefined, {
      [CLUSTER_SIGNING_KEY_ENV]: generatedSigningKeyPem(),
    });
  }
  const { startPortcullis } = await serverModules();
  let running;
  try {
    running = await startPortcullis(cfg, { configFile: file });
  } catch (e) {
    console.error(
      `portcullis: cannot listen on ${cfg.listen.host}:${cfg.listen.port}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
    return 1;
  }
  const r = running;
  process.on('SIGHUP', () => void r.reload('SIGHUP'));
  let stopping = false;
  const stop = (): void => {
    // A second signal means "now": the operator (or the orchestrator) has stopped waiting.
    if (stopping) process.exit(1);
    stopping = true;
    void r.shutdown().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return new Promise<number>(() => {});
}

async function probe(
  file: string,
  format: 'text' | 'json' | 'prometheus',
  timeoutMs: number,
): Promise<number> {
  let cfg;
  try {
    const { loadConfigFile } = await import('../config/load.js');
    cfg = loadConfigFile(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      if (format === 'json')
        console.log(JSON.stringify({ ok: false, file, issues: e.issues }, null, 2));
      else console.error(`portcullis probe: invalid config\n${e.message}`);
      return 1;
    }
    throw e;
  }
  // Loaded here: probe uses undici's full client API, which `serve` has no need to keep in memory.
  const { formatJson, formatPrometheus, formatText, probeOk, runProbe } =
    await import('./probe.js');
  const { buildRuntime, Idp, createLogger } = await serverModules();
  const rt = buildRuntime(cfg, new Idp(cfg.idp), createLogger('silent'));
  const started = performance.now();
  let checks;
  try {
    checks = await runProbe(cfg, {
      timeoutMs,
      store: rt.sessions.store,
      redirectUri: rt.callbackUrls()[0],
    });
  } finally {
    await rt.sessions.store.close().catch(() => {});
  }
  const ms = performance.now() - started;
  console.log(
    format === 'json'
      ? formatJson(checks, ms)
      : format === 'prometheus'
        ? formatPrometheus(checks)
        : formatText(checks, ms),
  );
  return probeOk(checks) ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (e: unknown) => {
    console.error(`portcullis: ${(e as Error)?.message ?? String(e)}`);
    process.exitCode = 1;
  },
);
