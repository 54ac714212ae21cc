/**
 * @module @meshroute/policy
 * Routing policies: load, validate, compile and evaluate YAML + CEL policy bundles. Pure, no I/O.
 */
export {};
