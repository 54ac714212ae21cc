/** @internal Sibling-package surface of @meshroute/backend-wasm. Not a public API. */
export {};
