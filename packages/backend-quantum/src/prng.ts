/**
 * Seeded pseudo-random numbers for shot sampling: xoshiro128** (Blackman and Vigna, 2018), a
 * 32-bit generator with period 2^128 − 1, whose 128-bit state is filled from the 32-bit seed by
 * splitmix32. Doubles in [0, 1) take 53 random bits from two outputs. The same seed gives the
 * same sequence on every platform.
 */

/** A seeded generator of doubles in [0, 1). */
export interface Prng {
  /** The next double in [0, 1), 53 random bits. */
  next(): number;
}

/** Create a xoshiro128** generator from a 32-bit unsigned seed. */
export function xoshiro128ss(seed: number): Prng {
  let x = seed >>> 0;
  const split = (): number => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  if ((a | b | c | d) === 0) a = 1;
  const u32 = (): number => {
    const r = Math.imul(rotl(Math.imul(b, 5) >>> 0, 7), 9) >>> 0;
    const t = (b << 9) >>> 0;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return r;
  };
  return {
    next(): number {
      const hi = u32() >>> 5; // 27 bits
      const lo = u32() >>> 6; // 26 bits
      return (hi * 67_108_864 + lo) / 9_007_199_254_740_992;
    },
  };
}

function rotl(v: number, k: number): number {
  return ((v << k) | (v >>> (32 - k))) >>> 0;
}
