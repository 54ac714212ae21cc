/** @internal Sibling-package surface of @meshroute/router. Not a public API. */
export {};
