/**
 * 2x2 complex matrices as `Float64Array(8)`, row-major, interleaved:
 * `[re00, im00, re01, im01, re10, im10, re11, im11]`.
 */

/** A 2x2 complex matrix, see the module doc for the layout. */
export type Matrix2 = Float64Array;

/** Build a matrix from its four entries as `[re, im]` pairs. */
export function matrix2(
  m00: readonly [number, number],
  m01: readonly [number, number],
  m10: readonly [number, number],
  m11: readonly [number, number],
): Matrix2 {
  return Float64Array.of(m00[0], m00[1], m01[0], m01[1], m10[0], m10[1], m11[0], m11[1]);
}

/**
 * The OpenQASM `U(θ,φ,λ)` gate in the convention Qiskit uses (and `qelib1.inc`'s `u3`):
 * `[[cos(θ/2), -e^{iλ} sin(θ/2)], [e^{iφ} sin(θ/2), e^{i(φ+λ)} cos(θ/2)]]`.
 * (The OpenQASM 2.0 paper writes U with determinant 1; the two differ by the global phase
 * `e^{i(φ+λ)/2}`, which no measurement can see.)
 */
export function uMatrix(theta: number, phi: number, lambda: number): Matrix2 {
  const c = Math.cos(theta / 2);
  const s = Math.sin(theta / 2);
  return Float64Array.of(
    c,
    0,
    -Math.cos(lambda) * s,
    -Math.sin(lambda) * s,
    Math.cos(phi) * s,
    Math.sin(phi) * s,
    Math.cos(phi + lambda) * c,
    Math.sin(phi + lambda) * c,
  );
}

/** `a · b` (apply `b` first, then `a`). */
export function mul2(a: Matrix2, b: Matrix2): Matrix2 {
  const out = new Float64Array(8);
  for (let r = 0; r < 2; r++) {
    for (let c = 0; c < 2; c++) {
      let re = 0;
      let im = 0;
      for (let k = 0; k < 2; k++) {
        const ar = a[(r * 2 + k) * 2] as number;
        const ai = a[(r * 2 + k) * 2 + 1] as number;
        const br = b[(k * 2 + c) * 2] as number;
        const bi = b[(k * 2 + c) * 2 + 1] as number;
        re += ar * br - ai * bi;
        im += ar * bi + ai * br;
      }
      out[(r * 2 + c) * 2] = re;
      out[(r * 2 + c) * 2 + 1] = im;
    }
  }
  return out;
}

/** `e^{iγ} · m`. */
export function phase2(m: Matrix2, gamma: number): Matrix2 {
  const c = Math.cos(gamma);
  const s = Math.sin(gamma);
  const out = new Float64Array(8);
  for (let k = 0; k < 8; k += 2) {
    const re = m[k] as number;
    const im = m[k + 1] as number;
    out[k] = re * c - im * s;
    out[k + 1] = re * s + im * c;
  }
  return out;
}

const R = Math.SQRT1_2;
/** Pauli X. */
export const PAULI_X: Matrix2 = matrix2([0, 0], [1, 0], [1, 0], [0, 0]);
/** Pauli Y. */
export const PAULI_Y: Matrix2 = matrix2([0, 0], [0, -1], [0, 1], [0, 0]);
/** Pauli Z. */
export const PAULI_Z: Matrix2 = matrix2([1, 0], [0, 0], [0, 0], [-1, 0]);
/** Hadamard. */
export const HADAMARD: Matrix2 = matrix2([R, 0], [R, 0], [R, 0], [-R, 0]);
/** Square root of X. */
export const SQRT_X: Matrix2 = matrix2([0.5, 0.5], [0.5, -0.5], [0.5, -0.5], [0.5, 0.5]);

/** `diag(1, e^{iλ})`. */
export function phaseMatrix(lambda: number): Matrix2 {
  return matrix2([1, 0], [0, 0], [0, 0], [Math.cos(lambda), Math.sin(lambda)]);
}

/** `diag(e^{-iλ/2}, e^{iλ/2})`. */
export function rzMatrix(lambda: number): Matrix2 {
  return matrix2(
    [Math.cos(lambda / 2), -Math.sin(lambda / 2)],
    [0, 0],
    [0, 0],
    [Math.cos(lambda / 2), Math.sin(lambda / 2)],
  );
}

/** `exp(-iθX/2)`. */
export function rxMatrix(theta: number): Matrix2 {
  const c = Math.cos(theta / 2);
  const s = Math.sin(theta / 2);
  return matrix2([c, 0], [0, -s], [0, -s], [c, 0]);
}

/** `exp(-iθY/2)`. */
export function ryMatrix(theta: number): Matrix2 {
  const c = Math.cos(theta / 2);
  const s = Math.sin(theta / 2);
  return matrix2([c, 0], [-s, 0], [s, 0], [c, 0]);
}

/** Whether `m` is the identity (to `eps`). */
export function isIdentity2(m: Matrix2, eps = 1e-15): boolean {
  return (
    Math.abs((m[0] as number) - 1) < eps &&
    Math.abs(m[1] as number) < eps &&
    Math.abs(m[2] as number) < eps &&
    Math.abs(m[3] as number) < eps &&
    Math.abs(m[4] as number) < eps &&
    Math.abs(m[5] as number) < eps &&
    Math.abs((m[6] as number) - 1) < eps &&
    Math.abs(m[7] as number) < eps
  );
}
