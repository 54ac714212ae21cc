import { ErrorCode, MeshError, type MeshErrorOptions } from '@meshroute/mesh';

/**
 * Why a GPU job failed, in `error.details.reason`:
 * - `invalid-input`: the job input is not JSON, names an unknown input, misses one, or has a wrong shape, type or value (`WORKLOAD_FAILED`).
 * - `invalid-model`: the artifact is not an ONNX model ONNX Runtime can load (`ARTIFACT_ERROR`).
 * - `unsupported-model`: the model uses a tensor type this backend cannot feed or return (`WORKLOAD_FAILED`).
 * - `inference-failed`: ONNX Runtime failed while running the model (`WORKLOAD_FAILED`).
 * - `worker-crashed`: the worker thread died while running the job; it was replaced (`WORKLOAD_FAILED`, retryable).
 * - `output-too-large`: the outputs are over `limits.outputBytes` (`LIMIT_EXCEEDED`).
 * - `model-too-large`: the model is over `limits.memoryBytes` (`LIMIT_EXCEEDED`).
 * - `no-artifact`: the workload has no `gpu` artifact (`WORKLOAD_NOT_FOUND`).
 * - `aborted`: the job's signal was aborted (`WORKLOAD_FAILED`, unless the abort reason is a MeshError).
 */
export const GPU_FAILURE_REASONS = [
  'invalid-input',
  'invalid-model',
  'unsupported-model',
  'inference-failed',
  'worker-crashed',
  'output-too-large',
  'model-too-large',
  'no-artifact',
  'aborted',
] as const;

/** One of {@link GPU_FAILURE_REASONS}. */
export type GpuFailureReason = (typeof GPU_FAILURE_REASONS)[number];

/** The stable {@link ErrorCode} of each failure reason. */
export const GPU_FAILURE_CODES: Readonly<Record<GpuFailureReason, ErrorCode>> = {
  'invalid-input': ErrorCode.WORKLOAD_FAILED,
  'invalid-model': ErrorCode.ARTIFACT_ERROR,
  'unsupported-model': ErrorCode.WORKLOAD_FAILED,
  'inference-failed': ErrorCode.WORKLOAD_FAILED,
  'worker-crashed': ErrorCode.WORKLOAD_FAILED,
  'output-too-large': ErrorCode.LIMIT_EXCEEDED,
  'model-too-large': ErrorCode.LIMIT_EXCEEDED,
  'no-artifact': ErrorCode.WORKLOAD_NOT_FOUND,
  aborted: ErrorCode.WORKLOAD_FAILED,
};

/** A failed GPU job: a {@link MeshError} whose `reason` (also `details.reason`) is a {@link GpuFailureReason}. */
export class GpuError extends MeshError {
  override readonly name = 'GpuError';
  /** Why it failed. */
  readonly reason: GpuFailureReason;
  constructor(reason: GpuFailureReason, message: string, options: MeshErrorOptions = {}) {
    super(GPU_FAILURE_CODES[reason], message, {
      retryable: reason === 'worker-crashed',
      ...options,
      details: { reason, ...options.details },
    });
    this.reason = reason;
  }
}
