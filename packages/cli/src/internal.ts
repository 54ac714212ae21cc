/** @internal Sibling-package surface of @meshroute/cli. Not a public API. */
export {};
