/**
 * Instantiation from a cached module vs compile + instantiate.
 * - `wasm.instantiate.cached`: a fresh WASI host (in-memory fds, import object) plus
 *   `new WebAssembly.Instance(module, imports)`, what every job pays; baseline
 *   `WebAssembly.instantiate(bytes, imports)` (compile + instantiate). Target: p50 <= 25 us.
 * - `wasm.instantiate.engine-only`: `new WebAssembly.Instance` with a prebuilt import object.
 * - `wasm.reactor.invoke`: one reactor call in-thread (fresh instance, alloc, entry, copy out) vs
 *   the same tokenization in JavaScript.
 * - `wasm.module-to-workers`: compile once and send the `WebAssembly.Module` to 2 workers by
 *   postMessage, vs sending the bytes and compiling in each worker.
 */
import { Worker } from 'node:worker_threads';
import { createInvocationHost, invoke } from '@meshroute/backend-wasm/internal';
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

// A reactor call, in-thread: fresh instance + alloc + copy in + tokenize + copy out, vs the same
// tokenization in JavaScript (a regular expression), to show what a "microsecond call" costs.
const tokenizer = new WebAssembly.Module(exampleBytes('tokenize'));
const sentence = "The quick brown fox jumps over the lazy dog; it's 2024 and the fox is fast.";
const reactorRequest = { ...commandRequest(sentence), form: 'reactor' as const, entry: 'tokenize' };
const reactor = sampleSync(
  () => {
    const r = invoke(tokenizer, reactorRequest);
    if (!r.ok) throw new Error(r.failure.message);
  },
  { iterations: 20_000 },
);
const jsTokenize = sampleSync(
  () => JSON.stringify(sentence.toLowerCase().match(/[a-z0-9\u0080-\uffff]+(?:'[a-z0-9\u0080-\uffff]+)*/g) ?? []),
  {
    iterations: 20_000,
  },
);
reportBench(
  benchLine('wasm.reactor.invoke', 'us', percentiles(reactor), percentiles(jsTokenize), {
    note: 'ours: new instance + alloc + tokenize (75 bytes) + copy out; baseline: the same tokenization as a JS regex',
  }),
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
