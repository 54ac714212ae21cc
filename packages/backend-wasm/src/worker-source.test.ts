/**
 * The `workerSource` option: the pool starts its workers from the given source (with
 * `eval: true`) instead of the package's worker file, as the single-executable edge agent does.
 */
import { ConfigError } from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import { createWasmBackend } from './index.js';
import { example, job, text, workload } from './test-support/modules.js';

/** A stand-in worker speaking the pool protocol: answers every job with `custom:<jobId>`. */
const CUSTOM_WORKER = `
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (msg) => {
  parentPort.postMessage({
    type: 'result',
    jobId: msg.jobId,
    result: { ok: true, output: new TextEncoder().encode('custom:' + msg.jobId), stderr: new Uint8Array(0), executionMs: 0 },
  });
});
parentPort.postMessage({ type: 'ready' });
`;

describe('workerSource', () => {
  it('starts the pool workers from the given source', async () => {
    const backend = createWasmBackend({ workers: 1, workerSource: CUSTOM_WORKER });
    try {
      const out = await backend.run(job(workload(), example('checksum'), '123456789'));
      expect(text(out.bytes)).toMatch(/^custom:\d+$/);
    } finally {
      await backend.close();
    }
  });

  it('without it the package worker runs the module', async () => {
    const backend = createWasmBackend({ workers: 1 });
    try {
      const out = await backend.run(job(workload(), example('checksum'), '123456789'));
      expect(text(out.bytes)).toBe('cbf43926');
    } finally {
      await backend.close();
    }
  });

  it('refuses an empty source, naming the option', () => {
    expect(() => createWasmBackend({ workerSource: '  ' })).toThrow(ConfigError);
    expect(() => createWasmBackend({ workerSource: '' })).toThrow(/workerSource/);
  });
});
