/** Options of {@link createQuantumBackend}, resolved once into a filled object. */
import os from 'node:os';
import { type Clock, ConfigError, type Logger, noopLogger, systemClock } from '@meshroute/mesh';
import { BYTES_PER_AMPLITUDE } from './kernel.js';
import {
  DEFAULT_MAX_SHOTS,
  DEFAULT_SHOTS,
  DEFAULT_STATE_VECTOR_MAX_QUBITS,
  DEFAULT_YIELD_INTERVAL_MS,
  HARD_MAX_QUBITS,
} from './simulator.js';

/** Default of {@link QuantumBackendOptions.workerMinQubits}. */
export const DEFAULT_WORKER_MIN_QUBITS = 16;

/** Default of {@link QuantumBackendOptions.inThreadMaxSourceChars}. */
export const DEFAULT_IN_THREAD_MAX_SOURCE_CHARS = 16 * 1024;
/** Default of {@link QuantumBackendOptions.inThreadMaxOperations}. */
export const DEFAULT_IN_THREAD_MAX_OPERATIONS = 20_000;

/** Default share of the machine's memory one simulation may use. */
export const DEFAULT_MEMORY_FRACTION = 0.25;

/** Options of {@link createQuantumBackend}. */
export interface QuantumBackendOptions {
  /**
   * Largest circuit accepted, qubits. Circuits over it are rejected (`LIMIT_EXCEEDED`) before
   * anything is allocated. @default derived from memory, see {@link maxQubitsForMemory}
   */
  maxQubits?: number;
  /** Share of memory one simulation may use when `maxQubits` is derived. @default 0.25 */
  memoryFraction?: number;
  /** Total memory to derive `maxQubits` from, bytes. @default os.totalmem() */
  totalMemoryBytes?: number;
  /** Free memory to derive `maxQubits` from, bytes. @default os.freemem() */
  freeMemoryBytes?: number;
  /** Shots when the input names none. @default 1024 */
  defaultShots?: number;
  /** Largest accepted `shots`. @default 1_000_000 */
  maxShots?: number;
  /** Largest circuit whose state vector may be returned, qubits. @default 12 */
  stateVectorMaxQubits?: number;
  /** Files `include` may name besides `qelib1.inc`, by name. @default {} */
  includes?: Readonly<Record<string, string>>;
  /** Give the event loop a turn at least this often during an in-thread simulation, ms. @default 20 */
  yieldIntervalMs?: number;
  /**
   * Simulate circuits of at least this many qubits in a worker thread (abort and timeout then stop
   * it at once); smaller ones run on the calling thread, yielding between gates. `0`: always a
   * worker; `Infinity`: never. @default 16
   */
  workerMinQubits?: number;
  /**
   * Programs longer than this (characters, after filling the template) are parsed in a worker thread,
   * under the job's timeout, instead of on the calling thread: parsing is synchronous and must not
   * hold the agent's event loop (heartbeats, other jobs). @default 16384
   */
  inThreadMaxSourceChars?: number;
  /**
   * A program whose gate calls expand to more operations than this is parsed and simulated in a
   * worker thread, under the job's timeout (a few lines of nested gate definitions can expand to
   * millions of operations). @default 20000
   */
  inThreadMaxOperations?: number;
  /** Time source (timeouts, execution time). @default systemClock */
  clock?: Clock;
  /** Where to log. @default noopLogger */
  logger?: Logger;
}

/** {@link QuantumBackendOptions} with every field filled. */
export interface ResolvedQuantumBackendOptions {
  maxQubits: number;
  defaultShots: number;
  maxShots: number;
  stateVectorMaxQubits: number;
  includes: Readonly<Record<string, string>>;
  yieldIntervalMs: number;
  workerMinQubits: number;
  inThreadMaxSourceChars: number;
  inThreadMaxOperations: number;
  clock: Clock;
  logger: Logger;
}

/**
 * The largest circuit that fits in `min(totalMemoryBytes × fraction, freeMemoryBytes)`, counting
 * the worst case of two state vectors (per-shot runs keep the shared prefix state and a working
 * copy), 16 bytes per amplitude; at most 30.
 * @example maxQubitsForMemory(16 * 2 ** 30, 16 * 2 ** 30, 0.25) // 27
 */
export function maxQubitsForMemory(totalMemoryBytes: number, freeMemoryBytes: number, fraction: number): number {
  const budget = Math.min(totalMemoryBytes * fraction, freeMemoryBytes);
  const amplitudes = budget / (2 * BYTES_PER_AMPLITUDE);
  if (amplitudes < 2) return 0;
  return Math.min(HARD_MAX_QUBITS, Math.floor(Math.log2(amplitudes)));
}

function positiveInt(name: string, v: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(v) || v < 1 || v > max) {
    throw new ConfigError(name, `must be an integer in [1, ${max}], got ${v}`);
  }
  return v;
}

/** Validate and fill {@link QuantumBackendOptions}. @throws ConfigError naming the option */
export function resolveQuantumBackendOptions(o: QuantumBackendOptions = {}): ResolvedQuantumBackendOptions {
  const fraction = o.memoryFraction ?? DEFAULT_MEMORY_FRACTION;
  if (!(fraction > 0 && fraction <= 1)) throw new ConfigError('memoryFraction', `must be in (0, 1], got ${fraction}`);
  const maxQubits =
    o.maxQubits === undefined
      ? maxQubitsForMemory(o.totalMemoryBytes ?? os.totalmem(), o.freeMemoryBytes ?? os.freemem(), fraction)
      : positiveInt('maxQubits', o.maxQubits, HARD_MAX_QUBITS);
  const maxShots = positiveInt('maxShots', o.maxShots ?? DEFAULT_MAX_SHOTS);
  const defaultShots = positiveInt('defaultShots', o.defaultShots ?? DEFAULT_SHOTS, maxShots);
  const stateVectorMaxQubits = positiveInt(
    'stateVectorMaxQubits',
    o.stateVectorMaxQubits ?? DEFAULT_STATE_VECTOR_MAX_QUBITS,
    HARD_MAX_QUBITS,
  );
  const yieldIntervalMs = o.yieldIntervalMs ?? DEFAULT_YIELD_INTERVAL_MS;
  if (!(yieldIntervalMs >= 0)) throw new ConfigError('yieldIntervalMs', `must be >= 0, got ${yieldIntervalMs}`);
  const workerMinQubits = o.workerMinQubits ?? DEFAULT_WORKER_MIN_QUBITS;
  if (!(workerMinQubits >= 0)) throw new ConfigError('workerMinQubits', `must be >= 0, got ${workerMinQubits}`);
  return {
    maxQubits,
    workerMinQubits,
    inThreadMaxSourceChars: positiveInt(
      'inThreadMaxSourceChars',
      o.inThreadMaxSourceChars ?? DEFAULT_IN_THREAD_MAX_SOURCE_CHARS,
    ),
    inThreadMaxOperations: positiveInt(
      'inThreadMaxOperations',
      o.inThreadMaxOperations ?? DEFAULT_IN_THREAD_MAX_OPERATIONS,
    ),
    defaultShots,
    maxShots,
    stateVectorMaxQubits,
    includes: o.includes ?? {},
    yieldIntervalMs,
    clock: o.clock ?? systemClock,
    logger: o.logger ?? noopLogger,
  };
}
