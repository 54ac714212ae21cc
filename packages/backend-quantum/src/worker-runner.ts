/**
 * Runs one simulation in a fresh worker thread, so a large circuit never blocks the agent's event
 * loop and can be stopped mid-pass: abort and timeout terminate the thread.
 * @internal
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type Clock, ErrorCode, fromErrorInfo, MeshError } from '@meshroute/mesh';
import type { SimulationResult } from './simulator.js';
import type { WorkerRequest, WorkerResponse } from './worker-protocol.js';

/** How to start the worker: built JavaScript, or TypeScript sources through tsx (tests, benches). */
function workerSource(): { filename: string | URL; eval: boolean } {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    const pkgFile = createRequire(here).resolve('tsx/package.json');
    const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as {
      exports: Record<string, { import?: { default?: string } }>;
    };
    const api = pkg.exports['./esm/api']?.import?.default ?? './dist/esm/api/index.mjs';
    const tsx = pathToFileURL(join(dirname(pkgFile), api)).href;
    const worker = new URL('./worker.ts', here).href;
    const code = `import(${JSON.stringify(tsx)}).then((m) => m.tsImport(${JSON.stringify(worker)}, ${JSON.stringify(here)}));`;
    return { filename: code, eval: true };
  }
  return { filename: new URL('./worker.js', here), eval: false };
}

/** Heap limit of a simulation worker, MiB (the program's operations live there; amplitudes do not). */
export const WORKER_MAX_OLD_GENERATION_MB = 1024;

function abortReason(signal: AbortSignal): MeshError {
  const reason: unknown = signal.reason;
  if (reason instanceof MeshError) return reason;
  return new MeshError(ErrorCode.TIMEOUT, 'the quantum simulation was aborted', { retryable: true, cause: reason });
}

/**
 * Simulate `request` in a new worker thread.
 * @throws the simulation's MeshError; MeshError `TIMEOUT` after `timeoutMs`; the signal's reason on abort
 */
export function runInWorker(
  request: WorkerRequest,
  options: { signal: AbortSignal; timeoutMs: number; clock: Clock },
): Promise<SimulationResult> {
  const { signal, timeoutMs, clock } = options;
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<SimulationResult>((resolve, reject) => {
    const source = workerSource();
    const worker = new Worker(source.filename, {
      eval: source.eval,
      stdout: false,
      stderr: false,
      // Without limits a worker that runs out of heap takes the whole process down with it; with
      // them it is stopped alone (ERR_WORKER_OUT_OF_MEMORY). The state vector is off-heap.
      resourceLimits: { maxOldGenerationSizeMb: WORKER_MAX_OLD_GENERATION_MB },
    });
    let settled = false;
    const finish = (err: MeshError | undefined, result?: SimulationResult): void => {
      if (settled) return;
      settled = true;
      cancelTimer();
      signal.removeEventListener('abort', onAbort);
      void worker.terminate();
      if (err) reject(err);
      else resolve(result as SimulationResult);
    };
    const onAbort = (): void => finish(abortReason(signal));
    const cancelTimer = clock.setTimeout(
      () =>
        finish(
          new MeshError(ErrorCode.TIMEOUT, `the quantum simulation timed out after ${timeoutMs} ms`, {
            retryable: true,
          }),
        ),
      timeoutMs,
    );
    signal.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (response: WorkerResponse) => {
      if (response.ok) finish(undefined, response.result);
      else finish(fromErrorInfo(response.error));
    });
    worker.once('error', (err: Error & { code?: string }) =>
      finish(
        err.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? new MeshError(
              ErrorCode.LIMIT_EXCEEDED,
              `the quantum worker ran out of memory (heap limit ${WORKER_MAX_OLD_GENERATION_MB} MiB) while parsing or simulating the program`,
              { cause: err, details: { maxOldGenerationSizeMb: WORKER_MAX_OLD_GENERATION_MB } },
            )
          : new MeshError(ErrorCode.WORKLOAD_FAILED, `the quantum worker failed: ${err.message}`, { cause: err }),
      ),
    );
    worker.once('exit', (code) =>
      finish(new MeshError(ErrorCode.WORKLOAD_FAILED, `the quantum worker exited (code ${code}) before answering`)),
    );
    worker.postMessage(request);
  });
}
