/** @internal Sibling-package surface of @meshroute/backend-gpu. Not a public API. */
export { type GpuBackendInternals, type GpuBackendStats, gpuBackendInternals } from './backend.js';
export { PROBE_MODEL_BASE64, probeModelBytes } from './probe-model.js';
export {
  concatFeeds,
  type Feed,
  type ModelInfo,
  modelInfo,
  parseJobInput,
  sliceRows,
  type TensorInfo,
  tensorToJson,
} from './tensor-io.js';
