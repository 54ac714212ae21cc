/**
 * Builds the backend's ONNX models from code, with `onnx-proto` (the ONNX protobuf messages). Nothing is
 * downloaded. Used by `build-models.mjs` (writes `build/*.onnx`) and by the tests (which build models in memory).
 *
 * - `classify`: `x: float32[N, F]` → MatMul W[F, C] → Add b[C] → Softmax(axis 1) → `probs: float32[N, C]`.
 * - `mixed`: `a: float32[N, K]`, `b: int64[N, K]` → `y = a + Cast<float>(b)`: `float32[N, K]`, and
 *   `s = ReduceSum(b, axis 1, keepdims 0)`: `int64[N]` (two inputs, two outputs, an integer type).
 * - `fixed`: `x: float32[2, 3]` → `y = Relu(x)`: a model without a dynamic batch dimension.
 * - `probe`: `x: float32[1]` → `y = Identity(x)`: the smallest model, used to try an execution provider.
 *
 * Weights come from a seeded generator (mulberry32), so every build gives the same bytes.
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const INT = onnx.AttributeProto.AttributeType.INT;

/** ONNX IR version written into models (IR 8 = ONNX 1.10). */
export const IR_VERSION = 8;
/** Default operator set version. */
export const OPSET = 13;

/** Default shape of the `classify` model. */
export const CLASSIFY_DEFAULTS = Object.freeze({ features: 64, classes: 10, seed: 42 });

/** A seeded PRNG (mulberry32) giving floats in [0, 1). */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function floatTensor(name, dims, values) {
  const data = Float32Array.from(values);
  return { name, dims, dataType: FLOAT, rawData: new Uint8Array(data.buffer) };
}

function valueInfo(name, elemType, dims) {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

function encodeModel(graph, opset = OPSET) {
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    producerName: 'meshroute',
    producerVersion: '0.1.0',
    opsetImport: [{ domain: '', version: opset }],
    graph,
  });
  const err = onnx.ModelProto.verify(model);
  if (err) throw new Error(`invalid model: ${err}`);
  return onnx.ModelProto.encode(model).finish();
}

/**
 * The `classify` model and its weights.
 * @param {{ features?: number, classes?: number, seed?: number }} [options]
 * @returns {{ bytes: Uint8Array, features: number, classes: number, weights: Float32Array, bias: Float32Array }}
 */
export function buildClassifyModel(options = {}) {
  const { features, classes, seed } = { ...CLASSIFY_DEFAULTS, ...options };
  const rand = mulberry32(seed);
  const scale = 1 / Math.sqrt(features);
  const weights = Float32Array.from({ length: features * classes }, () => (rand() * 2 - 1) * scale);
  const bias = Float32Array.from({ length: classes }, () => (rand() * 2 - 1) * 0.1);
  const bytes = encodeModel({
    name: 'classify',
    node: [
      { name: 'matmul', opType: 'MatMul', input: ['x', 'W'], output: ['xw'] },
      { name: 'add', opType: 'Add', input: ['xw', 'b'], output: ['logits'] },
      {
        name: 'softmax',
        opType: 'Softmax',
        input: ['logits'],
        output: ['probs'],
        attribute: [{ name: 'axis', type: INT, i: 1 }],
      },
    ],
    initializer: [floatTensor('W', [features, classes], weights), floatTensor('b', [classes], bias)],
    input: [valueInfo('x', FLOAT, ['N', features])],
    output: [valueInfo('probs', FLOAT, ['N', classes])],
  });
  return { bytes, features, classes, weights, bias };
}

/**
 * Plain-JS reference of `classify`: softmax(x · W + b) per row, in float64.
 * @param {{ weights: Float32Array, bias: Float32Array, features: number, classes: number }} model
 * @param {number[][]} rows
 * @returns {number[][]}
 */
export function classifyReference(model, rows) {
  const { weights, bias, features, classes } = model;
  return rows.map((row) => {
    if (row.length !== features) throw new Error(`row has ${row.length} features, expected ${features}`);
    const logits = Array.from({ length: classes }, (_, c) => {
      let sum = bias[c];
      for (let f = 0; f < features; f++) sum += row[f] * weights[f * classes + c];
      return sum;
    });
    const max = Math.max(...logits);
    const exps = logits.map((l) => Math.exp(l - max));
    const total = exps.reduce((a, b) => a + b, 0);
    return exps.map((e) => e / total);
  });
}

/**
 * The `mixed` model: two inputs (float32 and int64), two outputs.
 * @param {{ width?: number }} [options]
 */
export function buildMixedModel(options = {}) {
  const width = options.width ?? 4;
  return encodeModel({
    name: 'mixed',
    node: [
      { name: 'cast', opType: 'Cast', input: ['b'], output: ['bf'], attribute: [{ name: 'to', type: INT, i: FLOAT }] },
      { name: 'add', opType: 'Add', input: ['a', 'bf'], output: ['y'] },
      {
        name: 'sum',
        opType: 'ReduceSum',
        input: ['b', 'axes'],
        output: ['s'],
        attribute: [{ name: 'keepdims', type: INT, i: 0 }],
      },
    ],
    initializer: [{ name: 'axes', dims: [1], dataType: INT64, int64Data: [1] }],
    input: [valueInfo('a', FLOAT, ['N', width]), valueInfo('b', INT64, ['N', width])],
    output: [valueInfo('y', FLOAT, ['N', width]), valueInfo('s', INT64, ['N'])],
  });
}

/** The `fixed` model: `x: float32[2, 3]` → `y = Relu(x)` (no dynamic batch dimension). */
export function buildFixedModel() {
  return encodeModel({
    name: 'fixed',
    node: [{ name: 'relu', opType: 'Relu', input: ['x'], output: ['y'] }],
    input: [valueInfo('x', FLOAT, [2, 3])],
    output: [valueInfo('y', FLOAT, [2, 3])],
  });
}

/** The `probe` model: `x: float32[1]` → `y = Identity(x)`. */
export function buildProbeModel() {
  return encodeModel({
    name: 'probe',
    node: [{ name: 'identity', opType: 'Identity', input: ['x'], output: ['y'] }],
    input: [valueInfo('x', FLOAT, [1])],
    output: [valueInfo('y', FLOAT, [1])],
  });
}
