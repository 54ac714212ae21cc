/** Deterministic random numbers for building test and benchmark circuits. */

/** A deterministic generator of doubles in [0, 1) for building random test circuits. */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s / 2 ** 32;
  };
}
