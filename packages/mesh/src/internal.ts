/** @internal Sibling-package surface of @meshroute/mesh. Not a public API. */
export {};
