import { describe, expect, it } from 'vitest';
import { randomCalls, referenceStateVector, toQasm } from '../test/reference-engine.js';
import { lcg } from '../test/test-support.js';
import { FAST_PATH_GATES, parseQasm } from './compiler.js';
import { simulate } from './simulator.js';

type Amps = Array<[number, number]>;

function ours(source: string, fastPaths = true): Amps {
  return simulate(parseQasm(source, { fastPaths }), { shots: 1, seed: 1, stateVector: true }).stateVector as Amps;
}

/** Largest |a_i − e^{iγ} b_i| over the best global phase γ (taken from the largest amplitude). */
function distanceUpToPhase(a: Amps, b: Amps): number {
  let k = 0;
  for (let i = 1; i < a.length; i++)
    if (Math.hypot(...(a[i] as [number, number])) > Math.hypot(...(a[k] as [number, number]))) k = i;
  const [ar, ai] = a[k] as [number, number];
  const [br, bi] = b[k] as [number, number];
  const phase = Math.atan2(ai, ar) - Math.atan2(bi, br);
  const c = Math.cos(phase);
  const s = Math.sin(phase);
  let worst = 0;
  a.forEach(([xr, xi], i) => {
    const [yr, yi] = b[i] as [number, number];
    worst = Math.max(worst, Math.hypot(xr - (yr * c - yi * s), xi - (yr * s + yi * c)));
  });
  return worst;
}

describe('cross-check with the reference engine (quantum-circuit)', () => {
  it('matches probabilities to 1e-9 and amplitudes up to global phase on 60 random circuits of 1-8 qubits', () => {
    const random = lcg(20_240_601);
    for (let c = 0; c < 60; c++) {
      const qubits = 1 + (c % 8);
      const calls = randomCalls(qubits, 10 + Math.floor(random() * 40), random);
      const a = ours(toQasm(qubits, calls));
      const b = referenceStateVector(qubits, calls);
      expect(a).toHaveLength(2 ** qubits);
      a.forEach(([re, im], i) => {
        const [rr, ri] = b[i] as [number, number];
        expect(Math.abs(re * re + im * im - (rr * rr + ri * ri)), `circuit ${c}, basis state ${i}`).toBeLessThan(1e-9);
      });
      expect(distanceUpToPhase(a, b), `circuit ${c}`).toBeLessThan(1e-9);
    }
  });

  it('notices a wrong gate: a circuit that differs in one gate does not match', () => {
    const random = lcg(7);
    const calls = randomCalls(4, 20, random);
    const changed = [...calls, { gate: { name: 'rx', params: ['theta'], qubits: 1 }, params: [0.3], qubits: [2] }];
    expect(distanceUpToPhase(ours(toQasm(4, changed)), referenceStateVector(4, calls))).toBeGreaterThan(1e-3);
  });
});

describe('fast paths of the standard gates', () => {
  const arity: Record<string, [params: number, qubits: number]> = {
    cx: [0, 2],
    cy: [0, 2],
    cz: [0, 2],
    ch: [0, 2],
    csx: [0, 2],
    crx: [1, 2],
    cry: [1, 2],
    crz: [1, 2],
    cu1: [1, 2],
    cp: [1, 2],
    cu3: [3, 2],
    cu: [4, 2],
    ccx: [0, 3],
    c3x: [0, 4],
    c3sqrtx: [0, 4],
    c4x: [0, 5],
    swap: [0, 2],
    cswap: [0, 3],
  };

  it('covers every fast-path gate in this test', () => {
    expect(Object.keys(arity).sort()).toEqual([...FAST_PATH_GATES].sort());
  });

  /** Run `call` on a random product state of `n` qubits with fast paths on and off. */
  function fastAndBody(
    name: string,
    random: () => number,
  ): { fast: Amps; body: Amps; wires: number[]; n: number; prep: string } {
    const [np, nq] = arity[name] as [number, number];
    const n = nq + 1;
    const prep = [...Array(n).keys()]
      .map((q) => `u3(${random() * 6},${random() * 6},${random() * 6}) q[${q}];`)
      .join('\n');
    const wires = [...Array(n).keys()].sort(() => random() - 0.5).slice(0, nq);
    const ps = Array.from({ length: np }, () => ((random() - 0.5) * 8).toPrecision(17));
    const call = `${name}${np > 0 ? `(${ps.join(',')})` : ''} ${wires.map((w) => `q[${w}]`).join(',')};`;
    const src = `OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[${n}];\n${prep}\n${call}\n`;
    return { fast: ours(src, true), body: ours(src, false), wires, n, prep };
  }

  it('equals the qelib1.inc body of the gate exactly (global phase included) on random input states', () => {
    const random = lcg(99);
    for (const name of FAST_PATH_GATES.filter((g) => !['ch', 'c3sqrtx', 'c4x'].includes(g))) {
      for (let trial = 0; trial < 4; trial++) {
        const { fast, body } = fastAndBody(name, random);
        fast.forEach(([re, im], i) => {
          const [br, bi] = body[i] as [number, number];
          expect(Math.hypot(re - br, im - bi), `${name} trial ${trial} basis state ${i}`).toBeLessThan(1e-12);
        });
      }
    }
  });

  it('ch equals its body up to the global phase e^{iπ/4}', () => {
    const random = lcg(5);
    for (let trial = 0; trial < 4; trial++) {
      const { fast, body } = fastAndBody('ch', random);
      fast.forEach(([re, im], i) => {
        const [br, bi] = body[i] as [number, number];
        const c = Math.SQRT1_2;
        // body = e^{iπ/4} · fast
        expect(Math.hypot(br - (re * c - im * c), bi - (re * c + im * c))).toBeLessThan(1e-12);
      });
    }
  });

  it('c3sqrtx is the 3-controlled √X: applied twice it is c3x', () => {
    const random = lcg(6);
    for (let trial = 0; trial < 4; trial++) {
      const prep = [...Array(5).keys()]
        .map((q) => `u3(${random() * 6},${random() * 6},${random() * 6}) q[${q}];`)
        .join('\n');
      const head = `OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[5];\n${prep}\n`;
      const twice = ours(`${head}c3sqrtx q[4],q[0],q[2],q[1];\nc3sqrtx q[4],q[0],q[2],q[1];`);
      const once = ours(`${head}c3x q[4],q[0],q[2],q[1];`);
      twice.forEach(([re, im], i) => {
        expect(Math.hypot(re - (once[i] as [number, number])[0], im - (once[i] as [number, number])[1])).toBeLessThan(
          1e-12,
        );
      });
      // and a single application is not c3x
      expect(distanceUpToPhase(ours(`${head}c3sqrtx q[4],q[0],q[2],q[1];`), once)).toBeGreaterThan(1e-3);
    }
  });

  it('c4x flips the target exactly where all four controls are 1', () => {
    const random = lcg(8);
    const { fast, wires, n, prep } = fastAndBody('c4x', random);
    const before = ours(`OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[${n}];\n${prep}\n`);
    const controls = wires.slice(0, 4).reduce((m, w) => m | (1 << w), 0);
    const target = 1 << (wires[4] as number);
    fast.forEach(([re, im], i) => {
      const from = (i & controls) === controls ? i ^ target : i;
      const [br, bi] = before[from] as [number, number];
      expect(Math.hypot(re - br, im - bi)).toBeLessThan(1e-12);
    });
  });
});
