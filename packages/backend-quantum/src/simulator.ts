/**
 * Runs a compiled {@link QasmProgram} on the state-vector kernel.
 *
 * When every measurement is terminal (after the first `measure` of a qubit nothing but further
 * measurements touches it, no `reset` of an entangled qubit, no `if` that reads a measured bit),
 * the circuit is simulated once and `shots` outcomes are sampled from the final distribution.
 * Otherwise the unitary prefix (up to the first measurement, `reset` or `if`) is simulated once
 * and the rest runs with collapse, the shots branching by outcome at each measurement (see
 * {@link runBranch}) and sampled once only terminal measurements are left.
 */
import { type Clock, ConfigError, ErrorCode, MeshError, systemClock } from '@meshroute/mesh';
import type { CircuitOp, QasmProgram } from './circuit.js';
import {
  applyGate,
  applyGate2,
  applySwap,
  BYTES_PER_AMPLITUDE,
  collapse,
  probabilityOfOne,
  zeroState,
} from './kernel.js';
import { isIdentity2, type Matrix2, mul2, PAULI_X } from './matrix.js';
import { type Prng, xoshiro128ss } from './prng.js';

/** Default number of shots. */
export const DEFAULT_SHOTS = 1024;
/** Default upper bound on shots. */
export const DEFAULT_MAX_SHOTS = 1_000_000;
/** Default largest circuit whose state vector may be returned. */
export const DEFAULT_STATE_VECTOR_MAX_QUBITS = 12;
/** Hard upper bound on qubits (a `Float64Array` of 2^31 elements). */
export const HARD_MAX_QUBITS = 30;
/** Most classical bits a circuit may declare (each shot's outcome is a string of them). */
export const MAX_CLBITS = 1024;

/** Options of {@link simulate}. */
export interface SimulateOptions {
  /** Number of shots to sample. @default 1024 */
  shots?: number;
  /** Largest accepted `shots`. @default 1_000_000 */
  maxShots?: number;
  /** 32-bit unsigned seed of the sampler; the same seed gives the same counts. @default random */
  seed?: number;
  /** Return the amplitudes. @default false */
  stateVector?: boolean;
  /** Largest circuit (qubits) whose amplitudes may be returned. @default 12 */
  stateVectorMaxQubits?: number;
  /** Largest accepted circuit; bigger circuits are rejected before anything is allocated. @default 30 */
  maxQubits?: number;
  /** Largest accepted simulator memory, bytes (see {@link estimateMemoryBytes}). @default unlimited */
  maxMemoryBytes?: number;
}

/** How the shots were produced. */
export type SimulationMode = 'sampled' | 'per-shot';

/** The outcome of {@link simulate}. */
export interface SimulationResult {
  /**
   * Histogram of classical register values. Keys follow Qiskit: registers separated by a space,
   * the last declared register leftmost, each register written `c[n-1]…c[0]`.
   * `creg a[1]; creg b[2];` gives keys like `"10 1"` (`b[1] b[0] a[0]`). No classical bits: `{}`.
   */
  counts: Record<string, number>;
  shots: number;
  seed: number;
  qubits: number;
  /** `sampled` (simulated once) or `per-shot`. */
  mode: SimulationMode;
  /**
   * Amplitudes `[re, im]` indexed by basis state (qubit 0 least significant), when asked for:
   * the state before the terminal measurements (`sampled`), or, in `per-shot` mode, the state of one
   * outcome branch (the last one finished) before its terminal measurements.
   */
  stateVector?: Array<[number, number]>;
}

/** Resolved, filled simulate options. */
interface ResolvedSimulateOptions {
  shots: number;
  seed: number;
  stateVector: boolean;
  stateVectorMaxQubits: number;
  maxQubits: number;
  maxMemoryBytes: number;
}

function resolveSimulateOptions(o: SimulateOptions): ResolvedSimulateOptions {
  const maxShots = o.maxShots ?? DEFAULT_MAX_SHOTS;
  const shots = o.shots ?? DEFAULT_SHOTS;
  if (!Number.isSafeInteger(shots) || shots < 1)
    throw new ConfigError('shots', `must be a positive integer, got ${shots}`);
  if (shots > maxShots) {
    throw new MeshError(ErrorCode.LIMIT_EXCEEDED, `shots: ${shots} is over the limit of ${maxShots}`, {
      details: { shots, maxShots },
    });
  }
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (!Number.isSafeInteger(seed) || seed < 0 || seed >= 2 ** 32) {
    throw new ConfigError('seed', `must be an integer in [0, 2^32), got ${seed}`);
  }
  return {
    shots,
    seed,
    stateVector: o.stateVector ?? false,
    stateVectorMaxQubits: o.stateVectorMaxQubits ?? DEFAULT_STATE_VECTOR_MAX_QUBITS,
    maxQubits: Math.min(o.maxQubits ?? HARD_MAX_QUBITS, HARD_MAX_QUBITS),
    maxMemoryBytes: o.maxMemoryBytes ?? Number.POSITIVE_INFINITY,
  };
}

/** The execution plan of a program. */
export interface SimulationPlan {
  mode: SimulationMode;
  /** Unitary operations simulated once (fused). */
  prefix: CircuitOp[];
  /** Operations run per shot (`per-shot` mode only). */
  perShot: CircuitOp[];
  /** For each classical bit, the qubit whose terminal measurement it holds, or -1 (`sampled` mode). */
  measuredFrom: Int32Array;
}

function opQubits(op: CircuitOp, out: number[] = []): number[] {
  switch (op.kind) {
    case 'gate':
      out.push(...op.controls, op.target);
      break;
    case 'swap':
      out.push(...op.controls, op.a, op.b);
      break;
    case 'gate2':
      out.push(op.q0, op.q1);
      break;
    case 'measure':
    case 'reset':
      out.push(op.qubit);
      break;
    case 'if':
      for (const o of op.ops) opQubits(o, out);
      break;
  }
  return out;
}

/** The two qubits of a 2-qubit unitary operation, or `undefined`. */
function twoQubitPair(op: CircuitOp): [number, number] | undefined {
  if (op.kind === 'gate' && op.controls.length === 1) return [op.controls[0] as number, op.target];
  if (op.kind === 'swap' && op.controls.length === 0) return [op.a, op.b];
  return undefined;
}

/** The 4x4 matrix of `pending0` on `q0` and `pending1` on the other qubit, then `op` (columns by running the kernel on basis states). */
function fusedMatrix(
  q0: number,
  pending0: Matrix2 | undefined,
  pending1: Matrix2 | undefined,
  op: CircuitOp,
): Float64Array {
  const local = (q: number): number => (q === q0 ? 0 : 1);
  const m = new Float64Array(32);
  const v = new Float64Array(8);
  for (let col = 0; col < 4; col++) {
    v.fill(0);
    v[2 * col] = 1;
    if (pending0 !== undefined) applyGate(v, 0, [], pending0);
    if (pending1 !== undefined) applyGate(v, 1, [], pending1);
    if (op.kind === 'gate') applyGate(v, local(op.target), op.controls.map(local), op.matrix);
    else if (op.kind === 'swap') applySwap(v, 0, 1, []);
    for (let row = 0; row < 4; row++) {
      m[(row * 4 + col) * 2] = v[2 * row] as number;
      m[(row * 4 + col) * 2 + 1] = v[2 * row + 1] as number;
    }
  }
  return m;
}

/**
 * Gate fusion. Runs of uncontrolled 1-qubit gates on one qubit become one 2x2 matrix; pending
 * 1-qubit matrices are folded into the next 2-qubit gate on their qubit (one dense 4x4 pass
 * instead of three passes over the state). A pending matrix on qubit q is written out just before
 * the next other operation that involves q (operations on other qubits commute with it);
 * identities are dropped.
 */
export function fuseGates(ops: readonly CircuitOp[]): CircuitOp[] {
  const out: CircuitOp[] = [];
  const pending = new Map<number, Matrix2>();
  const flush = (q: number): void => {
    const m = pending.get(q);
    if (m === undefined) return;
    pending.delete(q);
    if (!isIdentity2(m)) out.push({ kind: 'gate', target: q, controls: [], matrix: m });
  };
  for (const op of ops) {
    if (op.kind === 'gate' && op.controls.length === 0) {
      const m = pending.get(op.target);
      pending.set(op.target, m === undefined ? op.matrix : mul2(op.matrix, m));
      continue;
    }
    const pair = twoQubitPair(op);
    if (pair !== undefined && (pending.has(pair[0]) || pending.has(pair[1]))) {
      const [q0, q1] = pair;
      const matrix = fusedMatrix(q0, pending.get(q0), pending.get(q1), op);
      pending.delete(q0);
      pending.delete(q1);
      out.push({ kind: 'gate2', q0, q1, matrix });
      continue;
    }
    for (const q of opQubits(op)) flush(q);
    out.push(op);
  }
  for (const q of [...pending.keys()]) flush(q);
  return out;
}

/** Decide how to run `program`: sampled once, or per shot after a shared unitary prefix. */
export function planSimulation(program: QasmProgram): SimulationPlan {
  const touched = new Uint8Array(program.qubits);
  const measured = new Uint8Array(program.qubits);
  let anyMeasured = false;
  let sampled = true;
  const linear: CircuitOp[] = [];
  const visit = (op: CircuitOp): void => {
    switch (op.kind) {
      case 'if':
        if (!anyMeasured) {
          // Classical bits are only written by measure: before the first one they are all 0.
          if (op.value === 0) for (const o of op.ops) visit(o);
          return;
        }
        sampled = false;
        linear.push(op);
        for (const q of opQubits(op)) touched[q] = 1;
        return;
      case 'reset':
        if (touched[op.qubit] === 0) return; // still |0⟩: nothing to do
        sampled = false;
        linear.push(op);
        return;
      case 'measure':
        anyMeasured = true;
        measured[op.qubit] = 1;
        touched[op.qubit] = 1;
        linear.push(op);
        return;
      default:
        for (const q of opQubits(op)) {
          if (measured[q] === 1) sampled = false;
          touched[q] = 1;
        }
        linear.push(op);
    }
  };
  for (const op of program.ops) visit(op);
  const measuredFrom = new Int32Array(program.clbits).fill(-1);
  if (sampled) {
    const unitary: CircuitOp[] = [];
    for (const op of linear) {
      if (op.kind === 'measure') measuredFrom[op.clbit] = op.qubit;
      else unitary.push(op);
    }
    return { mode: 'sampled', prefix: fuseGates(unitary), perShot: [], measuredFrom };
  }
  const first = linear.findIndex((op) => op.kind === 'measure' || op.kind === 'reset' || op.kind === 'if');
  return {
    mode: 'per-shot',
    prefix: fuseGates(linear.slice(0, first)),
    perShot: fuseGates(linear.slice(first)),
    measuredFrom,
  };
}

/** Peak simulator memory for `qubits` in `mode`, bytes: the state, plus its per-shot copy. */
export function estimateMemoryBytes(qubits: number, mode: SimulationMode): number {
  const state = BYTES_PER_AMPLITUDE * 2 ** qubits;
  return mode === 'per-shot' ? 2 * state : state;
}

function* runOps(ops: readonly CircuitOp[], amps: Float64Array, clbits: Uint8Array, rng: Prng): Generator<void, void> {
  for (const op of ops) {
    switch (op.kind) {
      case 'gate':
        applyGate(amps, op.target, op.controls, op.matrix);
        break;
      case 'swap':
        applySwap(amps, op.a, op.b, op.controls);
        break;
      case 'gate2':
        applyGate2(amps, op.q0, op.q1, op.matrix);
        break;
      case 'measure':
        clbits[op.clbit] = measure(amps, op.qubit, rng);
        break;
      case 'reset':
        if (measure(amps, op.qubit, rng) === 1) applyGate(amps, op.qubit, [], PAULI_X);
        break;
      case 'if': {
        let v = 0;
        for (let k = op.size - 1; k >= 0; k--) v = v * 2 + (clbits[op.offset + k] as number);
        if (v === op.value) yield* runOps(op.ops, amps, clbits, rng);
        break;
      }
    }
    yield;
  }
}

/** State of a branching per-shot run. */
interface BranchContext {
  program: QasmProgram;
  rng: Prng;
  counts: Map<string, number>;
  /** State vectors alive now. */
  live: number;
  /** State vectors that may be alive at once (memory). */
  maxLive: number;
  /** The final state of the last finished branch (for `stateVector`). */
  last: Float64Array;
  /** Per op list: from which indices the rest can be sampled instead of run per shot. */
  sampleable: WeakMap<readonly CircuitOp[], Uint8Array>;
}

/**
 * For each index `i`, 1 when `ops[i..]` holds only terminal measurements: no `if`, no `reset`, and
 * no gate on a qubit after its measurement. Computed backwards in one pass.
 */
function sampleableSuffixes(ops: readonly CircuitOp[], qubits: number): Uint8Array {
  const out = new Uint8Array(ops.length + 1);
  out[ops.length] = 1;
  const gated = new Uint8Array(qubits);
  for (let i = ops.length - 1; i >= 0; i--) {
    const op = ops[i] as CircuitOp;
    let ok = out[i + 1] === 1;
    if (op.kind === 'if' || op.kind === 'reset') ok = false;
    else if (op.kind === 'measure') ok = ok && gated[op.qubit] === 0;
    else for (const q of opQubits(op)) gated[q] = 1;
    out[i] = ok ? 1 : 0;
  }
  return out;
}

/** Memory per-shot branching may use for state copies when no limit is given, bytes. */
const BRANCH_MEMORY_BYTES = 256 * 2 ** 20;

/**
 * Run `ops[start..]` for a group of `shots` shots that share the state `amps` and bits `clbits`.
 * At a measurement or reset the group splits by a binomial draw (one uniform per shot, exactly the
 * per-shot distribution) and each outcome continues as its own group, so shots with the same
 * outcomes so far are simulated once; once only terminal measurements are left, the group is
 * sampled from its state. When memory allows no further copy, the group's shots run one at a time.
 */
function* runBranch(
  ops: readonly CircuitOp[],
  start: number,
  amps: Float64Array,
  clbits: Uint8Array,
  shots: number,
  ctx: BranchContext,
): Generator<void, void> {
  let sampleable = ctx.sampleable.get(ops);
  if (sampleable === undefined) {
    sampleable = sampleableSuffixes(ops, ctx.program.qubits);
    ctx.sampleable.set(ops, sampleable);
  }
  for (let i = start; i < ops.length; i++) {
    if (sampleable[i] === 1 && shots > 1) {
      // only terminal measurements are left: finish the unitaries once and sample the group
      const measuredFrom = new Int32Array(ctx.program.clbits).fill(-1);
      for (let j = i; j < ops.length; j++) {
        const o = ops[j] as CircuitOp;
        if (o.kind === 'measure') measuredFrom[o.clbit] = o.qubit;
        else {
          yield* runOps([o], amps, clbits, ctx.rng);
        }
      }
      sampleInto(ctx.program, amps, measuredFrom, clbits, shots, ctx.rng, ctx.counts);
      ctx.last = amps;
      return;
    }
    const op = ops[i] as CircuitOp;
    switch (op.kind) {
      case 'gate':
        applyGate(amps, op.target, op.controls, op.matrix);
        break;
      case 'swap':
        applySwap(amps, op.a, op.b, op.controls);
        break;
      case 'gate2':
        applyGate2(amps, op.q0, op.q1, op.matrix);
        break;
      case 'if': {
        let v = 0;
        for (let k = op.size - 1; k >= 0; k--) v = v * 2 + (clbits[op.offset + k] as number);
        if (v === op.value) {
          yield* runBranch([...op.ops, ...ops.slice(i + 1)], 0, amps, clbits, shots, ctx);
          return;
        }
        break;
      }
      case 'measure':
      case 'reset': {
        const p1 = Math.min(1, Math.max(0, probabilityOfOne(amps, op.qubit)));
        let ones = 0;
        for (let s = 0; s < shots; s++) if (ctx.rng.next() < p1) ones++;
        const zeros = shots - ones;
        if (ones > 0 && zeros > 0) {
          if (ctx.live >= ctx.maxLive - 1) {
            // no memory for another branch: the remaining shots run one by one (one scratch copy)
            yield* shotByShot(ops, i, amps, clbits, shots, ctx);
            return;
          }
          const copy = amps.slice();
          const bits = clbits.slice();
          ctx.live++;
          settle(copy, bits, op, 1, p1);
          yield* runBranch(ops, i + 1, copy, bits, ones, ctx);
          ctx.live--;
          settle(amps, clbits, op, 0, 1 - p1);
          shots = zeros;
        } else {
          const outcome = ones > 0 ? 1 : 0;
          settle(amps, clbits, op, outcome, outcome === 1 ? p1 : 1 - p1);
        }
        break;
      }
    }
    yield;
  }
  ctx.last = amps;
  if (ctx.program.clbits > 0) {
    const key = keyOf(ctx.program, (c) => clbits[c] as number);
    ctx.counts.set(key, (ctx.counts.get(key) ?? 0) + shots);
  }
}

/** Collapse `op.qubit` onto `outcome`: record the bit (measure) or return the qubit to |0⟩ (reset). */
function settle(
  amps: Float64Array,
  clbits: Uint8Array,
  op: Extract<CircuitOp, { kind: 'measure' | 'reset' }>,
  outcome: 0 | 1,
  probability: number,
): void {
  collapse(amps, op.qubit, outcome, probability);
  if (op.kind === 'measure') clbits[op.clbit] = outcome;
  else if (outcome === 1) applyGate(amps, op.qubit, [], PAULI_X);
}

/** Run `ops[start..]` once per shot from a copy of `amps`, with collapse. */
function* shotByShot(
  ops: readonly CircuitOp[],
  start: number,
  amps: Float64Array,
  clbits: Uint8Array,
  shots: number,
  ctx: BranchContext,
): Generator<void, void> {
  const rest = ops.slice(start);
  const work = new Float64Array(amps.length);
  const bits = new Uint8Array(clbits.length);
  for (let shot = 0; shot < shots; shot++) {
    work.set(amps);
    bits.set(clbits);
    yield* runOps(rest, work, bits, ctx.rng);
    if (ctx.program.clbits > 0) {
      const key = keyOf(ctx.program, (c) => bits[c] as number);
      ctx.counts.set(key, (ctx.counts.get(key) ?? 0) + 1);
    }
  }
  ctx.last = work;
}

function measure(amps: Float64Array, qubit: number, rng: Prng): 0 | 1 {
  const p1 = Math.min(1, Math.max(0, probabilityOfOne(amps, qubit)));
  const outcome: 0 | 1 = rng.next() < p1 ? 1 : 0;
  collapse(amps, qubit, outcome, outcome === 1 ? p1 : 1 - p1);
  return outcome;
}

function keyOf(program: QasmProgram, bit: (clbit: number) => number): string {
  const parts: string[] = [];
  for (let r = program.cregs.length - 1; r >= 0; r--) {
    const reg = program.cregs[r] as (typeof program.cregs)[number];
    let s = '';
    for (let k = reg.size - 1; k >= 0; k--) s += bit(reg.offset + k) === 1 ? '1' : '0';
    parts.push(s);
  }
  return parts.join(' ');
}

function sortedCounts(counts: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of [...counts.keys()].sort()) out[k] = counts.get(k) as number;
  return out;
}

/**
 * Draw `shots` basis states from `|amps|²` and add them to `counts` through `measuredFrom`
 * (bits not measured read `baseBits`, or 0).
 */
function sampleInto(
  program: QasmProgram,
  amps: Float64Array,
  measuredFrom: Int32Array,
  baseBits: Uint8Array | undefined,
  shots: number,
  rng: Prng,
  counts: Map<string, number>,
): void {
  if (program.clbits === 0) return;
  const u = new Float64Array(shots);
  for (let s = 0; s < shots; s++) u[s] = rng.next();
  u.sort();
  const dim = amps.length >>> 1;
  const keys = new Map<number, string>();
  const add = (index: number, n: number): void => {
    let key = keys.get(index);
    if (key === undefined) {
      key = keyOf(program, (c) => {
        const q = measuredFrom[c] as number;
        if (q < 0) return baseBits === undefined ? 0 : (baseBits[c] as number);
        return (index >>> q) & 1;
      });
      keys.set(index, key);
    }
    counts.set(key, (counts.get(key) ?? 0) + n);
  };
  let cumulative = 0;
  let s = 0;
  let last = 0;
  for (let i = 0; i < dim && s < shots; i++) {
    const re = amps[2 * i] as number;
    const im = amps[2 * i + 1] as number;
    const p = re * re + im * im;
    if (p === 0) continue;
    last = i;
    cumulative += p;
    let n = 0;
    while (s < shots && (u[s] as number) < cumulative) {
      s++;
      n++;
    }
    if (n > 0) add(i, n);
  }
  if (s < shots) add(last, shots - s); // rounding: the total fell a hair short of 1
}

function stateVectorOf(amps: Float64Array): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 0; i < amps.length; i += 2) out.push([amps[i] as number, amps[i + 1] as number]);
  return out;
}

/**
 * Refuse a circuit with more qubits than `maxQubits` or more classical bits than {@link MAX_CLBITS}
 * (`LIMIT_EXCEEDED`). Cheap, allocation-free: call it before {@link planSimulation}, which allocates
 * per qubit and per bit.
 */
export function checkProgramSize(program: QasmProgram, maxQubits: number): void {
  if (program.qubits > maxQubits) {
    throw new MeshError(
      ErrorCode.LIMIT_EXCEEDED,
      `the circuit has ${program.qubits} qubits, over this simulator's capacity of ${maxQubits}`,
      { details: { qubits: program.qubits, maxQubits } },
    );
  }
  if (program.clbits > MAX_CLBITS) {
    throw new MeshError(
      ErrorCode.LIMIT_EXCEEDED,
      `the circuit has ${program.clbits} classical bits, over this simulator's limit of ${MAX_CLBITS}`,
      { details: { clbits: program.clbits, maxClbits: MAX_CLBITS } },
    );
  }
}

/** Check `program` and its plan against the limits (size, simulator memory, state vector) before the state is allocated. */
export function checkCapacity(
  program: QasmProgram,
  plan: SimulationPlan,
  limits: { maxQubits: number; maxMemoryBytes: number; stateVector: boolean; stateVectorMaxQubits: number },
): void {
  checkProgramSize(program, limits.maxQubits);
  const memoryBytes = estimateMemoryBytes(program.qubits, plan.mode);
  if (memoryBytes > limits.maxMemoryBytes) {
    throw new MeshError(
      ErrorCode.LIMIT_EXCEEDED,
      `the circuit needs ${memoryBytes} bytes of simulator memory (${program.qubits} qubits, ${plan.mode}), over the limit of ${limits.maxMemoryBytes}`,
      { details: { qubits: program.qubits, memoryBytes, maxMemoryBytes: limits.maxMemoryBytes } },
    );
  }
  if (limits.stateVector && program.qubits > limits.stateVectorMaxQubits) {
    throw new MeshError(
      ErrorCode.LIMIT_EXCEEDED,
      `stateVector is only returned for circuits of at most ${limits.stateVectorMaxQubits} qubits; this one has ${program.qubits}`,
      { details: { qubits: program.qubits, stateVectorMaxQubits: limits.stateVectorMaxQubits } },
    );
  }
}

/**
 * The simulation as a generator that yields between operations (so an async driver can give the
 * event loop a turn and stop on abort). {@link simulate} drives it synchronously.
 * @internal
 */
export function* simulation(program: QasmProgram, options: SimulateOptions = {}): Generator<void, SimulationResult> {
  const o = resolveSimulateOptions(options);
  checkProgramSize(program, o.maxQubits);
  const plan = planSimulation(program);
  checkCapacity(program, plan, o);
  const rng = xoshiro128ss(o.seed);
  const amps = zeroState(program.qubits);
  const clbits = new Uint8Array(program.clbits);
  yield* runOps(plan.prefix, amps, clbits, rng);
  let counts: Map<string, number>;
  let finalState = amps;
  if (plan.mode === 'sampled') {
    counts = new Map();
    sampleInto(program, amps, plan.measuredFrom, undefined, o.shots, rng, counts);
  } else {
    counts = new Map();
    const stateBytes = amps.byteLength;
    const budget = Math.min(o.maxMemoryBytes, Math.max(2 * stateBytes, BRANCH_MEMORY_BYTES));
    const ctx: BranchContext = {
      program,
      rng,
      counts,
      live: 1,
      maxLive: Math.max(2, Math.floor(budget / stateBytes)),
      last: amps,
      sampleable: new WeakMap(),
    };
    yield* runBranch(plan.perShot, 0, amps, clbits, o.shots, ctx);
    finalState = ctx.last;
  }
  const result: SimulationResult = {
    counts: sortedCounts(counts),
    shots: o.shots,
    seed: o.seed,
    qubits: program.qubits,
    mode: plan.mode,
  };
  if (o.stateVector) result.stateVector = stateVectorOf(finalState);
  return result;
}

/**
 * Simulate `program` and sample `shots` measurement outcomes, synchronously.
 *
 * @example
 * const r = simulate(parseQasm(bell), { shots: 1000, seed: 7 });
 * r.counts; // { '00': 497, '11': 503 }
 * @throws MeshError `LIMIT_EXCEEDED` when the circuit is over `maxQubits`/`maxMemoryBytes`,
 *   `shots` over `maxShots`, or a state vector is asked for a circuit over `stateVectorMaxQubits`
 * @throws ConfigError for a malformed `shots` or `seed`
 */
export function simulate(program: QasmProgram, options: SimulateOptions = {}): SimulationResult {
  const g = simulation(program, options);
  for (;;) {
    const r = g.next();
    if (r.done) return r.value;
  }
}

/** Options of {@link simulateAsync}: {@link SimulateOptions} plus cancellation. */
export interface SimulateAsyncOptions extends SimulateOptions {
  /** Stop between operations once aborted; rejects with the signal's reason when it is a MeshError. */
  signal?: AbortSignal;
  /** Monotonic time (`clock.monotonicMs()`) after which the run stops with `TIMEOUT`. @default none */
  deadlineMs?: number;
  /** Time source for `deadlineMs` and yielding. @default systemClock */
  clock?: Clock;
  /** Give the event loop a turn at least this often, ms. @default 20 */
  yieldIntervalMs?: number;
}

/** Default of {@link SimulateAsyncOptions.yieldIntervalMs}. */
export const DEFAULT_YIELD_INTERVAL_MS = 20;

function abortError(signal: AbortSignal): MeshError {
  const reason: unknown = signal.reason;
  if (reason instanceof MeshError) return reason;
  return new MeshError(ErrorCode.TIMEOUT, 'the quantum simulation was aborted', { retryable: true, cause: reason });
}

/**
 * Like {@link simulate}, but gives the event loop a turn every `yieldIntervalMs` and stops between
 * operations when `signal` aborts or `deadlineMs` passes. One operation (one pass over the state)
 * is never interrupted.
 * @throws MeshError `TIMEOUT` past the deadline; the signal's reason (or `TIMEOUT`) on abort
 */
export async function simulateAsync(
  program: QasmProgram,
  options: SimulateAsyncOptions = {},
): Promise<SimulationResult> {
  const clock = options.clock ?? systemClock;
  const interval = options.yieldIntervalMs ?? DEFAULT_YIELD_INTERVAL_MS;
  const deadline = options.deadlineMs ?? Number.POSITIVE_INFINITY;
  const { signal } = options;
  const check = (): void => {
    if (signal?.aborted) throw abortError(signal);
    if (clock.monotonicMs() > deadline) {
      throw new MeshError(ErrorCode.TIMEOUT, 'the quantum simulation ran past its deadline', { retryable: true });
    }
  };
  check();
  const g = simulation(program, options);
  let last = clock.monotonicMs();
  for (;;) {
    const r = g.next();
    if (r.done) return r.value;
    const now = clock.monotonicMs();
    if (now - last >= interval) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      last = clock.monotonicMs();
    }
    check();
  }
}
