import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, MeshError } from '@meshroute/mesh';
import { simulatedClock } from '@meshroute/testing';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { buildClassifyModel, buildFixedModel, buildMixedModel, classifyReference } from '../scripts/onnx-models.mjs';
import { createGpuBackend, type GpuBackend, type GpuJobOutput, gpuBackendInternals } from './backend.js';
import type { GpuBackendOptions } from './options.js';
import { gpuJob, randomRows } from './test-support/jobs.js';

const classify = buildClassifyModel();
const noGpu = { fileExists: () => false, nvidiaSmi: () => undefined };

let backends: GpuBackend[] = [];
function backend(options: GpuBackendOptions = {}): GpuBackend {
  const b = createGpuBackend({ workers: 1, probes: noGpu, ...options });
  backends.push(b);
  return b;
}
afterEach(async () => {
  await Promise.all(backends.map((b) => b.close()));
  backends = [];
});

function probsOf(out: { json?: unknown }): { dims: number[]; data: number[] } {
  const o = (out.json as GpuJobOutput).outputs['probs'];
  if (o === undefined) throw new Error('no probs output');
  return { dims: o.dims, data: o.data as number[] };
}

function expectClose(got: number[], want: number[]): void {
  expect(got.length).toBe(want.length);
  got.forEach((v, i) => {
    expect(v).toBeCloseTo(want[i] as number, 5);
  });
}

describe('inference on CPU', () => {
  it('matches the JS reference, shorthand input', async () => {
    const gpu = backend();
    const rows = randomRows(3, 64, 5);
    const out = await gpu.run(gpuJob(classify.bytes, { x: rows }));
    expect(out.contentType).toBe('application/json');
    expect(out.executionMs).toBeGreaterThanOrEqual(0);
    expect(probsOf(out).dims).toEqual([3, 10]);
    expectClose(probsOf(out).data, classifyReference(classify, rows).flat());
  });

  it('matches the JS reference, explicit input with type', async () => {
    const gpu = backend();
    const rows = randomRows(2, 64, 6);
    const out = await gpu.run(
      gpuJob(classify.bytes, { inputs: { x: { dims: [2, 64], data: rows.flat(), type: 'float32' } } }),
    );
    expect((out.json as GpuJobOutput).outputs['probs']?.type).toBe('float32');
    expectClose(probsOf(out).data, classifyReference(classify, rows).flat());
  });

  it('runs a model with two inputs (float32, int64) and two outputs, batched', async () => {
    const gpu = backend({ maxBatchDelayMs: 20 });
    const mixed = buildMixedModel();
    const jobs = [0, 1, 2, 3].map((k) =>
      gpu.run(gpuJob(mixed, { a: [[k, k, k, k]], b: [[1, 2, 3, String(2 ** 40 + k)]] }, { name: 'mixed' })),
    );
    const outs = await Promise.all(jobs);
    outs.forEach((out, k) => {
      const o = (out.json as GpuJobOutput).outputs;
      expect(o['y']).toEqual({
        dims: [1, 4],
        data: [k + 1, k + 2, k + 3, Math.fround(Math.fround(2 ** 40 + k) + k)],
        type: 'float32',
      });
      expect(o['s']).toEqual({ dims: [1], data: [6 + 2 ** 40 + k], type: 'int64' });
    });
    expect(gpuBackendInternals(gpu).stats().sessionRuns).toBeLessThan(4);
  });

  it('runs a model without a batch dimension, one request per session run', async () => {
    const gpu = backend({ maxBatchDelayMs: 20 });
    const fixed = buildFixedModel();
    const outs = await Promise.all(
      [1, 2, 3].map((k) =>
        gpu.run(
          gpuJob(
            fixed,
            {
              x: [
                [-k, 0, k],
                [k, -1, 2],
              ],
            },
            { name: 'fixed' },
          ),
        ),
      ),
    );
    outs.forEach((out, i) => {
      const k = i + 1;
      expect((out.json as GpuJobOutput).outputs['y']).toEqual({
        dims: [2, 3],
        data: [0, 0, k, k, 0, 2],
        type: 'float32',
      });
    });
    expect(gpuBackendInternals(gpu).stats().sessionRuns).toBe(3);
  });

  it('keeps one session per model digest', async () => {
    const gpu = backend();
    const other = buildClassifyModel({ seed: 99 });
    const rows = randomRows(1, 64, 8);
    const [a, b] = await Promise.all([
      gpu.run(gpuJob(classify.bytes, { x: rows })),
      gpu.run(gpuJob(other.bytes, { x: rows }, { name: 'other' })),
    ]);
    expectClose(probsOf(a as { json?: unknown }).data, classifyReference(classify, rows).flat());
    expectClose(probsOf(b as { json?: unknown }).data, classifyReference(other, rows).flat());
    await gpu.run(gpuJob(classify.bytes, { x: rows }));
    expect(gpuBackendInternals(gpu).stats().modelLoads).toBe(2);
  });
});

describe('dynamic batching', () => {
  it('64 concurrent requests take fewer than 64 session runs, and each gets its own rows back', async () => {
    const gpu = backend({ maxBatchSize: 64, maxBatchDelayMs: 5 });
    await gpu.ready();
    const rows = randomRows(64, 64, 21);
    const outs = await Promise.all(rows.map((r) => gpu.run(gpuJob(classify.bytes, { x: [r] }))));
    const want = classifyReference(classify, rows);
    outs.forEach((out, i) => {
      expect(probsOf(out).dims).toEqual([1, 10]);
      expectClose(probsOf(out).data, want[i] as number[]);
    });
    const stats = gpuBackendInternals(gpu).stats();
    expect(stats.sessionRuns).toBeLessThan(64);
    expect(stats.maxBatchRequests).toBeGreaterThan(1);
    expect(stats.maxBatchRows).toBeLessThanOrEqual(64);
  });

  it('never goes over maxBatchSize rows, and splits multi-row requests back correctly', async () => {
    const gpu = backend({ maxBatchSize: 8, maxBatchDelayMs: 5 });
    const requests = [3, 2, 4, 1, 5, 3].map((n, i) => randomRows(n, 64, 100 + i));
    const outs = await Promise.all(requests.map((r) => gpu.run(gpuJob(classify.bytes, { x: r }))));
    outs.forEach((out, i) => {
      const r = requests[i] as number[][];
      expect(probsOf(out).dims).toEqual([r.length, 10]);
      expectClose(probsOf(out).data, classifyReference(classify, r).flat());
    });
    const stats = gpuBackendInternals(gpu).stats();
    expect(stats.maxBatchRows).toBeLessThanOrEqual(8);
    expect(stats.sessionRuns).toBeLessThan(6);
  });

  it('an invalid input among concurrent requests fails alone; the others run batched', async () => {
    const gpu = backend({ maxBatchSize: 64, maxBatchDelayMs: 5 });
    await gpu.ready();
    const rows = randomRows(8, 64, 31);
    const jobs = rows.map((r, i) =>
      gpu
        .run(gpuJob(classify.bytes, i === 3 ? { x: [[...r.slice(0, 63), 'bad']] } : { x: [r] }))
        .catch((e: unknown) => e),
    );
    const outs = await Promise.all(jobs);
    const want = classifyReference(classify, rows);
    outs.forEach((out, i) => {
      if (i === 3) {
        expect(out).toMatchObject({
          code: ErrorCode.WORKLOAD_FAILED,
          details: { reason: 'invalid-input', rule: 'value', input: 'x', index: 63 },
        });
      } else {
        expectClose(probsOf(out as { json?: unknown }).data, want[i] as number[]);
      }
    });
    expect(gpuBackendInternals(gpu).stats()).toMatchObject({ sessionRuns: 1, maxBatchRequests: 7 });
  });

  it('maxBatchSize 1 turns batching off', async () => {
    const gpu = backend({ maxBatchSize: 1 });
    await Promise.all(randomRows(10, 64, 3).map((r) => gpu.run(gpuJob(classify.bytes, { x: [r] }))));
    expect(gpuBackendInternals(gpu).stats()).toMatchObject({ sessionRuns: 10, maxBatchRows: 1 });
  });

  it('a batch waits for maxBatchDelayMs on the injected clock before it runs', async () => {
    const clock = simulatedClock();
    const gpu = backend({ maxBatchSize: 64, maxBatchDelayMs: 50, clock });
    await gpu.ready();
    const dispatched: number[] = [];
    gpuBackendInternals(gpu).onDispatch((t) => {
      if (t.kind === 'batch') dispatched.push(t.requests);
    });
    const rows = randomRows(3, 64, 4);
    const first = gpu.run(gpuJob(classify.bytes, { x: [rows[0]] }));
    // let the model load and the first request join its batch
    await expect.poll(() => gpuBackendInternals(gpu).stats().modelLoads).toBe(1);
    const rest = [gpu.run(gpuJob(classify.bytes, { x: [rows[1]] })), gpu.run(gpuJob(classify.bytes, { x: [rows[2]] }))];
    await new Promise((r) => setImmediate(r));
    expect(dispatched).toEqual([]);
    clock.advance(50);
    await Promise.all([first, ...rest]);
    expect(dispatched).toEqual([3]);
  });
});

describe('errors: the backend reports them and keeps serving', () => {
  const ok = { x: [new Array(64).fill(0.25)] };
  let shared: GpuBackend | undefined;
  afterAll(async () => {
    await shared?.close();
  });

  it.each([
    ['not JSON', undefined, 'json', new TextEncoder().encode('{"x": [[1,')],
    ['an unknown input', { x: [[1]], y: [[2]] }, 'unknown-input', undefined],
    ['a missing input', { inputs: {} }, 'missing-input', undefined],
    ['the wrong rank', { x: new Array(64).fill(1) }, 'rank', undefined],
    ['the wrong feature count', { x: [[1, 2, 3]] }, 'shape', undefined],
    [
      'the wrong type',
      { inputs: { x: { dims: [1, 64], data: new Array(64).fill(1), type: 'int64' } } },
      'type',
      undefined,
    ],
    ['a ragged array', { x: [new Array(64).fill(1), [1]] }, 'rectangular', undefined],
    ['a non-number', { x: [[...new Array(63).fill(1), 'a']] }, 'value', undefined],
    ['too few values', { inputs: { x: { dims: [2, 64], data: [1, 2] } } }, 'element-count', undefined],
  ])('%s → WORKLOAD_FAILED invalid-input (%s)', async (_what, input, rule, raw) => {
    shared ??= createGpuBackend({ workers: 1, probes: noGpu });
    const gpu = shared;
    const err = await gpu.run(gpuJob(classify.bytes, input, raw ? { raw } : {})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MeshError);
    expect(err).toMatchObject({ code: ErrorCode.WORKLOAD_FAILED, details: { reason: 'invalid-input', rule } });
    const out = await gpu.run(gpuJob(classify.bytes, ok));
    expect(probsOf(out).dims).toEqual([1, 10]);
  });

  it('an input nested 200,000 deep is refused for its rank with a short message (dims cut to 8)', async () => {
    shared ??= createGpuBackend({ workers: 1, probes: noGpu });
    const raw = new TextEncoder().encode(`{"x":${'['.repeat(200_000)}${']'.repeat(200_000)}}`);
    const err = (await shared.run(gpuJob(classify.bytes, undefined, { raw })).catch((e: unknown) => e)) as MeshError;
    expect(err).toMatchObject({ code: ErrorCode.WORKLOAD_FAILED, details: { rule: 'rank', rank: 200_000 } });
    expect(err.message).toBe(
      'classify: input "x" has rank 200000 (dims [1,1,1,1,1,1,1,1,...]), the model expects rank 2 ["N",64]',
    );
    expect((err.details['dims'] as number[]).length).toBe(8);
  });

  it('invalid model bytes → ARTIFACT_ERROR invalid-model; other models keep running', async () => {
    const gpu = backend();
    const junk = new TextEncoder().encode('this is not an onnx model');
    const err = await gpu.run(gpuJob(junk, ok, { name: 'junk' })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.ARTIFACT_ERROR, details: { reason: 'invalid-model' } });
    expect((err as Error).message).toMatch(/cannot be loaded/);
    expect(probsOf(await gpu.run(gpuJob(classify.bytes, ok))).dims).toEqual([1, 10]);
  });

  it('a workload without a gpu artifact → WORKLOAD_NOT_FOUND', async () => {
    const gpu = backend();
    const job = gpuJob(classify.bytes, ok);
    job.workload = { ...job.workload, artifacts: {} };
    await expect(gpu.run(job)).rejects.toMatchObject({ code: ErrorCode.WORKLOAD_NOT_FOUND });
  });

  it('outputs over limits.outputBytes → LIMIT_EXCEEDED; a model over limits.memoryBytes → LIMIT_EXCEEDED', async () => {
    const gpu = backend();
    await expect(gpu.run(gpuJob(classify.bytes, ok, { limits: { outputBytes: 50 } }))).rejects.toMatchObject({
      code: ErrorCode.LIMIT_EXCEEDED,
      details: { reason: 'output-too-large' },
    });
    await expect(gpu.run(gpuJob(classify.bytes, ok, { limits: { memoryBytes: 100 } }))).rejects.toMatchObject({
      code: ErrorCode.LIMIT_EXCEEDED,
      details: { reason: 'model-too-large' },
    });
  });

  it('a job whose timeout passes while it waits for its batch → TIMEOUT; the others in the batch still run', async () => {
    const clock = simulatedClock();
    const gpu = backend({ maxBatchDelayMs: 100, clock });
    await gpu.ready();
    const keep = gpu.run(gpuJob(classify.bytes, ok));
    await expect.poll(() => gpuBackendInternals(gpu).stats().modelLoads).toBe(1);
    const late = gpu.run(gpuJob(classify.bytes, ok, { limits: { timeoutMs: 10 } })).catch((e: unknown) => e);
    await new Promise((r) => setImmediate(r));
    clock.advance(10);
    expect(await late).toMatchObject({ code: ErrorCode.TIMEOUT, retryable: true });
    clock.advance(100);
    expect(probsOf(await keep).dims).toEqual([1, 10]);
    expect(gpuBackendInternals(gpu).stats().maxBatchRequests).toBe(1);
  });

  it('an aborted job rejects with the abort reason when it is a MeshError, else WORKLOAD_FAILED aborted', async () => {
    const clock = simulatedClock();
    const gpu = backend({ maxBatchDelayMs: 100, clock });
    const a = new AbortController();
    const p = gpu.run(gpuJob(classify.bytes, ok, { signal: a.signal })).catch((e: unknown) => e);
    a.abort(new MeshError(ErrorCode.SHUTTING_DOWN, 'agent draining'));
    expect(await p).toMatchObject({ code: ErrorCode.SHUTTING_DOWN });
    const b = new AbortController();
    b.abort();
    await expect(gpu.run(gpuJob(classify.bytes, ok, { signal: b.signal }))).rejects.toMatchObject({
      code: ErrorCode.WORKLOAD_FAILED,
      details: { reason: 'aborted' },
    });
  });

  it('a worker crash fails its batch with a retryable worker-crashed error; a new worker takes the next job', async () => {
    const gpu = backend({ maxBatchDelayMs: 0 });
    await gpu.ready();
    const internals = gpuBackendInternals(gpu);
    await gpu.run(gpuJob(classify.bytes, ok)); // model loaded
    internals.onDispatch((t) => {
      if (t.kind === 'batch') {
        internals.onDispatch(undefined);
        internals.killWorker(t.worker);
      }
    });
    const err = await gpu.run(gpuJob(classify.bytes, ok)).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: ErrorCode.WORKLOAD_FAILED,
      retryable: true,
      details: { reason: 'worker-crashed' },
    });
    expect(probsOf(await gpu.run(gpuJob(classify.bytes, ok))).dims).toEqual([1, 10]);
    expect(internals.stats().workerRestarts).toBe(1);
  });

  it('close() lets busy workers finish their session call and release their sessions: none is terminated', async () => {
    const gpu = backend({ workers: 2, maxBatchDelayMs: 0, maxBatchSize: 1 });
    await gpu.ready();
    const internals = gpuBackendInternals(gpu);
    const dispatched = new Promise<void>((resolve) => internals.onDispatch(() => resolve()));
    const jobs = [0, 1, 2, 3].map((k) => gpu.run(gpuJob(classify.bytes, { x: randomRows(4, 64, k) })).catch((e) => e));
    await dispatched; // a worker is loading the model or running
    await gpu.close();
    for (const j of await Promise.all(jobs)) expect(j).toMatchObject({ code: ErrorCode.SHUTTING_DOWN });
    expect(internals.stats().workersTerminatedOnClose).toBe(0);
  });

  it('a script awaiting close() with nothing else running ends normally (close keeps the process alive)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshroute-gpu-close-'));
    try {
      const script = join(dir, 'close.mts');
      writeFileSync(
        script,
        `import { createGpuBackend } from ${JSON.stringify(fileURLToPath(new URL('./backend.ts', import.meta.url)))};
const gpu = createGpuBackend({ workers: 2, probes: { fileExists: () => false, nvidiaSmi: () => undefined } });
await gpu.ready();
await gpu.close();
process.stdout.write('closed\\n');
`,
      );
      const root = fileURLToPath(new URL('../../..', import.meta.url));
      const r = spawnSync(process.execPath, ['--conditions=@meshroute/source', '--import', 'tsx', script], {
        cwd: root,
        encoding: 'utf8',
        timeout: 60_000,
      });
      // Without the fix Node ended the process with 13 (an unsettled top-level await) before the workers exited.
      expect({ status: r.status, stdout: r.stdout }).toEqual({ status: 0, stdout: 'closed\n' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('close() terminates a worker that has not stopped within closeTimeoutMs', async () => {
    const gpu = backend({ workers: 1, closeTimeoutMs: 0 });
    await gpu.ready();
    await gpu.close();
    expect(gpuBackendInternals(gpu).stats().workersTerminatedOnClose).toBe(1);
  });

  it('close() fails waiting jobs with SHUTTING_DOWN, and later jobs too', async () => {
    const clock = simulatedClock();
    const gpu = backend({ maxBatchDelayMs: 1000, clock });
    await gpu.ready();
    const pending = gpu.run(gpuJob(classify.bytes, ok)).catch((e: unknown) => e);
    await gpu.close();
    expect(await pending).toMatchObject({ code: ErrorCode.SHUTTING_DOWN });
    await expect(gpu.run(gpuJob(classify.bytes, ok))).rejects.toMatchObject({ code: ErrorCode.SHUTTING_DOWN });
    expect(gpu.facts().state).toBe('closed');
  });
});
