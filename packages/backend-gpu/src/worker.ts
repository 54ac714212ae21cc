/**
 * An inference worker: owns ONNX Runtime sessions (cached by model digest; the main thread decides
 * evictions), runs one task at a time. `session.run()` blocks this thread, not the main one.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { env, InferenceSession, Tensor } from 'onnxruntime-node';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { type Fetch, isSupportedType, type TensorData, type TensorInfo } from './tensor-io.js';

const init = workerData as WorkerInit;
// Failures come back as exceptions (and reach the caller as typed errors); keep ONNX Runtime's own log quiet.
env.logLevel = 'fatal';
const port = parentPort;
if (port === null) throw new Error('worker.ts must run in a worker thread');
const sessions = new Map<string, InferenceSession>();
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
    await s?.release().catch(() => undefined);
  }
}

async function load(digest: string, model: Uint8Array): Promise<InferenceSession> {
  const existing = sessions.get(digest);
  if (existing !== undefined) return existing;
  const session = await InferenceSession.create(model, sessionOptions(device));
  sessions.set(digest, session);
  return session;
}

async function handle(msg: ToWorker): Promise<void> {
  await evict(msg.evict);
  if (msg.type === 'load') {
    try {
      const s = await load(msg.digest, msg.model);
      post({
        type: 'loaded',
        taskId: msg.taskId,
        ok: true,
        inputs: describe(s.inputMetadata),
        outputs: describe(s.outputMetadata),
      });
    } catch (err) {
      post({ type: 'loaded', taskId: msg.taskId, ok: false, message: firstLine((err as Error).message) });
    }
    return;
  }
  let session = sessions.get(msg.digest);
  try {
    if (session === undefined) {
      if (msg.model === undefined) throw new Error(`model ${msg.digest} is not loaded in this worker`);
      session = await load(msg.digest, msg.model);
    }
    const feeds: Record<string, Tensor> = {};
    for (const f of msg.feeds) feeds[f.name] = new Tensor(f.type, f.data, f.dims);
    const t0 = performance.now();
    const out = await session.run(feeds);
    const runMs = performance.now() - t0;
    const fetches: Fetch[] = [];
    for (const name of session.outputNames) {
      const t = out[name];
      if (t === undefined) continue;
      if (!isSupportedType(t.type)) {
        post({
          type: 'result',
          taskId: msg.taskId,
          loaded: true,
          ok: false,
          unsupported: true,
          message: `output ${JSON.stringify(name)} has type ${t.type}`,
        });
        return;
      }
      // Copy: ONNX Runtime may own the output's memory; the copy can be transferred.
      fetches.push({ name, type: t.type, dims: [...t.dims], data: (t.data as TensorData).slice() as TensorData });
    }
    post(
      { type: 'result', taskId: msg.taskId, loaded: true, ok: true, fetches, runMs },
      fetches.map((f) => f.data.buffer as ArrayBuffer),
    );
  } catch (err) {
    post({
      type: 'result',
      taskId: msg.taskId,
      loaded: sessions.has(msg.digest),
      ok: false,
      unsupported: false,
      message: firstLine((err as Error).message),
    });
  }
}

let chain: Promise<void> = start();
port.on('message', (msg: ToWorker) => {
  chain = chain.then(() => handle(msg));
});
