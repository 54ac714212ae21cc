import { availableParallelism } from 'node:os';
import { type Clock, ConfigError, type Logger, noopLogger, systemClock } from '@meshroute/mesh';
import { type GpuProbes, systemGpuProbes } from './device.js';

/** Which execution provider to use: `auto` tries CUDA when a GPU is present and falls back to CPU. */
export type ExecutionProviderChoice = 'auto' | 'cpu' | 'cuda';

/** Default number of inference worker threads: 1, or 2 on machines with more than 2 cores. */
export const DEFAULT_GPU_WORKERS: number = availableParallelism() > 2 ? 2 : 1;
/** Default largest batch (rows along the batch dimension) run at once. */
export const DEFAULT_MAX_BATCH_SIZE = 64;
/** Default time a batch waits for more requests after its first one, ms. */
export const DEFAULT_MAX_BATCH_DELAY_MS = 2;
/** Default ONNX Runtime sessions kept per worker (LRU by model digest). */
export const DEFAULT_MAX_CACHED_SESSIONS = 8;
/** Default intra-op threads of each session (one per worker keeps workers from fighting over cores). */
export const DEFAULT_INTRA_OP_THREADS = 1;
/** Default time `close()` gives each worker to finish its current task and release its sessions before terminating it, ms. */
export const DEFAULT_CLOSE_TIMEOUT_MS = 2_000;
/** Default execution provider choice. */
export const DEFAULT_EXECUTION_PROVIDER: ExecutionProviderChoice = 'auto';

/** Options of {@link createGpuBackend}. */
export interface GpuBackendOptions {
  /** Inference worker threads; each runs one batch at a time. @default 1, or 2 with more than 2 cores */
  workers?: number;
  /** Largest batch, in rows along the batch dimension. `1` turns batching off. @default 64 */
  maxBatchSize?: number;
  /** How long a batch waits for more requests after its first one, ms. `0` batches only what arrives in the same tick. @default 2 */
  maxBatchDelayMs?: number;
  /** `auto`: CUDA when a GPU is present and a CUDA session works, else CPU (the reason is in `facts()`). `cuda`: CUDA or a `CONFIG_ERROR`. `cpu`: CPU. @default 'auto' */
  executionProvider?: ExecutionProviderChoice;
  /** CUDA device index. @default 0 */
  cudaDeviceId?: number;
  /** ONNX Runtime sessions kept per worker, LRU by model digest. @default 8 */
  maxCachedSessions?: number;
  /** Intra-op threads per session. @default 1 */
  intraOpNumThreads?: number;
  /**
   * How long `close()` lets each worker finish the session call it is in and release its ONNX Runtime
   * sessions before terminating the thread, ms. Terminating a worker inside a native call is the
   * last resort: ONNX Runtime's N-API binding is not made to be torn down mid-call. @default 2000
   */
  closeTimeoutMs?: number;
  /** GPU probes (tests inject fakes). @default {@link systemGpuProbes} */
  probes?: GpuProbes;
  /** Logger. @default noopLogger */
  logger?: Logger;
  /** Clock (batch delay, timeouts). @default systemClock */
  clock?: Clock;
}

/** {@link GpuBackendOptions} with every field filled. */
export interface ResolvedGpuBackendOptions {
  workers: number;
  maxBatchSize: number;
  maxBatchDelayMs: number;
  executionProvider: ExecutionProviderChoice;
  cudaDeviceId: number;
  maxCachedSessions: number;
  intraOpNumThreads: number;
  closeTimeoutMs: number;
  probes: GpuProbes;
  logger: Logger;
  clock: Clock;
}

function int(option: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min)
    throw new ConfigError(option, `must be an integer >= ${min}, got ${value}`);
  return value;
}

/**
 * Validate and fill {@link GpuBackendOptions}.
 * @throws ConfigError naming the option at fault
 */
export function resolveGpuBackendOptions(options: GpuBackendOptions = {}): ResolvedGpuBackendOptions {
  const ep = options.executionProvider ?? DEFAULT_EXECUTION_PROVIDER;
  if (ep !== 'auto' && ep !== 'cpu' && ep !== 'cuda') {
    throw new ConfigError('executionProvider', `must be "auto", "cpu" or "cuda", got ${JSON.stringify(ep)}`);
  }
  const delay = options.maxBatchDelayMs ?? DEFAULT_MAX_BATCH_DELAY_MS;
  if (typeof delay !== 'number' || !Number.isFinite(delay) || delay < 0) {
    throw new ConfigError('maxBatchDelayMs', `must be a finite number >= 0, got ${delay}`);
  }
  return {
    workers: int('workers', options.workers, DEFAULT_GPU_WORKERS, 1),
    maxBatchSize: int('maxBatchSize', options.maxBatchSize, DEFAULT_MAX_BATCH_SIZE, 1),
    maxBatchDelayMs: delay,
    executionProvider: ep,
    cudaDeviceId: int('cudaDeviceId', options.cudaDeviceId, 0, 0),
    maxCachedSessions: int('maxCachedSessions', options.maxCachedSessions, DEFAULT_MAX_CACHED_SESSIONS, 1),
    intraOpNumThreads: int('intraOpNumThreads', options.intraOpNumThreads, DEFAULT_INTRA_OP_THREADS, 1),
    closeTimeoutMs: int('closeTimeoutMs', options.closeTimeoutMs, DEFAULT_CLOSE_TIMEOUT_MS, 0),
    probes: options.probes ?? systemGpuProbes,
    logger: options.logger ?? noopLogger,
    clock: options.clock ?? systemClock,
  };
}
