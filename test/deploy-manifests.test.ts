// The Kubernetes manifests in deploy/kubernetes, rendered with `kubectl kustomize` exactly as
// a user renders them, then: every object validated against the Kubernetes (and CRD) schemas,
// the wiring between objects checked (probes on metrics_address, secrets behind the `_file`
// paths, selectors, ports), and each overlay's portcullis.yaml passed through `portcullis check`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { one, render, type K8sObject } from './helpers/kustomize.js';

const REPO = new URL('../../', import.meta.url).pathname;
const K8S = join(REPO, 'deploy/kubernetes');
const CLI = join(REPO, 'dist/src/cli/main.js');

type Obj = K8sObject;

type Validate = (o: Obj) => void;
async function model(path: string, name: string): Promise<Validate> {
  const m = (await import(path)) as Record<string, new (o: unknown) => { validate(): void }>;
  const Model = m[name]!;
  return (o) => new Model(o).validate();
}

/**
 * SecurityPolicy has no published model package; its fields are checked against the CRD
 * (envoyproxy/gateway charts/gateway-crds-helm/templates/generated/
 * gateway.envoyproxy.io_securitypolicies.yaml, v1alpha1): spec.targetRefs[] {group, kind,
 * name}; spec.extAuth {headersToExtAuth: string[], failOpen: boolean, http: {backendRefs[]
 * (max 16; name required, port required for a Service), path: string, headersToBackend:
 * string[]}}. Only the keys below are used by the recipe; anything else is refused here.
 */
function validateSecurityPolicy(o: Obj): void {
  const only = (obj: Record<string, unknown>, keys: string[], where: string) => {
    for (const k of Object.keys(obj))
      assert.ok(keys.includes(k), `${where}.${k}: not a field we checked against the CRD`);
  };
  const strings = (v: unknown, where: string) => {
    assert.ok(
      Array.isArray(v) && v.every((x) => typeof x === 'string' && x.length > 0),
      `${where}: string[]`,
    );
  };
  only(o.spec, ['targetRefs', 'extAuth'], 'spec');
  assert.ok(Array.isArray(o.spec.targetRefs) && o.spec.targetRefs.length > 0);
  for (const t of o.spec.targetRefs) {
    only(t, ['group', 'kind', 'name'], 'spec.targetRefs[]');
    assert.equal(typeof t.name, 'string');
  }
  const ext = o.spec.extAuth;
  only(ext, ['headersToExtAuth', 'failOpen', 'http'], 'spec.extAuth');
  strings(ext.headersToExtAuth, 'spec.extAuth.headersToExtAuth');
  assert.equal(typeof ext.failOpen, 'boolean');
  only(ext.http, ['backendRefs', 'path', 'headersToBackend'], 'spec.extAuth.http');
  assert.ok(Array.isArray(ext.http.backendRefs) && ext.http.backendRefs.length <= 16);
  for (const b of ext.http.backendRefs) {
    only(b, ['name', 'namespace', 'port', 'group', 'kind'], 'spec.extAuth.http.backendRefs[]');
    assert.equal(typeof b.name, 'string');
    assert.ok(
      Number.isInteger(b.port) && b.port >= 1 && b.port <= 65535,
      'a Service backendRef needs a port',
    );
  }
  assert.equal(typeof ext.http.path, 'string');
  strings(ext.http.headersToBackend, 'spec.extAuth.http.headersToBackend');
}

const validators = new Map<string, Promise<Validate>>();
function validatorFor(o: Obj): Promise<Validate> {
  const key = `${o.apiVersion}/${o.kind}`;
  const known: Record<string, () => Promise<Validate>> = {
    'v1/ServiceAccount': () => model('kubernetes-models/v1/ServiceAccount', 'ServiceAccount'),
    'v1/ConfigMap': () => model('kubernetes-models/v1/ConfigMap', 'ConfigMap'),
    'v1/Secret': () => model('kubernetes-models/v1/Secret', 'Secret'),
    'v1/Service': () => model('kubernetes-models/v1/Service', 'Service'),
    'apps/v1/Deployment': () => model('kubernetes-models/apps/v1/Deployment', 'Deployment'),
    'policy/v1/PodDisruptionBudget': () =>
      model('kubernetes-models/policy/v1/PodDisruptionBudget', 'PodDisruptionBudget'),
    'autoscaling/v2/HorizontalPodAutoscaler': () =>
      model('kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler', 'HorizontalPodAutoscaler'),
    'networking.k8s.io/v1/NetworkPolicy': () =>
      model('kubernetes-models/networking.k8s.io/v1/NetworkPolicy', 'NetworkPolicy'),
    'networking.k8s.io/v1/Ingress': () =>
      model('kubernetes-models/networking.k8s.io/v1/Ingress', 'Ingress'),
    'monitoring.coreos.com/v1/ServiceMonitor': () =>
      model(
        '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
        'ServiceMonitor',
      ),
    'gateway.networking.k8s.io/v1/HTTPRoute': () =>
      model('@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute', 'HTTPRoute'),
    'gateway.networking.k8s.io/v1beta1/ReferenceGrant': () =>
      model(
        '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1beta1/ReferenceGrant',
        'ReferenceGrant',
      ),
    // Traefik v3 serves these CRDs as traefik.io/v1alpha1; the model package that runs on Node
    // 20 carries them under v2's group traefik.containo.us/v1alpha1, whose schema is the same.
    'traefik.io/v1alpha1/Middleware': async () => {
      const v = await model(
        '@kubernetes-models/traefik/traefik.containo.us/v1alpha1/Middleware',
        'Middleware',
      );
      return (o) => v({ ...o, apiVersion: 'traefik.containo.us/v1alpha1' });
    },
    'traefik.io/v1alpha1/IngressRoute': async () => {
      const v = await model(
        '@kubernetes-models/traefik/traefik.containo.us/v1alpha1/IngressRoute',
        'IngressRoute',
      );
      return (o) => v({ ...o, apiVersion: 'traefik.containo.us/v1alpha1' });
    },
    'gateway.envoyproxy.io/v1alpha1/SecurityPolicy': async () => validateSecurityPolicy,
  };
  const make = known[key];
  assert.ok(make, `no schema to validate ${key} against: add one before adding the object`);
  if (!validators.has(key)) validators.set(key, make());
  return validators.get(key)!;
}

const OVERLAYS = readdirSync(join(K8S, 'overlays')).sort();
const RECIPES = readdirSync(join(K8S, 'recipes')).sort();
const rendered = new Map<string, Obj[]>();
const get = (dir: string): Obj[] => {
  if (!rendered.has(dir)) rendered.set(dir, render(join(K8S, dir)));
  return rendered.get(dir)!;
};

const tmp = mkdtempSync(join(tmpdir(), 'portcullis-k8s-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('the overlays and recipes are the ones documented', () => {
  assert.deepEqual(OVERLAYS, ['postgres', 'redis', 'single-cookie']);
  assert.deepEqual(RECIPES, ['envoy-gateway', 'ingress-nginx', 'traefik']);
  const doc = readFileSync(join(REPO, 'docs/kubernetes.md'), 'utf8');
  for (const d of [...OVERLAYS.map((o) => `overlays/${o}`), ...RECIPES.map((r) => `recipes/${r}`)])
    assert.ok(doc.includes(`deploy/kubernetes/${d}`), `docs/kubernetes.md does not name ${d}`);
});

describe('every rendered object validates against its schema', () => {
  for (const dir of [
    'base',
    ...OVERLAYS.map((o) => `overlays/${o}`),
    ...RECIPES.map((r) => `recipes/${r}`),
  ]) {
    test(dir, async () => {
      const objs = get(dir);
      assert.ok(objs.length > 0);
      for (const o of objs) {
        const v = await validatorFor(o);
        assert.doesNotThrow(() => v(o), `${dir}: ${o.kind} ${o.metadata.name}`);
      }
    });
  }
});

test('a wrong type or a missing required field fails validation', async () => {
  const dep = structuredClone(one(get('base'), 'Deployment'));
  dep.spec.replicas = 'three';
  const v = await validatorFor(dep);
  assert.throws(() => v(dep), /replicas must be integer/);
  const noName = structuredClone(one(get('base'), 'Deployment'));
  delete noName.spec.template.spec.containers[0].name;
  assert.throws(() => v(noName), /must have required property 'name'|required property name/);
  const sp = structuredClone(one(get('recipes/envoy-gateway'), 'SecurityPolicy'));
  sp.spec.extAuth.http.headersToBackends = ['x'];
  assert.throws(() => validateSecurityPolicy(sp), /headersToBackends/);
});

/** The pieces of a rendered overlay that have to agree with each other and with the config. */
function wiring(dir: string) {
  const objs = get(dir);
  const cfgText = one(objs, 'ConfigMap', 'portcullis').data!['portcullis.yaml']!;
  const cfg = parseYaml(cfgText) as Record<string, unknown>;
  const dep = one(objs, 'Deployment', 'portcullis');
  const pod = dep.spec.template.spec;
  const c = pod.containers.find((x: { name: string }) => x.name === 'portcullis');
  return { objs, cfgText, cfg, dep, pod, c };
}

const portOf = (addr: unknown) => Number(String(addr).split(':').pop());

for (const overlay of OVERLAYS) {
  describe(`overlays/${overlay}`, () => {
    test('probes ask /ping and /ready on the metrics_address port; the proxy port is address', () => {
      const { cfg, c } = wiring(`overlays/${overlay}`);
      const ports = Object.fromEntries(
        c.ports.map((p: { name: string; containerPort: number }) => [p.name, p.containerPort]),
      );
      assert.equal(ports.metrics, portOf(cfg.metrics_address));
      assert.equal(ports.http, portOf(cfg.address));
      assert.equal(c.livenessProbe.httpGet.path, '/ping');
      assert.equal(c.startupProbe.httpGet.path, '/ping');
      assert.equal(c.readinessProbe.httpGet.path, '/ready');
      for (const p of [c.livenessProbe, c.readinessProbe, c.startupProbe])
        assert.equal(p.httpGet.port, 'metrics');
    });

    test('SIGTERM: the grace period covers preStop and shutdown_timeout', () => {
      const { cfg, pod, c } = wiring(`overlays/${overlay}`);
      const shutdown = Number(String(cfg.shutdown_timeout).replace(/s$/, ''));
      assert.ok(shutdown > 0);
      const preStop = c.lifecycle?.preStop?.sleep?.seconds ?? 0;
      assert.ok(
        pod.terminationGracePeriodSeconds > shutdown + preStop,
        `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} <= ${shutdown} + ${preStop}`,
      );
    });

    test('runs as the image user, non-root, read-only, with the config mounted as a directory', () => {
      const { pod, c } = wiring(`overlays/${overlay}`);
      const user = /^USER (\d+):(\d+)$/m.exec(readFileSync(join(REPO, 'Containerfile'), 'utf8'));
      assert.ok(user);
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(pod.securityContext.runAsUser, Number(user[1]));
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      // A subPath mount is never updated by the kubelet: hot reload would silently stop.
      for (const m of c.volumeMounts) {
        assert.equal(m.subPath, undefined, `${m.name} is mounted with subPath`);
        assert.equal(m.readOnly, true);
      }
      const cfgMount = c.volumeMounts.find((m: { name: string }) => m.name === 'config');
      assert.deepEqual(c.args, ['serve', '--config', `${cfgMount.mountPath}/portcullis.yaml`]);
    });

    test('every *_file path is a key of the mounted Secret; every ${VAR} is set from one', () => {
      const { objs, cfg, cfgText, pod, c } = wiring(`overlays/${overlay}`);
      const secret = one(objs, 'Secret', 'portcullis-secrets');
      const keys = Object.keys({ ...secret.data, ...secret.stringData });
      const vol = pod.volumes.find(
        (v: { secret?: { secretName: string } }) => v.secret?.secretName === 'portcullis-secrets',
      );
      const mount = c.volumeMounts.find((m: { name: string }) => m.name === vol.name).mountPath;
      const files = Object.entries(cfg).filter(([k]) => k.endsWith('_file'));
      assert.ok(files.length >= 3);
      for (const [k, path] of files) {
        assert.ok(
          String(path).startsWith(`${mount}/`),
          `${k}: ${String(path)} is outside ${mount}`,
        );
        assert.ok(
          keys.includes(String(path).slice(mount.length + 1)),
          `${k}: no such key in the Secret`,
        );
      }
      for (const [, name] of cfgText.matchAll(/\$\{([A-Z_]+)\}/g)) {
        const env = (c.env ?? []).find((e: { name: string }) => e.name === name);
        assert.ok(env, `\${${name}} in portcullis.yaml is not set in the container`);
        assert.equal(env.valueFrom.secretKeyRef.name, 'portcullis-secrets');
        assert.ok(keys.includes(env.valueFrom.secretKeyRef.key));
      }
    });

    test('Service, ServiceMonitor, PDB, HPA and NetworkPolicy point at the pods and ports that exist', () => {
      const { objs, dep, c } = wiring(`overlays/${overlay}`);
      const podLabels = dep.spec.template.metadata.labels;
      const matches = (sel: Record<string, string>) =>
        Object.entries(sel).every(([k, v]) => podLabels[k] === v);
      const svc = one(objs, 'Service', 'portcullis');
      assert.ok(matches(svc.spec.selector));
      const portNames = c.ports.map((p: { name: string }) => p.name);
      for (const p of svc.spec.ports) assert.ok(portNames.includes(p.targetPort));
      const sm = one(objs, 'ServiceMonitor');
      assert.ok(
        Object.entries(sm.spec.selector.matchLabels).every(
          ([k, v]) => svc.metadata.labels?.[k] === v,
        ),
      );
      assert.ok(svc.spec.ports.some((p: { name: string }) => p.name === sm.spec.endpoints[0].port));
      const np = one(objs, 'NetworkPolicy', 'portcullis');
      assert.ok(matches(np.spec.podSelector.matchLabels));
      for (const rule of np.spec.ingress)
        for (const p of rule.ports) assert.ok(portNames.includes(p.port));
      const replicas = dep.spec.replicas;
      const hpa = objs.filter((o) => o.kind === 'HorizontalPodAutoscaler');
      const pdb = objs.filter((o) => o.kind === 'PodDisruptionBudget');
      if (overlay === 'single-cookie') {
        assert.equal(replicas, 1);
        assert.equal(hpa.length, 0, 'an autoscaler would add replicas that share no sessions');
        assert.equal(pdb.length, 0, 'a budget on the only pod blocks node drains');
      } else {
        assert.ok(replicas >= 2);
        assert.equal(hpa[0]!.spec.scaleTargetRef.name, dep.metadata.name);
        assert.ok(hpa[0]!.spec.minReplicas >= 2);
        assert.ok(matches(pdb[0]!.spec.selector.matchLabels));
      }
    });

    test('its portcullis.yaml passes `portcullis check`, and replicas share a server-side store', () => {
      const { cfgText, cfg, objs } = wiring(`overlays/${overlay}`);
      const dir = mkdtempSync(join(tmp, `${overlay}-`));
      // The only change: where the Secret's files are. Secrets of the right shape stand in for
      // the placeholders; the environment variables the Deployment sets are set here.
      const secrets = join(dir, 'secrets');
      spawnSync('mkdir', ['-p', secrets]);
      writeFileSync(
        join(secrets, 'cookie-secret'),
        'q3d6v0yGkS8m2J6kJ2hJ1mXoQ0c6y2b1r3o4p5s6t7U=\n',
      );
      writeFileSync(
        join(secrets, 'idp-client-secret'),
        'a-client-secret-from-the-idp-0123456789\n',
      );
      const key = spawnSync(
        'openssl',
        ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
        { encoding: 'utf8' },
      );
      assert.equal(key.status, 0, key.stderr);
      writeFileSync(join(secrets, 'signing-key'), key.stdout);
      const file = join(dir, 'portcullis.yaml');
      writeFileSync(file, cfgText.replaceAll('/run/secrets/portcullis/', `${secrets}/`));
      const r = spawnSync(process.execPath, [CLI, 'check', '--config', file, '--format', 'json'], {
        encoding: 'utf8',
        env: { ...process.env, REDIS_PASSWORD: 'r3dis-pass', POSTGRES_PASSWORD: 'pg-pass' },
      });
      const out = JSON.parse(r.stdout) as {
        ok: boolean;
        issues: Array<{ severity: string; key: string; message: string }>;
      };
      assert.equal(r.status, 0, JSON.stringify(out.issues, null, 2));
      assert.equal(out.ok, true);
      assert.deepEqual(
        out.issues.filter((i) => i.severity === 'error'),
        [],
      );
      const replicas = one(objs, 'Deployment', 'portcullis').spec.replicas;
      const store = String(cfg.session_storage ?? 'cookie');
      if (replicas > 1) assert.match(store, overlay === 'redis' ? /^redis:\/\// : /^postgres:\/\//);
      else assert.equal(store, 'cookie');
    });
  });
}
