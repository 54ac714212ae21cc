/**
 * Test support: WAT modules compiled with wabt, the example modules from `build/`, and workload
 * specs. Not part of the package build.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BackendJob, DEFAULT_WORKLOAD_LIMITS, type WorkloadLimits, type WorkloadSpec } from '@meshroute/mesh';
import wabtInit from 'wabt';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
let wabt: Awaited<ReturnType<typeof wabtInit>> | undefined;

/** Compile WAT text to a module's bytes. */
export async function wat(source: string): Promise<Uint8Array> {
  wabt ??= await wabtInit();
  const mod = wabt.parseWat('test.wat', source);
  try {
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

/** The bytes of an example from `build/` (built on first use when missing). */
export function example(name: 'checksum' | 'json-minify' | 'tokenize' | 'echo-upper'): Uint8Array {
  const file = join(packageDir, 'build', `${name}.wasm`);
  if (!existsSync(file)) {
    const r = spawnSync(process.execPath, [join(packageDir, 'scripts', 'build-examples.mjs')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`building the examples failed: ${r.stderr}`);
  }
  return new Uint8Array(readFileSync(file));
}

/** A workload spec for the wasm backend. */
export function workload(
  options: Record<string, unknown> = {},
  extra: { capabilities?: string[]; limits?: Partial<WorkloadLimits>; name?: string } = {},
): WorkloadSpec {
  return {
    schema: 'meshroute.workload/v1',
    name: extra.name ?? 'test',
    version: '1',
    artifacts: { wasm: { digest: `sha256:${'0'.repeat(64)}`, name: 'test.wasm', options } },
    limits: { ...DEFAULT_WORKLOAD_LIMITS, ...extra.limits },
    capabilities: extra.capabilities ?? [],
  };
}

let digestCounter = 0;

/** A job: the workload's digest is made unique per artifact so the compile cache keys stay honest. */
export function job(
  spec: WorkloadSpec,
  artifact: Uint8Array,
  input: Uint8Array | string = '',
  signal?: AbortSignal,
): BackendJob {
  const wasm = spec.artifacts.wasm;
  const digest = digests.get(artifact) ?? `sha256:${(++digestCounter).toString(16).padStart(64, '0')}`;
  digests.set(artifact, digest);
  return {
    workload: wasm === undefined ? spec : { ...spec, artifacts: { ...spec.artifacts, wasm: { ...wasm, digest } } },
    artifact,
    input: typeof input === 'string' ? new TextEncoder().encode(input) : input,
    contentType: undefined,
    signal: signal ?? new AbortController().signal,
  };
}
const digests = new WeakMap<Uint8Array, string>();

/** Decode output bytes as UTF-8. */
export function text(bytes: Uint8Array | undefined): string {
  return new TextDecoder().decode(bytes);
}
