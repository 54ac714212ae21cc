/** @internal Sibling-package surface of @meshroute/testing. Not a public API. */
export {};
