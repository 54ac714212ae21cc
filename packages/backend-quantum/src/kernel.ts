/**
 * The state-vector kernel: `2^n` complex amplitudes in one `Float64Array`, interleaved
 * `[re0, im0, re1, im1, ...]`; basis index bit `k` is qubit `k` (qubit 0 least significant, the
 * Qiskit convention). Gates walk the amplitude pairs that differ in the target bit with bit masks;
 * diagonal, anti-diagonal and controlled gates have their own loops.
 */
import type { Matrix2 } from './matrix.js';

/** Bytes per amplitude (two float64). */
export const BYTES_PER_AMPLITUDE = 16;

/** Allocate |0…0⟩ on `qubits` qubits. */
export function zeroState(qubits: number): Float64Array {
  const amps = new Float64Array(2 * 2 ** qubits);
  amps[0] = 1;
  return amps;
}

/** Insert a 0 bit at each position of `sortedBits` (ascending) into `i`. */
function spread(i: number, sortedBits: Int32Array): number {
  let v = i;
  for (let k = 0; k < sortedBits.length; k++) {
    const p = sortedBits[k] as number;
    const low = v & ((1 << p) - 1);
    v = ((v >>> p) << (p + 1)) | low;
  }
  return v;
}

/** Apply the 2x2 unitary `m` to `target` where every qubit in `controls` is 1. */
export function applyGate(amps: Float64Array, target: number, controls: readonly number[], m: Matrix2): void {
  const a0 = m[0] as number;
  const a1 = m[1] as number;
  const b0 = m[2] as number;
  const b1 = m[3] as number;
  const c0 = m[4] as number;
  const c1 = m[5] as number;
  const d0 = m[6] as number;
  const d1 = m[7] as number;
  const dim = amps.length >>> 1;
  const diagonal = b0 === 0 && b1 === 0 && c0 === 0 && c1 === 0;
  const antiDiagonal = a0 === 0 && a1 === 0 && d0 === 0 && d1 === 0;
  const tbit = 1 << target;
  if (controls.length === 0) {
    const stride = tbit;
    if (diagonal) {
      const skip0 = a0 === 1 && a1 === 0;
      for (let base = 0; base < dim; base += 2 * stride) {
        for (let i = base; i < base + stride; i++) {
          const x = 2 * i;
          const y = 2 * (i + stride);
          if (!skip0) {
            const xr = amps[x] as number;
            const xi = amps[x + 1] as number;
            amps[x] = a0 * xr - a1 * xi;
            amps[x + 1] = a0 * xi + a1 * xr;
          }
          const yr = amps[y] as number;
          const yi = amps[y + 1] as number;
          amps[y] = d0 * yr - d1 * yi;
          amps[y + 1] = d0 * yi + d1 * yr;
        }
      }
      return;
    }
    if (antiDiagonal) {
      for (let base = 0; base < dim; base += 2 * stride) {
        for (let i = base; i < base + stride; i++) {
          const x = 2 * i;
          const y = 2 * (i + stride);
          const xr = amps[x] as number;
          const xi = amps[x + 1] as number;
          const yr = amps[y] as number;
          const yi = amps[y + 1] as number;
          amps[x] = b0 * yr - b1 * yi;
          amps[x + 1] = b0 * yi + b1 * yr;
          amps[y] = c0 * xr - c1 * xi;
          amps[y + 1] = c0 * xi + c1 * xr;
        }
      }
      return;
    }
    if (a1 === 0 && b1 === 0 && c1 === 0 && d1 === 0) {
      // real matrix (ry, h, ...): half the multiplications
      for (let base = 0; base < dim; base += 2 * stride) {
        const end = base + stride;
        for (let i = base; i < end; i++) {
          const x = 2 * i;
          const y = 2 * (i + stride);
          const xr = amps[x] as number;
          const xi = amps[x + 1] as number;
          const yr = amps[y] as number;
          const yi = amps[y + 1] as number;
          amps[x] = a0 * xr + b0 * yr;
          amps[x + 1] = a0 * xi + b0 * yi;
          amps[y] = c0 * xr + d0 * yr;
          amps[y + 1] = c0 * xi + d0 * yi;
        }
      }
      return;
    }
    if (stride === 1) {
      for (let x = 0; x < 2 * dim; x += 4) {
        const xr = amps[x] as number;
        const xi = amps[x + 1] as number;
        const yr = amps[x + 2] as number;
        const yi = amps[x + 3] as number;
        amps[x] = a0 * xr - a1 * xi + b0 * yr - b1 * yi;
        amps[x + 1] = a0 * xi + a1 * xr + b0 * yi + b1 * yr;
        amps[x + 2] = c0 * xr - c1 * xi + d0 * yr - d1 * yi;
        amps[x + 3] = c0 * xi + c1 * xr + d0 * yi + d1 * yr;
      }
      return;
    }
    for (let base = 0; base < dim; base += 2 * stride) {
      const end = base + stride;
      for (let i = base; i < end; i++) {
        const x = 2 * i;
        const y = 2 * (i + stride);
        const xr = amps[x] as number;
        const xi = amps[x + 1] as number;
        const yr = amps[y] as number;
        const yi = amps[y + 1] as number;
        amps[x] = a0 * xr - a1 * xi + b0 * yr - b1 * yi;
        amps[x + 1] = a0 * xi + a1 * xr + b0 * yi + b1 * yr;
        amps[y] = c0 * xr - c1 * xi + d0 * yr - d1 * yi;
        amps[y + 1] = c0 * xi + c1 * xr + d0 * yi + d1 * yr;
      }
    }
    return;
  }
  if (controls.length === 1) {
    applyControlled1(amps, controls[0] as number, target, m, diagonal);
    return;
  }
  let cmask = 0;
  for (const c of controls) cmask |= 1 << c;
  const bits = Int32Array.from([...controls, target]).sort();
  const count = dim >>> bits.length;
  for (let k = 0; k < count; k++) {
    const i = spread(k, bits) | cmask;
    const x = 2 * i;
    const y = 2 * (i | tbit);
    const xr = amps[x] as number;
    const xi = amps[x + 1] as number;
    const yr = amps[y] as number;
    const yi = amps[y + 1] as number;
    if (diagonal) {
      amps[x] = a0 * xr - a1 * xi;
      amps[x + 1] = a0 * xi + a1 * xr;
      amps[y] = d0 * yr - d1 * yi;
      amps[y + 1] = d0 * yi + d1 * yr;
    } else {
      amps[x] = a0 * xr - a1 * xi + b0 * yr - b1 * yi;
      amps[x + 1] = a0 * xi + a1 * xr + b0 * yi + b1 * yr;
      amps[y] = c0 * xr - c1 * xi + d0 * yr - d1 * yi;
      amps[y + 1] = c0 * xi + c1 * xr + d0 * yi + d1 * yr;
    }
  }
}

/** Exchange qubits `a` and `b` where every qubit in `controls` is 1. */
export function applySwap(amps: Float64Array, a: number, b: number, controls: readonly number[]): void {
  const dim = amps.length >>> 1;
  let cmask = 0;
  for (const c of controls) cmask |= 1 << c;
  const bits = Int32Array.from([...controls, a, b]).sort();
  const count = dim >>> bits.length;
  const abit = 1 << a;
  const bbit = 1 << b;
  for (let k = 0; k < count; k++) {
    const i = spread(k, bits) | cmask;
    const x = 2 * (i | abit);
    const y = 2 * (i | bbit);
    const xr = amps[x] as number;
    const xi = amps[x + 1] as number;
    amps[x] = amps[y] as number;
    amps[x + 1] = amps[y + 1] as number;
    amps[y] = xr;
    amps[y + 1] = xi;
  }
}

/** Probability that measuring `qubit` gives 1. */
export function probabilityOfOne(amps: Float64Array, qubit: number): number {
  const dim = amps.length >>> 1;
  const stride = 1 << qubit;
  let p = 0;
  for (let base = stride; base < dim; base += 2 * stride) {
    for (let i = base; i < base + stride; i++) {
      const re = amps[2 * i] as number;
      const im = amps[2 * i + 1] as number;
      p += re * re + im * im;
    }
  }
  return p;
}

/** Project `qubit` onto `outcome` (whose probability was `probability`) and renormalise. */
export function collapse(amps: Float64Array, qubit: number, outcome: 0 | 1, probability: number): void {
  const dim = amps.length >>> 1;
  const stride = 1 << qubit;
  const scale = 1 / Math.sqrt(probability);
  for (let base = 0; base < dim; base += 2 * stride) {
    for (let i = base; i < base + stride; i++) {
      const keep = outcome === 0 ? i : i + stride;
      const drop = outcome === 0 ? i + stride : i;
      amps[2 * keep] = (amps[2 * keep] as number) * scale;
      amps[2 * keep + 1] = (amps[2 * keep + 1] as number) * scale;
      amps[2 * drop] = 0;
      amps[2 * drop + 1] = 0;
    }
  }
}

/** One control: walk the quarter of the indices with the control bit 1 and the target bit 0. */
function applyControlled1(amps: Float64Array, control: number, target: number, m: Matrix2, diagonal: boolean): void {
  const a0 = m[0] as number;
  const a1 = m[1] as number;
  const b0 = m[2] as number;
  const b1 = m[3] as number;
  const c0 = m[4] as number;
  const c1 = m[5] as number;
  const d0 = m[6] as number;
  const d1 = m[7] as number;
  const pauliX = a0 === 0 && a1 === 0 && d0 === 0 && d1 === 0 && b0 === 1 && b1 === 0 && c0 === 1 && c1 === 0;
  const dim = amps.length >>> 1;
  const lo = Math.min(control, target);
  const hi = Math.max(control, target);
  const loStep = 1 << lo;
  const hiStep = 1 << hi;
  const cbit = 1 << control;
  const tbit = 1 << target;
  for (let i0 = 0; i0 < dim; i0 += 2 * hiStep) {
    for (let i1 = i0; i1 < i0 + hiStep; i1 += 2 * loStep) {
      const end = i1 + loStep;
      for (let i = i1; i < end; i++) {
        const x = 2 * (i | cbit);
        const y = 2 * (i | cbit | tbit);
        const xr = amps[x] as number;
        const xi = amps[x + 1] as number;
        const yr = amps[y] as number;
        const yi = amps[y + 1] as number;
        if (pauliX) {
          amps[x] = yr;
          amps[x + 1] = yi;
          amps[y] = xr;
          amps[y + 1] = xi;
        } else if (diagonal) {
          amps[x] = a0 * xr - a1 * xi;
          amps[x + 1] = a0 * xi + a1 * xr;
          amps[y] = d0 * yr - d1 * yi;
          amps[y + 1] = d0 * yi + d1 * yr;
        } else {
          amps[x] = a0 * xr - a1 * xi + b0 * yr - b1 * yi;
          amps[x + 1] = a0 * xi + a1 * xr + b0 * yi + b1 * yr;
          amps[y] = c0 * xr - c1 * xi + d0 * yr - d1 * yi;
          amps[y + 1] = c0 * xi + c1 * xr + d0 * yi + d1 * yr;
        }
      }
    }
  }
}

/**
 * Apply a dense 4x4 unitary `m` (`Float64Array(32)`, row-major, interleaved re/im) to qubits
 * `q0` and `q1`; row/column index `2·b1 + b0` where `b0` is the bit of `q0` and `b1` of `q1`.
 */
export function applyGate2(amps: Float64Array, q0: number, q1: number, m: Float64Array): void {
  const dim = amps.length >>> 1;
  const lo = Math.min(q0, q1);
  const hi = Math.max(q0, q1);
  const loStep = 1 << lo;
  const hiStep = 1 << hi;
  const o1 = 2 * (1 << q0);
  const o2 = 2 * (1 << q1);
  const o3 = o1 + o2;
  const m00r = m[0] as number,
    m00i = m[1] as number,
    m01r = m[2] as number,
    m01i = m[3] as number;
  const m02r = m[4] as number,
    m02i = m[5] as number,
    m03r = m[6] as number,
    m03i = m[7] as number;
  const m10r = m[8] as number,
    m10i = m[9] as number,
    m11r = m[10] as number,
    m11i = m[11] as number;
  const m12r = m[12] as number,
    m12i = m[13] as number,
    m13r = m[14] as number,
    m13i = m[15] as number;
  const m20r = m[16] as number,
    m20i = m[17] as number,
    m21r = m[18] as number,
    m21i = m[19] as number;
  const m22r = m[20] as number,
    m22i = m[21] as number,
    m23r = m[22] as number,
    m23i = m[23] as number;
  const m30r = m[24] as number,
    m30i = m[25] as number,
    m31r = m[26] as number,
    m31i = m[27] as number;
  const m32r = m[28] as number,
    m32i = m[29] as number,
    m33r = m[30] as number,
    m33i = m[31] as number;
  for (let i0 = 0; i0 < dim; i0 += 2 * hiStep) {
    for (let i1 = i0; i1 < i0 + hiStep; i1 += 2 * loStep) {
      const end = i1 + loStep;
      for (let i = i1; i < end; i++) {
        const p0 = 2 * i;
        const p1 = p0 + o1;
        const p2 = p0 + o2;
        const p3 = p0 + o3;
        const v0r = amps[p0] as number,
          v0i = amps[p0 + 1] as number;
        const v1r = amps[p1] as number,
          v1i = amps[p1 + 1] as number;
        const v2r = amps[p2] as number,
          v2i = amps[p2 + 1] as number;
        const v3r = amps[p3] as number,
          v3i = amps[p3 + 1] as number;
        amps[p0] =
          m00r * v0r - m00i * v0i + m01r * v1r - m01i * v1i + m02r * v2r - m02i * v2i + m03r * v3r - m03i * v3i;
        amps[p0 + 1] =
          m00r * v0i + m00i * v0r + m01r * v1i + m01i * v1r + m02r * v2i + m02i * v2r + m03r * v3i + m03i * v3r;
        amps[p1] =
          m10r * v0r - m10i * v0i + m11r * v1r - m11i * v1i + m12r * v2r - m12i * v2i + m13r * v3r - m13i * v3i;
        amps[p1 + 1] =
          m10r * v0i + m10i * v0r + m11r * v1i + m11i * v1r + m12r * v2i + m12i * v2r + m13r * v3i + m13i * v3r;
        amps[p2] =
          m20r * v0r - m20i * v0i + m21r * v1r - m21i * v1i + m22r * v2r - m22i * v2i + m23r * v3r - m23i * v3i;
        amps[p2 + 1] =
          m20r * v0i + m20i * v0r + m21r * v1i + m21i * v1r + m22r * v2i + m22i * v2r + m23r * v3i + m23i * v3r;
        amps[p3] =
          m30r * v0r - m30i * v0i + m31r * v1r - m31i * v1i + m32r * v2r - m32i * v2i + m33r * v3r - m33i * v3i;
        amps[p3 + 1] =
          m30r * v0i + m30i * v0r + m31r * v1i + m31i * v1r + m32r * v2i + m32i * v2r + m33r * v3i + m33i * v3r;
      }
    }
  }
}
