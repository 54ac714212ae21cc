/** Helpers shared by this package's tests (not exported from the package). */
import { expect } from 'vitest';

/** Assert `count` of `shots` is within 5 standard deviations (+1) of the expectation `p·shots`. */
export function expectBinomial(count: number, shots: number, p: number): void {
  const sigma = Math.sqrt(shots * p * (1 - p));
  const diff = Math.abs(count - shots * p);
  expect(diff, `count ${count} of ${shots}, expected p=${p} (±5σ=${(5 * sigma).toFixed(1)})`).toBeLessThanOrEqual(
    5 * sigma + 1,
  );
}

/** A deterministic generator of doubles in [0, 1) for building random test circuits. */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s / 2 ** 32;
  };
}
