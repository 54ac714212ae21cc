import { readFileSync } from 'node:fs';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import {
  buildClassifyModel,
  buildFixedModel,
  buildMixedModel,
  buildProbeModel,
  classifyReference,
} from '../scripts/onnx-models.mjs';
import { EXAMPLE_MODELS } from './example-models.js';
import { probeModelBytes } from './probe-model.js';
import { randomRows } from './test-support/jobs.js';

const cpu: InferenceSession.SessionOptions = { executionProviders: ['cpu'], logSeverityLevel: 3 };

describe('model builder', () => {
  it('builds the same classify bytes every time (seeded weights) and different bytes for another seed', () => {
    const a = buildClassifyModel();
    const b = buildClassifyModel();
    expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(true);
    expect(Buffer.from(buildClassifyModel({ seed: 7 }).bytes).equals(Buffer.from(a.bytes))).toBe(false);
  });

  it('classify loads in onnxruntime-node with a dynamic batch dimension and matches the JS reference', async () => {
    const model = buildClassifyModel();
    const session = await InferenceSession.create(model.bytes, cpu);
    expect(session.inputMetadata).toEqual([{ name: 'x', isTensor: true, type: 'float32', shape: ['N', 64] }]);
    expect(session.outputMetadata).toEqual([{ name: 'probs', isTensor: true, type: 'float32', shape: ['N', 10] }]);
    const rows = randomRows(5, model.features, 11);
    const out = await session.run({ x: new Tensor('float32', Float32Array.from(rows.flat()), [5, 64]) });
    const probs = out['probs'];
    expect(probs?.dims).toEqual([5, 10]);
    const expected = classifyReference(model, rows).flat();
    const got = Array.from(probs?.data as Float32Array);
    got.forEach((v, i) => {
      expect(v).toBeCloseTo(expected[i] as number, 5);
    });
    // softmax rows sum to 1
    for (let r = 0; r < 5; r++) expect(got.slice(r * 10, r * 10 + 10).reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
    await session.release();
  });

  it('the example model metadata matches the built classify model', () => {
    const m = buildClassifyModel();
    expect(EXAMPLE_MODELS.classify.features).toBe(m.features);
    expect(EXAMPLE_MODELS.classify.classes).toBe(m.classes);
  });

  it('scripts/build-models.mjs wrote the same classify bytes (when the package was built)', () => {
    let built: Buffer;
    try {
      built = readFileSync(new URL('../build/classify.onnx', import.meta.url));
    } catch {
      return; // not built in this checkout: nothing to compare
    }
    expect(built.equals(Buffer.from(buildClassifyModel().bytes))).toBe(true);
  });

  it('mixed and fixed models load with the declared types and shapes', async () => {
    const mixed = await InferenceSession.create(buildMixedModel(), cpu);
    expect(mixed.inputMetadata.map((m) => (m.isTensor ? [m.name, m.type, m.shape] : []))).toEqual([
      ['a', 'float32', ['N', 4]],
      ['b', 'int64', ['N', 4]],
    ]);
    const out = await mixed.run({
      a: new Tensor('float32', new Float32Array(4).fill(0.5), [1, 4]),
      b: new Tensor('int64', BigInt64Array.from([1n, 2n, 3n, 4n]), [1, 4]),
    });
    expect(Array.from(out['y']?.data as Float32Array)).toEqual([1.5, 2.5, 3.5, 4.5]);
    expect(Array.from(out['s']?.data as BigInt64Array)).toEqual([10n]);
    const fixed = await InferenceSession.create(buildFixedModel(), cpu);
    expect(fixed.inputMetadata[0]).toMatchObject({ name: 'x', shape: [2, 3] });
  });

  it('the embedded probe model is exactly buildProbeModel()', () => {
    expect(Buffer.from(probeModelBytes()).equals(Buffer.from(buildProbeModel()))).toBe(true);
  });
});
