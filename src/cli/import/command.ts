import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../config/errors.js';
import { validateConfig } from '../../config/load.js';
import { CfgSyntaxError, parseCfg } from './cfg-parser.js';
import { formatNotes, renderConfig, type ImportResult } from './emit.js';
import { importOAuth2Proxy } from './oauth2-proxy.js';
import { mergeAlpha, type AlphaImport } from './oauth2-proxy-alpha.js';
import { AlphaSyntaxError, parseAlpha } from './oauth2-proxy-alpha-file.js';
import { ImportNotes } from './emit.js';
import { resolveSettings } from './oauth2-proxy-options.js';
import { importPomerium, PomeriumSyntaxError } from './pomerium.js';
import { IMPORT_HELP } from './help.js';

export async function importCommand(argv: string[]): Promise<number> {
  const [peer, ...rest] = argv;
  if (!peer || peer === '--help' || peer === '-h') {
    console.log(IMPORT_HELP);
    return peer ? 0 : 2;
  }
  if (peer !== 'oauth2-proxy' && peer !== 'pomerium') {
    console.error(
      `portcullis import: unknown peer "${peer}": expected oauth2-proxy or pomerium\n\n${IMPORT_HELP}`,
    );
    return 2;
  }
  const dash = rest.indexOf('--');
  const own = dash < 0 ? rest : rest.slice(0, dash);
  const peerArgs = dash < 0 ? [] : rest.slice(dash + 1);
  let values: {
    config?: string;
    'alpha-config'?: string;
    from?: string[];
    out?: string;
    help?: boolean;
  };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: own,
      options: {
        config: { type: 'string', short: 'c' },
        'alpha-config': { type: 'string' },
        from: { type: 'string', multiple: true },
        out: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (e) {
    console.error(`portcullis import ${peer}: ${(e as Error).message}\n\n${IMPORT_HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(IMPORT_HELP);
    return 0;
  }

  let result: ImportResult;
  if (peer === 'oauth2-proxy') {
    if (positionals.length) {
      console.error(
        `portcullis import oauth2-proxy: unexpected ${JSON.stringify(positionals[0])}: give the file as --config FILE and oauth2-proxy's flags after --`,
      );
      return 2;
    }
    for (const f of values.from ?? []) {
      if (!/^https?:\/\/[^/?#]+\/?$/.test(f)) {
        console.error(
          `portcullis import oauth2-proxy: --from expects an origin like https://app.example.com, got ${JSON.stringify(f)}`,
        );
        return 2;
      }
    }
    let file: { path: string; entries: ReturnType<typeof parseCfg> } | undefined;
    if (values.config !== undefined) {
      let text: string;
      try {
        text = readFileSync(values.config, 'utf8');
      } catch (e) {
        console.error(
          `portcullis import oauth2-proxy: cannot read ${values.config}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
        );
        return 1;
      }
      try {
        file = { path: values.config, entries: parseCfg(text, values.config) };
      } catch (e) {
        if (e instanceof CfgSyntaxError) {
          console.error(`portcullis import oauth2-proxy: ${e.message}`);
          return 1;
        }
        throw e;
      }
    }
    const resolved = resolveSettings({
      ...(file ? { file } : {}),
      env: process.env,
      args: peerArgs,
    });
    if (resolved.errors.length) {
      for (const e of resolved.errors) console.error(`portcullis import oauth2-proxy: ${e}`);
      return 1;
    }
    let settings = resolved.settings;
    let alpha: AlphaImport | undefined;
    const alphaNotes = new ImportNotes();
    const alphaPath = values['alpha-config'];
    if (alphaPath !== undefined) {
      let text: string;
      try {
        text = readFileSync(alphaPath, 'utf8');
      } catch (e) {
        console.error(
          `portcullis import oauth2-proxy: cannot read ${alphaPath}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
        );
        return 1;
      }
      let parsed: ReturnType<typeof parseAlpha>;
      try {
        parsed = parseAlpha(text, alphaPath);
      } catch (e) {
        if (e instanceof AlphaSyntaxError) {
          console.error(`portcullis import oauth2-proxy: ${e.message}`);
          return 1;
        }
        throw e;
      }
      const merged = parsed.errors.length ? null : mergeAlpha(settings, parsed.alpha, alphaNotes);
      const errors = [...parsed.errors, ...(merged?.errors ?? [])];
      if (errors.length) {
        for (const e of errors) console.error(`portcullis import oauth2-proxy: ${e}`);
        console.error(
          `portcullis import oauth2-proxy: nothing written: ${alphaPath} cannot be carried over as it is`,
        );
        return 1;
      }
      settings = merged!.settings;
      alpha = merged!.alpha;
    }
    const sources = [
      alphaPath ?? null,
      file ? file.path : null,
      [...resolved.settings.values()].some((v) => v.from.startsWith('environment'))
        ? 'OAUTH2_PROXY_* variables'
        : null,
      peerArgs.length ? 'command-line flags' : null,
    ].filter(Boolean);
    result = importOAuth2Proxy(settings, {
      from: (values.from ?? []).map((f) => f.replace(/\/$/, '')),
      source: `oauth2-proxy (${sources.join(', ') || 'defaults'})`,
      ...(alpha ? { alpha } : {}),
    });
    if (alpha) {
      // Name the alpha field the user wrote, not the legacy setting it was read as.
      const named = (x: { setting: string; why: string }) => ({
        setting: alpha.rename(x.setting),
        why: x.why,
      });
      result.notes = [...alphaNotes.notes, ...result.notes.map(named)];
      result.errors = [...alphaNotes.errors, ...result.errors.map(named)];
    }
    for (const name of resolved.ignoredEnv)
      result.notes.push({
        setting: name,
        why: 'not an oauth2-proxy setting (oauth2-proxy ignores it too)',
      });
  } else {
    const file = positionals[0] ?? values.config;
    if (!file || positionals.length > 1 || peerArgs.length) {
      console.error(`portcullis import pomerium: expected one config file\n\n${IMPORT_HELP}`);
      return 2;
    }
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      console.error(
        `portcullis import pomerium: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      );
      return 1;
    }
    try {
      result = importPomerium(text, file);
    } catch (e) {
      if (e instanceof PomeriumSyntaxError) {
        console.error(`portcullis import pomerium: ${e.message}`);
        return 1;
      }
      throw e;
    }
  }

  const outName = values.out ?? 'the imported config';
  if (!result.errors.length) settle(result, outName);
  for (const line of formatNotes(result)) console.error(line);
  if (result.errors.length) {
    console.error(
      `portcullis import ${peer}: nothing written: ${result.errors.length} setting${result.errors.length === 1 ? '' : 's'} cannot be carried over safely`,
    );
    return 1;
  }
  const yaml = renderConfig(result);
  if (values.out !== undefined) {
    try {
      writeFileSync(values.out, yaml, { mode: 0o600 });
    } catch (e) {
      console.error(
        `portcullis import ${peer}: cannot write ${values.out}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      );
      return 1;
    }
    console.error(
      `portcullis import ${peer}: wrote ${values.out}; check it with \`portcullis check --config ${values.out}\``,
    );
  } else process.stdout.write(yaml);
  return 0;
}

/**
 * Loads the result as `portcullis check` would. A route that does not load (a policy criterion
 * Portcullis lacks, say) is dropped and reported rather than half-carried: a policy missing one
 * of its rules could let in someone the peer kept out. Files that cannot be read here are
 * reported and kept (they may exist where Portcullis will run); any other problem stops the import.
 */
function settle(result: ImportResult, file: string): void {
  const unreadable = new Set<string>();
  for (let round = 0; round < 50; round++) {
    let issues;
    try {
      const probe = withoutUnreadable(result.config, unreadable);
      validateConfig(renderConfig({ ...result, config: probe }), file, process.env);
      return;
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      issues = e.issues.filter((i) => i.severity === 'error');
    }
    const routes = result.config.routes as unknown[];
    const bad = new Set<number>();
    let progress = false;
    for (const i of issues) {
      const m = /^routes\[(\d+)\]/.exec(i.key);
      if (/^cannot read /.test(i.message) && !unreadable.has(i.key)) {
        unreadable.add(i.key);
        progress = true;
        result.notes.push({
          setting: i.key,
          why: `${i.message} here: it must exist where Portcullis runs`,
        });
      } else if (m && routes.length > 1 && !/^cannot read /.test(i.message)) bad.add(Number(m[1]));
      else if (!/^cannot read /.test(i.message))
        result.errors.push({ setting: i.key || 'config', why: i.message });
    }
    if (result.errors.length) return;
    if (bad.size) {
      progress = true;
      const keep: unknown[] = [];
      routes.forEach((r, idx) => {
        if (!bad.has(idx)) return void keep.push(r);
        const why = issues
          .filter((i) => i.key.startsWith(`routes[${idx}]`))
          .map(
            (i) =>
              `${i.key.slice(`routes[${idx}]`.length).replace(/^\./, '') || 'route'}: ${i.message}`,
          )
          .join('; ');
        result.notes.push({
          setting: `routes (${String((r as { from?: unknown }).from)})`,
          why: `dropped, so its host is not served: ${why}`,
        });
      });
      result.config.routes = keep;
      // Keys of later routes moved: their unreadable-file findings are found again.
      for (const k of [...unreadable]) if (k.startsWith('routes[')) unreadable.delete(k);
    }
    if (!progress) return;
  }
}

/** For validation only: stand-ins for `_file` settings whose file is not on this machine. */
function withoutUnreadable(
  config: Record<string, unknown>,
  keys: Set<string>,
): Record<string, unknown> {
  const probe = structuredClone(config);
  for (const key of keys) {
    const route = /^routes\[(\d+)\]\.(.+)$/.exec(key);
    if (route) {
      const r = (probe.routes as Array<Record<string, unknown>>)[Number(route[1])];
      if (r) delete r[route[2]!];
      continue;
    }
    if (key === 'cookie_secret_file') probe.cookie_secret = Buffer.alloc(32, 7).toString('base64');
    if (key === 'idp_client_secret_file') probe.idp_client_secret = 'stand-in';
    if (
      key === 'certificate_file' ||
      key === 'certificate_key_file' ||
      key.startsWith('certificates')
    ) {
      delete probe.certificate_file;
      delete probe.certificate_key_file;
      delete probe.certificates;
      delete probe.client_ca_file;
      probe.insecure_server = true;
    }
    delete probe[key];
  }
  return probe;
}
