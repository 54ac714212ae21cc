/** Messages between the backend (main thread) and its inference workers. */
import type { GpuFailureReason } from './errors.js';
import type { Fetch, TensorInfo } from './tensor-io.js';

/** `workerData` of an inference worker. */
export interface WorkerInit {
  /** Execution provider to use. */
  executionProvider: 'cuda' | 'cpu';
  /** With `cuda`: fall back to CPU (reporting why) when a CUDA session cannot be created. */
  fallbackToCpu: boolean;
  cudaDeviceId: number;
  intraOpNumThreads: number;
  /** Largest session run, rows along the batch dimension. */
  maxBatchSize: number;
  /** A tiny model to try the execution provider with. */
  probeModel: Uint8Array;
}

/**
 * Main → worker. A `run` carries the raw JSON inputs of its requests, concatenated in `input`
 * (request `i` is `input[ends[i-1] .. ends[i])`); the worker parses and checks each, packs them into
 * session runs of at most `maxBatchSize` rows with the same dims after the first, and splits nothing:
 * it answers with whole outputs and, per request, where its rows are.
 */
export type ToWorker =
  /** Finish the task in hand, release every session, close the port (the thread then exits by itself). */
  | { type: 'close' }
  | { type: 'load'; taskId: number; digest: string; model: Uint8Array; evict: string[] }
  | {
      type: 'run';
      taskId: number;
      digest: string;
      model: Uint8Array | undefined;
      evict: string[];
      /** The main thread's view: false when the model's outputs were found not to follow the batch dimension. */
      batchable: boolean;
      input: Uint8Array;
      ends: Uint32Array;
      /** Workload name of each request (for error messages). */
      workloads: string[];
    };

/** A failure of one request, rebuilt as a `GpuError` in the main thread. */
export interface WorkerFailure {
  reason: GpuFailureReason;
  message: string;
  details: Record<string, unknown>;
}

/** One session run of a task. */
export interface RunResult {
  fetches: Fetch[];
  runMs: number;
  /** A run of one request: its outputs are the request's whole answer (no batch dimension needed). */
  solo: boolean;
}

/** Worker → main. */
export type FromWorker =
  | { type: 'ready'; device: 'cuda' | 'cpu'; fallbackReason: string | undefined; onnxruntime: string }
  | { type: 'fatal'; message: string }
  | { type: 'loaded'; taskId: number; ok: true; inputs: TensorInfo[]; outputs: TensorInfo[] }
  | { type: 'loaded'; taskId: number; ok: false; message: string }
  | {
      type: 'result';
      taskId: number;
      loaded: true;
      ok: true;
      runs: RunResult[];
      /**
       * Where each request's rows are, 3 numbers per request: run index, first row, rows; run index -1
       * for a request that failed (its failure is in `failures`). Transferred.
       */
      placements: Int32Array;
      /** Failed requests, by index. */
      failures: { index: number; failure: WorkerFailure }[];
      /** `session.run()` calls made (failed ones and retries alone included). */
      sessionRuns: number;
      /** Largest session run tried, rows and requests. */
      maxRows: number;
      maxRequests: number;
      /** The outputs did not follow the batch dimension: the requests were run alone; batch this model no more. */
      unbatchable: boolean;
    }
  | { type: 'result'; taskId: number; loaded: boolean; ok: false; message: string };
