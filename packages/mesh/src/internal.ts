/** @internal Sibling-package surface of @meshroute/mesh. Not a public API. */
export { CE_BATCH_JSON, CE_JSON, duplicateMemberError, structuredKind } from './binary-mode.js';
export { checkEvent } from './cloudevent.js';
export { type RepeatedMember, repeatedMembers } from './json-members.js';
