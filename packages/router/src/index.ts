/**
 * @module @meshroute/router
 * The placement engine: agent registry, policy decisions, work lifecycle, HTTP ingress.
 */
export {};
export {
  DEFAULT_MEMORY_STORE_SWEEP_EVERY_OPS,
  type MemoryStateStoreOptions,
  memoryStateStore,
} from './memory-state-store.js';
