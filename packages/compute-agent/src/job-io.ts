/** Turning an event's data into a job input, and a backend's output into result fields. */
import { ErrorCode, type WorkItem, WorkloadError } from '@meshroute/mesh';

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const EMPTY = new Uint8Array(0);

/** A job input: bytes and their content type. */
export interface JobInput {
  bytes: Uint8Array;
  contentType: string | undefined;
}

/**
 * The event's data as bytes (CloudEvents structured-mode JSON): `data_base64` decoded, a string
 * as UTF-8, any other JSON value serialized (content type `application/json` unless the event
 * says otherwise), no data as empty bytes.
 */
export function jobInput(event: WorkItem['event']): JobInput {
  const declared = typeof event.datacontenttype === 'string' ? event.datacontenttype : undefined;
  const b64 = event.data_base64;
  if (typeof b64 === 'string') {
    return { bytes: Buffer.from(b64, 'base64'), contentType: declared };
  }
  const data = event.data;
  if (data === undefined || data === null) return { bytes: EMPTY, contentType: declared };
  if (typeof data === 'string') return { bytes: encoder.encode(data), contentType: declared };
  return { bytes: encoder.encode(JSON.stringify(data)), contentType: declared ?? 'application/json' };
}

/** The output fields of a `meshroute.result/v1` message. */
export interface ResultOutput {
  output?: unknown;
  outputBase64?: string;
  contentType: string;
  /** Guest execution time reported by the backend (or measured by the agent). */
  executionMs: number;
}

function invalid(message: string): WorkloadError {
  return new WorkloadError(ErrorCode.WORKLOAD_FAILED, `backend returned an invalid output: ${message}`);
}

function isJsonType(contentType: string): boolean {
  const base = contentType.split(';', 1)[0]?.trim().toLowerCase() ?? '';
  return base === 'application/json' || base.endsWith('+json');
}

/**
 * Check a backend's output (which may be garbage from a broken backend) and turn it into result
 * fields: JSON as `output`; bytes as `output` when they are JSON or text, else `outputBase64`.
 * @throws WorkloadError `WORKLOAD_FAILED` for an invalid output, `LIMIT_EXCEEDED` when it is
 * larger than `outputLimitBytes`
 */
export function resultOutput(out: unknown, measuredMs: number, outputLimitBytes: number): ResultOutput {
  if (typeof out !== 'object' || out === null)
    throw invalid(`expected an object, got ${out === null ? 'null' : typeof out}`);
  const o = out as { json?: unknown; bytes?: unknown; contentType?: unknown; executionMs?: unknown };
  if (typeof o.contentType !== 'string' || o.contentType === '')
    throw invalid('contentType must be a non-empty string');
  const executionMs =
    typeof o.executionMs === 'number' && Number.isFinite(o.executionMs) && o.executionMs >= 0
      ? o.executionMs
      : measuredMs;
  const tooLarge = (size: number) =>
    new WorkloadError(
      ErrorCode.LIMIT_EXCEEDED,
      `output is ${size} bytes, over the workload's limit of ${outputLimitBytes} bytes`,
      {
        details: { limit: 'outputBytes', sizeBytes: size, limitBytes: outputLimitBytes },
      },
    );
  if (o.json !== undefined) {
    let text: string | undefined;
    try {
      text = JSON.stringify(o.json);
    } catch (cause) {
      throw invalid(`json is not serializable: ${(cause as Error).message}`);
    }
    if (typeof text !== 'string') throw invalid('json is not a JSON value');
    const size = Buffer.byteLength(text);
    if (size > outputLimitBytes) throw tooLarge(size);
    return { output: o.json, contentType: o.contentType, executionMs };
  }
  if (o.bytes !== undefined) {
    if (!(o.bytes instanceof Uint8Array)) throw invalid('bytes must be a Uint8Array');
    const size = o.bytes.byteLength;
    if (size > outputLimitBytes) throw tooLarge(size);
    const ct = o.contentType;
    if (isJsonType(ct) || ct.toLowerCase().startsWith('text/')) {
      try {
        const text = strictDecoder.decode(o.bytes);
        return { output: isJsonType(ct) ? JSON.parse(text) : text, contentType: ct, executionMs };
      } catch {
        // Not UTF-8 (or not JSON): carry the bytes as they are.
      }
    }
    return {
      outputBase64: Buffer.from(o.bytes.buffer, o.bytes.byteOffset, size).toString('base64'),
      contentType: ct,
      executionMs,
    };
  }
  throw invalid('neither json nor bytes');
}
