/**
 * The reference engine for tests and the benchmark: the `quantum-circuit` npm package
 * (a dev dependency). It silently skips gates it does not know, so callers only give it the
 * gates listed in {@link REFERENCE_GATES}. Not exported from the package.
 */
import { createRequire } from 'node:module';

interface QuantumCircuitInstance {
  appendGate(name: string, wires: number | number[], options?: { params?: Record<string, string> }): void;
  run(): void;
  state: Record<string, { re: number; im: number }>;
}
type QuantumCircuitClass = new (qubits: number) => QuantumCircuitInstance;

const QuantumCircuit = createRequire(import.meta.url)('quantum-circuit') as QuantumCircuitClass;

/** A gate both engines know: its OpenQASM name, parameter names in `quantum-circuit`, qubit count. */
export interface ReferenceGate {
  name: string;
  params: readonly string[];
  qubits: number;
}

/** Gates with the same meaning in `qelib1.inc` and `quantum-circuit` (up to global phase). */
export const REFERENCE_GATES: readonly ReferenceGate[] = [
  { name: 'h', params: [], qubits: 1 },
  { name: 'x', params: [], qubits: 1 },
  { name: 'y', params: [], qubits: 1 },
  { name: 'z', params: [], qubits: 1 },
  { name: 's', params: [], qubits: 1 },
  { name: 'sdg', params: [], qubits: 1 },
  { name: 't', params: [], qubits: 1 },
  { name: 'tdg', params: [], qubits: 1 },
  { name: 'rx', params: ['theta'], qubits: 1 },
  { name: 'ry', params: ['theta'], qubits: 1 },
  { name: 'rz', params: ['phi'], qubits: 1 },
  { name: 'u1', params: ['lambda'], qubits: 1 },
  { name: 'u2', params: ['phi', 'lambda'], qubits: 1 },
  { name: 'u3', params: ['theta', 'phi', 'lambda'], qubits: 1 },
  { name: 'cx', params: [], qubits: 2 },
  { name: 'cy', params: [], qubits: 2 },
  { name: 'cz', params: [], qubits: 2 },
  { name: 'ch', params: [], qubits: 2 },
  { name: 'swap', params: [], qubits: 2 },
  { name: 'crx', params: ['theta'], qubits: 2 },
  { name: 'cry', params: ['theta'], qubits: 2 },
  { name: 'crz', params: ['phi'], qubits: 2 },
  { name: 'cu1', params: ['lambda'], qubits: 2 },
  { name: 'cu3', params: ['theta', 'phi', 'lambda'], qubits: 2 },
  { name: 'ccx', params: [], qubits: 3 },
  { name: 'cswap', params: [], qubits: 3 },
];

/** One gate application. */
export interface GateCall {
  gate: ReferenceGate;
  params: readonly number[];
  qubits: readonly number[];
}

/** The calls as an OpenQASM 2.0 program (one register `q`, no measurement). */
export function toQasm(qubits: number, calls: readonly GateCall[]): string {
  const lines = ['OPENQASM 2.0;', 'include "qelib1.inc";', `qreg q[${qubits}];`];
  for (const c of calls) {
    const ps = c.params.length > 0 ? `(${c.params.map((p) => p.toPrecision(17)).join(',')})` : '';
    lines.push(`${c.gate.name}${ps} ${c.qubits.map((q) => `q[${q}]`).join(',')};`);
  }
  return lines.join('\n');
}

/** Run the calls on `quantum-circuit`; returns the amplitudes `[re, im]` by basis index (qubit 0 least significant). */
export function referenceStateVector(qubits: number, calls: readonly GateCall[]): Array<[number, number]> {
  const qc = new QuantumCircuit(qubits);
  for (const c of calls) {
    const params: Record<string, string> = {};
    c.gate.params.forEach((name, i) => {
      params[name] = String(c.params[i]);
    });
    qc.appendGate(c.gate.name, c.qubits.length === 1 ? (c.qubits[0] as number) : [...c.qubits], { params });
  }
  qc.run();
  const out: Array<[number, number]> = [];
  for (let i = 0; i < 2 ** qubits; i++) {
    const a = qc.state[String(i)];
    out.push([a?.re ?? 0, a?.im ?? 0]);
  }
  return out;
}

/** A random circuit of `count` gates from {@link REFERENCE_GATES}, drawn with `random`. */
export function randomCalls(qubits: number, count: number, random: () => number): GateCall[] {
  const usable = REFERENCE_GATES.filter((g) => g.qubits <= qubits);
  const calls: GateCall[] = [];
  for (let k = 0; k < count; k++) {
    const gate = usable[Math.floor(random() * usable.length)] as ReferenceGate;
    const pool = [...Array(qubits).keys()];
    const chosen: number[] = [];
    for (let j = 0; j < gate.qubits; j++) chosen.push(pool.splice(Math.floor(random() * pool.length), 1)[0] as number);
    calls.push({ gate, params: gate.params.map(() => (random() - 0.5) * 4 * Math.PI), qubits: chosen });
  }
  return calls;
}
