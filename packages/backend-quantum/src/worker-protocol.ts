/** Messages between {@link runInWorker} and the worker thread. @internal */
import type { ErrorInfo } from '@meshroute/mesh';
import type { ParseQasmOptions } from './compiler.js';
import type { SimulateOptions, SimulationResult } from './simulator.js';

/** One simulation to run. */
export interface WorkerRequest {
  source: string;
  parseOptions: ParseQasmOptions;
  simulateOptions: SimulateOptions;
}

/** Its outcome. */
export type WorkerResponse = { ok: true; result: SimulationResult } | { ok: false; error: ErrorInfo };
