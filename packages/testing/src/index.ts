/**
 * @module @meshroute/testing
 * Test harness: real nats-server (single, cluster, leaf) and redis-server on free ports, in-memory fakes, simulated clock, port conformance suites.
 */
export {};
