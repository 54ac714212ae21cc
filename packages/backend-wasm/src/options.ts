import { type Clock, ConfigError, type Logger, noopLogger, systemClock, type WorkloadSpec } from '@meshroute/mesh';
import { WasmError } from './errors.js';
import type { WasmForm } from './invoke.js';

/** Default number of pre-spawned workers. */
export const DEFAULT_WASM_WORKERS = 2;
/** Default number of compiled modules kept (in the main thread, and per worker). */
export const DEFAULT_MAX_COMPILED_MODULES = 64;
/** Default size up to which modules compile synchronously (bigger ones compile off-thread). */
export const DEFAULT_SYNC_COMPILE_MAX_BYTES = 256 * 1024;
/** Default bytes of stderr kept per invocation (for error details). */
export const DEFAULT_STDERR_BYTES = 64 * 1024;
/** Default V8 heap limits of a worker (a backstop: WebAssembly memory is capped separately). */
export const DEFAULT_WORKER_RESOURCE_LIMITS: Readonly<WasmWorkerResourceLimits> = {
  maxOldGenerationSizeMb: 256,
  maxYoungGenerationSizeMb: 32,
  stackSizeMb: 4,
};
/** Default reactor entry export. */
export const DEFAULT_REACTOR_ENTRY = 'run';
/** Default reactor allocator export. */
export const DEFAULT_REACTOR_ALLOC = 'alloc';
/** Default content type of a module's output. */
export const DEFAULT_OUTPUT_CONTENT_TYPE = 'application/octet-stream';

/** V8 heap limits of each worker, see `node:worker_threads` `resourceLimits`. */
export interface WasmWorkerResourceLimits {
  /** @default 256 */
  maxOldGenerationSizeMb: number;
  /** @default 32 */
  maxYoungGenerationSizeMb: number;
  /** @default 4 */
  stackSizeMb: number;
}

/** Options of {@link createWasmBackend}. */
export interface WasmBackendOptions {
  /** Pre-spawned worker threads; jobs beyond this many wait in a queue. @default 2 */
  workers?: number;
  /** Compiled modules kept in memory (LRU), in the main thread and in each worker. @default 64 */
  maxCompiledModules?: number;
  /** Bytes of stderr kept per invocation and attached to errors. @default 65536 */
  stderrBytes?: number;
  /** Modules up to this size compile synchronously in the main thread; bigger ones off-thread. @default 262144 */
  syncCompileMaxBytes?: number;
  /** Worker heap limits (a backstop). @default {@link DEFAULT_WORKER_RESOURCE_LIMITS} */
  workerResourceLimits?: Partial<WasmWorkerResourceLimits>;
  /** Logger. @default noopLogger */
  logger?: Logger;
  /** Clock (timeouts). @default systemClock */
  clock?: Clock;
  /**
   * JavaScript source of the pool worker, started with `new Worker(source, { eval: true })` (so
   * CommonJS, one self-contained file: the package's `worker.ts` bundled). For bundles where
   * `worker.js` does not lie beside the code, such as the single-executable edge agent.
   * @default the package's own `worker.js` (or `worker.ts` through tsx when running from sources)
   */
  workerSource?: string;
}

/** {@link WasmBackendOptions} with every field filled. */
export interface ResolvedWasmBackendOptions {
  workers: number;
  maxCompiledModules: number;
  stderrBytes: number;
  syncCompileMaxBytes: number;
  workerResourceLimits: WasmWorkerResourceLimits;
  logger: Logger;
  clock: Clock;
  /** `undefined`: the package's own worker file. */
  workerSource: string | undefined;
}

function positiveInt(option: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) throw new ConfigError(option, `must be a positive integer, got ${value}`);
  return value;
}

/**
 * Validate and fill {@link WasmBackendOptions}.
 * @throws ConfigError naming the option at fault
 */
export function resolveWasmBackendOptions(options: WasmBackendOptions = {}): ResolvedWasmBackendOptions {
  const limits = options.workerResourceLimits ?? {};
  return {
    workers: positiveInt('workers', options.workers, DEFAULT_WASM_WORKERS),
    maxCompiledModules: positiveInt('maxCompiledModules', options.maxCompiledModules, DEFAULT_MAX_COMPILED_MODULES),
    stderrBytes: positiveInt('stderrBytes', options.stderrBytes, DEFAULT_STDERR_BYTES),
    syncCompileMaxBytes: positiveInt(
      'syncCompileMaxBytes',
      options.syncCompileMaxBytes,
      DEFAULT_SYNC_COMPILE_MAX_BYTES,
    ),
    workerResourceLimits: {
      maxOldGenerationSizeMb: positiveInt(
        'workerResourceLimits.maxOldGenerationSizeMb',
        limits.maxOldGenerationSizeMb,
        DEFAULT_WORKER_RESOURCE_LIMITS.maxOldGenerationSizeMb,
      ),
      maxYoungGenerationSizeMb: positiveInt(
        'workerResourceLimits.maxYoungGenerationSizeMb',
        limits.maxYoungGenerationSizeMb,
        DEFAULT_WORKER_RESOURCE_LIMITS.maxYoungGenerationSizeMb,
      ),
      stackSizeMb: positiveInt(
        'workerResourceLimits.stackSizeMb',
        limits.stackSizeMb,
        DEFAULT_WORKER_RESOURCE_LIMITS.stackSizeMb,
      ),
    },
    logger: options.logger ?? noopLogger,
    clock: options.clock ?? systemClock,
    workerSource: workerSourceOption(options.workerSource),
  };
}

function workerSourceOption(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.trim().length === 0)
    throw new ConfigError('workerSource', 'must be non-empty JavaScript source');
  return value;
}

/**
 * The wasm settings of a workload (`artifacts.wasm.options`), filled:
 * `{ form?: 'command' | 'reactor', entry?: string, alloc?: string, args?: string[],
 *    env?: Record<string, string>, contentType?: string }`.
 */
export interface WasmArtifactOptions {
  /** `command` (WASI `_start`, stdin → stdout) or `reactor` (`alloc` + entry). @default 'command' */
  form: WasmForm;
  /** Reactor entry export, `(ptr: i32, len: i32) -> i64`. @default 'run' */
  entry: string;
  /** Reactor allocator export, `(len: i32) -> i32`. @default 'alloc' */
  alloc: string;
  /** Extra argv after the workload name (needs the `args` capability). @default [] */
  args: string[];
  /** Environment (needs the `env` capability). @default {} */
  env: Record<string, string>;
  /** Content type of the output; JSON types are parsed into `json`. @default 'application/octet-stream' */
  contentType: string;
}

function invalid(workload: string, option: string, message: string): WasmError {
  return new WasmError('invalid-options', `${workload}: artifacts.wasm.options.${option} ${message}`, {
    details: { workload, option },
  });
}

/**
 * Read and check `workload.artifacts.wasm.options`.
 * @throws WasmError `invalid-options` naming the option
 */
export function resolveWasmArtifactOptions(workload: WorkloadSpec): WasmArtifactOptions {
  const raw: Record<string, unknown> = workload.artifacts.wasm?.options ?? {};
  const name = workload.name;
  const caps = new Set(workload.capabilities);
  const form = raw['form'] ?? 'command';
  if (form !== 'command' && form !== 'reactor')
    throw invalid(name, 'form', `must be "command" or "reactor", got ${JSON.stringify(form)}`);
  const str = (key: string, fallback: string): string => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'string' || v.length === 0) throw invalid(name, key, 'must be a non-empty string');
    return v;
  };
  const args = raw['args'] ?? [];
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string'))
    throw invalid(name, 'args', 'must be an array of strings');
  if (args.length > 0 && !caps.has('args')) throw invalid(name, 'args', 'needs the capability "args"');
  const env = raw['env'] ?? {};
  if (
    typeof env !== 'object' ||
    env === null ||
    Array.isArray(env) ||
    !Object.values(env).every((v) => typeof v === 'string')
  ) {
    throw invalid(name, 'env', 'must be an object of strings');
  }
  if (Object.keys(env).length > 0 && !caps.has('env')) throw invalid(name, 'env', 'needs the capability "env"');
  for (const key of Object.keys(env)) {
    if (key.length === 0 || key.includes('=') || key.includes('\0'))
      throw invalid(name, `env.${key}`, 'is not a valid variable name');
  }
  return {
    form,
    entry: str('entry', DEFAULT_REACTOR_ENTRY),
    alloc: str('alloc', DEFAULT_REACTOR_ALLOC),
    args: args as string[],
    env: env as Record<string, string>,
    contentType: str('contentType', DEFAULT_OUTPUT_CONTENT_TYPE),
  };
}
