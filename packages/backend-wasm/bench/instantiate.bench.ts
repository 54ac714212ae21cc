/**
 * Instantiation from a cached module vs compile + instantiate.
 * - `wasm.instantiate.cached`: a fresh WASI host (in-memory fds, import object) plus
 *   `new WebAssembly.Instance(module, imports)`, what every job pays; baseline
 *   `WebAssembly.instantiate(bytes, imports)` (compile + instantiate). Target: p50 <= 25 us.
 * - `wasm.instantiate.engine-only`: `new WebAssembly.Instance` with a prebuilt import object.
 * - `wasm.module-to-worker`: send a compiled `WebAssembly.Module` to a worker by postMessage and
 *   instantiate there, vs sending the bytes and compiling in the worker.
 */
import { Worker } from 'node:worker_threads';
import { benchLine, percentiles, reportBench, sampleAsync, sampleSync } from '@meshroute/testing';
import { createInvocationHost } from '../src/internal.js';
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

// Module transfer to a worker: postMessage(Module) + instantiate vs postMessage(bytes) + compile + instantiate.
const worker = new Worker(
  `const { parentPort } = require('node:worker_threads');
   parentPort.on('message', (m) => {
     const mod = m.module ?? new WebAssembly.Module(m.bytes);
     new WebAssembly.Instance(mod, m.imports ?? { wasi_snapshot_preview1: new Proxy({}, { get: () => () => 0 }) });
     parentPort.postMessage(0);
   });`,
  { eval: true },
);
const roundTrip = (msg: unknown) =>
  new Promise<void>((resolve) => {
    worker.once('message', () => resolve());
    worker.postMessage(msg);
  });
let n = 0;
const viaModule = await sampleAsync(
  async () => {
    // A distinct module each time, compiled here (as the backend does, once per digest), then sent.
    const mod = await WebAssembly.compile(uniqueVariant(bytes, n++));
    await roundTrip({ module: mod });
  },
  { iterations: 500 },
);
const viaBytes = await sampleAsync(() => roundTrip({ bytes: uniqueVariant(bytes, n++) }), { iterations: 500 });
reportBench(
  benchLine('wasm.module-to-worker', 'us', percentiles(viaModule), percentiles(viaBytes), {
    note: 'ours: compile in main + postMessage(Module); baseline: postMessage(bytes) + compile in worker',
  }),
);
await worker.terminate();
