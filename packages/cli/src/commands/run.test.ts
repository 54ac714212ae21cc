import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runLocal } from './run.js';

const repo = (p: string) => fileURLToPath(new URL(`../../../../${p}`, import.meta.url));

describe('meshroute run (local job)', () => {
  it('runs a WebAssembly command and gives its stdout', async () => {
    const { outcome } = await runLocal({
      backend: 'wasm',
      artifact: repo('packages/backend-wasm/build/checksum.wasm'),
      input: '123456789',
    });
    expect(outcome).toEqual({ ok: true, output: 'cbf43926' });
  });

  it('runs the OpenQASM program of the input with shots and seed, reproducibly', async () => {
    const input = JSON.stringify({
      qasm: 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nx q[0];\nmeasure q -> c;',
    });
    const { outcome } = await runLocal({
      backend: 'quantum',
      artifact: repo('deploy/workloads/qasm/bell.qasm'),
      input,
      shots: 25,
      seed: 3,
    });
    expect(outcome).toEqual({ ok: true, counts: { '1': 25 } });
    const bell = await runLocal({
      backend: 'quantum',
      artifact: repo('deploy/workloads/qasm/bell.qasm'),
      shots: 200,
      seed: 9,
    });
    const again = await runLocal({
      backend: 'quantum',
      artifact: repo('deploy/workloads/qasm/bell.qasm'),
      shots: 200,
      seed: 9,
    });
    expect(bell.outcome).toEqual(again.outcome);
    expect(Object.keys((bell.outcome as { counts: object }).counts).sort()).toEqual(['00', '11']);
  });

  it('reports failures as { ok: false, error: { code, message } }', async () => {
    expect((await runLocal({ backend: 'wasm', artifact: '/nonexistent.wasm' })).outcome).toMatchObject({
      ok: false,
      error: { code: 'ARTIFACT_ERROR' },
    });
    expect(
      (
        await runLocal({
          backend: 'quantum',
          artifact: repo('deploy/workloads/qasm/bell.qasm'),
          input: 'not json',
          shots: 5,
        })
      ).outcome,
    ).toMatchObject({ ok: false, error: { code: 'CONFIG_ERROR', message: expect.stringContaining('--input') } });
    expect(
      (await runLocal({ backend: 'wasm', artifact: repo('deploy/workloads/qasm/bell.qasm') })).outcome,
    ).toMatchObject({
      ok: false,
    });
  });
});
