/**
 * Benchmark: a random circuit of depth 20 (per layer: rz·ry on every qubit, then a brick of cx)
 * on our state-vector kernel and on the reference engine, `quantum-circuit`, in the same run.
 * Target: 20 qubits in at most 2 s. The reference engine is far slower; it is measured at the
 * largest size whose run is projected to finish within `REFERENCE_BUDGET_MS` (about 60 s), and
 * the ratio line compares both engines on that same circuit.
 *
 * Run: `npm run bench -- random-circuit`.
 */
import os from 'node:os';
import { parseQasm, simulate } from '@meshroute/backend-quantum';
import { benchLine, percentiles, reportBench } from '@meshroute/testing';
import { lcg } from '../test/lcg.js';
import { type GateCall, REFERENCE_GATES, referenceStateVector, toQasm } from '../test/reference-engine.js';

const DEPTH = 20;
const TARGET_QUBITS = 20;
const TARGET_MS = 2_000;
const REFERENCE_BUDGET_MS = 60_000;

const gate = (name: string) => REFERENCE_GATES.find((g) => g.name === name) as (typeof REFERENCE_GATES)[number];

/** The random circuit as gate calls (the same calls feed both engines). */
function randomCircuit(qubits: number, depth: number, seed: number): GateCall[] {
  const random = lcg(seed);
  const calls: GateCall[] = [];
  for (let d = 0; d < depth; d++) {
    for (let q = 0; q < qubits; q++) {
      calls.push({ gate: gate('rz'), params: [random() * 2 * Math.PI], qubits: [q] });
      calls.push({ gate: gate('ry'), params: [random() * 2 * Math.PI], qubits: [q] });
    }
    for (let q = d % 2; q + 1 < qubits; q += 2) calls.push({ gate: gate('cx'), params: [], qubits: [q, q + 1] });
  }
  return calls;
}

/** Wall time and CPU time (user + system of this process) of each run, ms. */
function measure(fn: () => unknown, iterations: number, warmup: number): { wall: number[]; cpu: number[] } {
  for (let i = 0; i < warmup; i++) fn();
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    fn();
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { wall, cpu };
}

function ours(qubits: number): { p: ReturnType<typeof percentiles>; cpu: ReturnType<typeof percentiles> } {
  const source = `${toQasm(qubits, randomCircuit(qubits, DEPTH, qubits))}\ncreg c[${qubits}];\nmeasure q -> c;`;
  // parse + simulate + sample 1024 shots: what a job pays
  const m = measure(() => simulate(parseQasm(source), { shots: 1024, seed: 1 }), qubits >= 18 ? 5 : 20, 1);
  return { p: percentiles(m.wall), cpu: percentiles(m.cpu) };
}

let lastReferenceCpu = percentiles([Number.NaN]);
function reference(qubits: number, iterations: number): ReturnType<typeof percentiles> {
  const calls = randomCircuit(qubits, DEPTH, qubits);
  const m = measure(() => referenceStateVector(qubits, calls), iterations, 0);
  lastReferenceCpu = percentiles(m.cpu);
  return percentiles(m.wall);
}

// Find the largest size the reference engine finishes within the budget: grow one qubit at a
// time while the next run, projected from the growth seen so far (about 2.5x per qubit), fits.
const refTimes = new Map<number, number>();
let refQubits = 8;
refTimes.set(refQubits, reference(refQubits, 1).p50);
while (refQubits < TARGET_QUBITS) {
  const now = refTimes.get(refQubits) as number;
  const before = refTimes.get(refQubits - 1);
  const growth = before === undefined ? 3 : Math.max(2, now / before);
  if (now * growth > REFERENCE_BUDGET_MS) break;
  refQubits++;
  refTimes.set(refQubits, reference(refQubits, 1).p50);
}
const last = refTimes.get(refQubits) as number;
const refStats = last * 3 < REFERENCE_BUDGET_MS ? reference(refQubits, 3) : percentiles([last]);
const refCpu = lastReferenceCpu;
const machine = { cores: os.availableParallelism(), loadAverage1m: Math.round((os.loadavg()[0] ?? 0) * 10) / 10 };
const oursSame = ours(refQubits);
reportBench(
  benchLine(`quantum.random-circuit.${refQubits}q-d${DEPTH}.vs-quantum-circuit`, 'ms', oursSame.p, refStats, {
    qubits: refQubits,
    depth: DEPTH,
    speedup: Math.round(refStats.p50 / oursSame.p.p50),
    cpu_p50: Math.round(oursSame.cpu.p50),
    baseline_cpu_p50: Math.round(refCpu.p50),
    ...machine,
    baselineEngine: 'quantum-circuit@0.9 (state vector only, no sampling)',
    note:
      refQubits < TARGET_QUBITS
        ? `reference measured at ${refQubits} qubits, the largest projected to finish within ${REFERENCE_BUDGET_MS} ms; ours includes parse and 1024-shot sampling`
        : 'ours includes parse and 1024-shot sampling',
  }),
);

const target = ours(TARGET_QUBITS);
reportBench({
  ...benchLine(`quantum.random-circuit.${TARGET_QUBITS}q-d${DEPTH}`, 'ms', target.p, refStats, {
    qubits: TARGET_QUBITS,
    depth: DEPTH,
    targetMs: TARGET_MS,
    meetsTarget: target.p.p50 <= TARGET_MS,
    // on a shared machine wall time includes waiting for a core; CPU time is the work done
    meetsTargetCpu: target.cpu.p50 <= TARGET_MS,
    cpu_p50: Math.round(target.cpu.p50),
    cpu_p99: Math.round(target.cpu.p99),
    ...machine,
  }),
  ...(refQubits < TARGET_QUBITS
    ? {
        baseline: Number.NaN, // printed as null: no baseline at this size
        ratio: Number.NaN,
        baseline_p99: Number.NaN,
        note: `quantum-circuit does not finish ${TARGET_QUBITS} qubits within ${REFERENCE_BUDGET_MS} ms; the ratio is on the ${refQubits}-qubit line`,
      }
    : {}),
});
