/**
 * @module @meshroute/backend-gpu
 * GPU node backend: ONNX models on onnxruntime-node (CUDA when present, CPU otherwise) with dynamic batching.
 *
 * ```ts
 * import { createGpuBackend } from '@meshroute/backend-gpu';
 * const gpu = createGpuBackend({ executionProvider: 'auto', maxBatchSize: 64, maxBatchDelayMs: 2 });
 * const facts = await gpu.ready(); // { device: 'cpu', fallbackReason: 'no NVIDIA GPU: ...', onnxruntime: '1.30.0', ... }
 * const input = new TextEncoder().encode(JSON.stringify({ x: [[...64 numbers]] }));
 * const out = await gpu.run({ workload, artifact: modelBytes, input, contentType: 'application/json', signal });
 * // out.json = { outputs: { probs: { dims: [1, 10], data: [...], type: 'float32' } } }
 * await gpu.close();
 * ```
 */
export {
  createGpuBackend,
  type GpuBackend,
  type GpuFacts,
  type GpuJobOutput,
  onnxruntimeVersion,
} from './backend.js';
export {
  DEFAULT_NVIDIA_SMI_TIMEOUT_MS,
  detectGpu,
  type GpuDetection,
  type GpuProbes,
  parseNvidiaSmiQuery,
  systemGpuProbes,
} from './device.js';
export { GPU_FAILURE_CODES, GPU_FAILURE_REASONS, GpuError, type GpuFailureReason } from './errors.js';
export { EXAMPLE_MODELS, type ExampleModelName, exampleModelPath } from './example-models.js';
export {
  DEFAULT_CLOSE_TIMEOUT_MS,
  DEFAULT_EXECUTION_PROVIDER,
  DEFAULT_GPU_WORKERS,
  DEFAULT_INTRA_OP_THREADS,
  DEFAULT_MAX_BATCH_DELAY_MS,
  DEFAULT_MAX_BATCH_SIZE,
  DEFAULT_MAX_CACHED_SESSIONS,
  type ExecutionProviderChoice,
  type GpuBackendOptions,
  type ResolvedGpuBackendOptions,
  resolveGpuBackendOptions,
} from './options.js';
export { type OutputTensorJson, SUPPORTED_TENSOR_TYPES, type TensorType } from './tensor-io.js';
