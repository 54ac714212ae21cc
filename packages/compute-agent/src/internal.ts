/** @internal Sibling-package surface of @meshroute/compute-agent. Not a public API. */
export { ISO2_TO_ISO3 } from './iso3166.js';
export { type ResultOutput, resultOutput } from './job-io.js';
export { createLatencyWindow, type LatencyWindow } from './latency-window.js';
