/**
 * @module @meshroute/router
 * The placement engine: agent registry (XState lifecycle per agent), policy decisions over the
 * live registry, the work item lifecycle (XState machine per item: retries with backoff and
 * failover, dead letters), carbon-aware time shifting, and the CloudEvents HTTP ingress.
 * Talks to ports only (`Mesh`, `EventSource`, `StateStore`); adapters are wired by `cli`.
 *
 * @example
 * import { createRouter, memoryStateStore } from '@meshroute/router';
 * const router = createRouter({ mesh, source, store: memoryStateStore(), policies: holder });
 * await router.start();
 * const http = await startHttpIngress(router, { port: 8080 });
 */
export { type AgentMachineEvent, type AgentState, agentMachine } from './agent-machine.js';
export { type AgentEntry, AgentRegistry, type AgentRegistryOptions, type RegistryChange } from './agent-registry.js';
export { ANSWER_HEADERS, encodeAnswer, type RouterAnswer } from './answer.js';
export {
  type BatchEventProblem,
  DEFAULT_HTTP_HEADERS_TIMEOUT_MS,
  DEFAULT_HTTP_MAX_JSON_DEPTH,
  DEFAULT_HTTP_REQUEST_TIMEOUT_MS,
  type HttpIngress,
  type HttpIngressAuth,
  type HttpIngressOptions,
  type HttpMtlsAuth,
  type HttpTokenAuth,
  type ProblemBody,
  parseTenantMap,
  type ResolvedHttpIngressAuth,
  resolveHttpIngressAuth,
  startHttpIngress,
} from './http-ingress.js';
export {
  DEFAULT_MEMORY_STORE_MAX_OUTCOMES,
  DEFAULT_MEMORY_STORE_SWEEP_EVERY_OPS,
  type MemoryStateStoreOptions,
  memoryStateStore,
} from './memory-state-store.js';
export {
  COST_MICRO_UNITS,
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_CARBON_MEMORY_MS,
  DEFAULT_CLAIM_TTL_MS,
  DEFAULT_DEFER_MARGIN_MS,
  DEFAULT_DEFER_RECHECK_MS,
  DEFAULT_DEFER_THRESHOLD_RATIO,
  DEFAULT_DISPATCH_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_HTTP_PORT,
  DEFAULT_HTTP_WAIT_MS,
  DEFAULT_IDEMPOTENCY_TTL_MS,
  DEFAULT_INITIAL_RTT_MS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_MAX_EVENT_BYTES,
  DEFAULT_MAX_IN_FLIGHT_ITEMS,
  DEFAULT_MAX_QUEUE_WAIT_MS,
  DEFAULT_MAX_QUEUED,
  DEFAULT_MISSED_HEARTBEATS_BEFORE_DEGRADED,
  DEFAULT_MISSED_HEARTBEATS_BEFORE_LOST,
  DEFAULT_NAK_DELAY_MS,
  DEFAULT_RTT_EWMA_ALPHA,
  type ResolvedRouterOptions,
  type RouterOptions,
  resolveRouterOptions,
  type TenantBudget,
  type TenantRateLimit,
} from './options.js';
export type {
  AgentView,
  DecideOptions,
  PlacementPolicy,
  PolicyDecision,
  PolicySource,
  RouterEvent,
} from './policy-port.js';
export {
  type Admission,
  type CreateRouterOptions,
  createRouter,
  DUPLICATE_PUBLISH,
  type IngressPublisher,
  idempotencyKey,
  OUTCOME_POLL_MS,
  ROUTER_ENGINE,
  type Router,
  type RouterHealth,
} from './router.js';
export type { RouterStatusEvent } from './status.js';
export {
  backoffDelayMs,
  type DeadLetterReason,
  type WorkItemFinalState,
  workItemMachine,
} from './work-item-machine.js';
export {
  agentCanRun,
  type MemoryWorkloadCatalog,
  memoryWorkloadCatalog,
  type WatchableWorkloadRegistry,
  type WatchedWorkloadCatalog,
  type WatchedWorkloadChange,
  WORKLOAD_BACKEND_RULE,
  type WorkloadCatalog,
  watchWorkloadCatalog,
  workloadBackends,
} from './workloads.js';
