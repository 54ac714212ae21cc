/**
 * @module @meshroute/transport-nats
 * The NATS adapter: connection (servers, credentials, nkeys, TLS, typed status events),
 * idempotent provisioning of the JetStream streams, consumer, KV buckets and Object Store the
 * mesh uses, the CloudEvents NATS binding on the wire, and the port implementations: `Mesh`
 * (router), `AgentMesh` (agents), `EventSource` (ingress), `ArtifactStore`, plus the workload
 * registry and the policy store, and outcome questions (`serveOutcomeQueries` / `queryOutcome`)
 * for producers whose re-sent event the ingress de-duplicated.
 *
 * @example
 * import { connectMesh, provisionMesh, natsEventSource, natsMesh } from '@meshroute/transport-nats';
 * const conn = await connectMesh({ servers: 'nats://127.0.0.1:4222', name: 'router-1' });
 * await provisionMesh(conn);
 * const mesh = natsMesh(conn, { routerId: 'router-1' });
 * const source = natsEventSource(conn, { maxInFlight: 64 });
 */
export { DEFAULT_AGENT_QUEUE_GROUP, type NatsAgentMeshOptions, natsAgentMesh } from './agent-mesh.js';
export { type NatsArtifactStoreOptions, natsArtifactStore, sha256Digest } from './artifact-store.js';
export {
  connectMesh,
  type MeshConnection,
  type MeshConnectionInfo,
  type MeshStatusEvent,
  mapNatsStatus,
  wrapConnection,
} from './connection.js';
export { mapNatsError } from './errors.js';
export {
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_OPEN_PULLS,
  DEFAULT_PULL_EXPIRES_MS,
  DEFAULT_PULL_RETRY_DELAY_MS,
  type NatsEventSourceOptions,
  natsEventSource,
} from './event-source.js';
export { headersFromMap, mapFromHeaders } from './headers.js';
export { type NatsMeshOptions, natsMesh, TRACE_HEADERS } from './mesh.js';
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_CONNECTION_NAME,
  DEFAULT_JETSTREAM_TIMEOUT_MS,
  DEFAULT_MAX_RECONNECT_ATTEMPTS,
  DEFAULT_NATS_URL,
  DEFAULT_PING_INTERVAL_MS,
  DEFAULT_RECONNECT_TIME_WAIT_MS,
  type NatsConnectOptions,
  type NatsTlsOptions,
  type ResolvedNatsAuth,
  type ResolvedNatsOptions,
  resolveNatsOptions,
} from './options.js';
export {
  DEFAULT_OUTCOME_QUERY_GRACE_MS,
  DEFAULT_OUTCOME_QUEUE_GROUP,
  MAX_OUTCOME_WAIT_MS,
  OUTCOME_QUERY_SCHEMA,
  OUTCOME_STATUS_HEADER,
  type OutcomeQuery,
  type OutcomeQueryBody,
  type OutcomeQueryHandler,
  type OutcomeQuestion,
  type OutcomeReplyStatus,
  parseOutcomeQuery,
  type QueryOutcomeOptions,
  queryOutcome,
  type ServeOutcomeQueriesOptions,
  serveOutcomeQueries,
} from './outcome-query.js';
export {
  type NatsPolicyStoreOptions,
  natsPolicyStore,
  POLICY_BUNDLE_KEY,
  POLICY_BUNDLE_SCHEMA,
  type PolicyBundlePush,
  type PolicyFile,
  type PolicyStore,
  type StoredPolicyBundle,
} from './policy-store.js';
export {
  DEFAULT_AGENTS_TTL_MS,
  DEFAULT_DEAD_LETTERS_MAX_AGE_MS,
  DEFAULT_DECISIONS_MAX_AGE_MS,
  DEFAULT_DUPLICATE_WINDOW_MS,
  DEFAULT_INGRESS_ACK_WAIT_MS,
  DEFAULT_INGRESS_MAX_AGE_MS,
  DEFAULT_MAX_ACK_PENDING,
  DEFAULT_MAX_DELIVER,
  DEFAULT_POLICY_HISTORY,
  DEFAULT_RESULTS_MAX_AGE_MS,
  DEFAULT_WORKLOAD_HISTORY,
  type MeshStreamPlan,
  meshStreamPlan,
  type ProvisionedResource,
  type ProvisionOptions,
  type ProvisionReport,
  provisionMesh,
  type ResolvedProvisionOptions,
  resolveProvisionOptions,
  type StreamPlan,
} from './provision.js';
export {
  DEFAULT_PUBLISH_TIMEOUT_MS,
  eventMsgId,
  type PublishEventAck,
  type PublishEventOptions,
  publishEvent,
  REPLY_TO_HEADER,
} from './publish.js';
export {
  DEFAULT_NATS_HOST,
  DEFAULT_NATS_LOG_TAIL_LINES,
  DEFAULT_NATS_MAX_FILE_BYTES,
  DEFAULT_NATS_MAX_MEM_BYTES,
  DEFAULT_NATS_MAX_PAYLOAD_BYTES,
  DEFAULT_NATS_START_TIMEOUT_MS,
  DEFAULT_NATS_STOP_TIMEOUT_MS,
  freePort,
  type NatsClusterOptions,
  type NatsJetStreamOptions,
  type NatsLeafNodeOptions,
  type NatsLeafRemote,
  type NatsServerOptions,
  type NatsServerProcess,
  NatsServerStartError,
  spawnNatsServer,
} from './server-process.js';
export {
  type NatsWorkloadRegistryOptions,
  natsWorkloadRegistry,
  type WorkloadChange,
  type WorkloadRegistry,
} from './workload-registry.js';
