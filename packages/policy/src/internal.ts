/** @internal Sibling-package surface of @meshroute/policy. Not a public API. */

export { createCelEngine, unparse } from './cel.js';
export { createFastState, decideFast, evaluateFully, resolveDecide } from './decide.js';
export { type CompiledPolicy, type LoadedBundle, loadCompiled } from './loader.js';
export { createReferenceEngine } from './reference-engine.js';
