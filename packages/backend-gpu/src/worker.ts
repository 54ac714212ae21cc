/**
 * An inference worker: owns ONNX Runtime sessions (cached by model digest; the main thread decides
 * evictions), runs one task at a time. A task is the raw JSON inputs of a group of requests: the
 * worker parses and checks each (so the main thread does not), concatenates compatible ones into
 * session runs, and answers with whole outputs (transferred) and where each request's rows are.
 * `session.run()` blocks this thread, not the main one.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { env, InferenceSession, Tensor } from 'onnxruntime-node';
import { GpuError } from './errors.js';
import type { FromWorker, RunResult, ToWorker, WorkerFailure, WorkerInit } from './protocol.js';
import {
  concatFeeds,
  type Feed,
  type Fetch,
  isSupportedType,
  type ModelInfo,
  modelInfo,
  type ParsedInput,
  parseJobInput,
  type TensorData,
  type TensorInfo,
} from './tensor-io.js';

const init = workerData as WorkerInit;
// Failures come back as exceptions (and reach the caller as typed errors); keep ONNX Runtime's own log quiet.
env.logLevel = 'fatal';
const port = parentPort;
if (port === null) throw new Error('worker.ts must run in a worker thread');
/** A session and what the backend knows of its model (to parse inputs against). */
interface Loaded {
  session: InferenceSession;
  info: ModelInfo;
}
const sessions = new Map<string, Loaded>();
let device: 'cuda' | 'cpu' = init.executionProvider;

function post(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(msg, transfer);
}

function sessionOptions(ep: 'cuda' | 'cpu'): InferenceSession.SessionOptions {
  return {
    executionProviders: ep === 'cuda' ? [{ name: 'cuda', deviceId: init.cudaDeviceId }] : ['cpu'],
    intraOpNumThreads: init.intraOpNumThreads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
}

function describe(meta: readonly InferenceSession.ValueMetadata[]): TensorInfo[] {
  return meta.map((m) =>
    m.isTensor ? { name: m.name, type: m.type, shape: [...m.shape] } : { name: m.name, type: 'non-tensor', shape: [] },
  );
}

async function start(): Promise<void> {
  let fallbackReason: string | undefined;
  if (device === 'cuda') {
    try {
      const probe = await InferenceSession.create(init.probeModel, sessionOptions('cuda'));
      await probe.run({ x: new Tensor('float32', new Float32Array([1]), [1]) });
      await probe.release();
    } catch (err) {
      const message = firstLine((err as Error).message);
      if (!init.fallbackToCpu) {
        post({ type: 'fatal', message: `a CUDA session cannot be created: ${message}` });
        return;
      }
      device = 'cpu';
      fallbackReason = `a GPU is present but a CUDA session failed: ${message}`;
    }
  }
  post({ type: 'ready', device, fallbackReason, onnxruntime: String(env.versions['node'] ?? env.versions.common) });
}

function firstLine(message: string): string {
  return (message.split('\n')[0] ?? message).slice(0, 500);
}

async function evict(digests: string[]): Promise<void> {
  for (const d of digests) {
    const s = sessions.get(d);
    sessions.delete(d);
    await s?.session.release().catch(() => undefined);
  }
}

async function load(digest: string, model: Uint8Array): Promise<Loaded> {
  const existing = sessions.get(digest);
  if (existing !== undefined) return existing;
  const session = await InferenceSession.create(model, sessionOptions(device));
  const loaded = { session, info: modelInfo(describe(session.inputMetadata), describe(session.outputMetadata)) };
  sessions.set(digest, loaded);
  return loaded;
}

async function handle(msg: Exclude<ToWorker, { type: 'close' }>): Promise<void> {
  await evict(msg.evict);
  if (msg.type === 'load') {
    try {
      const s = await load(msg.digest, msg.model);
      post({
        type: 'loaded',
        taskId: msg.taskId,
        ok: true,
        inputs: s.info.inputs,
        outputs: s.info.outputs,
      });
    } catch (err) {
      post({ type: 'loaded', taskId: msg.taskId, ok: false, message: firstLine((err as Error).message) });
    }
    return;
  }
  let loaded = sessions.get(msg.digest);
  try {
    if (loaded === undefined) {
      if (msg.model === undefined) throw new Error(`model ${msg.digest} is not loaded in this worker`);
      loaded = await load(msg.digest, msg.model);
    }
  } catch (err) {
    post({ type: 'result', taskId: msg.taskId, loaded: false, ok: false, message: firstLine((err as Error).message) });
    return;
  }
  const reply = await runTask(loaded, msg);
  const transfer: ArrayBuffer[] = [reply.placements.buffer as ArrayBuffer];
  for (const r of reply.runs) for (const f of r.fetches) transfer.push(f.data.buffer as ArrayBuffer);
  post(reply, transfer);
}

/** Parse each request, pack them into session runs, run them, and say where each request's rows are. */
async function runTask(loaded: Loaded, msg: Extract<ToWorker, { type: 'run' }>) {
  const { session, info } = loaded;
  const n = msg.ends.length;
  // 3 numbers per request: run index (-1: failed), first row, rows.
  const placements = new Int32Array(3 * n).fill(-1);
  const failures: { index: number; failure: WorkerFailure }[] = [];
  const parsed: (ParsedInput | undefined)[] = new Array(n);
  let start = 0;
  for (let i = 0; i < n; i++) {
    const end = msg.ends[i] as number;
    try {
      parsed[i] = parseJobInput(msg.input.subarray(start, end), info, msg.workloads[i] ?? '');
    } catch (err) {
      failures.push({ index: i, failure: failureOf(err) });
    }
    start = end;
  }
  // Group requests by the dims after the first; pack each group, in order, into runs of at most maxBatchSize rows.
  const batchable = msg.batchable && info.batchable && init.maxBatchSize > 1;
  const planned: number[][] = [];
  const openRuns = new Map<string, { indices: number[]; rows: number }>();
  for (let i = 0; i < n; i++) {
    const p = parsed[i];
    if (p === undefined) continue;
    if (!batchable || p.rows === 0 || p.rows >= init.maxBatchSize) {
      planned.push([i]);
      continue;
    }
    const key = batchKey(p.feeds);
    let run = openRuns.get(key);
    if (run !== undefined && run.rows + p.rows > init.maxBatchSize) run = undefined;
    if (run === undefined) {
      run = { indices: [], rows: 0 };
      openRuns.set(key, run);
      planned.push(run.indices);
    }
    run.indices.push(i);
    run.rows += p.rows;
  }
  const runs: RunResult[] = [];
  const counters = { sessionRuns: 0, maxRows: 0, maxRequests: 0 };
  let unbatchable = false;
  const place = (i: number, run: number, offset: number, rows: number): void => {
    placements[3 * i] = run;
    placements[3 * i + 1] = offset;
    placements[3 * i + 2] = rows;
  };
  const runAlone = async (i: number): Promise<void> => {
    const p = parsed[i] as ParsedInput;
    const r = await runOnce(session, [p], counters);
    if (r.ok) {
      place(i, runs.length, 0, p.rows);
      runs.push({ fetches: r.fetches, runMs: r.runMs, solo: true });
    } else {
      failures.push({ index: i, failure: runFailure(msg.workloads[i] ?? '', r) });
    }
  };
  for (const indices of planned) {
    if (indices.length === 1) {
      await runAlone(indices[0] as number);
      continue;
    }
    const parts = indices.map((i) => parsed[i] as ParsedInput);
    const rows = parts.reduce((s, p) => s + p.rows, 0);
    const r = await runOnce(session, parts, counters);
    if (r.ok && r.fetches.some((f) => f.dims[0] !== rows)) {
      // An output without the batch dimension: this model cannot be batched after all.
      unbatchable = true;
      for (const i of indices) await runAlone(i);
      continue;
    }
    if (!r.ok && !r.unsupported) {
      // One request may have poisoned the run: run each alone, so only the culprit fails.
      for (const i of indices) await runAlone(i);
      continue;
    }
    if (!r.ok) {
      for (const i of indices) failures.push({ index: i, failure: runFailure(msg.workloads[i] ?? '', r) });
      continue;
    }
    const k = runs.length;
    runs.push({ fetches: r.fetches, runMs: r.runMs, solo: false });
    let offset = 0;
    for (let j = 0; j < indices.length; j++) {
      const p = parts[j] as ParsedInput;
      place(indices[j] as number, k, offset, p.rows);
      offset += p.rows;
    }
  }
  return {
    type: 'result' as const,
    taskId: msg.taskId,
    loaded: true as const,
    ok: true as const,
    runs,
    placements,
    failures,
    unbatchable,
    ...counters,
  };
}

function batchKey(feeds: readonly Feed[]): string {
  let key = '';
  for (const f of feeds) {
    key += `${f.type}:`;
    for (let d = 1; d < f.dims.length; d++) key += `${f.dims[d]}x`;
    key += ',';
  }
  return key;
}

type RunOutcome = { ok: true; fetches: Fetch[]; runMs: number } | { ok: false; unsupported: boolean; message: string };

async function runOnce(
  session: InferenceSession,
  parts: ParsedInput[],
  counters: { sessionRuns: number; maxRows: number; maxRequests: number },
): Promise<RunOutcome> {
  const feedsList = concatFeeds(parts.map((p) => p.feeds));
  const rows = parts.reduce((s, p) => s + p.rows, 0);
  counters.sessionRuns++;
  counters.maxRows = Math.max(counters.maxRows, rows);
  counters.maxRequests = Math.max(counters.maxRequests, parts.length);
  try {
    const feeds: Record<string, Tensor> = {};
    for (const f of feedsList) feeds[f.name] = new Tensor(f.type, f.data, f.dims);
    const t0 = performance.now();
    const out = await session.run(feeds);
    const runMs = performance.now() - t0;
    const fetches: Fetch[] = [];
    for (const name of session.outputNames) {
      const t = out[name];
      if (t === undefined) continue;
      if (!isSupportedType(t.type)) {
        return { ok: false, unsupported: true, message: `output ${JSON.stringify(name)} has type ${t.type}` };
      }
      // Copy: ONNX Runtime may own the output's memory; the copy can be transferred.
      fetches.push({ name, type: t.type, dims: [...t.dims], data: (t.data as TensorData).slice() as TensorData });
    }
    return { ok: true, fetches, runMs };
  } catch (err) {
    return { ok: false, unsupported: false, message: firstLine((err as Error).message) };
  }
}

function runFailure(workload: string, r: Extract<RunOutcome, { ok: false }>): WorkerFailure {
  if (r.unsupported) {
    return {
      reason: 'unsupported-model',
      message: `${workload}: inference failed: ${r.message}`,
      details: { workload, error: r.message },
    };
  }
  return {
    reason: 'inference-failed',
    message: `${workload}: inference failed: ${r.message}`,
    details: { workload, error: r.message },
  };
}

function failureOf(err: unknown): WorkerFailure {
  if (err instanceof GpuError) return { reason: err.reason, message: err.message, details: { ...err.details } };
  const message = firstLine(err instanceof Error ? err.message : String(err));
  return { reason: 'invalid-input', message: `the input cannot be read: ${message}`, details: { error: message } };
}

/** Release every session, then close the port: with nothing left to run, the thread ends by itself. */
async function closeWorker(): Promise<void> {
  await evict([...sessions.keys()]);
  port?.close();
}

let chain: Promise<void> = start();
port.on('message', (msg: ToWorker) => {
  chain = chain.then(() => (msg.type === 'close' ? closeWorker() : handle(msg)));
});
