/**
 * `meshroute workload register FILE.yaml` and `meshroute workload list`: named, versioned
 * workloads whose artifacts live in the mesh's Object Store by sha256.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import {
  type ArtifactStore,
  BACKENDS,
  type Backend,
  ConfigError,
  DEFAULT_WORKLOAD_LIMITS,
  ErrorCode,
  InvalidMessageError,
  MeshError,
  parseMessage,
  type WorkloadSpec,
} from '@meshroute/mesh';
import {
  connectMesh,
  type NatsConnectOptions,
  natsArtifactStore,
  natsWorkloadRegistry,
  provisionMesh,
} from '@meshroute/transport-nats';
import type { Command } from 'commander';
import { isMap, parseDocument } from 'yaml';
import type { CliContext } from '../context.js';
import { addNatsOptions, type NatsFlags, natsConnectOptions } from '../nats-options.js';

/** A workload file read from disk: the spec (digests filled) and the artifact bytes to upload. */
export interface LoadedWorkload {
  spec: WorkloadSpec;
  artifacts: { backend: Backend; name: string; path: string; bytes: Uint8Array; digest: string }[];
}

const TOP_KEYS = new Set(['name', 'version', 'description', 'artifacts', 'limits', 'capabilities']);
const ARTIFACT_KEYS = new Set(['file', 'options']);

function fileError(file: string, message: string, line?: number): ConfigError {
  return new ConfigError(line === undefined ? file : `${file}:${line}`, message);
}

/**
 * Read and validate a workload YAML file. Artifact `file` paths are relative to the YAML file;
 * each is read and hashed, and the digest filled into the spec.
 * @example
 * # deploy/workloads/checksum.yaml
 * name: checksum
 * version: 1.0.0
 * artifacts:
 *   wasm: { file: ../../packages/backend-wasm/build/checksum.wasm, options: { form: command } }
 * limits: { timeoutMs: 2000, memoryBytes: 16777216, outputBytes: 4096 }
 * capabilities: [stdin, stdout]
 * @throws ConfigError naming the file (and line) at fault; InvalidMessageError for a spec that
 * fails `meshroute.workload/v1`
 */
export async function loadWorkloadFile(path: string): Promise<LoadedWorkload> {
  const file = resolve(path);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new ConfigError(path, `cannot read workload file: ${(cause as Error).message}`, { cause });
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const err = doc.errors[0];
  if (err)
    throw fileError(
      path,
      `invalid YAML: ${err.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '')}`,
      err.linePos?.[0].line,
    );
  const lineOf = (node: unknown): number | undefined => {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    if (!range) return undefined;
    return text.slice(0, range[0]).split('\n').length;
  };
  if (!isMap(doc.contents))
    throw fileError(path, 'expected a mapping with name, version, artifacts, limits, capabilities');
  const raw = doc.toJS() as Record<string, unknown>;
  for (const key of Object.keys(raw)) {
    if (!TOP_KEYS.has(key)) {
      throw fileError(
        path,
        `unknown key ${JSON.stringify(key)} (expected ${[...TOP_KEYS].join(', ')})`,
        lineOf(doc.get(key, true)),
      );
    }
  }
  const artifactsRaw = raw.artifacts;
  if (typeof artifactsRaw !== 'object' || artifactsRaw === null || Array.isArray(artifactsRaw)) {
    throw fileError(
      path,
      'artifacts: expected a mapping of backend (wasm, gpu, quantum) to { file, options }',
      lineOf(doc.get('artifacts', true)),
    );
  }
  const artifacts: LoadedWorkload['artifacts'] = [];
  const specArtifacts: Record<string, unknown> = {};
  for (const [backend, value] of Object.entries(artifactsRaw as Record<string, unknown>)) {
    const line = lineOf(doc.getIn(['artifacts', backend], true));
    if (!(BACKENDS as readonly string[]).includes(backend)) {
      throw fileError(
        path,
        `artifacts: unknown backend ${JSON.stringify(backend)} (expected ${BACKENDS.join(', ')})`,
        line,
      );
    }
    const entry = typeof value === 'string' ? { file: value } : (value as Record<string, unknown> | null);
    if (typeof entry !== 'object' || entry === null || typeof entry.file !== 'string' || entry.file === '') {
      throw fileError(
        path,
        `artifacts.${backend}: expected { file: <path relative to the YAML>, options?: {...} }`,
        line,
      );
    }
    for (const key of Object.keys(entry)) {
      if (!ARTIFACT_KEYS.has(key))
        throw fileError(
          path,
          `artifacts.${backend}: unknown key ${JSON.stringify(key)} (expected file, options)`,
          line,
        );
    }
    const artifactPath = resolve(dirname(file), entry.file);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(artifactPath);
    } catch (cause) {
      throw fileError(path, `artifacts.${backend}: cannot read ${artifactPath}: ${(cause as Error).message}`, line);
    }
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const name = basename(artifactPath);
    artifacts.push({ backend: backend as Backend, name, path: artifactPath, bytes, digest });
    specArtifacts[backend] = { digest, name, options: entry.options ?? {} };
  }
  if (artifacts.length === 0) throw fileError(path, 'artifacts: declare at least one backend');
  const limits = { ...DEFAULT_WORKLOAD_LIMITS, ...((raw.limits as Record<string, unknown> | undefined) ?? {}) };
  const candidate = {
    schema: 'meshroute.workload/v1',
    name: raw.name,
    version: typeof raw.version === 'number' ? String(raw.version) : raw.version,
    ...(raw.description !== undefined ? { description: raw.description } : {}),
    artifacts: specArtifacts,
    limits,
    capabilities: raw.capabilities ?? [],
  };
  try {
    return { spec: parseMessage('meshroute.workload/v1', candidate), artifacts };
  } catch (e) {
    if (e instanceof InvalidMessageError) {
      throw new InvalidMessageError(
        e.schema,
        e.issues.map((i) => `${path}: ${i}`),
        { cause: e },
      );
    }
    throw e;
  }
}

/** Something that stores workload specs (`natsWorkloadRegistry(conn)`). */
export interface WorkloadSink {
  put(spec: WorkloadSpec): Promise<unknown>;
}

/**
 * Upload a loaded workload's artifacts, check the store returned the same digests, then register
 * the spec. Returns the registered spec.
 */
export async function registerWorkload(
  loaded: LoadedWorkload,
  stores: { artifacts: ArtifactStore; registry: WorkloadSink },
): Promise<WorkloadSpec> {
  for (const a of loaded.artifacts) {
    const info = await stores.artifacts.put(a.name, a.bytes);
    if (info.digest !== a.digest) {
      throw new MeshError(
        ErrorCode.ARTIFACT_ERROR,
        `artifact ${a.name}: the store answered ${info.digest}, expected ${a.digest}`,
      );
    }
  }
  await stores.registry.put(loaded.spec);
  return loaded.spec;
}

/**
 * Register workload files on a mesh (provisions the buckets first, idempotently). For
 * `meshroute up`, which registers `deploy/workloads/*.yaml`. `options.nats` carries the
 * credentials, TLS and inbox prefix of the connection (an admin identity on a secured mesh);
 * `natsUrl` wins over `options.nats.servers`.
 */
export async function registerWorkloadFiles(
  natsUrl: string | readonly string[],
  files: readonly string[],
  options: { nats?: NatsConnectOptions } = {},
): Promise<WorkloadSpec[]> {
  const loaded = [];
  for (const f of files) loaded.push(await loadWorkloadFile(f));
  const conn = await connectMesh({ ...options.nats, servers: natsUrl, name: 'meshroute-workload' });
  try {
    await provisionMesh(conn);
    const stores = { artifacts: natsArtifactStore(conn), registry: natsWorkloadRegistry(conn) };
    const out: WorkloadSpec[] = [];
    for (const l of loaded) out.push(await registerWorkload(l, stores));
    return out;
  } finally {
    await conn.close();
  }
}

function backendsOf(spec: WorkloadSpec): string {
  return BACKENDS.filter((b) => spec.artifacts[b]).join(',');
}

/** Register `meshroute workload`. */
export function register(program: Command, ctx: CliContext): void {
  const workload = program
    .command('workload')
    .description('register and list workloads (artifacts by sha256 in the Object Store)');
  addNatsOptions(workload.command('register'))
    .description("upload a workload's artifacts and register it")
    .argument('<files...>', 'workload YAML files')
    .option('--json', 'print the registered specs as JSON lines')
    .action(async (files: string[], flags: NatsFlags & { natsUrl: string; json?: boolean }) => {
      const nats = natsConnectOptions(flags);
      const specs = await registerWorkloadFiles(nats.servers ?? flags.natsUrl, files, { nats });
      for (const s of specs) {
        ctx.stdout.write(
          flags.json
            ? `${JSON.stringify(s)}\n`
            : `registered ${s.name}@${s.version} (${BACKENDS.filter((b) => s.artifacts[b])
                .map((b) => `${b} ${s.artifacts[b]?.digest.slice(0, 19)}`)
                .join(', ')})\n`,
        );
      }
    });
  addNatsOptions(workload.command('list'))
    .description('list registered workloads')
    .option('--json', 'print JSON')
    .action(async (flags: NatsFlags & { natsUrl: string; json?: boolean }) => {
      const conn = await connectMesh({
        ...natsConnectOptions(flags),
        name: 'meshroute-workload',
      });
      try {
        const specs = await natsWorkloadRegistry(conn).list();
        if (flags.json) {
          ctx.stdout.write(`${JSON.stringify(specs)}\n`);
          return;
        }
        if (specs.length === 0) {
          ctx.stdout.write('no workloads registered\n');
          return;
        }
        const rows = specs.map((s) => [s.name, s.version, backendsOf(s), `${s.limits.timeoutMs}`, s.description ?? '']);
        const header = ['NAME', 'VERSION', 'BACKENDS', 'TIMEOUT_MS', 'DESCRIPTION'];
        const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
        for (const r of [header, ...rows]) {
          ctx.stdout.write(
            `${r
              .map((c, i) => c.padEnd(widths[i] ?? 0))
              .join('  ')
              .trimEnd()}\n`,
          );
        }
      } finally {
        await conn.close();
      }
    });
}
