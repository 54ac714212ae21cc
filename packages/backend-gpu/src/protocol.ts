/** Messages between the backend (main thread) and its inference workers. */
import type { Feed, Fetch, TensorInfo } from './tensor-io.js';

/** `workerData` of an inference worker. */
export interface WorkerInit {
  /** Execution provider to use. */
  executionProvider: 'cuda' | 'cpu';
  /** With `cuda`: fall back to CPU (reporting why) when a CUDA session cannot be created. */
  fallbackToCpu: boolean;
  cudaDeviceId: number;
  intraOpNumThreads: number;
  /** A tiny model to try the execution provider with. */
  probeModel: Uint8Array;
}

/** Main → worker. */
export type ToWorker =
  | { type: 'load'; taskId: number; digest: string; model: Uint8Array; evict: string[] }
  | { type: 'run'; taskId: number; digest: string; model: Uint8Array | undefined; evict: string[]; feeds: Feed[] };

/** Worker → main. */
export type FromWorker =
  | { type: 'ready'; device: 'cuda' | 'cpu'; fallbackReason: string | undefined; onnxruntime: string }
  | { type: 'fatal'; message: string }
  | { type: 'loaded'; taskId: number; ok: true; inputs: TensorInfo[]; outputs: TensorInfo[] }
  | { type: 'loaded'; taskId: number; ok: false; message: string }
  | { type: 'result'; taskId: number; loaded: boolean; ok: true; fetches: Fetch[]; runMs: number }
  | { type: 'result'; taskId: number; loaded: boolean; ok: false; message: string; unsupported: boolean };
