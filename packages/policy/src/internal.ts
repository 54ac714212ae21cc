/** @internal Sibling-package surface of @meshroute/policy. Not a public API. */
export {};
