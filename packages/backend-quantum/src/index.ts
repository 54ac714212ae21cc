/**
 * @module @meshroute/backend-quantum
 * Quantum simulator backend: OpenQASM 2.0 (the whole language, `qelib1.inc` included) on a
 * typed-array state-vector kernel with gate fusion. Circuits whose measurements are all terminal
 * are simulated once and sampled; others run per shot with collapse.
 *
 * ```ts
 * import { createQuantumBackend, parseQasm, simulate } from '@meshroute/backend-quantum';
 * const program = parseQasm(`OPENQASM 2.0; include "qelib1.inc";
 *   qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;`);
 * simulate(program, { shots: 1000, seed: 42 }).counts; // { '00': ~500, '11': ~500 }
 * const quantum = createQuantumBackend(); // a ComputeBackend for the compute agent
 * ```
 */
export {
  createQuantumBackend,
  fillTemplate,
  parseQuantumInput,
  type QuantumJobInput,
  type QuantumJobOutput,
  SIMULATOR_NAME,
  SIMULATOR_VERSION,
} from './backend.js';
export type { CircuitOp, QasmProgram, Register } from './circuit.js';
export { DEFAULT_MAX_OPERATIONS, FAST_PATH_GATES, type ParseQasmOptions, parseQasm } from './compiler.js';
export { QasmError, type QasmRule, type SourcePosition } from './errors.js';
export type { Matrix2 } from './matrix.js';
export {
  DEFAULT_MEMORY_FRACTION,
  DEFAULT_WORKER_MIN_QUBITS,
  maxQubitsForMemory,
  type QuantumBackendOptions,
  type ResolvedQuantumBackendOptions,
  resolveQuantumBackendOptions,
} from './options.js';
export { QELIB1_INC } from './qelib1.js';
export {
  DEFAULT_MAX_SHOTS,
  DEFAULT_SHOTS,
  DEFAULT_STATE_VECTOR_MAX_QUBITS,
  DEFAULT_YIELD_INTERVAL_MS,
  estimateMemoryBytes,
  HARD_MAX_QUBITS,
  type SimulateAsyncOptions,
  type SimulateOptions,
  type SimulationMode,
  type SimulationResult,
  simulate,
  simulateAsync,
} from './simulator.js';
