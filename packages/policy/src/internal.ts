/** @internal Sibling-package surface of @meshroute/policy. Not a public API. */

export { createCelEngine, unparse } from './cel.js';
export { evaluateFully, resolveDecide } from './decide.js';
export { createFastState, decideFast } from './fast-path.js';
export { type CompiledPolicy, type LoadedBundle, loadCompiled } from './loader.js';
export { createReferenceEngine } from './reference-engine.js';
