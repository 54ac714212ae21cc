/** @internal Sibling-package surface of @meshroute/client. Not a public API. */
export { answerOfHttp } from './answer.js';
