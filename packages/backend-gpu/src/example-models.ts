import { fileURLToPath } from 'node:url';

/** The example models built into `build/` by `scripts/build-models.mjs` (`npm run build`). */
export const EXAMPLE_MODELS = {
  /** `x: float32[N, 64]` → `probs: float32[N, 10]` (MatMul + Add + Softmax, seeded weights). */
  classify: { file: 'classify.onnx', input: 'x', output: 'probs', features: 64, classes: 10 },
} as const;

/** The name of an example model. */
export type ExampleModelName = keyof typeof EXAMPLE_MODELS;

/**
 * Path of an example model file in this package's `build/` folder (exists after `npm run build`).
 * @example `readFileSync(exampleModelPath('classify'))`
 */
export function exampleModelPath(name: ExampleModelName): string {
  return fileURLToPath(new URL(`../build/${EXAMPLE_MODELS[name].file}`, import.meta.url));
}
