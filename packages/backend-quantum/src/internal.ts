/** @internal Sibling-package surface of @meshroute/backend-quantum. Not a public API. */
export { applyGate, applyGate2, applySwap, zeroState } from './kernel.js';
export { type Prng, xoshiro128ss } from './prng.js';
export { fuseGates, planSimulation, type SimulationPlan, simulation } from './simulator.js';
