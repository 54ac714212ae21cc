/**
 * The GPU backend: ONNX models on onnxruntime-node in worker threads, with dynamic batching.
 *
 * The main thread groups concurrent requests for the same model (up to `maxBatchSize` requests, or
 * until `maxBatchDelayMs` after the group's first request) and sends the group's raw JSON inputs, as
 * one transferred buffer, to an idle worker. The worker parses and checks each input, concatenates
 * those with the same dims after the first along the batch dimension into session runs of at most
 * `maxBatchSize` rows, runs them, and transfers the outputs back; the main thread hands each request
 * a view of its rows. Workers own the ONNX Runtime sessions, cached per model digest.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import {
  type BackendJob,
  type BackendOutput,
  type CancelTimer,
  type ComputeBackend,
  ConfigError,
  ErrorCode,
  MeshError,
  TimeoutError,
} from '@meshroute/mesh';
import { detectGpu } from './device.js';
import { GpuError } from './errors.js';
import { type ExecutionProviderChoice, type GpuBackendOptions, resolveGpuBackendOptions } from './options.js';
import { probeModelBytes } from './probe-model.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';
import {
  type Fetch,
  type ModelInfo,
  modelInfo,
  type OutputTensorJson,
  outputJsonUpperBound,
  sliceRows,
  tensorToJson,
} from './tensor-io.js';

/** Consecutive worker start failures after which the backend stops respawning. */
const MAX_START_FAILURES = 3;
/** Model metadata entries kept in the main thread. */
const MAX_MODEL_ENTRIES = 256;

/** Device facts of the GPU backend, published in the agent's heartbeat. */
export interface GpuFacts {
  /** Where inference runs. Until the workers have started, the planned device. */
  device: 'cuda' | 'cpu';
  /** `starting` until a worker has tried the execution provider; `failed` when explicit CUDA did not work. */
  state: 'starting' | 'ready' | 'failed' | 'closed';
  /** What was asked for. */
  executionProvider: ExecutionProviderChoice;
  /** GPU model (from `nvidia-smi`), when a GPU is present. */
  gpuModel?: string;
  /** GPU memory, bytes (from `nvidia-smi`), when a GPU is present. */
  gpuMemoryBytes?: number;
  /** Why inference runs on CPU although `auto` was asked for. */
  fallbackReason?: string;
  /** onnxruntime-node version. */
  onnxruntime: string;
  /** Inference worker threads. */
  workers: number;
  /** Largest batch, rows. */
  maxBatchSize: number;
  /** Batch delay, ms. */
  maxBatchDelayMs: number;
  [key: string]: unknown;
}

/** The JSON output of a GPU job: `{ outputs: { <name>: { dims, data, type } } }`. */
export interface GpuJobOutput {
  outputs: Record<string, OutputTensorJson>;
}

/** The GPU {@link ComputeBackend}. */
export interface GpuBackend extends ComputeBackend {
  readonly kind: 'gpu';
  /** Device facts (for the heartbeat). */
  facts(): GpuFacts;
  /** Resolves once every worker has started (facts are final); rejects with `CONFIG_ERROR` when explicit CUDA does not work. */
  ready(): Promise<GpuFacts>;
  /**
   * Run one job: `job.input` is JSON (see the package README), the output's `json` is a {@link GpuJobOutput}.
   * Rejects with a {@link GpuError} (`WORKLOAD_FAILED`, `ARTIFACT_ERROR`, `LIMIT_EXCEEDED`, ...) or a `TIMEOUT`; the backend keeps serving.
   */
  run(job: BackendJob): Promise<BackendOutput>;
  /** Stop the workers; pending jobs fail with `SHUTTING_DOWN`. */
  close(): Promise<void>;
}

/** Counters of a backend, for tests and diagnostics. */
export interface GpuBackendStats {
  /** Jobs accepted by `run()`. */
  requests: number;
  /** ONNX Runtime `session.run()` calls. */
  sessionRuns: number;
  /** Largest batch run, rows. */
  maxBatchRows: number;
  /** Largest batch run, requests. */
  maxBatchRequests: number;
  /** Sessions created in workers (model loads). */
  modelLoads: number;
  /** Workers replaced after a crash or a stuck job. */
  workerRestarts: number;
  /** Workers `close()` had to terminate because they had not stopped by themselves within `closeTimeoutMs`. */
  workersTerminatedOnClose: number;
}

/** @internal What the internal API sees of a backend. */
export interface GpuBackendInternals {
  stats(): GpuBackendStats;
  /** Terminate worker `index` as if it had crashed. */
  killWorker(index: number): void;
  /**
   * Called with each task just before it is posted to its worker (a test that kills the worker here
   * knows the task cannot have run).
   */
  onDispatch(fn: ((task: { kind: 'load' | 'batch'; requests: number; worker: number }) => void) | undefined): void;
}

const internalsByBackend = new WeakMap<GpuBackend, GpuBackendInternals>();

/** @internal Internals of a backend made by {@link createGpuBackend}. */
export function gpuBackendInternals(backend: GpuBackend): GpuBackendInternals {
  const i = internalsByBackend.get(backend);
  if (i === undefined) throw new TypeError('not a backend made by createGpuBackend');
  return i;
}

interface ModelEntry {
  digest: string;
  bytes: Uint8Array;
  info: ModelInfo | undefined;
  loading: Promise<ModelInfo> | undefined;
}

interface Req {
  workload: string;
  outputBytes: number;
  /** The raw JSON input (parsed in the worker). */
  input: Uint8Array;
  done: boolean;
  batch: Batch | undefined;
  resolve(out: BackendOutput): void;
  reject(err: Error): void;
  cleanup(): void;
}

interface Batch {
  key: string;
  entry: ModelEntry;
  requests: Req[];
  state: 'open' | 'queued' | 'running';
  cancelTimer: CancelTimer | undefined;
  slot: Slot | undefined;
}

type Task =
  | { kind: 'load'; id: number; entry: ModelEntry; resolve(info: ModelInfo): void; reject(err: Error): void }
  | { kind: 'batch'; id: number; batch: Batch; sent: Req[] };

interface Slot {
  id: number;
  worker: Worker;
  ready: boolean;
  retired: boolean;
  task: Task | undefined;
  /** Model digests with a session in this worker, least recently used first. */
  sessions: string[];
}

/** How to start a worker: from the built JavaScript, or from TypeScript sources through tsx. */
function workerSource(): { filename: string | URL; eval: boolean } {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
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

let ortVersionCache: string | undefined;
/** The installed onnxruntime-node version (read from its package.json). */
export function onnxruntimeVersion(): string {
  if (ortVersionCache === undefined) {
    try {
      const file = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
      ortVersionCache = (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
    } catch {
      ortVersionCache = 'unknown';
    }
  }
  return ortVersionCache;
}

/**
 * Create the GPU backend. Detects a GPU (`/dev/nvidia0` or `nvidia-smi -L`); with one, workers try
 * a CUDA session; without one (or when CUDA fails under `auto`) they use the CPU provider, and
 * `facts().fallbackReason` says why.
 * @throws ConfigError for invalid options, or `executionProvider: 'cuda'` without a GPU
 * @example
 * ```ts
 * const gpu = createGpuBackend({ maxBatchSize: 64, maxBatchDelayMs: 2 });
 * await gpu.ready();
 * const out = await gpu.run({ workload, artifact, input, contentType: 'application/json', signal });
 * // out.json: { outputs: { probs: { dims: [1, 10], data: [...], type: 'float32' } } }
 * ```
 */
export function createGpuBackend(options: GpuBackendOptions = {}): GpuBackend {
  const opts = resolveGpuBackendOptions(options);
  const { clock, logger: log } = opts;

  // --- device plan --------------------------------------------------------------------------
  const facts: GpuFacts = {
    device: 'cpu',
    state: 'starting',
    executionProvider: opts.executionProvider,
    onnxruntime: onnxruntimeVersion(),
    workers: opts.workers,
    maxBatchSize: opts.maxBatchSize,
    maxBatchDelayMs: opts.maxBatchDelayMs,
  };
  let fallbackToCpu = false;
  if (opts.executionProvider !== 'cpu') {
    const gpu = detectGpu(opts.probes);
    if (!gpu.present) {
      if (opts.executionProvider === 'cuda') {
        throw new ConfigError('executionProvider', `"cuda" was asked for but ${gpu.reason ?? 'no GPU is present'}`);
      }
      facts.fallbackReason = gpu.reason ?? 'no GPU';
    } else {
      facts.device = 'cuda';
      fallbackToCpu = opts.executionProvider === 'auto';
      if (gpu.gpuModel !== undefined) facts.gpuModel = gpu.gpuModel;
      if (gpu.gpuMemoryBytes !== undefined) facts.gpuMemoryBytes = gpu.gpuMemoryBytes;
    }
  }
  const init: WorkerInit = {
    executionProvider: facts.device,
    fallbackToCpu,
    cudaDeviceId: opts.cudaDeviceId,
    intraOpNumThreads: opts.intraOpNumThreads,
    maxBatchSize: opts.maxBatchSize,
    probeModel: probeModelBytes(),
  };

  // --- state --------------------------------------------------------------------------------
  const source = workerSource();
  const slots: Slot[] = [];
  const tasks: Task[] = [];
  const open = new Map<string, Batch>();
  const models = new Map<string, ModelEntry>();
  const stats: GpuBackendStats = {
    requests: 0,
    sessionRuns: 0,
    maxBatchRows: 0,
    maxBatchRequests: 0,
    modelLoads: 0,
    workerRestarts: 0,
    workersTerminatedOnClose: 0,
  };
  let closed = false;
  let fatal: MeshError | undefined;
  let startFailures = 0;
  let nextTaskId = 1;
  let nextSlotId = 1;
  let dispatchHook: Parameters<GpuBackendInternals['onDispatch']>[0];
  const readyWaiters: { resolve(f: GpuFacts): void; reject(e: Error): void }[] = [];

  function spawn(): Slot {
    const worker = new Worker(source.filename, { eval: source.eval, workerData: init, stdout: false, stderr: false });
    const slot: Slot = { id: nextSlotId++, worker, ready: false, retired: false, task: undefined, sessions: [] };
    worker.unref();
    worker.on('message', (msg: FromWorker) => onMessage(slot, msg));
    worker.on('error', (err) => log.warn('gpu worker error', { worker: slot.id, error: err.message }));
    worker.on('exit', (exitCode) => onExit(slot, exitCode));
    return slot;
  }

  function settleReady(): void {
    if (fatal !== undefined) {
      for (const w of readyWaiters.splice(0)) w.reject(fatal);
    } else if (slots.length > 0 && slots.every((s) => s.ready)) {
      for (const w of readyWaiters.splice(0)) w.resolve(facts);
    }
  }

  function fail(err: MeshError): void {
    if (fatal !== undefined) return;
    fatal = err;
    facts.state = 'failed';
    log.error('gpu backend failed', { error: err.message, code: err.code });
    failEverything(err);
    for (const s of slots.splice(0)) {
      s.retired = true;
      void s.worker.terminate();
    }
    settleReady();
  }

  function failEverything(err: Error): void {
    for (const batch of open.values()) {
      batch.cancelTimer?.();
      for (const r of batch.requests) finish(r, err);
    }
    open.clear();
    for (const t of tasks.splice(0)) failTask(t, err);
    for (const s of slots) if (s.task !== undefined) failTask(s.task, err);
  }

  function failTask(task: Task, err: Error): void {
    if (task.kind === 'load') {
      models.delete(task.entry.digest);
      task.reject(err);
    } else {
      for (const r of task.batch.requests) finish(r, err);
    }
  }

  function onMessage(slot: Slot, msg: FromWorker): void {
    if (slot.retired) return;
    switch (msg.type) {
      case 'ready':
        slot.ready = true;
        startFailures = 0;
        facts.device = msg.device;
        facts.onnxruntime = msg.onnxruntime;
        if (msg.fallbackReason !== undefined) facts.fallbackReason = msg.fallbackReason;
        if (facts.state === 'starting') facts.state = 'ready';
        settleReady();
        pump();
        return;
      case 'fatal':
        fail(new ConfigError('executionProvider', `"cuda" was asked for but ${msg.message}`));
        return;
      case 'loaded':
      case 'result':
        onTaskDone(slot, msg);
        return;
    }
  }

  function onTaskDone(slot: Slot, msg: Extract<FromWorker, { type: 'loaded' | 'result' }>): void {
    const task = slot.task;
    if (task === undefined || task.id !== msg.taskId) return;
    slot.task = undefined;
    slot.worker.unref();
    if (task.kind === 'load' && msg.type === 'loaded') {
      if (msg.ok) {
        stats.modelLoads++;
        const info = modelInfo(msg.inputs, msg.outputs);
        task.entry.info = info;
        task.entry.loading = undefined;
        task.resolve(info);
      } else {
        forget(slot, task.entry.digest);
        models.delete(task.entry.digest);
        task.reject(
          new GpuError('invalid-model', `the model cannot be loaded: ${msg.message}`, {
            details: { digest: task.entry.digest, error: msg.message },
          }),
        );
      }
    } else if (task.kind === 'batch' && msg.type === 'result') {
      if (!msg.loaded) forget(slot, task.batch.entry.digest);
      onBatchDone(task, msg);
    }
    pump();
  }

  function onBatchDone(task: Extract<Task, { kind: 'batch' }>, msg: Extract<FromWorker, { type: 'result' }>): void {
    const { batch, sent } = task;
    if (!msg.ok) {
      stats.sessionRuns++;
      for (const r of sent) {
        finish(
          r,
          new GpuError('inference-failed', `${r.workload}: inference failed: ${msg.message}`, {
            details: { workload: r.workload, error: msg.message },
          }),
        );
      }
      return;
    }
    stats.sessionRuns += msg.sessionRuns;
    stats.maxBatchRows = Math.max(stats.maxBatchRows, msg.maxRows);
    stats.maxBatchRequests = Math.max(stats.maxBatchRequests, msg.maxRequests);
    if (msg.unbatchable && batch.entry.info?.batchable === true) {
      log.warn('gpu model outputs do not follow the batch dimension; batching off for it', {
        digest: batch.entry.digest,
      });
      batch.entry.info = { ...batch.entry.info, batchable: false };
    }
    for (const { index, failure } of msg.failures) {
      const r = sent[index];
      if (r !== undefined) finish(r, new GpuError(failure.reason, failure.message, { details: failure.details }));
    }
    const at = msg.placements;
    for (let i = 0; i < sent.length; i++) {
      const r = sent[i] as Req;
      const run = msg.runs[at[3 * i] as number];
      if (r.done || run === undefined) continue;
      const fetches: Fetch[] = run.solo
        ? run.fetches
        : run.fetches.map((f) => sliceRows(f, at[3 * i + 1] as number, at[3 * i + 2] as number));
      const outputs: Record<string, OutputTensorJson> = {};
      for (const f of fetches) outputs[f.name] = tensorToJson(f);
      const json: GpuJobOutput = { outputs };
      const size = outputJsonUpperBound(fetches) <= r.outputBytes ? 0 : Buffer.byteLength(JSON.stringify(json));
      if (size > r.outputBytes) {
        finish(
          r,
          new GpuError(
            'output-too-large',
            `${r.workload}: output is ${size} bytes, over the limit of ${r.outputBytes}`,
            {
              details: { workload: r.workload, sizeBytes: size, limitBytes: r.outputBytes },
            },
          ),
        );
        continue;
      }
      finish(r, { json, contentType: 'application/json', executionMs: run.runMs });
    }
    // Requests the worker had no word on (none expected) must not hang.
    for (const r of sent) {
      if (!r.done) {
        finish(
          r,
          new GpuError('inference-failed', `${r.workload}: the worker returned no result for this job`, {
            details: { workload: r.workload },
          }),
        );
      }
    }
  }

  function forget(slot: Slot, digest: string): void {
    const i = slot.sessions.indexOf(digest);
    if (i >= 0) slot.sessions.splice(i, 1);
  }

  function onExit(slot: Slot, exitCode: number): void {
    if (slot.retired || closed) return;
    slot.retired = true;
    if (!slot.ready) startFailures++;
    const idx = slots.indexOf(slot);
    if (idx >= 0) slots.splice(idx, 1);
    log.warn('gpu worker exited', { worker: slot.id, exitCode });
    const task = slot.task;
    slot.task = undefined;
    if (task !== undefined) {
      failTask(
        task,
        new GpuError('worker-crashed', `the inference worker exited (code ${exitCode}) while running this job`, {
          details: { exitCode },
        }),
      );
    }
    if (startFailures >= MAX_START_FAILURES) {
      fail(new MeshError(ErrorCode.INTERNAL, `gpu workers cannot start (exit code ${exitCode})`));
      return;
    }
    stats.workerRestarts++;
    slots.push(spawn());
    pump();
  }

  // --- batching -----------------------------------------------------------------------------
  function newBatch(key: string, entry: ModelEntry): Batch {
    return { key, entry, requests: [], state: 'open', cancelTimer: undefined, slot: undefined };
  }

  function enqueue(batch: Batch): void {
    batch.cancelTimer?.();
    batch.cancelTimer = undefined;
    if (open.get(batch.key) === batch) open.delete(batch.key);
    batch.state = 'queued';
    tasks.push({ kind: 'batch', id: nextTaskId++, batch, sent: [] });
  }

  /**
   * Add a request to its model's open batch. Inputs are parsed in the worker, so rows are not known
   * here: a batch holds up to `maxBatchSize` requests, and the worker packs them into session runs
   * of at most `maxBatchSize` rows.
   */
  function add(req: Req, entry: ModelEntry, info: ModelInfo): void {
    const key = entry.digest;
    if (!info.batchable || opts.maxBatchSize === 1) {
      const batch = newBatch(key, entry);
      batch.requests.push(req);
      req.batch = batch;
      enqueue(batch);
      pump();
      return;
    }
    let batch = open.get(key);
    if (batch === undefined) {
      const b = newBatch(key, entry);
      open.set(key, b);
      b.cancelTimer = clock.setTimeout(() => {
        b.cancelTimer = undefined;
        if (b.state === 'open') {
          enqueue(b);
          pump();
        }
      }, opts.maxBatchDelayMs);
      batch = b;
    }
    batch.requests.push(req);
    req.batch = batch;
    if (batch.requests.length >= opts.maxBatchSize) enqueue(batch);
    pump();
  }

  // --- dispatch -----------------------------------------------------------------------------
  function pump(): void {
    while (tasks.length > 0 && fatal === undefined && !closed) {
      const idle = slots.filter((s) => s.ready && s.task === undefined && !s.retired);
      if (idle.length === 0) return;
      const task = tasks.shift() as Task;
      const digest = task.kind === 'load' ? task.entry.digest : task.batch.entry.digest;
      if (task.kind === 'batch') {
        task.sent = task.batch.requests.filter((r) => !r.done);
        if (task.sent.length === 0) continue;
      }
      const slot = idle.find((s) => s.sessions.includes(digest)) ?? (idle[0] as Slot);
      const has = slot.sessions.includes(digest);
      forget(slot, digest);
      slot.sessions.push(digest);
      const evict = slot.sessions.length > opts.maxCachedSessions ? slot.sessions.splice(0, 1) : [];
      slot.task = task;
      slot.worker.ref();
      if (task.kind === 'load') {
        const msg: ToWorker = { type: 'load', taskId: task.id, digest, model: task.entry.bytes, evict };
        dispatchHook?.({ kind: 'load', requests: 0, worker: slots.indexOf(slot) });
        slot.worker.postMessage(msg);
        continue;
      }
      const batch = task.batch;
      batch.state = 'running';
      batch.slot = slot;
      // The raw inputs, copied into one buffer (the callers keep theirs) that is transferred.
      const sent = task.sent;
      let total = 0;
      for (const r of sent) total += r.input.byteLength;
      const input = new Uint8Array(total);
      const ends = new Uint32Array(sent.length);
      const workloads: string[] = new Array(sent.length);
      let end = 0;
      for (let i = 0; i < sent.length; i++) {
        const r = sent[i] as Req;
        input.set(r.input, end);
        end += r.input.byteLength;
        ends[i] = end;
        workloads[i] = r.workload;
      }
      const msg: ToWorker = {
        type: 'run',
        taskId: task.id,
        digest,
        model: has ? undefined : batch.entry.bytes,
        evict,
        batchable: batch.entry.info?.batchable ?? false,
        input,
        ends,
        workloads,
      };
      dispatchHook?.({ kind: 'batch', requests: task.sent.length, worker: slots.indexOf(slot) });
      slot.worker.postMessage(msg, [input.buffer, ends.buffer]);
    }
  }

  // --- requests -----------------------------------------------------------------------------
  function finish(req: Req, result: BackendOutput | Error): void {
    if (req.done) return;
    req.done = true;
    req.cleanup();
    const batch = req.batch;
    if (batch !== undefined && batch.state !== 'running') {
      const i = batch.requests.indexOf(req);
      if (i >= 0) batch.requests.splice(i, 1);
      if (batch.requests.length === 0 && batch.state === 'open') {
        batch.cancelTimer?.();
        if (open.get(batch.key) === batch) open.delete(batch.key);
      }
    } else if (batch !== undefined && result instanceof Error && batch.requests.every((r) => r.done)) {
      // Every request of a running batch gave up (timeout, abort): the worker may be stuck; replace it.
      const slot = batch.slot;
      if (slot !== undefined && !slot.retired && slot.task?.kind === 'batch' && slot.task.batch === batch) {
        log.warn('gpu worker replaced: every job of its batch gave up', { worker: slot.id });
        slot.task = undefined;
        const idx = slots.indexOf(slot);
        if (idx >= 0) slots.splice(idx, 1);
        slot.retired = true;
        void slot.worker.terminate();
        if (!closed && fatal === undefined) {
          stats.workerRestarts++;
          slots.push(spawn());
        }
      }
    }
    if (result instanceof Error) req.reject(result);
    else req.resolve(result);
  }

  function modelEntry(digest: string, bytes: Uint8Array): ModelEntry {
    let entry = models.get(digest);
    if (entry !== undefined) {
      models.delete(digest);
      models.set(digest, entry);
      return entry;
    }
    entry = { digest, bytes, info: undefined, loading: undefined };
    models.set(digest, entry);
    if (models.size > MAX_MODEL_ENTRIES) {
      const oldest = models.keys().next().value;
      if (oldest !== undefined) models.delete(oldest);
    }
    return entry;
  }

  function infoOf(entry: ModelEntry): Promise<ModelInfo> {
    if (entry.info !== undefined) return Promise.resolve(entry.info);
    if (entry.loading === undefined) {
      entry.loading = new Promise<ModelInfo>((resolve, reject) => {
        tasks.unshift({ kind: 'load', id: nextTaskId++, entry, resolve, reject });
      });
      entry.loading.catch(() => undefined);
      pump();
    }
    return entry.loading;
  }

  function abortError(signal: AbortSignal, workload: string): Error {
    const reason: unknown = signal.reason;
    if (reason instanceof MeshError) return reason;
    return new GpuError('aborted', `${workload}: the job was aborted`, { cause: reason, details: { workload } });
  }

  function run(job: BackendJob): Promise<BackendOutput> {
    const workload = job.workload.name;
    if (closed) return Promise.reject(new MeshError(ErrorCode.SHUTTING_DOWN, 'the gpu backend is closed'));
    if (fatal !== undefined) return Promise.reject(fatal);
    const artifact = job.workload.artifacts.gpu;
    if (artifact === undefined) {
      return Promise.reject(
        new GpuError('no-artifact', `${workload}: the workload has no gpu artifact`, { details: { workload } }),
      );
    }
    const limits = job.workload.limits;
    if (job.artifact.byteLength > limits.memoryBytes) {
      return Promise.reject(
        new GpuError(
          'model-too-large',
          `${workload}: the model is ${job.artifact.byteLength} bytes, over limits.memoryBytes ${limits.memoryBytes}`,
          { details: { workload, sizeBytes: job.artifact.byteLength, limitBytes: limits.memoryBytes } },
        ),
      );
    }
    if (job.signal.aborted) return Promise.reject(abortError(job.signal, workload));
    stats.requests++;
    return new Promise<BackendOutput>((resolve, reject) => {
      const onAbort = () => finish(req, abortError(job.signal, workload));
      const cancelTimeout = clock.setTimeout(
        () => finish(req, new TimeoutError(`gpu workload ${workload}`, limits.timeoutMs, { details: { workload } })),
        limits.timeoutMs,
      );
      const req: Req = {
        workload,
        outputBytes: limits.outputBytes,
        input: job.input,
        done: false,
        batch: undefined,
        resolve,
        reject,
        cleanup() {
          cancelTimeout();
          job.signal.removeEventListener('abort', onAbort);
        },
      };
      job.signal.addEventListener('abort', onAbort, { once: true });
      const entry = modelEntry(artifact.digest, job.artifact);
      if (entry.info !== undefined) {
        // The model is known: join a batch now (no microtask, no promise per request).
        add(req, entry, entry.info);
        return;
      }
      infoOf(entry).then(
        (info) => {
          if (!req.done) add(req, entry, info);
        },
        (err: Error) => finish(req, err),
      );
    });
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    facts.state = 'closed';
    failEverything(new MeshError(ErrorCode.SHUTTING_DOWN, 'the gpu backend is closed'));
    for (const w of readyWaiters.splice(0))
      w.reject(new MeshError(ErrorCode.SHUTTING_DOWN, 'the gpu backend is closed'));
    const all = slots.splice(0);
    await Promise.all(
      all.map((s) => {
        s.retired = true;
        return stopWorker(s);
      }),
    );
  }

  /**
   * Ask a worker to finish the task in hand and release its sessions (it then exits by itself); terminate it
   * only if it has not exited after `closeTimeoutMs`. Terminating a thread inside an ONNX Runtime call
   * tears the binding down under a native call, which can abort the whole process.
   */
  function stopWorker(slot: Slot): Promise<void> {
    const { worker } = slot;
    // Workers are unref'd while they serve; until this one has exited it must keep the process
    // alive, or a caller awaiting close() with nothing else running would see the process end first.
    worker.ref();
    return new Promise<void>((resolve) => {
      let cancelTimer: (() => void) | undefined;
      const exited = () => {
        cancelTimer?.();
        resolve();
      };
      worker.once('exit', exited);
      cancelTimer = clock.setTimeout(() => {
        stats.workersTerminatedOnClose++;
        log.warn('gpu worker did not stop in time, terminating it', {
          worker: slot.id,
          closeTimeoutMs: opts.closeTimeoutMs,
        });
        worker.terminate().then(exited, exited);
      }, opts.closeTimeoutMs);
      try {
        worker.postMessage({ type: 'close' } satisfies ToWorker);
      } catch {
        worker.terminate().then(exited, exited);
      }
    });
  }

  for (let i = 0; i < opts.workers; i++) slots.push(spawn());

  const backend: GpuBackend = {
    kind: 'gpu',
    facts: () => ({ ...facts }),
    ready() {
      if (fatal !== undefined) return Promise.reject(fatal);
      if (closed) return Promise.reject(new MeshError(ErrorCode.SHUTTING_DOWN, 'the gpu backend is closed'));
      if (slots.every((s) => s.ready)) return Promise.resolve({ ...facts });
      return new Promise((resolve, reject) => readyWaiters.push({ resolve: (f) => resolve({ ...f }), reject }));
    },
    run,
    close,
  };
  internalsByBackend.set(backend, {
    stats: () => ({ ...stats }),
    killWorker(index) {
      const slot = slots[index];
      if (slot === undefined) throw new RangeError(`no worker ${index}`);
      void slot.worker.terminate();
    },
    onDispatch(fn) {
      dispatchHook = fn;
    },
  });
  return backend;
}
