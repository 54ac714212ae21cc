import { ErrorCode, MeshError, type MeshErrorOptions } from '@meshroute/mesh';

/**
 * Why an OpenQASM program was refused. Stable ids, match on these (never on message text).
 * - `syntax`: the text does not follow the OpenQASM 2.0 grammar.
 * - `version`: `OPENQASM 2.0;` is missing or names another version.
 * - `include`: an `include` names a file that is not available.
 * - `unknown-gate`: a gate is called that was never defined (or only declared `opaque`).
 * - `arity`: a gate is called with the wrong number of parameters or qubits.
 * - `undeclared`: a register, gate parameter or gate qubit name is not declared.
 * - `redeclared`: a register or gate name is declared twice.
 * - `index`: a register index is out of range.
 * - `size-mismatch`: registers of different sizes in one broadcast operation.
 * - `duplicate-qubit`: one qubit is passed twice to one operation.
 * - `type`: a quantum register where a classical one is expected, or the other way round.
 * - `math`: a parameter expression does not evaluate to a finite number.
 */
export type QasmRule =
  | 'syntax'
  | 'version'
  | 'include'
  | 'unknown-gate'
  | 'arity'
  | 'undeclared'
  | 'redeclared'
  | 'index'
  | 'size-mismatch'
  | 'duplicate-qubit'
  | 'type'
  | 'math'
  | 'expression-limit';

/** Where in a source text something is. Lines and columns start at 1. */
export interface SourcePosition {
  /** The file name: `main` for the program itself, else the include name. */
  file: string;
  line: number;
  col: number;
}

/**
 * A malformed OpenQASM 2.0 program. The message starts with `file:line:col`, e.g.
 * `main:4:1: unknown gate "hh"`. Code `WORKLOAD_FAILED` (the program is the workload's fault),
 * not retryable; `details` carries `{ file, line, col, rule }`.
 */
export class QasmError extends MeshError {
  override readonly name = 'QasmError';
  /** Line of the offending token, from 1. */
  readonly line: number;
  /** Column of the offending token, from 1. */
  readonly col: number;
  /** File of the offending token (`main` or an include name). */
  readonly file: string;
  /** The rule broken. */
  readonly rule: QasmRule;

  constructor(rule: QasmRule, at: SourcePosition, message: string, options: MeshErrorOptions = {}) {
    super(ErrorCode.WORKLOAD_FAILED, `${at.file}:${at.line}:${at.col}: ${message}`, {
      ...options,
      retryable: false,
      details: { file: at.file, line: at.line, col: at.col, rule, ...options.details },
    });
    this.line = at.line;
    this.col = at.col;
    this.file = at.file;
    this.rule = rule;
  }
}
