/**
 * Recursive-descent parser for OpenQASM 2.0, following the grammar of the OpenQASM 2.0 paper
 * (Cross et al., arXiv:1707.03429, appendix A):
 *
 * ```
 * mainprogram := OPENQASM real ; program
 * statement   := decl | gatedecl goplist } | gatedecl } | opaque id idlist ;
 *              | opaque id ( ) idlist ; | opaque id ( idlist ) idlist ;
 *              | qop | if ( id == nninteger ) qop | barrier anylist ; | include "file" ;
 * decl        := qreg id [ nninteger ] ; | creg id [ nninteger ] ;
 * gatedecl    := gate id idlist { | gate id ( ) idlist { | gate id ( idlist ) idlist {
 * goplist     := (uop | barrier idlist ;)*
 * qop         := uop | measure argument -> argument ; | reset argument ;
 * uop         := U ( explist ) argument ; | CX argument , argument ; | id anylist ;
 *              | id ( ) anylist ; | id ( explist ) anylist ;
 * argument    := id | id [ nninteger ]
 * exp         := real | nninteger | pi | id | exp (+|-|*|/|^) exp | - exp | ( exp ) | unaryop ( exp )
 * ```
 *
 * Precedence, lowest first: `+ -`, `* /`, unary `-`, `^` (right associative).
 */
import type { Argument, Expr, GateBodyOp, QuantumOp, Statement, UnaryFunction, UnitaryOp } from './ast.js';
import { QasmError, type SourcePosition } from './errors.js';
import { type Token, tokenize } from './lexer.js';

const UNARY_FUNCTIONS: ReadonlySet<string> = new Set(['sin', 'cos', 'tan', 'exp', 'ln', 'sqrt']);

function describe(t: Token): string {
  switch (t.kind) {
    case 'eof':
      return 'end of input';
    case 'string':
      return `string "${t.text}"`;
    case 'symbol':
      return `"${t.text}"`;
    default:
      return `"${t.text}"`;
  }
}

/** Parses one source text (the main program or an include) into statements. */
/** Deepest nesting of one parameter expression (parentheses, unary functions, signs). */
export const MAX_EXPRESSION_DEPTH = 128;
/** Most terms (numbers, names, operators) in one parameter expression. */
export const MAX_EXPRESSION_NODES = 4096;

export class Parser {
  private readonly tokens: Token[];
  private i = 0;
  /** Nesting of the expression being parsed (parentheses, calls, unary signs). */
  private depth = 0;
  /** Nodes of the expression being parsed. */
  private nodes = 0;

  constructor(source: string, file: string) {
    this.tokens = tokenize(source, file);
  }

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.i + offset, this.tokens.length - 1)] as Token;
  }

  private next(): Token {
    const t = this.peek();
    if (t.kind !== 'eof') this.i++;
    return t;
  }

  private isSymbol(text: string): boolean {
    const t = this.peek();
    return t.kind === 'symbol' && t.text === text;
  }

  private isKeyword(text: string): boolean {
    const t = this.peek();
    return t.kind === 'keyword' && t.text === text;
  }

  private fail(t: Token, expected: string): never {
    throw new QasmError('syntax', t.pos, `expected ${expected}, found ${describe(t)}`);
  }

  private expectSymbol(text: string, context?: string): Token {
    const t = this.peek();
    if (t.kind !== 'symbol' || t.text !== text) this.fail(t, `"${text}"${context ? ` ${context}` : ''}`);
    return this.next();
  }

  private expectId(what: string): Token {
    const t = this.peek();
    if (t.kind !== 'id') {
      if (t.kind === 'keyword') {
        throw new QasmError('syntax', t.pos, `expected ${what}, found reserved word "${t.text}"`);
      }
      this.fail(t, what);
    }
    return this.next();
  }

  private expectInt(what: string): Token {
    const t = this.peek();
    if (t.kind !== 'int') this.fail(t, what);
    return this.next();
  }

  /** Parse the header `OPENQASM 2.0;`. */
  parseHeader(): void {
    const t = this.peek();
    if (!(t.kind === 'keyword' && t.text === 'OPENQASM')) {
      throw new QasmError('version', t.pos, `the program must start with "OPENQASM 2.0;", found ${describe(t)}`);
    }
    this.next();
    const v = this.peek();
    if (v.kind !== 'real' && v.kind !== 'int') this.fail(v, 'a version number');
    this.next();
    if (v.text !== '2.0' && v.text !== '2') {
      throw new QasmError('version', v.pos, `unsupported OpenQASM version ${v.text}; only 2.0 is supported`);
    }
    this.expectSymbol(';', 'after the version');
  }

  /** Parse statements up to the end of input. */
  parseStatements(): Array<Statement | { kind: 'include'; file: string; pos: SourcePosition }> {
    const out: Array<Statement | { kind: 'include'; file: string; pos: SourcePosition }> = [];
    while (this.peek().kind !== 'eof') out.push(this.statement());
    return out;
  }

  private statement(): Statement | { kind: 'include'; file: string; pos: SourcePosition } {
    const t = this.peek();
    if (t.kind === 'keyword') {
      switch (t.text) {
        case 'OPENQASM':
          throw new QasmError('syntax', t.pos, '"OPENQASM" may appear only once, at the start of the program');
        case 'include': {
          this.next();
          const f = this.peek();
          if (f.kind !== 'string') this.fail(f, 'a file name in double quotes');
          this.next();
          this.expectSymbol(';', 'after include');
          return { kind: 'include', file: f.text, pos: t.pos };
        }
        case 'qreg':
        case 'creg': {
          this.next();
          const name = this.expectId('a register name');
          this.expectSymbol('[');
          const size = this.expectInt('a register size');
          if (size.value < 1) throw new QasmError('syntax', size.pos, 'a register must have at least 1 bit');
          this.expectSymbol(']');
          this.expectSymbol(';', `after the ${t.text} declaration`);
          return { kind: t.text, name: name.text, size: size.value, pos: t.pos };
        }
        case 'gate':
        case 'opaque':
          return this.gateDecl(t);
        case 'barrier': {
          this.next();
          const args = this.argList(true);
          this.expectSymbol(';', 'after barrier');
          return { kind: 'barrier', args, pos: t.pos };
        }
        case 'if': {
          this.next();
          this.expectSymbol('(', 'after if');
          const creg = this.expectId('a classical register name');
          if (this.isSymbol('[')) {
            throw new QasmError(
              'syntax',
              this.peek().pos,
              'OpenQASM 2.0 "if" compares a whole classical register: if (c == n)',
            );
          }
          this.expectSymbol('==', 'in the if condition');
          const value = this.expectInt('a non-negative integer');
          this.expectSymbol(')', 'to close the if condition');
          const op = this.quantumOp(true);
          return { kind: 'if', creg: creg.text, value: value.value, op, pos: t.pos, cregPos: creg.pos };
        }
        default:
          return this.quantumOp(false);
      }
    }
    if (t.kind === 'id') return this.quantumOp(false);
    return this.fail(t, 'a statement');
  }

  private gateDecl(kw: Token): Statement {
    this.next();
    const name = this.expectId('a gate name');
    const params: string[] = [];
    if (this.isSymbol('(')) {
      this.next();
      if (!this.isSymbol(')')) {
        for (;;) {
          params.push(this.expectId('a parameter name').text);
          if (!this.isSymbol(',')) break;
          this.next();
        }
      }
      this.expectSymbol(')', 'to close the parameter list');
    }
    const qubits: string[] = [];
    for (;;) {
      qubits.push(this.expectId('a qubit argument name').text);
      if (!this.isSymbol(',')) break;
      this.next();
    }
    if (kw.text === 'opaque') {
      this.expectSymbol(';', 'after the opaque declaration');
      return { kind: 'gateDef', name: name.text, params, qubits, body: undefined, pos: name.pos };
    }
    this.expectSymbol('{', 'to open the gate body');
    const body: GateBodyOp[] = [];
    while (!this.isSymbol('}')) {
      const t = this.peek();
      if (t.kind === 'eof') this.fail(t, `"}" to close the body of gate ${name.text}`);
      if (this.isKeyword('barrier')) {
        this.next();
        const args = this.argList(false);
        this.expectSymbol(';', 'after barrier');
        body.push({ kind: 'barrier', args, pos: t.pos });
        continue;
      }
      if (t.kind === 'keyword' && (t.text === 'measure' || t.text === 'reset' || t.text === 'if')) {
        throw new QasmError('syntax', t.pos, `"${t.text}" is not allowed inside a gate body`);
      }
      if (t.kind === 'keyword' && (t.text === 'gate' || t.text === 'opaque')) {
        throw new QasmError('syntax', t.pos, 'gate definitions cannot be nested inside a gate body');
      }
      body.push(this.unitaryOp(false));
    }
    this.next();
    return { kind: 'gateDef', name: name.text, params, qubits, body, pos: name.pos };
  }

  private quantumOp(afterIf: boolean): QuantumOp {
    const t = this.peek();
    if (t.kind === 'keyword' && t.text === 'measure') {
      this.next();
      const qubit = this.argument(true);
      this.expectSymbol('->', 'in measure');
      const bit = this.argument(true);
      this.expectSymbol(';', 'after measure');
      return { kind: 'measure', qubit, bit, pos: t.pos };
    }
    if (t.kind === 'keyword' && t.text === 'reset') {
      this.next();
      const arg = this.argument(true);
      this.expectSymbol(';', 'after reset');
      return { kind: 'reset', arg, pos: t.pos };
    }
    if (t.kind === 'keyword' && t.text !== 'U' && t.text !== 'CX') {
      if (afterIf) this.fail(t, 'a quantum operation after if (...)');
      this.fail(t, 'a statement');
    }
    return this.unitaryOp(true);
  }

  private unitaryOp(indexed: boolean): UnitaryOp {
    const t = this.peek();
    if (t.kind === 'keyword' && t.text === 'U') {
      this.next();
      this.expectSymbol('(', 'after U');
      const params = this.expList();
      this.expectSymbol(')', 'to close the parameters of U');
      const a = this.argument(indexed);
      this.expectSymbol(';', 'after U');
      return { kind: 'U', params, args: [a], pos: t.pos };
    }
    if (t.kind === 'keyword' && t.text === 'CX') {
      this.next();
      const a = this.argument(indexed);
      this.expectSymbol(',', 'between the CX arguments');
      const b = this.argument(indexed);
      this.expectSymbol(';', 'after CX');
      return { kind: 'CX', params: [], args: [a, b], pos: t.pos };
    }
    const name = this.expectId('a gate name');
    let params: Expr[] = [];
    if (this.isSymbol('(')) {
      this.next();
      params = this.isSymbol(')') ? [] : this.expList();
      this.expectSymbol(')', 'to close the gate parameters');
    }
    const args = this.argList(indexed);
    this.expectSymbol(';', `after the ${name.text} arguments`);
    return { kind: 'gate', name: name.text, params, args, pos: name.pos };
  }

  private argList(indexed: boolean): Argument[] {
    const args: Argument[] = [];
    for (;;) {
      args.push(this.argument(indexed));
      if (!this.isSymbol(',')) break;
      this.next();
    }
    return args;
  }

  private argument(indexed: boolean): Argument {
    const name = this.expectId('a register or qubit name');
    if (this.isSymbol('[')) {
      if (!indexed) {
        throw new QasmError('syntax', this.peek().pos, 'qubits inside a gate body cannot be indexed');
      }
      this.next();
      const idx = this.expectInt('a bit index');
      this.expectSymbol(']', 'to close the index');
      return { name: name.text, index: idx.value, pos: name.pos };
    }
    return { name: name.text, index: undefined, pos: name.pos };
  }

  private expList(): Expr[] {
    const out: Expr[] = [this.topExpr()];
    while (this.isSymbol(',')) {
      this.next();
      out.push(this.topExpr());
    }
    return out;
  }

  /** One parameter expression, within {@link MAX_EXPRESSION_DEPTH} and {@link MAX_EXPRESSION_NODES}. */
  private topExpr(): Expr {
    this.nodes = 0;
    return this.expr();
  }

  /** Count a node; refuse expressions whose evaluation would recurse past what the limits allow. */
  private node(t: Token): void {
    if (++this.nodes > MAX_EXPRESSION_NODES) {
      throw new QasmError(
        'expression-limit',
        t.pos,
        `expression has more than ${MAX_EXPRESSION_NODES} terms (limit of this simulator)`,
        { details: { maxNodes: MAX_EXPRESSION_NODES } },
      );
    }
  }

  private expr(): Expr {
    let left = this.term();
    while (this.isSymbol('+') || this.isSymbol('-')) {
      const op = this.next();
      const right = this.term();
      left = { kind: 'binary', op: op.text as '+' | '-', left, right, pos: op.pos };
    }
    return left;
  }

  private term(): Expr {
    let left = this.unary();
    while (this.isSymbol('*') || this.isSymbol('/')) {
      const op = this.next();
      const right = this.unary();
      left = { kind: 'binary', op: op.text as '*' | '/', left, right, pos: op.pos };
    }
    return left;
  }

  private unary(): Expr {
    if (this.depth >= MAX_EXPRESSION_DEPTH) {
      throw new QasmError(
        'expression-limit',
        this.peek().pos,
        `expression nested more than ${MAX_EXPRESSION_DEPTH} levels deep (parentheses, functions, signs)`,
        { details: { maxDepth: MAX_EXPRESSION_DEPTH } },
      );
    }
    this.depth++;
    try {
      return this.unaryInner();
    } finally {
      this.depth--;
    }
  }

  private unaryInner(): Expr {
    this.node(this.peek());
    if (this.isSymbol('-')) {
      const t = this.next();
      return { kind: 'negate', arg: this.unary(), pos: t.pos };
    }
    if (this.isSymbol('+')) {
      this.next();
      return this.unary();
    }
    return this.power();
  }

  private power(): Expr {
    const base = this.primary();
    if (this.isSymbol('^')) {
      const op = this.next();
      const exponent = this.unary();
      return { kind: 'binary', op: '^', left: base, right: exponent, pos: op.pos };
    }
    return base;
  }

  private primary(): Expr {
    const t = this.peek();
    if (t.kind === 'real' || t.kind === 'int') {
      this.next();
      return { kind: 'number', value: t.value, pos: t.pos };
    }
    if (t.kind === 'keyword' && t.text === 'pi') {
      this.next();
      return { kind: 'pi', pos: t.pos };
    }
    if (t.kind === 'keyword' && UNARY_FUNCTIONS.has(t.text)) {
      this.next();
      this.expectSymbol('(', `after ${t.text}`);
      const arg = this.expr();
      this.expectSymbol(')', `to close ${t.text}(...)`);
      return { kind: 'call', fn: t.text as UnaryFunction, arg, pos: t.pos };
    }
    if (t.kind === 'id') {
      this.next();
      return { kind: 'param', name: t.text, pos: t.pos };
    }
    if (t.kind === 'symbol' && t.text === '(') {
      this.next();
      const e = this.expr();
      this.expectSymbol(')', 'to close the parenthesis');
      return e;
    }
    return this.fail(t, 'an expression');
  }
}
