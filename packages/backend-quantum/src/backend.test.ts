import {
  type BackendJob,
  DEFAULT_WORKLOAD_LIMITS,
  ErrorCode,
  type Logger,
  MeshError,
  type WorkloadSpec,
} from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import { createQuantumBackend, fillTemplate } from './backend.js';
import { maxQubitsForMemory, resolveQuantumBackendOptions } from './options.js';

const BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n';
const encode = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));

function workload(limits: Partial<WorkloadSpec['limits']> = {}): WorkloadSpec {
  return {
    schema: 'meshroute.workload/v1',
    name: 'qasm',
    version: '1',
    artifacts: {},
    limits: { ...DEFAULT_WORKLOAD_LIMITS, ...limits },
    capabilities: [],
  };
}

function job(
  input: unknown,
  options: { artifact?: string; limits?: Partial<WorkloadSpec['limits']>; signal?: AbortSignal } = {},
): BackendJob {
  return {
    workload: workload(options.limits),
    artifact: encode(options.artifact ?? ''),
    input: input === undefined ? new Uint8Array() : encode(input),
    contentType: 'application/json',
    signal: options.signal ?? new AbortController().signal,
  };
}

async function failure(p: Promise<unknown>): Promise<MeshError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(MeshError);
    return err as MeshError;
  }
  throw new Error('expected the job to fail');
}

describe('createQuantumBackend', () => {
  const backend = createQuantumBackend({ maxQubits: 20 });

  it('is a quantum backend and reports its capacity in facts()', () => {
    expect(backend.kind).toBe('quantum');
    expect(backend.facts()).toMatchObject({
      simulator: 'meshroute-statevector',
      maxQubits: 20,
      stateVectorMaxQubits: 12,
      maxShots: 1_000_000,
    });
  });

  it('runs the program given in the input: { qasm, shots, seed } → { counts, shots, seed, qubits }', async () => {
    const out = await backend.run(job({ qasm: BELL, shots: 2000, seed: 11 }));
    expect(out.contentType).toBe('application/json');
    const json = out.json as { counts: Record<string, number>; shots: number; seed: number; qubits: number };
    expect(Object.keys(json.counts).sort()).toEqual(['00', '11']);
    expect((json.counts['00'] ?? 0) + (json.counts['11'] ?? 0)).toBe(2000);
    expect(json).toMatchObject({ shots: 2000, seed: 11, qubits: 2 });
    expect(json).not.toHaveProperty('stateVector');
    expect(out.executionMs).toBeGreaterThanOrEqual(0);
    const again = await backend.run(job({ qasm: BELL, shots: 2000, seed: 11 }));
    expect(again.json).toEqual(out.json);
  });

  it('uses the workload artifact as the program when the input has no qasm, filling {{params}}', async () => {
    const template =
      'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nrx({{ theta }}) q[0];\nmeasure q -> c;\n';
    const one = await backend.run(job({ params: { theta: 'pi' }, shots: 50, seed: 1 }, { artifact: template }));
    expect((one.json as { counts: unknown }).counts).toEqual({ '1': 50 });
    const zero = await backend.run(job({ params: { theta: 0 }, shots: 50, seed: 1 }, { artifact: template }));
    expect((zero.json as { counts: unknown }).counts).toEqual({ '0': 50 });
    const e = await failure(backend.run(job({ shots: 5 }, { artifact: template })));
    expect(e.message).toMatch(/placeholder \{\{theta\}\} has no value/);
  });

  it('runs with an empty input on the artifact with 1024 shots by default', async () => {
    const out = await backend.run(job(undefined, { artifact: BELL }));
    expect((out.json as { shots: number }).shots).toBe(1024);
  });

  it('returns the state vector on request for small circuits', async () => {
    const out = await backend.run(job({ qasm: BELL.replace('measure q -> c;', ''), stateVector: true, shots: 1 }));
    const sv = (out.json as { stateVector: Array<[number, number]> }).stateVector;
    expect(sv).toHaveLength(4);
    expect(sv[0]?.[0]).toBeCloseTo(Math.SQRT1_2, 12);
    expect(sv[3]?.[0]).toBeCloseTo(Math.SQRT1_2, 12);
    expect(Math.hypot(...(sv[1] as [number, number]), ...(sv[2] as [number, number]))).toBeLessThan(1e-15);
  });

  it('fails malformed programs with WORKLOAD_FAILED naming the line, and keeps serving', async () => {
    const e = await failure(backend.run(job({ qasm: 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\nfoo q[0];' })));
    expect(e.code).toBe(ErrorCode.WORKLOAD_FAILED);
    expect(e.message).toMatch(/^main:4:1: unknown gate "foo"/);
    expect(e.details).toMatchObject({ line: 4, col: 1 });
    await expect(backend.run(job({ qasm: BELL, shots: 1 }))).resolves.toBeDefined();
  });

  it('rejects bad input naming the field', async () => {
    const cases: Array<[unknown, RegExp]> = [
      ['not json', /not JSON/],
      [[1, 2], /JSON object/],
      [{ qasm: 5 }, /"qasm" must be a string/],
      [{ qasm: BELL, shots: 0 }, /"shots" must be a positive integer/],
      [{ qasm: BELL, seed: -3 }, /"seed" must be an integer/],
      [{ qasm: BELL, stateVector: 'yes' }, /"stateVector" must be true or false/],
      [{ qasm: BELL, shot: 3 }, /unknown field "shot"/],
      [{ params: { theta: 'x; measure' } }, /params\.theta must be/],
      [{}, /no program/],
    ];
    for (const [input, message] of cases) {
      const e = await failure(backend.run(job(input)));
      expect(e.code, JSON.stringify(input)).toBe(ErrorCode.WORKLOAD_FAILED);
      expect(e.message).toMatch(message);
    }
  });

  it('rejects circuits over capacity or over the workload memory limit up front with LIMIT_EXCEEDED', async () => {
    const big = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[21];\nh q;\n';
    expect((await failure(backend.run(job({ qasm: big })))).code).toBe(ErrorCode.LIMIT_EXCEEDED);
    const mid = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[17];\nh q;\n';
    const e = await failure(backend.run(job({ qasm: mid }, { limits: { memoryBytes: 2 ** 20 } })));
    expect(e.code).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(e.message).toMatch(/over the limit of 1048576/);
    const sv = await failure(backend.run(job({ qasm: 'OPENQASM 2.0;\nqreg q[13];', stateVector: true })));
    expect(sv.code).toBe(ErrorCode.LIMIT_EXCEEDED);
  });

  it('refuses registers over capacity before allocating anything: huge qreg, huge creg → LIMIT_EXCEEDED', async () => {
    const huge = await failure(backend.run(job({ qasm: 'OPENQASM 2.0;\nqreg q[99999999999999999999];' })));
    expect(huge.code).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(huge.message).toMatch(/over this simulator's capacity of 20/);
    const creg = await failure(
      backend.run(job({ qasm: 'OPENQASM 2.0;\nqreg q[1];\ncreg c[2000000000];\nmeasure q[0] -> c[0];' })),
    );
    expect(creg.code).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(creg.message).toBe("the circuit has 2000000000 classical bits, over this simulator's limit of 1024");
  });

  it('enforces the workload output limit', async () => {
    const wide = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[10];\ncreg c[10];\nh q;\nmeasure q -> c;\n';
    const e = await failure(backend.run(job({ qasm: wide, shots: 5000 }, { limits: { outputBytes: 200 } })));
    expect(e.code).toBe(ErrorCode.LIMIT_EXCEEDED);
  });

  it('stops when the job signal aborts, with the abort reason', async () => {
    const controller = new AbortController();
    const reason = new MeshError(ErrorCode.TIMEOUT, 'job timed out', { retryable: true });
    controller.abort(reason);
    const e = await failure(backend.run(job({ qasm: BELL }, { signal: controller.signal })));
    expect(e).toBe(reason);
  });

  it('stops with TIMEOUT when the workload timeout passes', async () => {
    let now = 0;
    const slowClock = { now: () => now, monotonicMs: () => (now += 5), setTimeout: () => () => {} };
    const b = createQuantumBackend({ maxQubits: 10, clock: slowClock });
    const ops = Array.from({ length: 100 }, (_, i) => `cx q[${i % 3}], q[3];`).join('\n');
    const e = await failure(
      b.run(job({ qasm: `OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[4];\n${ops}` }, { limits: { timeoutMs: 100 } })),
    );
    expect(e.code).toBe(ErrorCode.TIMEOUT);
  });

  it('refuses work after close()', async () => {
    const b = createQuantumBackend({ maxQubits: 4 });
    await b.close();
    expect((await failure(b.run(job({ qasm: BELL })))).code).toBe(ErrorCode.SHUTTING_DOWN);
  });
});

describe('createQuantumBackend in a worker thread', () => {
  const heavy = `OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[18];\ncreg c[18];\nh q;\n${Array.from(
    { length: 400 },
    (_, i) => `cx q[${i % 17}], q[${(i % 17) + 1}];\nrx(0.1) q[${i % 18}];`,
  ).join('\n')}\nmeasure q -> c;`;

  it('gives the same result as the in-thread run for the same seed', async () => {
    const inWorker = createQuantumBackend({ maxQubits: 20, workerMinQubits: 0 });
    const inThread = createQuantumBackend({ maxQubits: 20, workerMinQubits: Number.POSITIVE_INFINITY });
    const input = { qasm: BELL.replace('measure q -> c;', 'rx(0.3) q[1];\nmeasure q -> c;'), shots: 3000, seed: 5 };
    const a = await inWorker.run(job(input));
    const b = await inThread.run(job(input));
    expect(a.json).toEqual(b.json);
    expect(Object.keys((a.json as { counts: object }).counts).length).toBe(4);
  });

  it('reports errors from the worker with their code', async () => {
    const b = createQuantumBackend({ maxQubits: 20, workerMinQubits: 0 });
    // shots are checked by the simulation itself, inside the worker
    const e = await failure(b.run(job({ qasm: BELL, shots: 2_000_000 })));
    expect(e.code).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(e.message).toMatch(/shots: 2000000 is over the limit of 1000000/);
  });

  it('terminates the worker when the job is aborted while it runs, with the abort reason', async () => {
    const b = createQuantumBackend({ maxQubits: 20, workerMinQubits: 0 });
    const controller = new AbortController();
    const reason = new MeshError(ErrorCode.SHUTTING_DOWN, 'agent draining');
    const running = b.run(
      job({ qasm: heavy, shots: 10 }, { signal: controller.signal, limits: { timeoutMs: 600_000 } }),
    );
    controller.abort(reason);
    expect(await failure(running)).toBe(reason);
  });

  it('parses a program that expands past inThreadMaxOperations, or is longer than inThreadMaxSourceChars, in a worker', async () => {
    const ran: { worker: unknown }[] = [];
    const logger: Logger = {
      debug: (msg, fields) => {
        if (msg === 'quantum job done') ran.push({ worker: fields?.worker });
      },
      info: () => {},
      warn: () => {},
      error: () => {},
      child: () => logger,
    };
    // 3 qubits (under workerMinQubits): only the size of the program sends it to a worker.
    const b = createQuantumBackend({
      maxQubits: 20,
      inThreadMaxOperations: 1000,
      inThreadMaxSourceChars: 4096,
      logger,
    });
    let nested = 'OPENQASM 2.0;\ninclude "qelib1.inc";\ngate g0 a { x a; }\n';
    for (let k = 1; k <= 11; k++) nested += `gate g${k} a { g${k - 1} a; g${k - 1} a; }\n`;
    nested += 'qreg q[3];\ncreg c[3];\ng11 q[0];\nx q[1];\nmeasure q -> c;\n'; // 2048 x on q[0]: identity
    const long = `OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\n${'x q[2];\n'.repeat(601)}measure q -> c;\n`;
    const small = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\nx q[0];\nmeasure q -> c;\n';
    expect((await b.run(job({ qasm: nested, shots: 5 }))).json).toMatchObject({ counts: { '010': 5 } });
    expect((await b.run(job({ qasm: long, shots: 5 }))).json).toMatchObject({ counts: { '100': 5 } });
    expect((await b.run(job({ qasm: small, shots: 5 }))).json).toMatchObject({ counts: { '001': 5 } });
    expect(ran).toEqual([{ worker: true }, { worker: true }, { worker: false }]);
    // A program that expands past maxOperations still fails with LIMIT_EXCEEDED naming the line, from the worker.
    let blowUp = 'OPENQASM 2.0;\ninclude "qelib1.inc";\ngate g0 a { x a; }\n';
    for (let k = 1; k <= 30; k++) blowUp += `gate g${k} a { g${k - 1} a; g${k - 1} a; }\n`;
    const e = await failure(b.run(job({ qasm: `${blowUp}qreg q[1];\ng30 q[0];\n` })));
    expect(e.code).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(e.message).toMatch(/^main:35:1: the program expands to more than 1000000 operations/);
  });

  it('terminates the worker at the workload timeout with TIMEOUT', async () => {
    const b = createQuantumBackend({ maxQubits: 20, workerMinQubits: 0 });
    const e = await failure(b.run(job({ qasm: heavy, shots: 10 }, { limits: { timeoutMs: 30 } })));
    expect(e.code).toBe(ErrorCode.TIMEOUT);
  });
});

describe('options', () => {
  it('derives maxQubits from memory: two state vectors of 16 bytes per amplitude within the budget', () => {
    expect(maxQubitsForMemory(16 * 2 ** 30, 16 * 2 ** 30, 0.25)).toBe(27);
    expect(maxQubitsForMemory(16 * 2 ** 30, 2 ** 30, 0.25)).toBe(25); // free memory is the tighter bound
    expect(maxQubitsForMemory(2 ** 50, 2 ** 50, 1)).toBe(30);
    expect(resolveQuantumBackendOptions({ totalMemoryBytes: 2 ** 30, freeMemoryBytes: 2 ** 30 }).maxQubits).toBe(23);
  });

  it('rejects invalid options naming the option', () => {
    expect(() => resolveQuantumBackendOptions({ maxQubits: 31 })).toThrow(/maxQubits/);
    expect(() => resolveQuantumBackendOptions({ memoryFraction: 0 })).toThrow(/memoryFraction/);
    expect(() => resolveQuantumBackendOptions({ defaultShots: 10, maxShots: 5 })).toThrow(/defaultShots/);
  });

  it('fills templates and leaves text without placeholders alone', () => {
    expect(fillTemplate('rx({{a}}) q[0]; ry({{ b }}) q[0];', { a: 1.5, b: 'pi/4' })).toBe(
      'rx(1.5) q[0]; ry(pi/4) q[0];',
    );
    expect(fillTemplate('x q[0];', {})).toBe('x q[0];');
  });
});
