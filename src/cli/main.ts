#!/usr/bin/env node
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.js';
import { ConfigError, formatIssue } from '../config/errors.js';
import { startPortcullis } from '../server.js';
import { Runtime } from '../runtime.js';
import { Idp } from '../identity/oidc.js';
import { createLogger } from '../observe/logger.js';

const HELP: Record<string, string> = {
  main: `portcullis — an identity-aware proxy

Usage: portcullis <command> [options]

Commands:
  serve       run the proxy
  check       validate a config file without serving, and list what to register at the IdP
  gen-secret  print a fresh cookie_secret (32 random bytes, base64)

Run "portcullis <command> --help" for a command's options.
The config file is --config FILE, else $PORTCULLIS_CONFIG, else ./portcullis.yaml.`,
  serve: `Usage: portcullis serve [--config FILE]

Runs the proxy with the given config. The process exits with status 2 and an error naming
the key and line when the config is invalid: a bad config never starts a half-working server.`,
  check: `Usage: portcullis check [--config FILE] [--format text|json]

Validates the config: schema, secrets, routes and policies. Prints every error and warning
with its key and line, and the callback and sign-out URLs to register at the identity provider.
Exit status: 0 valid (warnings are printed), 1 invalid.`,
  'gen-secret': `Usage: portcullis gen-secret

Prints 32 random bytes, base64-encoded: a value for cookie_secret.`,
};

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
  let values: { config?: string | undefined; format?: string | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, format: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (e) {
    console.error(`portcullis ${command}: ${(e as Error).message}\n\n${HELP[command]}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP[command]);
    return 0;
  }
  // A typo here would otherwise silently print text to a script that expects JSON.
  if (values.format !== undefined && (command !== 'check' || (values.format !== 'text' && values.format !== 'json'))) {
    console.error(`portcullis ${command}: ${command === 'check' ? `--format must be text or json, got "${values.format}"` : '--format applies only to check'}\n\n${HELP[command]}`);
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
  }
  return 2;
}

function check(file: string, json: boolean): number {
  try {
    const cfg = loadConfigFile(file);
    const rt = new Runtime(cfg, new Idp(cfg.idp), createLogger('silent'));
    const register = {
      redirect_uris: rt.callbackUrls(),
      post_logout_redirect_uris: rt.callbackUrls().map((u) => u.replace(/\/callback$/, '/signed_out')),
    };
    if (json) {
      console.log(JSON.stringify({ ok: true, file, issues: cfg.warnings, register }, null, 2));
    } else {
      for (const w of cfg.warnings) console.log(formatIssue(file, w));
      console.log(`${file}: OK (${cfg.routes.length} route${cfg.routes.length === 1 ? '' : 's'})`);
      console.log('Register these at the identity provider, character for character:');
      for (const u of register.redirect_uris) console.log(`  redirect URI:             ${u}`);
      for (const u of register.post_logout_redirect_uris) console.log(`  post-logout redirect URI: ${u}`);
    }
    return 0;
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
  try {
    cfg = loadConfigFile(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`portcullis: invalid config, not starting\n${e.message}`);
      return 2;
    }
    throw e;
  }
  let running;
  try {
    running = await startPortcullis(cfg);
  } catch (e) {
    console.error(`portcullis: cannot listen on ${cfg.listen.host}:${cfg.listen.port}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    return 1;
  }
  const stop = (): void => {
    void running.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return new Promise<number>(() => {});
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
