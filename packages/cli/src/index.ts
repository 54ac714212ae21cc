/**
 * @module @meshroute/cli
 * The meshroute binary: composition root wiring adapters, flags, env, signals and logging.
 */
export {};
