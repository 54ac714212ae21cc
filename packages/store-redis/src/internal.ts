/** @internal Sibling-package surface of @meshroute/store-redis. Not a public API. */
export {};
