/**
 * @module @meshroute/backend-wasm
 * Edge WebAssembly backend: WASI preview 1 commands and reactor modules in a sandboxed worker pool.
 */
export {};
