import { createHash } from 'node:crypto';
import { type BackendJob, DEFAULT_WORKLOAD_LIMITS, type WorkloadLimits, type WorkloadSpec } from '@meshroute/mesh';

/** `sha256:<hex>` of bytes. */
export function digestOf(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** A workload spec with a gpu artifact for these model bytes. */
export function gpuWorkload(model: Uint8Array, name = 'classify', limits: Partial<WorkloadLimits> = {}): WorkloadSpec {
  return {
    schema: 'meshroute.workload/v1',
    name,
    version: '1',
    artifacts: { gpu: { digest: digestOf(model), name: `${name}.onnx`, options: {} } },
    limits: { ...DEFAULT_WORKLOAD_LIMITS, ...limits },
    capabilities: [],
  };
}

/** A job running `model` on a JSON input. */
export function gpuJob(
  model: Uint8Array,
  input: unknown,
  options: { name?: string; limits?: Partial<WorkloadLimits>; signal?: AbortSignal; raw?: Uint8Array } = {},
): BackendJob {
  return {
    workload: gpuWorkload(model, options.name, options.limits),
    artifact: model,
    input: options.raw ?? new TextEncoder().encode(JSON.stringify(input)),
    contentType: 'application/json',
    signal: options.signal ?? new AbortController().signal,
  };
}

/** Deterministic rows of `features` numbers in [-1, 1). */
export function randomRows(count: number, features: number, seed = 1): number[][] {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: count }, () => Array.from({ length: features }, () => rand() * 2 - 1));
}
