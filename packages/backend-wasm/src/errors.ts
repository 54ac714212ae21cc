import { ErrorCode, MeshError, type MeshErrorOptions } from '@meshroute/mesh';
import type { GuestFailure, WasmFailureReason } from './invoke.js';

/**
 * The stable {@link ErrorCode} of each failure reason:
 * - `WORKLOAD_FAILED`: the module is invalid or unsupported, lacks an export, cannot be linked,
 *   traps, exits non-zero, breaks the reactor ABI, or its options are invalid; a worker crashed.
 * - `PERMISSION_DENIED`: the module imports something the workload did not declare (or that the
 *   backend never grants, like sockets or arbitrary host functions).
 * - `LIMIT_EXCEEDED`: memory (declared or grown past the cap) or output over its limit.
 * - `TIMEOUT`: wall-clock limit, or the caller aborted the job.
 * - `SHUTTING_DOWN`: the backend was closed.
 */
export const WASM_FAILURE_CODES: Readonly<Record<WasmFailureReason, ErrorCode>> = {
  'invalid-module': ErrorCode.WORKLOAD_FAILED,
  'unsupported-module': ErrorCode.WORKLOAD_FAILED,
  'invalid-options': ErrorCode.WORKLOAD_FAILED,
  'missing-export': ErrorCode.WORKLOAD_FAILED,
  'undeclared-import': ErrorCode.PERMISSION_DENIED,
  'link-error': ErrorCode.WORKLOAD_FAILED,
  trap: ErrorCode.WORKLOAD_FAILED,
  'exit-code': ErrorCode.WORKLOAD_FAILED,
  'bad-abi': ErrorCode.WORKLOAD_FAILED,
  'invalid-output': ErrorCode.WORKLOAD_FAILED,
  'memory-limit': ErrorCode.LIMIT_EXCEEDED,
  'output-limit': ErrorCode.LIMIT_EXCEEDED,
  timeout: ErrorCode.TIMEOUT,
  aborted: ErrorCode.TIMEOUT,
  'worker-crashed': ErrorCode.WORKLOAD_FAILED,
  'shutting-down': ErrorCode.SHUTTING_DOWN,
};

/** Reasons where trying again (elsewhere, later) can help. */
const RETRYABLE: ReadonlySet<WasmFailureReason> = new Set(['timeout', 'aborted', 'worker-crashed', 'shutting-down']);

/**
 * A WebAssembly job failed. `code` is one of the stable {@link ErrorCode}s (see
 * {@link WASM_FAILURE_CODES}); `reason` (also in `details.reason`) says precisely why.
 * @example
 * try { await backend.run(job) } catch (e) { if (e instanceof WasmError && e.reason === 'timeout') … }
 */
export class WasmError extends MeshError {
  override readonly name = 'WasmError';
  /** Why the job failed (stable). */
  readonly reason: WasmFailureReason;

  constructor(reason: WasmFailureReason, message: string, options: MeshErrorOptions = {}) {
    super(WASM_FAILURE_CODES[reason], message, {
      retryable: RETRYABLE.has(reason),
      ...options,
      details: { reason, ...options.details },
    });
    this.reason = reason;
  }

  /** Rebuild from a worker's plain failure value, adding the tail of stderr when there is one. */
  static fromFailure(failure: GuestFailure, stderr: Uint8Array | undefined, workload: string): WasmError {
    const details: Record<string, unknown> = { workload, ...failure.details };
    if (stderr !== undefined && stderr.byteLength > 0) {
      details['stderr'] = new TextDecoder().decode(stderr.subarray(Math.max(0, stderr.byteLength - 2048)));
    }
    return new WasmError(failure.reason, `${workload}: ${failure.message}`, { details });
  }
}
