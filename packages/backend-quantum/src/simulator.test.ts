import { ErrorCode, MeshError } from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import { expectBinomial } from '../test/test-support.js';
import { parseQasm } from './compiler.js';
import { planSimulation, simulate, simulateAsync } from './simulator.js';

const HEADER = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n';
const run = (src: string, shots = 4000, seed = 1234) => simulate(parseQasm(src), { shots, seed });

describe('known outcomes', () => {
  it('Bell state: only 00 and 11, half each', () => {
    const r = run(`${HEADER}qreg q[2];\ncreg c[2];\nh q[0];\ncx q[0], q[1];\nmeasure q -> c;`);
    expect(Object.keys(r.counts).sort()).toEqual(['00', '11']);
    expectBinomial(r.counts['00'] ?? 0, 4000, 0.5);
    expect(r.mode).toBe('sampled');
    expect(r.shots).toBe(4000);
    expect(r.qubits).toBe(2);
  });

  it('GHZ on 5 qubits: only 00000 and 11111', () => {
    const r = run(
      `${HEADER}qreg q[5];\ncreg c[5];\nh q[0];\ncx q[0], q[1];\ncx q[1], q[2];\ncx q[2], q[3];\ncx q[3], q[4];\nmeasure q -> c;`,
    );
    expect(Object.keys(r.counts).sort()).toEqual(['00000', '11111']);
    expectBinomial(r.counts['11111'] ?? 0, 4000, 0.5);
  });

  const dj = (oracle: string) =>
    run(
      `${HEADER}qreg q[3];\nqreg anc[1];\ncreg c[3];\nx anc[0];\nh anc[0];\nh q;\n${oracle}\nh q;\nmeasure q -> c;`,
      1000,
    );

  it('Deutsch–Jozsa: constant oracles always give 000', () => {
    expect(dj('').counts).toEqual({ '000': 1000 });
    expect(dj('x anc[0];').counts).toEqual({ '000': 1000 });
  });

  it('Deutsch–Jozsa: balanced oracles never give 000', () => {
    for (const oracle of [
      'cx q[0], anc[0];',
      'cx q[0], anc[0];\ncx q[2], anc[0];',
      'x q[1];\ncx q[1], anc[0];\nx q[1];',
    ]) {
      const r = dj(oracle);
      expect(r.counts['000']).toBeUndefined();
      expect(Object.values(r.counts).reduce((a, b) => a + b, 0)).toBe(1000);
    }
  });

  it('Bernstein–Vazirani recovers the secret exactly in every shot', () => {
    for (const secret of ['1011', '0110', '1111', '0001']) {
      // secret is written c[3]..c[0]; bit i of the secret (from the right) is qubit i
      const cx = [...secret]
        .reverse()
        .map((b, i) => (b === '1' ? `cx q[${i}], anc[0];` : ''))
        .join('\n');
      const r = run(
        `${HEADER}qreg q[4];\nqreg anc[1];\ncreg c[4];\nx anc[0];\nh anc[0];\nh q;\n${cx}\nh q;\nmeasure q -> c;`,
        500,
      );
      expect(r.counts).toEqual({ [secret]: 500 });
    }
  });

  it('Grover on 2 qubits finds the marked state with certainty', () => {
    // oracle marks |11>; diffusion = H X CZ X H
    const r = run(
      `${HEADER}qreg q[2];\ncreg c[2];\nh q;\ncz q[0], q[1];\nh q;\nx q;\ncz q[0], q[1];\nx q;\nh q;\nmeasure q -> c;`,
      1000,
    );
    expect(r.counts).toEqual({ '11': 1000 });
  });

  it('Grover on 3 qubits: two iterations put sin²(5·asin(1/√8)) ≈ 0.945 on the marked state', () => {
    // marked state |101> (q2=1, q1=0, q0=1); oracle = X on q1, CCZ (h ccx h), X on q1
    const oracle = 'x q[1];\nh q[2];\nccx q[0], q[1], q[2];\nh q[2];\nx q[1];';
    const diffusion = 'h q;\nx q;\nh q[2];\nccx q[0], q[1], q[2];\nh q[2];\nx q;\nh q;';
    const src = `${HEADER}qreg q[3];\ncreg c[3];\nh q;\n${oracle}\n${diffusion}\n${oracle}\n${diffusion}\nmeasure q -> c;`;
    const r = run(src, 4000);
    const p = Math.sin(5 * Math.asin(1 / Math.sqrt(8))) ** 2;
    expectBinomial(r.counts['101'] ?? 0, 4000, p);
    expect(p).toBeGreaterThan(0.94);
  });

  it('QFT of a basis state: uniform magnitudes with phases e^{2πi·x·k/N}', () => {
    const n = 4;
    for (const x of [0, 1, 5, 11]) {
      const prep = [...Array(n).keys()]
        .filter((i) => (x >> i) & 1)
        .map((i) => `x q[${i}];`)
        .join('\n');
      let qft = '';
      for (let j = n - 1; j >= 0; j--) {
        qft += `h q[${j}];\n`;
        for (let k = j - 1; k >= 0; k--) qft += `cu1(pi/${2 ** (j - k)}) q[${k}], q[${j}];\n`;
      }
      for (let i = 0; i < n / 2; i++) qft += `swap q[${i}], q[${n - 1 - i}];\n`;
      const r = simulate(parseQasm(`${HEADER}qreg q[${n}];\n${prep}\n${qft}`), {
        shots: 1,
        seed: 1,
        stateVector: true,
      });
      const N = 2 ** n;
      expect(r.stateVector).toHaveLength(N);
      r.stateVector?.forEach(([re, im], k) => {
        const angle = (2 * Math.PI * x * k) / N;
        expect(re).toBeCloseTo(Math.cos(angle) / Math.sqrt(N), 12);
        expect(im).toBeCloseTo(Math.sin(angle) / Math.sqrt(N), 12);
      });
    }
  });

  it('teleportation with mid-circuit measurement and if: the teleported qubit has the sent statistics', () => {
    const theta = 1.1;
    const src = `${HEADER}qreg q[3];
creg m0[1];
creg m1[1];
creg out[1];
u3(${theta}, 0.4, -0.7) q[0];
h q[1];
cx q[1], q[2];
cx q[0], q[1];
h q[0];
measure q[0] -> m0[0];
measure q[1] -> m1[0];
if (m1 == 1) x q[2];
if (m0 == 1) z q[2];
measure q[2] -> out[0];
`;
    const shots = 4000;
    const r = run(src, shots);
    expect(r.mode).toBe('per-shot');
    let ones = 0;
    const outcomes = new Map<string, number>();
    for (const [key, n] of Object.entries(r.counts)) {
      const [out, m1, m0] = key.split(' ');
      if (out === '1') ones += n;
      outcomes.set(`${m1}${m0}`, (outcomes.get(`${m1}${m0}`) ?? 0) + n);
    }
    expectBinomial(ones, shots, Math.sin(theta / 2) ** 2);
    // Alice's two bits are uniform
    for (const k of ['00', '01', '10', '11']) expectBinomial(outcomes.get(k) ?? 0, shots, 0.25);
  });
});

describe('measurement semantics', () => {
  it('writes counts keys Qiskit-style: last declared register leftmost, c[n-1]..c[0]', () => {
    const r = run(
      `${HEADER}qreg q[3];\ncreg a[1];\ncreg b[2];\nx q[1];\nmeasure q[0] -> a[0];\nmeasure q[1] -> b[1];\nmeasure q[2] -> b[0];`,
      10,
    );
    expect(r.counts).toEqual({ '10 0': 10 });
  });

  it('leaves bits that are never measured at 0 and returns {} without classical bits', () => {
    expect(run(`${HEADER}qreg q[1];\ncreg c[3];\nx q[0];\nmeasure q[0] -> c[1];`, 5).counts).toEqual({ '010': 5 });
    expect(run(`${HEADER}qreg q[1];\nh q[0];`, 5).counts).toEqual({});
  });

  it('samples once when measurements are terminal and runs per shot otherwise', () => {
    const plan = (s: string) => planSimulation(parseQasm(`${HEADER}qreg q[2];\ncreg c[2];\n${s}`)).mode;
    expect(plan('h q[0];\nmeasure q[0] -> c[0];\nh q[1];\nmeasure q[1] -> c[1];')).toBe('sampled');
    expect(plan('reset q;\nh q[0];\nmeasure q -> c;')).toBe('sampled');
    expect(plan('if (c == 0) x q[0];\nmeasure q -> c;')).toBe('sampled');
    expect(plan('h q[0];\nmeasure q[0] -> c[0];\nx q[0];')).toBe('per-shot');
    expect(plan('h q[0];\nreset q[0];\nmeasure q -> c;')).toBe('per-shot');
    expect(plan('h q[0];\nmeasure q[0] -> c[0];\nif (c == 1) x q[1];\nmeasure q[1] -> c[1];')).toBe('per-shot');
  });

  it('resolves an if before any measurement statically (classical bits start at 0)', () => {
    expect(run(`${HEADER}qreg q[1];\ncreg c[1];\nif (c == 0) x q[0];\nmeasure q -> c;`, 20).counts).toEqual({
      '1': 20,
    });
    expect(run(`${HEADER}qreg q[1];\ncreg c[1];\nif (c == 1) x q[0];\nmeasure q -> c;`, 20).counts).toEqual({
      '0': 20,
    });
  });

  it('collapses on mid-circuit measurement and reset returns the qubit to |0>', () => {
    const r = run(
      `${HEADER}qreg q[2];\ncreg c[3];\nh q[0];\ncx q[0], q[1];\nmeasure q[0] -> c[0];\nreset q[0];\nmeasure q[0] -> c[1];\nmeasure q[1] -> c[2];`,
      2000,
    );
    // c1 (reset qubit) always 0; c2 (entangled partner) always equals c0
    expect(Object.keys(r.counts).sort()).toEqual(['000', '101']);
    expectBinomial(r.counts['101'] ?? 0, 2000, 0.5);
  });

  it('gives the same statistics whether shots branch on outcomes or run one by one (tight memory)', () => {
    // 3 mid-circuit measurements with feedback: 8 outcome paths
    const src = `${HEADER}qreg q[3];\ncreg a[1];\ncreg b[1];\ncreg c[1];\ncreg out[1];
ry(1.0) q[0];\nmeasure q[0] -> a[0];\nif (a == 1) ry(0.7) q[1];\nh q[1];\nmeasure q[1] -> b[0];
if (b == 0) x q[2];\nry(0.4) q[2];\nmeasure q[2] -> c[0];\nreset q[2];\nif (c == 1) x q[2];\nmeasure q[2] -> out[0];`;
    const p = parseQasm(src);
    const shots = 8000;
    const branched = simulate(p, { shots, seed: 3 });
    const oneByOne = simulate(p, { shots, seed: 3, maxMemoryBytes: 2 * 16 * 2 ** 3 });
    expect(branched.mode).toBe('per-shot');
    for (const r of [branched, oneByOne]) {
      expect(Object.values(r.counts).reduce((x, y) => x + y, 0)).toBe(shots);
      for (const key of Object.keys(r.counts)) {
        const [out, c] = key.split(' ');
        expect(out).toBe(c); // reset then conditional x copies c into out
      }
      let aOnes = 0;
      for (const [key, n] of Object.entries(r.counts)) if (key.endsWith('1')) aOnes += n;
      expectBinomial(aOnes, shots, Math.sin(0.5) ** 2);
    }
    for (const key of new Set([...Object.keys(branched.counts), ...Object.keys(oneByOne.counts)])) {
      const p1 = (branched.counts[key] ?? 0) / shots;
      const p2 = (oneByOne.counts[key] ?? 0) / shots;
      const sigma = Math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / shots);
      expect(Math.abs(p1 - p2), key).toBeLessThanOrEqual(5 * sigma + 2 / shots);
    }
  });

  it('measuring one qubit twice gives the same bit twice', () => {
    const r = run(`${HEADER}qreg q[1];\ncreg c[2];\nh q[0];\nmeasure q[0] -> c[0];\nmeasure q[0] -> c[1];`, 1000);
    expect(Object.keys(r.counts).sort()).toEqual(['00', '11']);
  });

  it('is reproducible for a seed and differs between seeds, in both modes', () => {
    for (const src of [
      `${HEADER}qreg q[4];\ncreg c[4];\nh q;\nmeasure q -> c;`,
      `${HEADER}qreg q[4];\ncreg c[4];\nh q;\nmeasure q -> c;\nh q;\nmeasure q -> c;`,
    ]) {
      const p = parseQasm(src);
      const a = simulate(p, { shots: 1000, seed: 42 });
      const b = simulate(p, { shots: 1000, seed: 42 });
      const c = simulate(p, { shots: 1000, seed: 43 });
      expect(a.counts).toEqual(b.counts);
      expect(a.counts).not.toEqual(c.counts);
      expect(a.seed).toBe(42);
    }
  });

  it('reports the seed it picked when none is given, and that seed reproduces the counts', () => {
    const p = parseQasm(`${HEADER}qreg q[3];\ncreg c[3];\nh q;\nmeasure q -> c;`);
    const a = simulate(p, { shots: 500 });
    expect(simulate(p, { shots: 500, seed: a.seed }).counts).toEqual(a.counts);
  });

  it('defaults to 1024 shots', () => {
    const r = simulate(parseQasm(`${HEADER}qreg q[1];\ncreg c[1];\nh q;\nmeasure q -> c;`), { seed: 1 });
    expect(r.shots).toBe(1024);
    expect((r.counts['0'] ?? 0) + (r.counts['1'] ?? 0)).toBe(1024);
  });
});

describe('limits', () => {
  const limitCode = (f: () => unknown): string | undefined => {
    try {
      f();
    } catch (err) {
      return err instanceof MeshError ? err.code : 'not-a-mesh-error';
    }
    return undefined;
  };

  it('rejects circuits over maxQubits or over the memory limit before allocating', () => {
    const p = parseQasm(`${HEADER}qreg q[5];\nqreg r[25];\nh q;`);
    expect(limitCode(() => simulate(p, { maxQubits: 29 }))).toBe(ErrorCode.LIMIT_EXCEEDED);
    // 30 qubits would need 16 GiB: refused by the memory limit, not by running out of memory
    expect(limitCode(() => simulate(p, { maxMemoryBytes: 64 * 2 ** 20 }))).toBe(ErrorCode.LIMIT_EXCEEDED);
    const small = parseQasm(`${HEADER}qreg q[21];\nh q;`);
    expect(limitCode(() => simulate(small, { maxMemoryBytes: 16 * 2 ** 21 - 1, shots: 1 }))).toBe(
      ErrorCode.LIMIT_EXCEEDED,
    );
  });

  it('returns the state vector only up to stateVectorMaxQubits', () => {
    const p = parseQasm(`${HEADER}qreg q[13];\nh q;`);
    expect(limitCode(() => simulate(p, { stateVector: true, shots: 1 }))).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(simulate(p, { stateVector: true, stateVectorMaxQubits: 13, shots: 1 }).stateVector).toHaveLength(2 ** 13);
  });

  it('rejects shots over maxShots and malformed shots and seeds', () => {
    const p = parseQasm(`${HEADER}qreg q[1];\ncreg c[1];\nmeasure q -> c;`);
    expect(limitCode(() => simulate(p, { shots: 11, maxShots: 10 }))).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(limitCode(() => simulate(p, { shots: 0 }))).toBe(ErrorCode.CONFIG_ERROR);
    expect(limitCode(() => simulate(p, { shots: 1.5 }))).toBe(ErrorCode.CONFIG_ERROR);
    expect(limitCode(() => simulate(p, { seed: -1 }))).toBe(ErrorCode.CONFIG_ERROR);
    expect(limitCode(() => simulate(p, { seed: 2 ** 32 }))).toBe(ErrorCode.CONFIG_ERROR);
  });

  it('simulateAsync stops between operations when aborted, with the abort reason', async () => {
    const ops = Array.from({ length: 200 }, (_, i) => `h q[${i % 12}];`).join('\n');
    const p = parseQasm(`${HEADER}qreg q[12];\ncreg c[12];\n${ops}\nmeasure q -> c;`);
    const controller = new AbortController();
    const reason = new MeshError(ErrorCode.SHUTTING_DOWN, 'draining');
    controller.abort(reason);
    await expect(simulateAsync(p, { signal: controller.signal })).rejects.toBe(reason);
  });

  it('simulateAsync stops with TIMEOUT once the deadline passes', async () => {
    let now = 0;
    const clock = { now: () => now, monotonicMs: () => now++, setTimeout: () => () => {} };
    const ops = Array.from({ length: 50 }, (_, i) => `cx q[${i % 3}], q[3];`).join('\n');
    const p = parseQasm(`${HEADER}qreg q[4];\n${ops}`);
    await expect(simulateAsync(p, { clock, deadlineMs: 10, shots: 1 })).rejects.toMatchObject({
      code: ErrorCode.TIMEOUT,
    });
    now = 0;
    await expect(simulateAsync(p, { clock, deadlineMs: 1e9, shots: 1 })).resolves.toMatchObject({ qubits: 4 });
  });
});
