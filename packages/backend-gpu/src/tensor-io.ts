/**
 * Job input parsing and output encoding.
 *
 * Input (UTF-8 JSON), either form:
 * - explicit: `{ "inputs": { "<name>": { "dims": [2, 64], "data": [..128 numbers..], "type": "float32" } } }`
 *   (`data` flat, row-major; `type` optional, checked against the model when given);
 * - shorthand: `{ "<name>": [[...], [...]] }`, nested arrays whose nesting gives the dims.
 *   An object whose only key is `inputs` with an object value is read as the explicit form.
 *
 * `int64` values are JSON numbers (safe integers) or decimal strings; `bool` values are booleans or 0/1.
 * Output: `{ "outputs": { "<name>": { "dims": [...], "data": [...], "type": "float32" } } }`; `int64`
 * values beyond 2^53 are decimal strings, non-finite floats are the strings `NaN`, `Infinity`, `-Infinity`.
 */
import { describeJsonSyntaxError } from '@meshroute/mesh';
import { GpuError } from './errors.js';

/** Tensor element types this backend can feed and return. */
export const SUPPORTED_TENSOR_TYPES = [
  'float32',
  'float64',
  'int8',
  'uint8',
  'int16',
  'uint16',
  'int32',
  'uint32',
  'int64',
  'bool',
] as const;
/** One of {@link SUPPORTED_TENSOR_TYPES}. */
export type TensorType = (typeof SUPPORTED_TENSOR_TYPES)[number];

/** The typed array behind a tensor. */
export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array;

/** An input or output of a model as ONNX Runtime reports it. Symbolic dims are strings. */
export interface TensorInfo {
  name: string;
  /** ONNX Runtime's type name (`float32`, `int64`, ...), or `non-tensor`. */
  type: string;
  shape: (number | string)[];
}

/** What the backend knows about a loaded model. */
export interface ModelInfo {
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  /** Every input and output has a symbolic first (batch) dimension, so requests can be concatenated. */
  batchable: boolean;
}

/** One input tensor, ready to send to a worker. */
export interface Feed {
  name: string;
  type: TensorType;
  dims: number[];
  data: TensorData;
}

/** One output tensor as a worker returns it. */
export type Fetch = Feed;

/** The JSON of one output tensor. */
export interface OutputTensorJson {
  dims: number[];
  data: (number | string | boolean)[];
  type: TensorType;
}

const SUPPORTED = new Set<string>(SUPPORTED_TENSOR_TYPES);

/** Whether `type` is one of {@link SUPPORTED_TENSOR_TYPES}. */
export function isSupportedType(type: string): type is TensorType {
  return SUPPORTED.has(type);
}

/** Work out whether a model can be batched along its first dimension. */
export function modelInfo(inputs: TensorInfo[], outputs: TensorInfo[]): ModelInfo {
  const symbolicFirst = (t: TensorInfo) => t.shape.length > 0 && typeof t.shape[0] === 'string';
  const batchNames = new Set(inputs.map((t) => t.shape[0]));
  const batchable =
    inputs.length > 0 && inputs.every(symbolicFirst) && outputs.every(symbolicFirst) && batchNames.size === 1;
  return { inputs, outputs, batchable };
}

/** Allocate a typed array for a tensor type. */
export function allocate(type: TensorType, length: number): TensorData {
  switch (type) {
    case 'float32':
      return new Float32Array(length);
    case 'float64':
      return new Float64Array(length);
    case 'int8':
      return new Int8Array(length);
    case 'uint8':
    case 'bool':
      return new Uint8Array(length);
    case 'int16':
      return new Int16Array(length);
    case 'uint16':
      return new Uint16Array(length);
    case 'int32':
      return new Int32Array(length);
    case 'uint32':
      return new Uint32Array(length);
    case 'int64':
      return new BigInt64Array(length);
  }
}

const INT_RANGES: Partial<Record<TensorType, [number, number]>> = {
  int8: [-128, 127],
  uint8: [0, 255],
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
};
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function invalid(workload: string, message: string, details: Record<string, unknown> = {}): GpuError {
  return new GpuError('invalid-input', `${workload}: ${message}`, { details: { workload, ...details } });
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** A parsed job input: the feeds in the model's input order, and the rows along the batch dimension. */
export interface ParsedInput {
  feeds: Feed[];
  /** Rows along the batch dimension (1 when the model is not batchable). */
  rows: number;
}

/**
 * Parse a job input against a model's inputs.
 * @returns the feeds in the model's input order, and the rows along the batch dimension (1 when not batchable)
 * @throws GpuError `invalid-input` naming the input and the rule
 */
export function parseJobInput(bytes: Uint8Array, model: ModelInfo, workload: string): ParsedInput {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch (cause) {
    throw invalid(workload, `input is not UTF-8: ${(cause as Error).message}`, { rule: 'utf-8' });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw invalid(workload, `input is not JSON: ${describeJsonSyntaxError(text, cause).message}`, { rule: 'json' });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(workload, 'input must be a JSON object: {"inputs": {...}} or {"<input>": [[...]]}', {
      rule: 'object',
    });
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  const inputsValue = obj['inputs'];
  const explicit =
    keys.length === 1 && typeof inputsValue === 'object' && inputsValue !== null && !Array.isArray(inputsValue);
  const given = explicit ? (inputsValue as Record<string, unknown>) : obj;
  const expected = new Set(model.inputs.map((i) => i.name));
  for (const name of Object.keys(given)) {
    if (!expected.has(name)) {
      throw invalid(
        workload,
        `unknown input ${JSON.stringify(name)}; the model's inputs are ${[...expected].map((n) => JSON.stringify(n)).join(', ')}`,
        { input: name, rule: 'unknown-input' },
      );
    }
  }
  const feeds: Feed[] = [];
  for (const info of model.inputs) {
    const raw = given[info.name];
    if (raw === undefined) {
      throw invalid(workload, `missing input ${JSON.stringify(info.name)}`, {
        input: info.name,
        rule: 'missing-input',
      });
    }
    if (!isSupportedType(info.type)) {
      throw new GpuError('unsupported-model', `${workload}: input ${JSON.stringify(info.name)} has type ${info.type}`, {
        details: { workload, input: info.name, type: info.type },
      });
    }
    feeds.push(explicit ? parseExplicit(raw, info, info.type, workload) : parseNested(raw, info, info.type, workload));
  }
  let rows = 1;
  if (model.batchable) {
    rows = feeds[0]?.dims[0] ?? 1;
    for (const f of feeds) {
      if (f.dims[0] !== rows) {
        throw invalid(
          workload,
          `inputs disagree on the batch dimension: ${JSON.stringify(feeds[0]?.name)} has ${rows} rows, ${JSON.stringify(f.name)} has ${f.dims[0]}`,
          { input: f.name, rule: 'batch-dimension' },
        );
      }
    }
  }
  return { feeds, rows };
}

/** Most dims an error message or its details repeat from the input (a hostile input can have 100,000). */
const SHOWN_DIMS = 8;

/** `[2,64]`, or `[1,1,1,1,1,1,1,1,...]` past {@link SHOWN_DIMS}. */
function showDims(dims: readonly unknown[]): string {
  if (dims.length <= SHOWN_DIMS) return JSON.stringify(dims);
  return `${JSON.stringify(dims.slice(0, SHOWN_DIMS)).slice(0, -1)},...]`;
}

function checkDims(dims: number[], info: TensorInfo, workload: string): void {
  if (dims.length !== info.shape.length) {
    throw invalid(
      workload,
      `input ${JSON.stringify(info.name)} has rank ${dims.length} (dims ${showDims(dims)}), the model expects rank ${info.shape.length} ${JSON.stringify(info.shape)}`,
      { input: info.name, rule: 'rank', rank: dims.length, dims: dims.slice(0, SHOWN_DIMS), expected: info.shape },
    );
  }
  info.shape.forEach((want, i) => {
    if (typeof want === 'number' && dims[i] !== want) {
      throw invalid(
        workload,
        `input ${JSON.stringify(info.name)} has dims ${showDims(dims)}, the model expects ${JSON.stringify(info.shape)} (dimension ${i} must be ${want})`,
        { input: info.name, rule: 'shape', dims, expected: info.shape },
      );
    }
  });
}

function parseExplicit(raw: unknown, info: TensorInfo, type: TensorType, workload: string): Feed {
  const name = JSON.stringify(info.name);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw invalid(workload, `input ${name} must be an object {"dims": [...], "data": [...]}`, {
      input: info.name,
      rule: 'tensor-object',
    });
  }
  const t = raw as Record<string, unknown>;
  const dims = t['dims'];
  if (!Array.isArray(dims) || !dims.every((d) => Number.isInteger(d) && (d as number) >= 0)) {
    throw invalid(workload, `input ${name}: dims must be an array of non-negative integers`, {
      input: info.name,
      rule: 'dims',
    });
  }
  if (t['type'] !== undefined && t['type'] !== type) {
    throw invalid(workload, `input ${name} has type ${JSON.stringify(t['type'])}, the model expects ${type}`, {
      input: info.name,
      rule: 'type',
      type: t['type'],
      expected: type,
    });
  }
  const data = t['data'];
  if (!Array.isArray(data)) {
    throw invalid(workload, `input ${name}: data must be a flat array`, { input: info.name, rule: 'data' });
  }
  checkDims(dims as number[], info, workload);
  const count = (dims as number[]).reduce((a, b) => a * b, 1);
  if (data.length !== count) {
    throw invalid(
      workload,
      `input ${name} has ${data.length} values, dims ${showDims(dims as number[])} need ${count}`,
      {
        input: info.name,
        rule: 'element-count',
      },
    );
  }
  return { name: info.name, type, dims: dims as number[], data: fill(type, data, info.name, workload) };
}

function parseNested(raw: unknown, info: TensorInfo, type: TensorType, workload: string): Feed {
  const dims: number[] = [];
  let probe: unknown = raw;
  while (Array.isArray(probe)) {
    dims.push(probe.length);
    probe = probe[0];
  }
  checkDims(dims, info, workload);
  let count = 1;
  for (const d of dims) count *= d;
  const data = allocate(type, count);
  const rank = dims.length;
  if (rank === 0) {
    writeValues(data, type, [raw], 0, info.name, workload);
    return { name: info.name, type, dims, data };
  }
  // Write each innermost array straight into the typed array; no flat copy of the values. A bad value
  // is reported only once the whole array is known to be rectangular (a shape error comes first).
  let n = 0;
  let rectangular = true;
  let badValue: unknown;
  const walk = (v: unknown, depth: number): void => {
    if (!Array.isArray(v) || v.length !== dims[depth]) {
      rectangular = false;
      return;
    }
    if (depth === rank - 1) {
      for (let i = 0; i < v.length; i++) {
        if (Array.isArray(v[i])) {
          rectangular = false;
          return;
        }
      }
      if (badValue === undefined) {
        try {
          writeValues(data, type, v, n, info.name, workload);
        } catch (err) {
          badValue = err;
        }
      }
      n += v.length;
      return;
    }
    for (let i = 0; i < v.length && rectangular; i++) walk(v[i], depth + 1);
  };
  walk(raw, 0);
  if (!rectangular || n !== count) {
    throw invalid(workload, `input ${JSON.stringify(info.name)} is not a rectangular array of dims ${showDims(dims)}`, {
      input: info.name,
      rule: 'rectangular',
    });
  }
  if (badValue !== undefined) throw badValue;
  return { name: info.name, type, dims, data };
}

function fill(type: TensorType, values: unknown[], input: string, workload: string): TensorData {
  const out = allocate(type, values.length);
  writeValues(out, type, values, 0, input, workload);
  return out;
}

/** Check `values` and write them into `out` from `offset` (value indices in errors count from the start of the tensor). */
function writeValues(
  out: TensorData,
  type: TensorType,
  values: readonly unknown[],
  offset: number,
  input: string,
  workload: string,
): void {
  const bad = (i: number, want: string) =>
    invalid(
      workload,
      `input ${JSON.stringify(input)} value ${offset + i} is ${JSON.stringify(values[i])}, expected ${want}`,
      {
        input,
        rule: 'value',
        index: offset + i,
      },
    );
  const length = values.length;
  if (type === 'float32' || type === 'float64') {
    const arr = out as Float32Array;
    for (let i = 0; i < length; i++) {
      const v = values[i];
      if (typeof v !== 'number') throw bad(i, `a ${type} number`);
      arr[offset + i] = v;
    }
    return;
  }
  if (type === 'int64') {
    const arr = out as BigInt64Array;
    for (let i = 0; i < length; i++) {
      const v = values[i];
      let b: bigint;
      if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
      else if (typeof v === 'string' && /^-?\d{1,20}$/.test(v)) b = BigInt(v);
      else throw bad(i, 'an int64 (a safe integer or a decimal string)');
      if (b < INT64_MIN || b > INT64_MAX) throw bad(i, 'an int64 in range');
      arr[offset + i] = b;
    }
    return;
  }
  const arr = out as Exclude<TensorData, BigInt64Array>;
  if (type === 'bool') {
    for (let i = 0; i < length; i++) {
      const v = values[i];
      if (v === true || v === 1) arr[offset + i] = 1;
      else if (v === false || v === 0) arr[offset + i] = 0;
      else throw bad(i, 'a boolean');
    }
    return;
  }
  const range = INT_RANGES[type] as [number, number];
  for (let i = 0; i < length; i++) {
    const v = values[i];
    if (typeof v !== 'number') throw bad(i, `a ${type} number`);
    if (!Number.isInteger(v) || v < range[0] || v > range[1]) {
      throw bad(i, `an integer in [${range[0]}, ${range[1]}]`);
    }
    arr[offset + i] = v;
  }
}

/** Concatenate feeds of several requests along the batch dimension. */
export function concatFeeds(parts: readonly (readonly Feed[])[]): Feed[] {
  const first = parts[0];
  if (first === undefined) return [];
  if (parts.length === 1) return [...first];
  return first.map((f, i) => {
    let length = 0;
    let rows = 0;
    for (const p of parts) {
      const g = p[i] as Feed;
      length += g.data.length;
      rows += g.dims[0] ?? 0;
    }
    const data = allocate(f.type, length);
    let offset = 0;
    for (const p of parts) {
      const g = (p[i] as Feed).data;
      (data as Float32Array).set(g as Float32Array, offset);
      offset += g.length;
    }
    return { name: f.name, type: f.type, dims: [rows, ...f.dims.slice(1)], data };
  });
}

/** Slice rows `[start, start + rows)` of an output along its first dimension. */
export function sliceRows(t: Fetch, start: number, rows: number): Fetch {
  const rowSize = t.dims.slice(1).reduce((a, b) => a * b, 1);
  return {
    name: t.name,
    type: t.type,
    dims: [rows, ...t.dims.slice(1)],
    data: t.data.subarray(start * rowSize, (start + rows) * rowSize) as TensorData,
  };
}

/** Characters a JSON value of any supported element type takes at most (`-1.2345678901234567e-308`, a quoted int64). */
const MAX_JSON_CHARS_PER_VALUE = 25;

/** An upper bound of the JSON size of outputs, bytes: exact sizing (stringify) is only needed above it. */
export function outputJsonUpperBound(fetches: readonly Fetch[]): number {
  let bytes = 16;
  for (const f of fetches)
    bytes += 64 + f.name.length * 6 + f.dims.length * 21 + f.data.length * (MAX_JSON_CHARS_PER_VALUE + 1);
  return bytes;
}

/** The JSON of one output tensor (see the module doc for int64 and non-finite values). */
export function tensorToJson(t: Fetch): OutputTensorJson {
  const data: (number | string | boolean)[] = new Array(t.data.length);
  if (t.type === 'int64') {
    const src = t.data as BigInt64Array;
    for (let i = 0; i < src.length; i++) {
      const b = src[i] as bigint;
      const n = Number(b);
      data[i] = Number.isSafeInteger(n) ? n : b.toString();
    }
  } else if (t.type === 'bool') {
    const src = t.data as Uint8Array;
    for (let i = 0; i < src.length; i++) data[i] = src[i] !== 0;
  } else {
    const src = t.data as Float32Array;
    for (let i = 0; i < src.length; i++) {
      const n = src[i] as number;
      data[i] = Number.isFinite(n) ? n : String(n);
    }
  }
  return { dims: t.dims, data, type: t.type };
}
