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

export { lcg } from './lcg.js';
