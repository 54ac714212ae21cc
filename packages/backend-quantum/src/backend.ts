/** The quantum backend behind the agent's {@link ComputeBackend} port. */
import {
  type BackendJob,
  type BackendOutput,
  type ComputeBackend,
  describeJsonSyntaxError,
  ErrorCode,
  MeshError,
  toMeshError,
  WorkloadError,
} from '@meshroute/mesh';
import type { QasmProgram } from './circuit.js';
import { parseQasm } from './compiler.js';
import { type QuantumBackendOptions, resolveQuantumBackendOptions } from './options.js';
import { checkCapacity, checkProgramSize, planSimulation, type SimulateOptions, simulateAsync } from './simulator.js';
import { runInWorker } from './worker-runner.js';

/** Name reported in the heartbeat facts. */
export const SIMULATOR_NAME = 'meshroute-statevector';
/** Version reported in the heartbeat facts. */
export const SIMULATOR_VERSION = '0.1.0';

/**
 * The job input, JSON. Every field is optional.
 * - `qasm`: the OpenQASM 2.0 program. Absent: the workload's artifact is the program.
 * - `params`: values for `{{name}}` placeholders in the artifact (numbers, or expression strings
 *   such as `"pi/4"` made of letters, digits, spaces and `_ . + - * / ^ ( )`).
 * - `shots`, `seed`, `stateVector`: as in {@link SimulateOptions}.
 */
export interface QuantumJobInput {
  qasm?: string;
  params?: Record<string, number | string>;
  shots?: number;
  seed?: number;
  stateVector?: boolean;
}

/** The job output, JSON. */
export interface QuantumJobOutput {
  /** Histogram of classical register values (Qiskit key convention, see {@link SimulationResult}). */
  counts: Record<string, number>;
  shots: number;
  /** The seed used: pass it back to reproduce the counts. */
  seed: number;
  qubits: number;
  /** `[re, im]` per basis state, when asked for. */
  stateVector?: Array<[number, number]>;
}

function inputError(message: string): WorkloadError {
  return new WorkloadError(ErrorCode.WORKLOAD_FAILED, `quantum input: ${message}`, { details: { rule: 'input' } });
}

/** Parse and check the job input. @throws WorkloadError `WORKLOAD_FAILED` naming the field */
export function parseQuantumInput(bytes: Uint8Array): QuantumJobInput {
  const text = new TextDecoder().decode(bytes).trim();
  if (text === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new WorkloadError(
      ErrorCode.WORKLOAD_FAILED,
      `quantum input: not JSON: ${describeJsonSyntaxError(text, err).message}`,
      {
        cause: err,
        details: { rule: 'input' },
      },
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw inputError('must be a JSON object { qasm?, params?, shots?, seed?, stateVector? }');
  }
  const v = value as Record<string, unknown>;
  const out: QuantumJobInput = {};
  for (const key of Object.keys(v)) {
    if (!['qasm', 'params', 'shots', 'seed', 'stateVector'].includes(key)) {
      throw inputError(`unknown field "${key}" (expected qasm, params, shots, seed, stateVector)`);
    }
  }
  if (v.qasm !== undefined) {
    if (typeof v.qasm !== 'string') throw inputError('"qasm" must be a string');
    out.qasm = v.qasm;
  }
  if (v.shots !== undefined) {
    if (typeof v.shots !== 'number' || !Number.isSafeInteger(v.shots) || v.shots < 1) {
      throw inputError(`"shots" must be a positive integer, got ${JSON.stringify(v.shots)}`);
    }
    out.shots = v.shots;
  }
  if (v.seed !== undefined) {
    if (typeof v.seed !== 'number' || !Number.isSafeInteger(v.seed) || v.seed < 0 || v.seed >= 2 ** 32) {
      throw inputError(`"seed" must be an integer in [0, 2^32), got ${JSON.stringify(v.seed)}`);
    }
    out.seed = v.seed;
  }
  if (v.stateVector !== undefined) {
    if (typeof v.stateVector !== 'boolean') throw inputError('"stateVector" must be true or false');
    out.stateVector = v.stateVector;
  }
  if (v.params !== undefined) {
    if (typeof v.params !== 'object' || v.params === null || Array.isArray(v.params)) {
      throw inputError('"params" must be an object of numbers or expression strings');
    }
    const params: Record<string, number | string> = {};
    for (const [k, p] of Object.entries(v.params as Record<string, unknown>)) {
      if (typeof p === 'number' && Number.isFinite(p)) params[k] = p;
      else if (typeof p === 'string' && /^[A-Za-z0-9_ .+\-*/^()]+$/.test(p)) params[k] = p;
      else
        throw inputError(
          `params.${k} must be a finite number or an expression such as "pi/4", got ${JSON.stringify(p)}`,
        );
    }
    out.params = params;
  }
  return out;
}

/**
 * Fill `{{name}}` placeholders in an OpenQASM template from `params`.
 * @example fillTemplate('rx({{theta}}) q[0];', { theta: 'pi/2' }) // 'rx(pi/2) q[0];'
 * @throws WorkloadError `WORKLOAD_FAILED` naming a placeholder without a value
 */
export function fillTemplate(template: string, params: Readonly<Record<string, number | string>>): string {
  return template.replace(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g, (_, name: string) => {
    const value = Object.hasOwn(params, name) ? params[name] : undefined;
    if (value === undefined) throw inputError(`the program's placeholder {{${name}}} has no value in "params"`);
    return String(value);
  });
}

/**
 * Create the quantum simulator backend.
 *
 * `run(job)` reads the input `{ qasm?, params?, shots?, seed?, stateVector? }` (see
 * {@link QuantumJobInput}), simulates, and returns JSON `{ counts, shots, seed, qubits, stateVector? }`.
 * The workload's limits apply: `memoryBytes` bounds the simulator memory, `timeoutMs` the run,
 * `outputBytes` the JSON output. Circuits of `workerMinQubits` or more run in a worker thread that
 * abort and timeout terminate; smaller ones run on the calling thread and stop between gates.
 *
 * @example
 * const quantum = createQuantumBackend({ maxQubits: 24 });
 * const out = await quantum.run({ workload, artifact, input: encode({ qasm, shots: 1000, seed: 1 }), contentType: 'application/json', signal });
 * out.json; // { counts: { '00': 507, '11': 493 }, shots: 1000, seed: 1, qubits: 2 }
 */
export function createQuantumBackend(options: QuantumBackendOptions = {}): ComputeBackend {
  const o = resolveQuantumBackendOptions(options);
  const log = o.logger.child({ backend: 'quantum' });
  let closed = false;

  /** Parse on this thread within `inThreadMaxOperations`; `undefined` when the program expands past it. */
  function parseInThread(source: string): QasmProgram | undefined {
    try {
      return parseQasm(source, { includes: o.includes, maxOperations: o.inThreadMaxOperations });
    } catch (err) {
      if (
        err instanceof MeshError &&
        err.code === ErrorCode.LIMIT_EXCEEDED &&
        err.details.maxOperations === o.inThreadMaxOperations
      ) {
        return undefined;
      }
      throw err;
    }
  }
  return {
    kind: 'quantum',
    facts(): Record<string, unknown> {
      return {
        simulator: SIMULATOR_NAME,
        version: SIMULATOR_VERSION,
        language: 'OpenQASM 2.0',
        maxQubits: o.maxQubits,
        maxShots: o.maxShots,
        stateVectorMaxQubits: o.stateVectorMaxQubits,
      };
    },
    async run(job: BackendJob): Promise<BackendOutput> {
      if (closed) throw new MeshError(ErrorCode.SHUTTING_DOWN, 'the quantum backend is closed', { retryable: true });
      const started = o.clock.monotonicMs();
      try {
        const input = parseQuantumInput(job.input);
        let source = input.qasm;
        if (source === undefined) {
          if (job.artifact.byteLength === 0) {
            throw inputError('no program: give "qasm" in the input or register an OpenQASM artifact');
          }
          source = fillTemplate(new TextDecoder().decode(job.artifact), input.params ?? {});
        }
        const parseOptions = { includes: o.includes };
        // Parsing is synchronous: only a short program whose expansion stays small is parsed here;
        // any other is parsed (and run) in a worker, which the job's timeout and abort can stop.
        const program = source.length <= o.inThreadMaxSourceChars ? parseInThread(source) : undefined;
        const simulateOptions: SimulateOptions = {
          shots: input.shots ?? o.defaultShots,
          maxShots: o.maxShots,
          ...(input.seed === undefined ? {} : { seed: input.seed }),
          stateVector: input.stateVector ?? false,
          stateVectorMaxQubits: o.stateVectorMaxQubits,
          maxQubits: o.maxQubits,
          maxMemoryBytes: job.workload.limits.memoryBytes,
        };
        if (program !== undefined) {
          // capacity is checked here, before a worker or any memory is spent on the circuit
          // (a program parsed in a worker is checked there, before its state is allocated)
          checkProgramSize(program, o.maxQubits);
          checkCapacity(program, planSimulation(program), {
            maxQubits: o.maxQubits,
            maxMemoryBytes: job.workload.limits.memoryBytes,
            stateVector: simulateOptions.stateVector ?? false,
            stateVectorMaxQubits: o.stateVectorMaxQubits,
          });
        }
        const deadlineMs = started + job.workload.limits.timeoutMs;
        const result =
          program === undefined || program.qubits >= o.workerMinQubits
            ? await runInWorker(
                { source, parseOptions, simulateOptions },
                { signal: job.signal, timeoutMs: Math.max(0, deadlineMs - o.clock.monotonicMs()), clock: o.clock },
              )
            : await simulateAsync(program, {
                ...simulateOptions,
                signal: job.signal,
                deadlineMs,
                clock: o.clock,
                yieldIntervalMs: o.yieldIntervalMs,
              });
        const json: QuantumJobOutput = {
          counts: result.counts,
          shots: result.shots,
          seed: result.seed,
          qubits: result.qubits,
        };
        if (result.stateVector !== undefined) json.stateVector = result.stateVector;
        const size = Buffer.byteLength(JSON.stringify(json));
        if (size > job.workload.limits.outputBytes) {
          throw new WorkloadError(
            ErrorCode.LIMIT_EXCEEDED,
            `the quantum output is ${size} bytes, over the workload's limit of ${job.workload.limits.outputBytes}`,
            { details: { outputBytes: size, limitBytes: job.workload.limits.outputBytes } },
          );
        }
        const executionMs = o.clock.monotonicMs() - started;
        log.debug('quantum job done', {
          workload: job.workload.name,
          qubits: result.qubits,
          shots: result.shots,
          mode: result.mode,
          worker: program === undefined || program.qubits >= o.workerMinQubits,
          executionMs,
        });
        return { json, contentType: 'application/json', executionMs };
      } catch (err) {
        const e = toMeshError(err);
        log.debug('quantum job failed', { workload: job.workload.name, code: e.code, message: e.message });
        throw e.code === ErrorCode.INTERNAL
          ? new WorkloadError(ErrorCode.WORKLOAD_FAILED, `quantum simulation failed: ${e.message}`, { cause: err })
          : e;
      }
    },
    async close(): Promise<void> {
      closed = true;
    },
  };
}
