/** @internal Sibling-package surface of @meshroute/backend-gpu. Not a public API. */
export {};
