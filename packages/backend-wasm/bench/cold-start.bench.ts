/**
 * Cold first run of a new small module vs a hot run.
 * - `wasm.cold-start.in-thread`: read a never-seen module from a local file cache, parse and cap it,
 *   compile, instantiate and call (CRC-32 of 9 bytes), vs the hot run (cached module: instantiate +
 *   call). Target: cold p50 < 1 ms.
 * - `wasm.backend.run.hot` / `wasm.backend.run.cold`: the same through `createWasmBackend().run()`
 *   (worker pool, postMessage both ways), vs the in-thread hot run.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { artifactDigest, createWasmBackend, prepareModule } from '@meshroute/backend-wasm';
import { invoke } from '@meshroute/backend-wasm/internal';
import { DEFAULT_WORKLOAD_LIMITS, type WorkloadSpec } from '@meshroute/mesh';
import { benchLine, percentiles, reportBench, sampleAsync, sampleSync } from '@meshroute/testing';
import { commandRequest, exampleBytes, uniqueVariant } from './support.js';

const COLD_RUNS = 400;
const bytes = exampleBytes('checksum');
const cacheDir = mkdtempSync(join(tmpdir(), 'meshroute-wasm-bench-'));
const files: string[] = [];
for (let i = 0; i < COLD_RUNS * 2 + 100; i++) {
  const file = join(cacheDir, `m${i}.wasm`);
  writeFileSync(file, uniqueVariant(bytes, i));
  files.push(file);
}
const request = commandRequest('123456789');
const memoryBytes = DEFAULT_WORKLOAD_LIMITS.memoryBytes;

function check(out: ReturnType<typeof invoke>): void {
  if (!out.ok || new TextDecoder().decode(out.output) !== 'cbf43926') throw new Error('wrong output');
}

let next = 0;
const cold = await sampleAsync(
  async () => {
    const file = files[next++] as string;
    const b = new Uint8Array(readFileSync(file));
    const prepared = await prepareModule(b, { digest: artifactDigest(b), memoryBytes });
    check(invoke(prepared.module, { ...request, memoryLimitPages: prepared.memoryLimitPages }));
  },
  { iterations: COLD_RUNS, warmup: 50 },
);
const hotModule = (await prepareModule(bytes, { digest: artifactDigest(bytes), memoryBytes })).module;
const hot = sampleSync(() => check(invoke(hotModule, request)), { iterations: 5_000 });
reportBench(benchLine('wasm.cold-start.in-thread', 'us', percentiles(cold), percentiles(hot), { targetP50: 1000 }));

const backend = createWasmBackend({ workers: 2 });
const spec = (digest: string): WorkloadSpec => ({
  schema: 'meshroute.workload/v1',
  name: 'checksum',
  version: '1',
  artifacts: { wasm: { digest, name: 'checksum.wasm', options: {} } },
  limits: DEFAULT_WORKLOAD_LIMITS,
  capabilities: [],
});
const input = new TextEncoder().encode('123456789');
const signal = new AbortController().signal;
const hotSpec = spec(artifactDigest(bytes));
const viaBackendHot = await sampleAsync(
  () => backend.run({ workload: hotSpec, artifact: bytes, input, contentType: undefined, signal }),
  { iterations: 2_000 },
);
const viaBackendCold = await sampleAsync(
  async () => {
    const b = new Uint8Array(readFileSync(files[next++] as string));
    await backend.run({ workload: spec(artifactDigest(b)), artifact: b, input, contentType: undefined, signal });
  },
  { iterations: COLD_RUNS, warmup: 20 },
);
reportBench(benchLine('wasm.backend.run.hot', 'us', percentiles(viaBackendHot), percentiles(hot)));
reportBench(
  benchLine('wasm.backend.run.cold', 'us', percentiles(viaBackendCold), percentiles(viaBackendHot), {
    targetP50: 1000,
  }),
);
await backend.close();
rmSync(cacheDir, { recursive: true, force: true });
