/**
 * Dynamic batching: throughput at 256 concurrent requests with batching (maxBatchSize 64,
 * maxBatchDelayMs 2) vs batch-1 serial (maxBatchSize 1, one request after another), same model
 * (`classify`, x: float32[1, 64] per request), same worker count, same run. Target: >= 5x.
 * Lines:
 * - `gpu.batching.throughput` (req/s per round of 256 requests, higherIsBetter): batched vs batch-1 serial.
 * - `gpu.batching.latency` (ms per request): at 256 concurrent with batching vs batch-1 serial.
 * - `gpu.unbatched-concurrent.throughput` (req/s, higherIsBetter): 256 concurrent with maxBatchSize 1
 *   vs batch-1 serial (what concurrency alone gives, without batching).
 */

import { createHash } from 'node:crypto';
import { createGpuBackend, type GpuBackend } from '@meshroute/backend-gpu';
import { gpuBackendInternals } from '@meshroute/backend-gpu/internal';
import { type BackendJob, DEFAULT_WORKLOAD_LIMITS } from '@meshroute/mesh';
import { benchLine, percentiles, reportBench } from '@meshroute/testing';
import { buildClassifyModel } from '../scripts/onnx-models.mjs';

const CONCURRENCY = 256;
const ROUNDS = Number(process.env['GPU_BENCH_ROUNDS'] ?? 15);
const model = buildClassifyModel();
const digest = `sha256:${createHash('sha256').update(model.bytes).digest('hex')}`;
const workload = {
  schema: 'meshroute.workload/v1' as const,
  name: 'classify',
  version: '1',
  artifacts: { gpu: { digest, name: 'classify.onnx', options: {} } },
  limits: { ...DEFAULT_WORKLOAD_LIMITS, timeoutMs: 60_000 },
  capabilities: [],
};
const inputs = Array.from({ length: CONCURRENCY }, (_, i) =>
  new TextEncoder().encode(JSON.stringify({ x: [Array.from({ length: 64 }, (_, f) => Math.sin(i * 64 + f))] })),
);
const job = (i: number): BackendJob => ({
  workload,
  artifact: model.bytes,
  input: inputs[i % CONCURRENCY] as Uint8Array,
  contentType: 'application/json',
  signal: new AbortController().signal,
});

/** One round: `CONCURRENCY` requests, all at once or one after another. Returns [req/s, per-request ms]. */
async function round(gpu: GpuBackend, concurrent: boolean): Promise<[number, number[]]> {
  const latencies: number[] = [];
  const timed = async (i: number) => {
    const t0 = performance.now();
    await gpu.run(job(i));
    latencies.push(performance.now() - t0);
  };
  const t0 = performance.now();
  if (concurrent) await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => timed(i)));
  else for (let i = 0; i < CONCURRENCY; i++) await timed(i);
  return [CONCURRENCY / ((performance.now() - t0) / 1000), latencies];
}

/**
 * Rounds of the three modes interleaved (batched, serial, unbatched concurrent, batched, ...), so
 * that load from other processes on the machine hits all three alike.
 */
const batched = createGpuBackend({ maxBatchSize: 64, maxBatchDelayMs: 2 });
const single = createGpuBackend({ maxBatchSize: 1, maxBatchDelayMs: 0 });
const facts = await batched.ready();
await single.ready();
await round(batched, true); // warm-up: model load, JIT
await round(single, false);
const samples = { batched: [[], []], serial: [[], []], unbatched: [[], []] } as Record<string, [number[], number[]]>;
const keep = (name: string, [rps, lat]: [number, number[]]) => {
  const s = samples[name] as [number[], number[]];
  s[0].push(rps);
  s[1].push(...lat);
};
for (let r = 0; r < ROUNDS; r++) {
  keep('batched', await round(batched, true));
  keep('serial', await round(single, false));
  keep('unbatched', await round(single, true));
}
const stats = gpuBackendInternals(batched).stats();
await batched.close();
await single.close();
const pct = (name: string, i: 0 | 1) => percentiles((samples[name] as [number[], number[]])[i]);
const withBatching = { throughput: pct('batched', 0), latency: pct('batched', 1) };
const serial = { throughput: pct('serial', 0), latency: pct('serial', 1) };
const unbatched = { throughput: pct('unbatched', 0) };

const common = {
  concurrency: CONCURRENCY,
  device: facts.device,
  workers: facts.workers,
  onnxruntime: facts.onnxruntime,
  requestsPerSessionRun: Math.round((stats.requests / Math.max(1, stats.sessionRuns)) * 10) / 10,
  maxBatchRows: stats.maxBatchRows,
};
reportBench(
  benchLine('gpu.batching.throughput', 'req/s', withBatching.throughput, serial.throughput, {
    higherIsBetter: true,
    target: '>= 5x batch-1 serial',
    ...common,
  }),
);
reportBench(benchLine('gpu.batching.latency', 'ms', withBatching.latency, serial.latency, common));
reportBench(
  benchLine('gpu.unbatched-concurrent.throughput', 'req/s', unbatched.throughput, serial.throughput, {
    higherIsBetter: true,
    concurrency: CONCURRENCY,
    device: facts.device,
    workers: facts.workers,
  }),
);
