/** The compiled form of an OpenQASM 2.0 program: flat registers and primitive operations. */
import type { Matrix2 } from './matrix.js';

/** A quantum or classical register: `size` bits starting at global index `offset`. */
export interface Register {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
}

/** One primitive operation. Qubit and classical bit numbers are global indices. */
export type CircuitOp =
  /** A 2x2 unitary on `target`, applied where every qubit in `controls` is 1. */
  | { readonly kind: 'gate'; readonly target: number; readonly controls: readonly number[]; readonly matrix: Matrix2 }
  /** Exchange qubits `a` and `b`, where every qubit in `controls` is 1. */
  | { readonly kind: 'swap'; readonly a: number; readonly b: number; readonly controls: readonly number[] }
  /**
   * A dense 4x4 unitary on `q0` and `q1` (row-major, interleaved re/im; index `2·bit(q1) + bit(q0)`).
   * Only produced by gate fusion in the simulator, never by the compiler.
   */
  | { readonly kind: 'gate2'; readonly q0: number; readonly q1: number; readonly matrix: Float64Array }
  /** Measure `qubit` in the computational basis into `clbit`. */
  | { readonly kind: 'measure'; readonly qubit: number; readonly clbit: number }
  /** Reset `qubit` to |0⟩. */
  | { readonly kind: 'reset'; readonly qubit: number }
  /** Run `ops` when the classical register slice `[offset, offset+size)` reads `value` (bit 0 least significant). */
  | {
      readonly kind: 'if';
      readonly offset: number;
      readonly size: number;
      readonly value: number;
      readonly ops: readonly CircuitOp[];
    };

/** A parsed, checked and compiled OpenQASM 2.0 program, ready for {@link simulate}. */
export interface QasmProgram {
  /** Total qubits over all quantum registers. */
  readonly qubits: number;
  /** Total classical bits over all classical registers. */
  readonly clbits: number;
  /** Quantum registers in declaration order. */
  readonly qregs: readonly Register[];
  /** Classical registers in declaration order. */
  readonly cregs: readonly Register[];
  /** The operations in program order (gate calls expanded; barriers dropped). */
  readonly ops: readonly CircuitOp[];
}
