/** @internal Sibling-package surface of @meshroute/transport-kafka. Not a public API. */
export {};
