/**
 * @module @meshroute/compute-agent
 * A compute agent: takes work addressed to it, runs it on a backend, reports capacity.
 */
export {};
