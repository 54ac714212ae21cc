import { ErrorCode, MeshError } from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import { parseQasm } from './compiler.js';
import { QasmError, type QasmRule } from './errors.js';
import { simulate } from './simulator.js';

const HEADER = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n';

function expectQasmError(source: string, rule: QasmRule, line: number, col?: number, text?: RegExp): QasmError {
  let caught: unknown;
  try {
    parseQasm(source);
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a QasmError').toBeInstanceOf(QasmError);
  const e = caught as QasmError;
  expect(e.code).toBe(ErrorCode.WORKLOAD_FAILED);
  expect({ rule: e.rule, line: e.line }).toEqual({ rule, line });
  if (col !== undefined) expect(e.col).toBe(col);
  expect(e.message).toMatch(new RegExp(`^main:${line}:${e.col}: `));
  if (text) expect(e.message).toMatch(text);
  expect(e.details).toMatchObject({ line, col: e.col, rule });
  return e;
}

describe('parseQasm: well-formed programs', () => {
  it('declares several quantum and classical registers with global indices in declaration order', () => {
    const p = parseQasm(`${HEADER}qreg a[2];\nqreg b[3];\ncreg c[1];\ncreg d[4];\n`);
    expect(p.qubits).toBe(5);
    expect(p.clbits).toBe(5);
    expect(p.qregs).toEqual([
      { name: 'a', offset: 0, size: 2 },
      { name: 'b', offset: 2, size: 3 },
    ]);
    expect(p.cregs).toEqual([
      { name: 'c', offset: 0, size: 1 },
      { name: 'd', offset: 1, size: 4 },
    ]);
  });

  it('broadcasts gates, measure and reset over registers and mixes registers with single qubits', () => {
    const p = parseQasm(
      `${HEADER}qreg q[3];\nqreg r[3];\ncreg c[3];\nh q;\ncx q, r;\ncx q[0], r;\nreset r;\nmeasure q -> c;\n`,
    );
    const kinds = p.ops.map((o) => o.kind);
    expect(kinds.filter((k) => k === 'measure')).toHaveLength(3);
    expect(kinds.filter((k) => k === 'reset')).toHaveLength(3);
    const cx = p.ops.filter((o) => o.kind === 'gate' && o.controls.length === 1);
    expect(cx.map((o) => (o.kind === 'gate' ? [o.controls[0], o.target] : []))).toEqual([
      [0, 3],
      [1, 4],
      [2, 5],
      [0, 3],
      [0, 4],
      [0, 5],
    ]);
  });

  it('evaluates parameter expressions with pi, + - * / ^, unary minus and sin cos tan exp ln sqrt', () => {
    const src = `OPENQASM 2.0;\nqreg q[1];\nU(-pi/2 + 2^3 - 8, sqrt(4)*ln(exp(1.5)) - 3, cos(0)*sin(pi/2)*tan(pi/4)*-1) q[0];\n`;
    const p = parseQasm(src);
    const [op] = p.ops;
    // U(-pi/2, 0, -1): compare with the matrix built directly
    const ref = parseQasm('OPENQASM 2.0;\nqreg q[1];\nU(-1.5707963267948966, 0, -1) q[0];\n').ops[0];
    expect(op?.kind === 'gate' && ref?.kind === 'gate').toBe(true);
    if (op?.kind === 'gate' && ref?.kind === 'gate') {
      for (let k = 0; k < 8; k++) expect(op.matrix[k]).toBeCloseTo(ref.matrix[k] as number, 14);
    }
  });

  it('gives ^ right associativity and binds it tighter than unary minus', () => {
    const a = parseQasm('OPENQASM 2.0;\nqreg q[1];\nU(-2^2^0.5, 0, 0) q[0];').ops[0];
    const b = parseQasm(`OPENQASM 2.0;\nqreg q[1];\nU(${-(2 ** (2 ** 0.5))}, 0, 0) q[0];`).ops[0];
    expect(a).toEqual(b);
  });

  it('expands user gates that call earlier user gates, with parameters substituted', () => {
    const src = `OPENQASM 2.0;
include "qelib1.inc";
gate myrot(theta) a { ry(theta) a; }
gate pair(t) a, b { myrot(t/2) a; myrot(t) b; cx a, b; barrier a, b; }
qreg q[2];
creg c[2];
pair(pi) q[0], q[1];
measure q -> c;
`;
    const viaGates = simulate(parseQasm(src), { shots: 1, seed: 1, stateVector: true }).stateVector;
    const direct = simulate(parseQasm(`${HEADER}qreg q[2];\nry(pi/2) q[0];\nry(pi) q[1];\ncx q[0], q[1];\n`), {
      shots: 1,
      seed: 1,
      stateVector: true,
    }).stateVector;
    expect(viaGates).toHaveLength(4);
    viaGates?.forEach(([re, im], i) => {
      expect(re).toBeCloseTo(direct?.[i]?.[0] as number, 12);
      expect(im).toBeCloseTo(direct?.[i]?.[1] as number, 12);
    });
  });

  it('accepts comments, barriers and gates without parameters written with ()', () => {
    const p = parseQasm(`${HEADER}// a comment\nqreg q[2]; /* block */\nbarrier q;\nbarrier q[0], q[1];\nx() q[0];\n`);
    expect(p.ops).toHaveLength(1);
  });

  it('allows opaque declarations that are never used', () => {
    expect(() => parseQasm(`${HEADER}opaque magic(a) q;\nqreg q[1];\nx q[0];`)).not.toThrow();
  });

  it('reads extra include files given as options, and names them in errors', () => {
    const lib = 'gate flip a { x a; }\n';
    const p = parseQasm(`${HEADER}include "mine.inc";\nqreg q[1];\nflip q[0];`, { includes: { 'mine.inc': lib } });
    expect(p.ops).toHaveLength(1);
    try {
      parseQasm(`${HEADER}include "bad.inc";\nqreg q[1];`, { includes: { 'bad.inc': '\n\nflip q;' } });
      expect.unreachable();
    } catch (err) {
      expect((err as QasmError).message).toMatch(/^bad\.inc:3:1: unknown gate "flip"/);
    }
  });

  it('refuses parameter expressions nested too deep or too long, naming the line and column (no stack overflow)', () => {
    const at = (expr: string) => {
      try {
        parseQasm(`${HEADER}qreg q[1];\nrx(${expr}) q[0];`);
      } catch (err) {
        return err as QasmError;
      }
      throw new Error('parsed');
    };
    for (const expr of [
      `${'('.repeat(100_000)}pi${')'.repeat(100_000)}`,
      `${'-'.repeat(100_000)}pi`,
      `${'1^'.repeat(1000)}1`,
    ]) {
      const e = at(expr);
      expect(e).toBeInstanceOf(QasmError);
      expect(e.rule).toBe('expression-limit');
      expect(e.line).toBe(4);
      expect(e.message).toMatch(/nested more than 128 levels deep/);
    }
    const chain = at(`${'1+'.repeat(100_000)}1`);
    expect(chain.rule).toBe('expression-limit');
    expect(chain.message).toMatch(/^main:4:\d+: expression has more than 4096 terms/);
    // Within the limits, deep and long expressions still evaluate.
    expect(() =>
      parseQasm(`${HEADER}qreg q[1];\nrx(${'('.repeat(100)}pi${')'.repeat(100)} + ${'1+'.repeat(2000)}1) q[0];`),
    ).not.toThrow();
  });

  it('refuses programs that expand past maxOperations with LIMIT_EXCEEDED', () => {
    let src = `${HEADER}gate g0 a { x a; }\n`;
    for (let k = 1; k <= 12; k++) src += `gate g${k} a { g${k - 1} a; g${k - 1} a; g${k - 1} a; g${k - 1} a; }\n`;
    src += 'qreg q[1];\ng12 q[0];\n';
    try {
      parseQasm(src, { maxOperations: 100_000 });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(MeshError);
      expect((err as MeshError).code).toBe(ErrorCode.LIMIT_EXCEEDED);
    }
  });
});

describe('parseQasm: every malformed program names its line', () => {
  it('missing OPENQASM 2.0 header', () => {
    expectQasmError('include "qelib1.inc";\nqreg q[1];', 'version', 1, 1, /must start with "OPENQASM 2.0;"/);
    expectQasmError('\n\n// comment\nqreg q[1];', 'version', 4, 1);
  });

  it('unsupported version', () => {
    expectQasmError('OPENQASM 3.0;\nqubit q;', 'version', 1, 10, /unsupported OpenQASM version 3\.0/);
  });

  it('syntax errors: missing semicolon, bad token, unexpected token, unterminated body', () => {
    expectQasmError(`${HEADER}qreg q[2]\nh q[0];`, 'syntax', 4, 1, /expected ";"/);
    expectQasmError(`${HEADER}qreg q[2];\nh q[0] $;`, 'syntax', 4, 8, /unexpected character "\$"/);
    expectQasmError(`${HEADER}qreg q[2];\nmeasure q[0] c[0];`, 'syntax', 4, 14, /expected "->"/);
    expectQasmError(`${HEADER}gate g a {\n  x a;\n`, 'syntax', 5, 1, /"}" to close the body of gate g/);
    expectQasmError(`${HEADER}qreg q[1];\nU(0, 0 q[0];`, 'syntax', 4, 8);
    expectQasmError(`${HEADER}qreg Q[1];`, 'syntax', 3, 6, /must start with a lowercase letter/);
    expectQasmError(`${HEADER}qreg q[01];`, 'syntax', 3, 8, /leading zero/);
    expectQasmError(`${HEADER}qreg q[0];`, 'syntax', 3, 8, /at least 1 bit/);
    expectQasmError(`${HEADER}gate g a { measure a -> c; }`, 'syntax', 3, 12, /not allowed inside a gate body/);
    expectQasmError(
      `${HEADER}qreg q[2];\ncreg c[2];\nif (c[0] == 1) x q[0];`,
      'syntax',
      5,
      6,
      /whole classical register/,
    );
  });

  it('unknown gate (with a hint when qelib1.inc is missing)', () => {
    expectQasmError(`${HEADER}qreg q[1];\n\nhh q[0];`, 'unknown-gate', 5, 1, /unknown gate "hh"/);
    expectQasmError('OPENQASM 2.0;\nqreg q[1];\nh q[0];', 'unknown-gate', 3, 1, /include "qelib1\.inc"/);
    expectQasmError(`${HEADER}gate g a { nothere a; }`, 'unknown-gate', 3, 12);
  });

  it('using an opaque gate', () => {
    expectQasmError(`${HEADER}opaque magic q;\nqreg q[1];\nmagic q[0];`, 'unknown-gate', 5, 1, /opaque/);
  });

  it('wrong arity: parameters and qubits', () => {
    expectQasmError(`${HEADER}qreg q[2];\nrx q[0];`, 'arity', 4, 1, /takes 1 parameter\(s\), got 0/);
    expectQasmError(`${HEADER}qreg q[2];\nh(0.1) q[0];`, 'arity', 4, 1, /takes 0 parameter\(s\), got 1/);
    expectQasmError(`${HEADER}qreg q[2];\ncx q[0];`, 'arity', 4, 1, /takes 2 qubit\(s\), got 1/);
    expectQasmError(`${HEADER}qreg q[2];\nU(0, 0) q[0];`, 'arity', 4, 1, /U takes 3 parameters/);
    expectQasmError(`${HEADER}gate g a { cx a; }`, 'arity', 3, 12);
  });

  it('undeclared registers, parameters and gate qubits', () => {
    expectQasmError(`${HEADER}qreg q[2];\nx r[0];`, 'undeclared', 4, 3, /quantum register "r" is not declared/);
    expectQasmError(`${HEADER}qreg q[2];\nmeasure q[0] -> c[0];`, 'undeclared', 4, 17, /classical register "c"/);
    expectQasmError(
      `${HEADER}gate g(theta) a { rx(phi) a; }`,
      'undeclared',
      3,
      22,
      /"phi" is not a parameter of gate "g"/,
    );
    expectQasmError(`${HEADER}gate g a { x b; }`, 'undeclared', 3, 14, /"b" is not a qubit argument/);
    expectQasmError(`${HEADER}qreg q[1];\nrx(theta) q[0];`, 'undeclared', 4, 4, /unknown parameter "theta"/);
    expectQasmError(`${HEADER}qreg q[1];\ncreg c[1];\nif (d == 1) x q[0];`, 'undeclared', 5, 5);
  });

  it('index out of range', () => {
    expectQasmError(`${HEADER}qreg q[2];\ncreg c[2];\nx q[2];`, 'index', 5, 3, /index 2 is out of range for q\[2\]/);
    expectQasmError(`${HEADER}qreg q[2];\ncreg c[2];\nmeasure q[1] -> c[5];`, 'index', 5, 17);
  });

  it('mismatched register sizes', () => {
    expectQasmError(`${HEADER}qreg a[2];\nqreg b[3];\ncx a, b;`, 'size-mismatch', 5, 7, /a has 2, b has 3/);
    expectQasmError(`${HEADER}qreg q[2];\ncreg c[3];\nmeasure q -> c;`, 'size-mismatch', 5, 1);
    expectQasmError(`${HEADER}qreg q[2];\ncreg c[2];\nmeasure q -> c[0];`, 'size-mismatch', 5, 1);
  });

  it('one qubit twice in one operation', () => {
    expectQasmError(`${HEADER}qreg q[2];\ncx q[1], q[1];`, 'duplicate-qubit', 4, 10);
    expectQasmError(`${HEADER}qreg q[2];\ncx q, q[0];`, 'duplicate-qubit', 4, 7);
  });

  it('redeclared registers and gates, and a second include of the same file', () => {
    expectQasmError(`${HEADER}qreg q[2];\ncreg q[2];`, 'redeclared', 4, 1, /register "q" is already declared/);
    expectQasmError(`${HEADER}gate h a { x a; }`, 'redeclared', 3, 6, /gate "h" is already defined/);
    expectQasmError(`${HEADER}include "qelib1.inc";`, 'include', 3, 1, /already included/);
  });

  it('unavailable include', () => {
    expectQasmError('OPENQASM 2.0;\ninclude "other.inc";', 'include', 2, 1, /cannot include "other\.inc"/);
  });

  it('quantum register where a classical one is expected and the other way round', () => {
    expectQasmError(`${HEADER}qreg q[1];\ncreg c[1];\nx c[0];`, 'type', 5, 3, /classical register/);
    expectQasmError(`${HEADER}qreg q[1];\ncreg c[1];\nmeasure q[0] -> q[0];`, 'type', 5, 17);
    expectQasmError(`${HEADER}qreg q[1];\ncreg c[1];\nif (q == 1) x q[0];`, 'type', 5, 5);
  });

  it('expressions that are not finite numbers', () => {
    expectQasmError(`${HEADER}qreg q[1];\nrx(1/0) q[0];`, 'math', 4, 5, /division by zero/);
    expectQasmError(`${HEADER}qreg q[1];\nrx(ln(0)) q[0];`, 'math', 4, 4, /ln of a non-positive/);
    expectQasmError(`${HEADER}qreg q[1];\nrx(sqrt(-1)) q[0];`, 'math', 4, 4);
    expectQasmError(`${HEADER}qreg q[1];\nrx(exp(1000)) q[0];`, 'math', 4, 4, /finite/);
  });
});
