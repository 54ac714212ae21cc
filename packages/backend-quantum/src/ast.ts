/** The syntax tree of an OpenQASM 2.0 program, as the parser builds it. */
import type { SourcePosition } from './errors.js';

/** The unary functions of OpenQASM 2.0 expressions. */
export type UnaryFunction = 'sin' | 'cos' | 'tan' | 'exp' | 'ln' | 'sqrt';

/** A parameter expression. */
export type Expr =
  | { kind: 'number'; value: number; pos: SourcePosition }
  | { kind: 'pi'; pos: SourcePosition }
  | { kind: 'param'; name: string; pos: SourcePosition }
  | { kind: 'binary'; op: '+' | '-' | '*' | '/' | '^'; left: Expr; right: Expr; pos: SourcePosition }
  | { kind: 'negate'; arg: Expr; pos: SourcePosition }
  | { kind: 'call'; fn: UnaryFunction; arg: Expr; pos: SourcePosition };

/** A register or one of its bits: `q` or `q[3]`. */
export interface Argument {
  name: string;
  index: number | undefined;
  pos: SourcePosition;
}

/** A unitary operation: `U(...) a;`, `CX a, b;` or a gate call. */
export type UnitaryOp =
  | { kind: 'U'; params: Expr[]; args: Argument[]; pos: SourcePosition }
  | { kind: 'CX'; params: Expr[]; args: Argument[]; pos: SourcePosition }
  | { kind: 'gate'; name: string; params: Expr[]; args: Argument[]; pos: SourcePosition };

/** A statement allowed inside a gate body. */
export type GateBodyOp = UnitaryOp | { kind: 'barrier'; args: Argument[]; pos: SourcePosition };

/** An operation that may follow `if (...)`. */
export type QuantumOp =
  | UnitaryOp
  | { kind: 'measure'; qubit: Argument; bit: Argument; pos: SourcePosition }
  | { kind: 'reset'; arg: Argument; pos: SourcePosition };

/** A top-level statement. */
export type Statement =
  | QuantumOp
  | { kind: 'qreg' | 'creg'; name: string; size: number; pos: SourcePosition }
  | {
      kind: 'gateDef';
      name: string;
      params: string[];
      qubits: string[];
      body: GateBodyOp[] | undefined;
      pos: SourcePosition;
    }
  | { kind: 'barrier'; args: Argument[]; pos: SourcePosition }
  | { kind: 'if'; creg: string; value: number; op: QuantumOp; pos: SourcePosition; cregPos: SourcePosition };
