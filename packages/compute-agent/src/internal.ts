/** @internal Sibling-package surface of @meshroute/compute-agent. Not a public API. */
export {};
