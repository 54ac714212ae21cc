/**
 * The pool worker: keeps compiled modules by key (sent once per worker per key by the main thread)
 * and runs one invocation at a time with {@link invoke}. The main thread terminates it when an
 * invocation runs past its timeout.
 *
 * This file does not depend on `@meshroute/mesh` (the worker loads as little as it can).
 */
import { parentPort } from 'node:worker_threads';
import { type InvokeRequest, type InvokeResult, invoke } from './invoke.js';

/** Main thread → worker. */
export interface WorkerRunMessage {
  type: 'run';
  jobId: number;
  /** Cache key of the compiled module (digest and memory cap). */
  key: string;
  /** The compiled module, when this worker does not have `key` yet. */
  module: WebAssembly.Module | undefined;
  /** Keys this worker should forget (the main thread's per-worker LRU). */
  evict: string[];
  request: InvokeRequest;
}

/** Worker → main thread. */
export type WorkerMessage = { type: 'ready' } | { type: 'result'; jobId: number; result: InvokeResult };

const port = parentPort;
if (port === null) throw new Error('worker.ts must run in a worker thread');
const modules = new Map<string, WebAssembly.Module>();
/** Outputs from this size are transferred rather than copied. */
const TRANSFER_MIN_BYTES = 64 * 1024;

port.on('message', (msg: WorkerRunMessage) => {
  for (const key of msg.evict) modules.delete(key);
  if (msg.module !== undefined) modules.set(msg.key, msg.module);
  const module = modules.get(msg.key);
  let result: InvokeResult;
  if (module === undefined) {
    result = {
      ok: false,
      failure: { reason: 'worker-crashed', message: `worker has no compiled module for ${msg.key}` },
      stderr: new Uint8Array(0),
      executionMs: 0,
    };
  } else {
    result = invoke(module, msg.request);
  }
  // Large outputs are transferred (no copy); for small ones a transfer list buys nothing.
  const transfer: ArrayBuffer[] = [];
  if (result.ok && result.output.byteLength >= TRANSFER_MIN_BYTES && result.output.buffer instanceof ArrayBuffer) {
    transfer.push(result.output.buffer);
  }
  port.postMessage({ type: 'result', jobId: msg.jobId, result } satisfies WorkerMessage, transfer);
});
port.postMessage({ type: 'ready' } satisfies WorkerMessage);
