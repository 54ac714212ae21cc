/** @internal Sibling-package surface of @meshroute/backend-wasm (benchmarks, tests). Not a public API. */
export {
  HOST_IMPORTS,
  refuseImport,
  WASI_GATED_FUNCTIONS,
  WASI_MODULE,
  WASI_PREVIEW1_FUNCTIONS,
} from './capabilities.js';
export { createInvocationHost, type GuestFailure, type InvokeRequest, type InvokeResult, invoke } from './invoke.js';
export {
  type ExportEntry,
  type ImportEntry,
  type MemoryLimits,
  type ModuleInfo,
  parseModuleInfo,
  rewriteMemoryMaximum,
  WasmFormatError,
} from './wasm-binary.js';
