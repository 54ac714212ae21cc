/**
 * A pool of pre-spawned worker threads. Each worker runs one invocation at a time; jobs wait in a
 * FIFO queue for an idle worker. A job past its timeout (or aborted) gets its worker terminated and
 * replaced; the other workers keep serving. A crashed worker fails its job and is replaced.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type CancelTimer, type Clock, type Logger, MeshError } from '@meshroute/mesh';
import { WasmError } from './errors.js';
import type { InvokeRequest, InvokeResult } from './invoke.js';
import type { WasmWorkerResourceLimits } from './options.js';
import type { WorkerMessage, WorkerRunMessage } from './worker.js';

/** Consecutive worker start failures after which the pool stops respawning. */
const MAX_START_FAILURES = 3;

/** One job for the pool. */
export interface PoolJob {
  /** Cache key of the compiled module. */
  key: string;
  module: WebAssembly.Module;
  request: InvokeRequest;
  timeoutMs: number;
  signal: AbortSignal;
  /** For messages. */
  workload: string;
}

interface QueuedJob extends PoolJob {
  resolve(result: InvokeResult): void;
  reject(err: Error): void;
  onAbort?: () => void;
}

interface Slot {
  id: number;
  worker: Worker;
  ready: boolean;
  job: QueuedJob | undefined;
  jobId: number;
  cancelTimer: CancelTimer | undefined;
  /** Keys this worker has, oldest first (LRU). */
  keys: Map<string, true>;
  /** Set when we terminate it ourselves. */
  retired: boolean;
}

/** Options of {@link WorkerPool}. */
export interface WorkerPoolOptions {
  size: number;
  maxModulesPerWorker: number;
  resourceLimits: WasmWorkerResourceLimits;
  logger: Logger;
  clock: Clock;
  /** Source of the worker (started with `eval: true`); `undefined`: the package's worker file. */
  workerSource?: string | undefined;
}

/** How to start a worker: from the built JavaScript, or from TypeScript sources through tsx. */
function workerSource(): { filename: string | URL; eval: boolean } {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    // Running from sources (Vitest, `node --import tsx`): load worker.ts through tsx's API.
    const pkgFile = createRequire(here).resolve('tsx/package.json');
    const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as {
      exports: Record<string, { import: { default: string } }>;
    };
    const api = pkg.exports['./esm/api']?.import.default ?? './dist/esm/api/index.mjs';
    const tsx = pathToFileURL(join(dirname(pkgFile), api)).href;
    const worker = new URL('./worker.ts', here).href;
    const code = `import(${JSON.stringify(tsx)}).then((m) => m.tsImport(${JSON.stringify(worker)}, ${JSON.stringify(here)}));`;
    return { filename: code, eval: true };
  }
  return { filename: new URL('./worker.js', here), eval: false };
}

/** @internal The worker pool behind {@link createWasmBackend}. */
export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: QueuedJob[] = [];
  private nextJobId = 1;
  private nextSlotId = 1;
  private startFailures = 0;
  private lastStartError: string | undefined;
  private closed = false;
  private readonly source: { filename: string | URL; eval: boolean };

  constructor(private readonly options: WorkerPoolOptions) {
    this.source = options.workerSource !== undefined ? { filename: options.workerSource, eval: true } : workerSource();
    for (let i = 0; i < options.size; i++) this.slots.push(this.spawn());
  }

  /** Workers alive (started or starting). */
  get size(): number {
    return this.slots.length;
  }

  /** Run a job on the next idle worker. Rejects with a {@link WasmError} on timeout, abort or crash. */
  run(job: PoolJob): Promise<InvokeResult> {
    if (this.closed) return Promise.reject(new WasmError('shutting-down', 'the wasm backend is closed'));
    if (this.startFailures >= MAX_START_FAILURES && this.slots.every((s) => !s.ready)) {
      return Promise.reject(this.startError());
    }
    if (job.signal.aborted) return Promise.reject(this.abortError(job));
    return new Promise<InvokeResult>((resolve, reject) => {
      const queued: QueuedJob = { ...job, resolve, reject };
      queued.onAbort = () => this.abort(queued);
      job.signal.addEventListener('abort', queued.onAbort, { once: true });
      this.queue.push(queued);
      this.pump();
    });
  }

  /** Terminate every worker; queued and running jobs fail with `SHUTTING_DOWN`. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new WasmError('shutting-down', 'the wasm backend is closed');
    for (const job of this.queue.splice(0)) this.settle(job, err);
    const slots = this.slots.splice(0);
    await Promise.all(
      slots.map(async (slot) => {
        slot.retired = true;
        slot.cancelTimer?.();
        if (slot.job !== undefined) this.settle(slot.job, err);
        await slot.worker.terminate();
      }),
    );
  }

  private startError(): WasmError {
    return new WasmError('worker-crashed', `wasm workers cannot start: ${this.lastStartError ?? 'unknown error'}`);
  }

  private spawn(): Slot {
    const worker = new Worker(this.source.filename, {
      eval: this.source.eval,
      resourceLimits: this.options.resourceLimits,
      stdout: false,
      stderr: false,
    });
    const slot: Slot = {
      id: this.nextSlotId++,
      worker,
      ready: false,
      job: undefined,
      jobId: 0,
      cancelTimer: undefined,
      keys: new Map(),
      retired: false,
    };
    worker.unref();
    worker.on('message', (msg: WorkerMessage) => this.onMessage(slot, msg));
    worker.on('error', (err) => {
      this.lastStartError = err.message;
      this.options.logger.warn('wasm worker error', { worker: slot.id, error: err.message });
    });
    worker.on('exit', (exitCode) => this.onExit(slot, exitCode));
    return slot;
  }

  private onMessage(slot: Slot, msg: WorkerMessage): void {
    if (msg.type === 'ready') {
      slot.ready = true;
      this.startFailures = 0;
      this.pump();
      return;
    }
    const job = slot.job;
    if (job === undefined || slot.retired || msg.jobId !== slot.jobId) return;
    slot.cancelTimer?.();
    slot.cancelTimer = undefined;
    slot.job = undefined;
    slot.worker.unref();
    this.settle(job, msg.result);
    this.pump();
  }

  private onExit(slot: Slot, exitCode: number): void {
    if (slot.retired || this.closed) return;
    // An unexpected exit: a crash (out of heap, native error). Fail its job, start a replacement.
    if (!slot.ready) this.startFailures++;
    slot.retired = true;
    slot.cancelTimer?.();
    const job = slot.job;
    this.options.logger.warn('wasm worker exited', { worker: slot.id, exitCode, running: job?.workload });
    if (job !== undefined) {
      this.settle(
        job,
        new WasmError('worker-crashed', `${job.workload}: the worker running it exited (code ${exitCode})`, {
          details: { workload: job.workload, exitCode, error: this.lastStartError },
        }),
      );
    }
    this.replace(slot);
  }

  private replace(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    if (this.startFailures >= MAX_START_FAILURES) {
      this.slots.splice(i, 1);
      this.options.logger.error('wasm workers keep failing to start; not respawning', { error: this.lastStartError });
      if (this.slots.every((s) => !s.ready)) {
        const err = this.startError();
        for (const job of this.queue.splice(0)) this.settle(job, err);
      }
      return;
    }
    this.slots[i] = this.spawn();
  }

  /** Stop a running job's worker (timeout or abort) and replace it. */
  private kill(slot: Slot, err: Error): void {
    const job = slot.job;
    slot.retired = true;
    slot.cancelTimer?.();
    slot.job = undefined;
    void slot.worker.terminate();
    this.replace(slot);
    if (job !== undefined) this.settle(job, err);
    this.pump();
  }

  private abortError(job: PoolJob): Error {
    const reason: unknown = job.signal.reason;
    if (reason instanceof MeshError) return reason;
    return new WasmError('aborted', `${job.workload}: the job was aborted`, {
      cause: reason,
      details: { workload: job.workload },
    });
  }

  private abort(job: QueuedJob): void {
    const q = this.queue.indexOf(job);
    if (q >= 0) {
      this.queue.splice(q, 1);
      this.settle(job, this.abortError(job));
      return;
    }
    const slot = this.slots.find((s) => s.job === job);
    if (slot !== undefined) this.kill(slot, this.abortError(job));
  }

  private settle(job: QueuedJob, outcome: InvokeResult | Error): void {
    if (job.onAbort !== undefined) job.signal.removeEventListener('abort', job.onAbort);
    if (outcome instanceof Error) job.reject(outcome);
    else job.resolve(outcome);
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const slot = this.slots.find((s) => s.ready && !s.retired && s.job === undefined);
      if (slot === undefined) return;
      const job = this.queue.shift() as QueuedJob;
      this.dispatch(slot, job);
    }
  }

  private dispatch(slot: Slot, job: QueuedJob): void {
    const jobId = this.nextJobId++;
    const evict: string[] = [];
    let module: WebAssembly.Module | undefined;
    if (slot.keys.has(job.key)) {
      slot.keys.delete(job.key);
    } else {
      module = job.module;
      while (slot.keys.size >= this.options.maxModulesPerWorker) {
        const oldest = slot.keys.keys().next().value as string;
        slot.keys.delete(oldest);
        evict.push(oldest);
      }
    }
    slot.keys.set(job.key, true);
    slot.job = job;
    slot.jobId = jobId;
    slot.worker.ref();
    slot.cancelTimer = this.options.clock.setTimeout(() => {
      if (slot.job !== job) return;
      this.options.logger.warn('wasm job timed out; replacing its worker', { workload: job.workload, worker: slot.id });
      this.kill(
        slot,
        new WasmError('timeout', `${job.workload}: timed out after ${job.timeoutMs} ms`, {
          details: { workload: job.workload, timeoutMs: job.timeoutMs },
        }),
      );
    }, job.timeoutMs);
    const msg: WorkerRunMessage = { type: 'run', jobId, key: job.key, module, evict, request: job.request };
    slot.worker.postMessage(msg);
  }
}
