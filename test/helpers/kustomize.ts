// Renders a kustomization with `kubectl kustomize`, as a user renders it, into plain objects.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { parseAllDocuments } from 'yaml';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // Each kind's own shape: the tests read what they check and the schemas validate the rest.
  spec?: any;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

export function render(dir: string): K8sObject[] {
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  if (r.error)
    throw new Error(
      `kubectl (with kustomize) is needed to render deploy/kubernetes: ${r.error.message}`,
    );
  assert.equal(r.status, 0, `kubectl kustomize ${dir}: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject);
}

export function one(objs: K8sObject[], kind: string, name?: string): K8sObject {
  const hits = objs.filter(
    (o) => o.kind === kind && (name === undefined || o.metadata.name === name),
  );
  assert.equal(hits.length, 1, `exactly one ${kind}${name ? ` ${name}` : ''}`);
  return hits[0]!;
}
