/**
 * @module @meshroute/router
 * The placement engine: agent registry, policy decisions, work lifecycle, HTTP ingress.
 */
export {};
