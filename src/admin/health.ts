import { createHash } from 'node:crypto';
import { upstreamLabel } from '../config/upstream-url.js';
import type { Idp } from '../identity/oidc.js';
import { readFile, stat } from 'node:fs/promises';
import type { ConfigIssue } from '../config/errors.js';
import { withTimeout } from '../observe/health.js';
import { audit } from '../observe/observer.js';
import type { AdminRequest } from './console.js';
import { ago, escapeHtml, renderFrame, sendHtml, time } from './render.js';

// What an on-call engineer checks first: can people sign in (IdP discovery, its keys), can
// sessions be read (the store, the channel that carries revocations), where the routes go, and
// which config is running (when it was loaded, the last reloads, what `portcullis check` says
// of it now).

interface Check {
  name: string;
  ok: boolean | null;
  detail: string;
}

export async function healthPage(a: AdminRequest): Promise<void> {
  const { rt } = a;
  const now = a.ctx.now;
  const checks: Check[] = [];
  // Every IdP (`idps:`): the ones after the default are named by their id.
  const all = rt.identities.all();
  for (const p of all) {
    const st = p.idp.status;
    const named = all.length > 1 ? ` (${escapeHtml(p.id)})` : '';
    const iss = escapeHtml(p.settings.issuer.href);
    checks.push({
      name: `Identity provider discovery${named}`,
      ok: st.ready,
      detail: st.ready
        ? `${iss} discovered ${st.readyAt ? ago(st.readyAt, now) : ''}`
        : `${iss}: ${escapeHtml(st.lastError ?? 'not finished yet')} (${st.attempts} attempt${st.attempts === 1 ? '' : 's'}); sign-ins get a 503 until it succeeds`,
    });
    checks.push(jwksCheck(p.idp, named));
  }
  const store = rt.sessions.store;
  const ping = (store as { ping?: () => Promise<void> }).ping;
  if (typeof ping === 'function') {
    try {
      await withTimeout(ping.call(store), 2000, `the ${store.kind} session store`);
      checks.push({ name: 'Session store', ok: true, detail: `${escapeHtml(store.kind)} answers` });
    } catch (e) {
      checks.push({
        name: 'Session store',
        ok: false,
        detail: `${escapeHtml(store.kind)}: ${escapeHtml((e as Error).message)}; requests that need a session get a 503`,
      });
    }
    const since = store.watchedSince?.(now) ?? null;
    checks.push({
      name: 'Revocations from other replicas',
      ok: since !== null,
      detail:
        since === null
          ? 'the store’s channel is down or quiet: this replica re-reads every session from the store after 1 s, so a revocation elsewhere still takes effect within that bound'
          : since === 0
            ? 'one process only (memory store): every revocation is seen at once'
            : `listening since ${time(since)}`,
    });
  } else {
    checks.push({
      name: 'Session store',
      ok: null,
      detail: `${escapeHtml(store.kind)}: sessions live in the browsers, nothing to reach`,
    });
  }
  const checkRows = checks
    .map(
      (c) =>
        `<tr><th scope="row">${escapeHtml(c.name)}</th><td class="${c.ok === false ? 'bad' : 'ok'}">${c.ok === null ? '—' : c.ok ? '✓ ok' : '✗ failing'}</td><td>${c.detail}</td></tr>`,
    )
    .join('');

  // Load-balanced routes: whether each upstream takes traffic now (health checks, ejection).
  const live = new Map(rt.observer.upstreams().map((u) => [`${u.route} ${u.upstream}`, u]));
  const target = (r: (typeof rt.cfg.routes)[number], u: URL): string => {
    const s = live.get(`${r.id} ${upstreamLabel(u)}`);
    const state = !s
      ? ''
      : s.ejected
        ? ' <span class="bad">✗ ejected (outlier detection)</span>'
        : s.healthy
          ? ` <span class="ok">✓ healthy</span>, ${s.inFlight} in flight`
          : ' <span class="bad">✗ failing its health checks</span>';
    return `<code>${escapeHtml(upstreamLabel(u))}</code>${state}`;
  };
  const upstreams = rt.cfg.routes
    .map(
      (r) =>
        `<tr><td><code>${escapeHtml(r.id)}</code></td><td><code>${escapeHtml(r.from.raw)}${r.match.kind === 'any' ? '' : ` ${escapeHtml(r.match.kind)} ${escapeHtml(r.match.value)}`}</code></td><td>${r.to.length ? r.to.map((u) => target(r, u)).join('<br>') : '<span class="muted">answered by Portcullis (redirect, response or forward-auth only)</span>'}</td></tr>`,
    )
    .join('');

  const cfgInfo = await configInfo(a);
  const reloads = rt.observer.recent.reloads;
  const reloadRows = reloads.length
    ? `<table class="list"><thead><tr><th scope="col">When</th><th scope="col">Trigger</th><th scope="col">Result</th></tr></thead><tbody>${reloads
        .map(
          (r) =>
            `<tr><td>${time(r.at)}</td><td>${escapeHtml(r.trigger)}</td><td class="${r.ok ? 'ok' : 'bad'}">${r.ok ? '✓ in force' : '✗ refused, the previous config stays'}${[...r.errors, ...r.notes].length ? `<ul>${[...r.errors, ...r.notes].map((e) => `<li>${escapeHtml(e)}</li>`).join('')}</ul>` : ''}</td></tr>`,
        )
        .join('')}</tbody></table>`
    : '<p class="muted">No reload since this process started.</p>';
  audit(rt).info(
    { event: 'admin_view', requestId: a.requestId, admin: a.admin, page: 'health' },
    'admin console: health viewed',
  );
  const body = `<h2>Dependencies</h2><table class="list"><tbody>${checkRows}</tbody></table><h2>Configuration</h2>${cfgInfo}<h3>Reloads</h3>${reloadRows}<h2>Routes and upstreams</h2><table class="list"><thead><tr><th scope="col">Route</th><th scope="col">From</th><th scope="col">To</th></tr></thead><tbody>${upstreams}</tbody></table><p class="muted">Process ${process.pid}, Node ${escapeHtml(process.version)}, serving since ${time(rt.observer.recent.startedAt)}.</p>`;
  sendHtml(
    a.res,
    200,
    renderFrame({ page: 'health', title: 'Health', admin: a.admin, requestId: a.requestId, body }),
    a.requestId,
    a.setCookies,
  );
}

function jwksCheck(idp: Idp, named: string): Check {
  const name = `Identity provider keys (JWKS)${named}`;
  if (!idp.status.ready) return { name, ok: null, detail: 'waiting for discovery' };
  let keys;
  try {
    keys = idp.keys();
  } catch (e) {
    return { name, ok: false, detail: escapeHtml((e as Error).message) };
  }
  if (!keys) return { name, ok: null, detail: 'the IdP publishes no jwks_uri' };
  const k = keys as unknown as { fresh?: boolean; coolingDown?: boolean; jwks?: () => unknown };
  const set = k.jwks?.() as { keys?: unknown[] } | undefined;
  if (!set)
    return {
      name,
      ok: null,
      detail: 'not fetched yet: fetched at the first sign-in or bearer token',
    };
  return {
    name,
    ok: true,
    detail: `${set.keys?.length ?? 0} key${set.keys?.length === 1 ? '' : 's'} cached; ${k.fresh ? 'fetched within the last 10 minutes' : 'older than 10 minutes, refetched at the next unknown key id'}${k.coolingDown ? '; refetched less than 30 s ago (a new key id waits for the cooldown)' : ''}`,
  };
}

async function configInfo(a: AdminRequest): Promise<string> {
  const { rt } = a;
  const cfg = rt.cfg;
  const rows: Array<[string, string]> = [
    ['File', `<code>${escapeHtml(cfg.file)}</code>`],
    ['In force since', `${time(rt.builtAt)} (${ago(rt.builtAt, a.ctx.now)})`],
    ['Routes', String(cfg.routes.length)],
    ['Session storage', escapeHtml(cfg.sessionStorage.kind)],
  ];
  let issues: ConfigIssue[] = [...cfg.warnings];
  let lintNote = '';
  try {
    const [text, info] = await Promise.all([readFile(cfg.file, 'utf8'), stat(cfg.file)]);
    rows.push([
      'Version on disk',
      `sha256 <code>${createHash('sha256').update(text).digest('hex').slice(0, 12)}</code>, modified ${time(info.mtimeMs)}`,
    ]);
    if (info.mtimeMs > rt.builtAt)
      lintNote = `<p class="warn" role="alert">The file changed after the running config was loaded: the change is not in force (see the last reload below). The findings are those of the file on disk.</p>`;
    const { lintConfig } = await import('../config/lint.js');
    issues = [...issues, ...lintConfig(cfg, text)];
  } catch (e) {
    lintNote = `<p class="warn">The config file cannot be read (${escapeHtml((e as NodeJS.ErrnoException).code ?? (e as Error).message)}): only the findings made at load time are shown.</p>`;
  }
  const table = `<table><tbody>${rows.map(([k, v]) => `<tr><th scope="row">${k}</th><td>${v}</td></tr>`).join('')}</tbody></table>`;
  const findings = issues.length
    ? `<table class="list" id="lints"><thead><tr><th scope="col">Severity</th><th scope="col">Key</th><th scope="col">Finding</th></tr></thead><tbody>${issues
        .map(
          (i) =>
            `<tr><td class="${i.severity === 'error' ? 'bad' : ''}">${escapeHtml(i.severity)}</td><td><code>${escapeHtml(i.key)}</code>${i.line ? ` <span class="muted">line ${i.line}</span>` : ''}</td><td>${escapeHtml(i.message)}${i.fix ? `<br><span class="muted">${escapeHtml(i.fix)}</span>` : ''}</td></tr>`,
        )
        .join('')}</tbody></table>`
    : '<p class="ok" id="lints">✓ <code>portcullis check</code> finds nothing to change.</p>';
  return `${table}<h3>portcullis check</h3>${lintNote}${findings}`;
}
