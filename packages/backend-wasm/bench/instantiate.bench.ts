/**
 * Instantiation from a cached module vs compile + instantiate.
 * - `wasm.instantiate.cached`: a fresh WASI host (in-memory fds, import object) plus
 *   `new WebAssembly.Instance(module, imports)`, what every job pays; baseline
 *   `WebAssembly.instantiate(bytes, imports)` (compile + instantiate). Target: p50 <= 25 us.
 * - `wasm.instantiate.engine-only`: `new WebAssembly.Instance` with a prebuilt import object.
 * - `wasm.module-to-workers`: compile once and send the `WebAssembly.Module` to 2 workers by
 *   postMessage, vs sending the bytes and compiling in each worker.
 */
import { Worker } from 'node:worker_threads';
import { createInvocationHost } from '@meshroute/backend-wasm/internal';
import { benchLine, percentiles, reportBench, sampleAsync, sampleSync } from '@meshroute/testing';
import { commandRequest, exampleBytes, uniqueVariant } from './support.js';

const bytes = exampleBytes('checksum');
const module = new WebAssembly.Module(bytes);
const request = commandRequest('123456789');

const cached = sampleSync(
  () => {
    const host = createInvocationHost(module, request);
    return new WebAssembly.Instance(module, host.imports);
  },
  { iterations: 20_000 },
);
const fixedImports = createInvocationHost(module, request).imports;
const engineOnly = sampleSync(() => new WebAssembly.Instance(module, fixedImports), { iterations: 20_000 });
const compileAndInstantiate = await sampleAsync(() => WebAssembly.instantiate(bytes, fixedImports), {
  iterations: 2_000,
});
const target = { targetP50: 25, unitNote: 'per instantiation' };
reportBench(
  benchLine('wasm.instantiate.cached', 'us', percentiles(cached), percentiles(compileAndInstantiate), target),
);
reportBench(
  benchLine('wasm.instantiate.engine-only', 'us', percentiles(engineOnly), percentiles(compileAndInstantiate)),
);

// Module transfer to the pool's workers (2, like the default pool): compile once in the main thread
// and postMessage the WebAssembly.Module to each, vs postMessage the bytes and compile in each worker.
const WORKER_CODE = `const { parentPort } = require('node:worker_threads');
  parentPort.on('message', (m) => {
    const mod = m.module ?? new WebAssembly.Module(m.bytes);
    new WebAssembly.Instance(mod, { wasi_snapshot_preview1: new Proxy({}, { get: () => () => 0 }) });
    parentPort.postMessage(0);
  });`;
const workers = [new Worker(WORKER_CODE, { eval: true }), new Worker(WORKER_CODE, { eval: true })];
const toAll = (msg: unknown) =>
  Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          w.once('message', () => resolve());
          w.postMessage(msg);
        }),
    ),
  );
// A bigger module makes compile cost visible: json-minify (5 KB) stands in for a real workload.
const big = exampleBytes('json-minify');
let n = 0;
const viaModule = await sampleAsync(() => toAll({ module: new WebAssembly.Module(uniqueVariant(big, n++)) }), {
  iterations: 500,
});
const viaBytes = await sampleAsync(() => toAll({ bytes: uniqueVariant(big, n++) }), { iterations: 500 });
reportBench(
  benchLine('wasm.module-to-workers', 'us', percentiles(viaModule), percentiles(viaBytes), {
    workers: workers.length,
    note: 'ours: compile once in main + postMessage(Module) to each worker; baseline: postMessage(bytes) + compile in each worker',
  }),
);
await Promise.all(workers.map((w) => w.terminate()));
