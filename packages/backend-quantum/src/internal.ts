/** @internal Sibling-package surface of @meshroute/backend-quantum. Not a public API. */
export {};
