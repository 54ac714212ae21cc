/** @internal Sibling-package surface of @meshroute/transport-nats. Not a public API. */
export {};
