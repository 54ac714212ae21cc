import { ConfigError, ErrorCode } from '@meshroute/mesh';
import { afterEach, describe, expect, it } from 'vitest';
import { buildClassifyModel } from '../scripts/onnx-models.mjs';
import { createGpuBackend, type GpuBackend } from './backend.js';
import { detectGpu, type GpuProbes, parseNvidiaSmiQuery, systemGpuProbes } from './device.js';
import { resolveGpuBackendOptions } from './options.js';
import { gpuJob } from './test-support/jobs.js';

const H100 = 'NVIDIA H100 80GB HBM3, 81559 MiB\n';

function probes(opts: { device?: boolean; list?: string; query?: string; throws?: boolean }): GpuProbes & {
  calls: string[];
} {
  const calls: string[] = [];
  return {
    calls,
    fileExists(path) {
      calls.push(`exists ${path}`);
      if (opts.throws) throw new Error('EACCES');
      return opts.device ?? false;
    },
    nvidiaSmi(args) {
      calls.push(`nvidia-smi ${args.join(' ')}`);
      if (opts.throws) throw new Error('boom');
      return args[0] === '-L' ? opts.list : opts.query;
    },
  };
}

describe('parseNvidiaSmiQuery', () => {
  it('reads model and memory (MiB) of the first GPU', () => {
    expect(parseNvidiaSmiQuery(`${H100}NVIDIA H100 80GB HBM3, 81559 MiB\n`)).toEqual({
      gpuModel: 'NVIDIA H100 80GB HBM3',
      gpuMemoryBytes: 81559 * 1024 * 1024,
    });
  });
  it('keeps the model when memory is unreadable, and rejects empty output', () => {
    expect(parseNvidiaSmiQuery('Tesla T4, [N/A]')).toEqual({ gpuModel: 'Tesla T4', gpuMemoryBytes: undefined });
    expect(parseNvidiaSmiQuery('\n\n')).toBeUndefined();
  });
});

describe('detectGpu', () => {
  it('finds no GPU when neither /dev/nvidia0 nor nvidia-smi is there, and says so', () => {
    const p = probes({});
    const d = detectGpu(p);
    expect(d.present).toBe(false);
    expect(d.reason).toMatch(/\/dev\/nvidia0 does not exist/);
    expect(p.calls).toEqual(['exists /dev/nvidia0', 'nvidia-smi -L']);
  });
  it('finds a GPU by its device file and reads model and memory from nvidia-smi', () => {
    const d = detectGpu(probes({ device: true, query: H100 }));
    expect(d).toEqual({
      present: true,
      via: 'device-file',
      gpuModel: 'NVIDIA H100 80GB HBM3',
      gpuMemoryBytes: 81559 * 1024 * 1024,
      reason: undefined,
    });
  });
  it('finds a GPU through `nvidia-smi -L` without a device file (containers)', () => {
    const d = detectGpu(probes({ list: 'GPU 0: NVIDIA A10G (UUID: GPU-1234)\n', query: 'NVIDIA A10G, 23028 MiB' }));
    expect(d.present).toBe(true);
    expect(d.via).toBe('nvidia-smi');
    expect(d.gpuModel).toBe('NVIDIA A10G');
  });
  it('does not count nvidia-smi output that lists no GPU, and survives probes that throw', () => {
    expect(detectGpu(probes({ list: 'No devices were found\n' })).present).toBe(false);
    expect(detectGpu(probes({ throws: true })).present).toBe(false);
  });
});

describe('options', () => {
  it('fills defaults', () => {
    const o = resolveGpuBackendOptions();
    expect(o).toMatchObject({ maxBatchSize: 64, maxBatchDelayMs: 2, executionProvider: 'auto', maxCachedSessions: 8 });
    expect(o.workers === 1 || o.workers === 2).toBe(true);
  });
  it.each([
    [{ workers: 0 }, 'workers'],
    [{ maxBatchSize: 1.5 }, 'maxBatchSize'],
    [{ maxBatchDelayMs: -1 }, 'maxBatchDelayMs'],
    [{ executionProvider: 'tpu' as 'cpu' }, 'executionProvider'],
    [{ cudaDeviceId: -1 }, 'cudaDeviceId'],
  ])('rejects %j naming the option', (input, option) => {
    expect(() => resolveGpuBackendOptions(input)).toThrow(ConfigError);
    try {
      resolveGpuBackendOptions(input);
    } catch (err) {
      expect((err as ConfigError).option).toBe(option);
    }
  });
});

describe('execution provider choice', () => {
  let backend: GpuBackend | undefined;
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  it('explicit cuda without a GPU is a CONFIG_ERROR at creation, not a crash', () => {
    expect(() => createGpuBackend({ executionProvider: 'cuda', probes: probes({}) })).toThrow(
      expect.objectContaining({ code: ErrorCode.CONFIG_ERROR, option: 'executionProvider' }),
    );
  });

  it('auto without a GPU falls back to CPU explicitly and reports why in facts()', async () => {
    backend = createGpuBackend({ workers: 1, probes: probes({}) });
    const facts = await backend.ready();
    expect(facts).toMatchObject({ device: 'cpu', state: 'ready', executionProvider: 'auto' });
    expect(facts.fallbackReason).toMatch(/no NVIDIA GPU/);
    expect(facts.onnxruntime).toMatch(/^\d+\.\d+\.\d+/);
    expect(facts.gpuModel).toBeUndefined();
  });

  it('cpu asked for: no probes run, no fallback reason', async () => {
    const p = probes({ device: true });
    backend = createGpuBackend({ workers: 1, executionProvider: 'cpu', probes: p });
    const facts = await backend.ready();
    expect(facts.device).toBe('cpu');
    expect(facts.fallbackReason).toBeUndefined();
    expect(p.calls).toEqual([]);
  });

  it('auto with a GPU present tries a CUDA session; where that fails it falls back to CPU with the reason', async () => {
    backend = createGpuBackend({ workers: 1, probes: probes({ device: true, query: H100 }) });
    const facts = await backend.ready();
    expect(facts.gpuModel).toBe('NVIDIA H100 80GB HBM3');
    expect(facts.gpuMemoryBytes).toBe(81559 * 1024 * 1024);
    if (facts.device === 'cpu') expect(facts.fallbackReason).toMatch(/a GPU is present but a CUDA session failed/);
    else expect(facts.fallbackReason).toBeUndefined(); // a machine where CUDA really works
    const m = buildClassifyModel();
    const out = await backend.run(gpuJob(m.bytes, { x: [new Array(64).fill(0)] }));
    expect((out.json as { outputs: { probs: { dims: number[] } } }).outputs.probs.dims).toEqual([1, 10]);
  });

  it('explicit cuda with a GPU present but no working CUDA session: ready() and run() reject with CONFIG_ERROR', async () => {
    backend = createGpuBackend({
      workers: 1,
      executionProvider: 'cuda',
      probes: probes({ device: true, query: H100 }),
    });
    const ready = await backend.ready().then(
      (f) => f,
      (e: unknown) => e,
    );
    if ('device' in (ready as object)) return; // CUDA really works on this machine
    expect(ready).toMatchObject({ code: ErrorCode.CONFIG_ERROR, option: 'executionProvider' });
    expect(backend.facts().state).toBe('failed');
    const m = buildClassifyModel();
    await expect(backend.run(gpuJob(m.bytes, { x: [new Array(64).fill(0)] }))).rejects.toMatchObject({
      code: ErrorCode.CONFIG_ERROR,
    });
  });

  it('on this machine (real probes): the device and any fallback are reported', async () => {
    backend = createGpuBackend({ workers: 1, probes: systemGpuProbes });
    const facts = await backend.ready();
    if (!detectGpu().present) {
      expect(facts.device).toBe('cpu');
      expect(facts.fallbackReason).toMatch(/no NVIDIA GPU/);
    } else {
      expect(facts.device === 'cuda' || typeof facts.fallbackReason === 'string').toBe(true);
    }
  });
});
