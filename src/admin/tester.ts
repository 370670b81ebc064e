import { audit } from '../observe/observer.js';
import {
  describeDecision,
  simulate,
  SimulationError,
  type SimulatedRequest,
} from '../policy/simulate.js';
import type { AdminRequest } from './console.js';
import { ADMIN, escapeHtml, renderFrame, sendHtml } from './render.js';

// The policy tester: `portcullis explain` in a form. It builds the same SimulatedRequest and asks
// the same simulate() and describeDecision() (policy/simulate.ts), against the running config,
// so its verdict and trace are the command's, line for line.

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

export async function testerPage(a: AdminRequest): Promise<void> {
  const { rt } = a;
  const p = a.params;
  const field = (k: string): string => (p.get(k) ?? '').trim().slice(0, 4000);
  const recent = rt.observer.recent.recentUsers();
  const picked = recent.find((u) => (u.email || u.user) === field('recent'));
  const routeIdx = field('route');
  const route = /^\d+$/.test(routeIdx) ? rt.cfg.routes[Number(routeIdx)] : undefined;
  let url = field('url');
  if (!url && route) url = exampleUrl(route.from.raw);
  const f = {
    url,
    method: (field('method') || 'GET').toUpperCase(),
    email: picked ? picked.email : field('email'),
    user: picked ? (picked.user !== picked.email ? picked.user : '') : field('user'),
    groups: picked ? picked.groups.join(', ') : field('groups'),
    claims: field('claims'),
    ip: field('ip'),
    time: field('time'),
  };
  let result = '';
  if (f.url) {
    const req: SimulatedRequest = { url: f.url, method: f.method };
    const errors: string[] = [];
    if (f.email) req.email = f.email;
    if (f.user) req.user = f.user;
    if (f.groups)
      req.groups = f.groups
        .split(',')
        .map((g) => g.trim())
        .filter(Boolean);
    if (f.claims) {
      try {
        const c: unknown = JSON.parse(f.claims);
        if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new Error();
        req.claims = c as Record<string, unknown>;
      } catch {
        errors.push('Claims: expected a JSON object, e.g. {"department": "ops"}');
      }
    }
    if (f.ip) req.ip = f.ip;
    if (f.time) req.time = f.time;
    if (!errors.length) {
      try {
        const d = await simulate(rt.cfg, rt.routes, req);
        const lines = describeDecision(d);
        const expect = d.kind === 'allow' ? 'allow' : d.kind === 'login' ? 'login' : 'deny';
        audit(rt).info(
          {
            event: 'admin_policy_test',
            requestId: a.requestId,
            admin: a.admin,
            url: f.url,
            as: f.email || f.user || '(anonymous)',
            verdict: lines[0],
          },
          'admin console: policy tested',
        );
        const yaml = await policyTestYaml(req, expect);
        result = `<section aria-live="polite" id="result"><h2>Result</h2><p><span class="verdict ${d.kind === 'allow' ? 'allow' : 'deny'}" id="verdict">${escapeHtml(lines[0]!)}</span></p><pre id="trace">${lines.map(escapeHtml).join('\n')}</pre><h2>As a policy test</h2><p class="muted">Paste under <code>policy_tests:</code>; <code>portcullis check</code> and every reload then hold the config to it.</p><pre id="policy-test">${escapeHtml(yaml)}</pre><p><button type="button" data-copy="policy-test" id="copy">Copy as policy_tests entry</button></p><h2>On the command line</h2><pre id="cli">${escapeHtml(cliLine(req))}</pre></section>`;
      } catch (e) {
        if (!(e instanceof SimulationError)) throw e;
        errors.push(e.message);
      }
    }
    if (errors.length)
      result = `<div class="warn" role="alert" id="result"><p>The request cannot be tested:</p><ul>${errors.map((m) => `<li>${escapeHtml(m)}</li>`).join('')}</ul></div>`;
  }
  const opt = (v: string, label: string, sel: boolean, attrs = ''): string =>
    `<option value="${escapeHtml(v)}"${sel ? ' selected' : ''}${attrs}>${escapeHtml(label)}</option>`;
  const routes = rt.cfg.routes
    .map((r, i) =>
      opt(
        String(i),
        `${r.id} (${r.from.raw}${r.match.kind === 'any' ? '' : ` ${r.match.kind} ${r.match.value}`})`,
        route === r,
        ` data-url="${escapeHtml(exampleUrl(r.from.raw, r.match.kind === 'any' ? '' : r.match.value))}"`,
      ),
    )
    .join('');
  const recentOpts = recent
    .map((u) =>
      opt(
        u.email || u.user,
        `${u.email || u.user}${u.groups.length ? ` (${u.groups.slice(0, 4).join(', ')}${u.groups.length > 4 ? ', …' : ''})` : ''}`,
        u === picked,
        ` data-email="${escapeHtml(u.email)}" data-user="${escapeHtml(u.user !== u.email ? u.user : '')}" data-groups="${escapeHtml(u.groups.join(', '))}"`,
      ),
    )
    .join('');
  const input = (id: string, label: string, value: string, extra = ''): string =>
    `<label for="${id}">${label}<input id="${id}" name="${id}" value="${escapeHtml(value)}"${extra}></label>`;
  const form = `<form method="get" action="${ADMIN}/tester" id="tester"><div class="grid"><label for="route">Route<select id="route" name="route"><option value="">(type a URL)</option>${routes}</select></label>${input('url', 'URL', f.url, ' type="url" size="40" placeholder="https://app.example.com/path"')}<label for="method">Method<select id="method" name="method">${METHODS.map((m) => opt(m, m, m === f.method)).join('')}</select></label></div><h2>Who</h2><p class="muted">Leave everything empty for an anonymous request.</p><div class="grid">${recent.length ? `<label for="recent">A recent user<select id="recent" name="recent"><option value="">(none)</option>${recentOpts}</select></label>` : ''}${input('email', 'E-mail', f.email, ' type="email" autocomplete="off"')}${input('user', 'User (the user claim)', f.user, ' autocomplete="off"')}${input('groups', 'Groups (comma-separated)', f.groups, ' autocomplete="off"')}</div><label for="claims">Other claims (JSON object)<textarea id="claims" name="claims" rows="2" cols="60" placeholder='{"department": "ops"}'>${escapeHtml(f.claims)}</textarea></label><h2>When and from where</h2><div class="grid">${input('time', 'Time (ISO 8601; empty = now)', f.time, ' placeholder="2026-03-29T08:30:00Z"')}${input('ip', 'Client address (empty = 203.0.113.10)', f.ip)}</div><p><button type="submit" id="run">Test</button></p></form>`;
  sendHtml(
    a.res,
    200,
    renderFrame({
      page: 'tester',
      title: 'Policy tester',
      admin: a.admin,
      requestId: a.requestId,
      body: `<p class="muted">Evaluates the running configuration exactly as <code>portcullis explain</code> does: same route matching, same policy, same trace.</p>${form}${result}`,
    }),
    a.requestId,
    a.setCookies,
  );
}

/** A URL that the route's `from` (and path matcher) matches, for a first try. */
function exampleUrl(from: string, path = ''): string {
  const base = from.replace('://*.', '://www.').replace(/\/$/, '');
  if (!path) return `${base}/`;
  return `${base}${path.startsWith('/') ? path.replace(/[\^$()|*+?\\[\]{}]/g, '') : '/'}`;
}

async function policyTestYaml(req: SimulatedRequest, expect: string): Promise<string> {
  const { stringify } = await import('yaml');
  const request: Record<string, unknown> = { url: req.url };
  if (req.method && req.method !== 'GET') request.method = req.method;
  for (const k of ['user', 'email', 'groups', 'claims', 'ip', 'time'] as const)
    if (req[k] !== undefined) request[k] = req[k];
  const who = req.email ?? req.user ?? 'anonymous';
  const entry = { name: `${who} ${req.method ?? 'GET'} ${req.url}`, request, expect };
  return stringify([entry], { lineWidth: 0 });
}

function cliLine(req: SimulatedRequest): string {
  const q = (s: string): string =>
    /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
  const parts = ['portcullis explain', `--url ${q(req.url)}`];
  if (req.method && req.method !== 'GET') parts.push(`--method ${q(req.method)}`);
  if (req.user !== undefined) parts.push(`--user ${q(req.user)}`);
  if (req.email !== undefined) parts.push(`--email ${q(req.email)}`);
  if (req.groups !== undefined) parts.push(`--groups ${q(req.groups.join(','))}`);
  for (const [k, v] of Object.entries(req.claims ?? {}))
    parts.push(`--claim ${q(`${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)}`);
  if (req.ip !== undefined) parts.push(`--ip ${q(req.ip)}`);
  if (req.time !== undefined) parts.push(`--time ${q(req.time)}`);
  return parts.join(' \\\n  ');
}
