/**
 * @module @meshroute/backend-wasm
 * Edge WebAssembly backend: WASI preview 1 commands and reactor modules in a sandboxed worker pool.
 *
 * ```ts
 * import { createWasmBackend } from '@meshroute/backend-wasm';
 * const wasm = createWasmBackend({ workers: 2 });
 * const out = await wasm.run({ workload, artifact, input, contentType: undefined, signal });
 * // out.bytes: the module's stdout (command) or returned bytes (reactor)
 * await wasm.close();
 * ```
 */
export {
  artifactDigest,
  createWasmBackend,
  type PreparedModule,
  type PrepareModuleOptions,
  prepareModule,
} from './backend.js';
export { WASM_CAPABILITIES, type WasmCapability } from './capabilities.js';
export { WASM_FAILURE_CODES, WasmError } from './errors.js';
export type { WasmFailureReason, WasmForm } from './invoke.js';
export {
  DEFAULT_MAX_COMPILED_MODULES,
  DEFAULT_OUTPUT_CONTENT_TYPE,
  DEFAULT_REACTOR_ALLOC,
  DEFAULT_REACTOR_ENTRY,
  DEFAULT_STDERR_BYTES,
  DEFAULT_SYNC_COMPILE_MAX_BYTES,
  DEFAULT_WASM_WORKERS,
  DEFAULT_WORKER_RESOURCE_LIMITS,
  type ResolvedWasmBackendOptions,
  resolveWasmArtifactOptions,
  resolveWasmBackendOptions,
  type WasmArtifactOptions,
  type WasmBackendOptions,
  type WasmWorkerResourceLimits,
} from './options.js';
export { MAX_WASM32_PAGES, WASM_PAGE_BYTES } from './wasm-binary.js';
