/**
 * @module @meshroute/client
 * Producer SDK: publish and invoke CloudEvents with intent over NATS or the HTTP ingress.
 * Events are built correctly (id, source, time, the intent extensions, the W3C trace context of
 * the producer span) and validated strictly before anything is sent.
 *
 * @example
 * import { connectMesh } from '@meshroute/transport-nats';
 * import { createClient, NoEligibleAgentError } from '@meshroute/client';
 * const conn = await connectMesh({ servers: 'nats://127.0.0.1:4222' });
 * const client = createClient({ nats: conn, source: '/shop/orders' });
 * await client.publish({ type: 'order.created', data: { id: 7 } }, { residency: 'eu', workload: 'fraud-score' });
 * try {
 *   const r = await client.invoke('fraud-score', { id: 7 }, { residency: 'eu', latencyBudgetMs: 200 });
 *   console.log(r.output, r.agent);
 * } catch (err) {
 *   if (err instanceof NoEligibleAgentError) console.error('no EU agent can take it');
 *   else throw err;
 * }
 */
export {
  type AgentPlacement,
  type Answer,
  type InvokeResult,
  parseAnswer,
  resultOfAnswer,
} from './answer.js';
export {
  CLIENT_TRACER_NAME,
  type ClientOptions,
  type CommonClientOptions,
  createClient,
  DEFAULT_CLIENT_PUBLISH_TIMEOUT_MS,
  DEFAULT_INVOKE_TIMEOUT_MS,
  type HttpClientOptions,
  type InvokeOptions,
  type MeshClient,
  type NatsClientOptions,
} from './client.js';
export {
  DeadLetteredError,
  EventRejectedError,
  InvocationFailedError,
  NoEligibleAgentError,
} from './errors.js';
export {
  type BuildEventDefaults,
  buildEvent,
  DEFAULT_CLIENT_SOURCE,
  DEFAULT_INVOKE_TYPE,
  type EventInput,
} from './event.js';
export { spanContextOfTraceparent, traceparentOf } from './trace-context.js';
