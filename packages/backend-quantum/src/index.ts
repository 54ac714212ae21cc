/**
 * @module @meshroute/backend-quantum
 * Quantum simulator backend: OpenQASM 2.0 on a fast state-vector kernel.
 */
export {};
