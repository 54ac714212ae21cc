/**
 * Agent overhead per invocation: a work item in, a result out, through the agent engine with an
 * in-memory mesh and a no-op backend (artifact cached, workload spec cached), against calling
 * the no-op backend directly in the same run. Target: overhead p50 <= 150 µs.
 */

import { createComputeAgent, fixedCarbon, memoryWorkloadSource } from '@meshroute/compute-agent';
import type { BackendJob, ComputeBackend } from '@meshroute/mesh';
import { benchLine, percentiles, reportBench, sampleAsync } from '@meshroute/testing';
import { countingArtifactStore, recordingAgentMesh, workItem, workloadSpec } from '../src/test-support/fakes.js';

const OUTPUT = { json: { ok: true }, contentType: 'application/json', executionMs: 0 };
const noop: ComputeBackend = {
  kind: 'wasm',
  facts: () => ({ engine: 'noop' }),
  run: async () => OUTPUT,
  close: async () => {},
};

const net = recordingAgentMesh();
const artifacts = countingArtifactStore();
const { digest } = await artifacts.store.put('noop.wasm', new Uint8Array(1024));
const agent = createComputeAgent({
  mesh: net.mesh,
  backend: noop,
  workloads: memoryWorkloadSource([workloadSpec('noop', digest)]),
  artifacts: artifacts.store,
  identity: { id: 'bench-agent', region: 'eu-west', jurisdiction: 'DE' },
  carbon: fixedCarbon(100),
  slots: 8,
  heartbeatIntervalMs: 60_000,
});
await agent.start();

const iterations = 20_000;
const items = Array.from({ length: 1_000 }, () => workItem('bench-agent', 'noop', { n: 1 }));
const spec = workloadSpec('noop', digest);
const job: BackendJob = {
  workload: spec,
  artifact: new Uint8Array(1024),
  input: new TextEncoder().encode('{"n":1}'),
  contentType: 'application/json',
  signal: new AbortController().signal,
};

const deliver = async (i: number) => {
  const r = await net.deliver('bench-agent', items[i % items.length] as (typeof items)[number]);
  if (!r?.ok) throw new Error(`bench job failed: ${JSON.stringify(r?.error)}`);
};
const direct = () => noop.run(job);

// Interleave rounds so both see the same machine conditions.
const ours: number[] = [];
const base: number[] = [];
for (let round = 0; round < 4; round++) {
  base.push(...(await sampleAsync(direct, { iterations: iterations / 4 })));
  ours.push(...(await sampleAsync(deliver, { iterations: iterations / 4 })));
}
const o = percentiles(ours);
const b = percentiles(base);
reportBench(
  benchLine('compute-agent.overhead-per-invocation', 'us', o, b, {
    overheadP50Us: Math.round((o.p50 - b.p50) * 1000) / 1000,
    targetOverheadP50Us: 150,
    iterations,
  }),
);
await agent.stop();
