/**
 * @module @meshroute/mesh
 * The vocabulary of meshroute, with no I/O: strict CloudEvents validation and binding codecs,
 * the intent extension attributes, versioned message schemas, ports and error classes.
 *
 * @example
 * import { decodeHttp, parseIntent } from '@meshroute/mesh';
 * const { events } = decodeHttp(req.headers, body); // strict CloudEvents 1.0
 * const intent = parseIntent(events[0]!);
 */
export {
  type CloudEventJson,
  CORE_ATTRIBUTES,
  DEFAULT_MAX_ATTRIBUTE_BYTES,
  DEFAULT_MAX_EVENT_BYTES,
  type EventValidationOptions,
  EXTENSION_NAME_RE,
  eventData,
  isJsonContentType,
  isMediaType,
  isUriReference,
  type ResolvedEventValidationOptions,
  resolveEventValidationOptions,
  validateBatch,
  validateEvent,
} from './cloudevent.js';
export {
  ConfigError,
  ErrorCode,
  type ErrorInfo,
  fromErrorInfo,
  InvalidEventError,
  InvalidIntentError,
  InvalidMessageError,
  MeshError,
  type MeshErrorOptions,
  NoEligibleAgentError,
  PayloadTooLargeError,
  StoreUnavailableError,
  TimeoutError,
  TransportError,
  toMeshError,
  UnsupportedFormatError,
  WorkloadError,
} from './errors.js';
export { decodeHeaderValue, percentEncodeHeaderValue } from './header-value.js';
export {
  decodeHttp,
  encodeHttpBatch,
  encodeHttpBinary,
  encodeHttpStructured,
  type HttpContentMode,
  type HttpDecodeOptions,
  type HttpHeadersInput,
  type HttpMessage,
} from './http-binding.js';
export {
  type AttributeBag,
  EEA_COUNTRIES,
  EU_COUNTRIES,
  INTENT_ATTRIBUTES,
  type Intent,
  IntentAttribute,
  type IntentAttributeName,
  type IntentInput,
  ISO_3166_ALPHA2,
  intentToAttributes,
  JURISDICTION_GROUPS,
  parseIntent,
  parseResidency,
  parseRfc3339,
  residencyAllows,
  validateIntent,
} from './intent.js';
export { DEFAULT_MAX_JSON_DEPTH, jsonDeeperThan } from './json-depth.js';
export { describeJsonSyntaxError, type JsonSyntaxLocation, locateJsonSyntaxError } from './json-syntax.js';
export {
  decodeKafka,
  encodeKafkaBinary,
  encodeKafkaStructured,
  type KafkaDecodeOptions,
  type KafkaEncodeOptions,
  type KafkaHeaderValue,
  type KafkaRecord,
  type KafkaRecordInput,
} from './kafka-binding.js';
export {
  decodeNats,
  encodeNatsBinary,
  encodeNatsStructured,
  type NatsDecodeOptions,
  type NatsMessageParts,
} from './nats-binding.js';
export {
  type AgentMesh,
  type ArtifactInfo,
  type ArtifactStore,
  type BackendJob,
  type BackendOutput,
  type CancelTimer,
  type Clock,
  type ComputeBackend,
  type Disposable,
  type EventSource,
  type IdempotencyClaim,
  type IngressDelivery,
  type LogFields,
  type Logger,
  type Mesh,
  noopLogger,
  type QuotaDecision,
  type StateStore,
  type StoredOutcome,
  systemClock,
} from './ports.js';
export {
  AGENT_STATUSES,
  BACKENDS,
  type Backend,
  type CapacityReport,
  capacityReportSchema,
  DEAD_LETTER_REASONS,
  DECISION_OUTCOMES,
  DEFAULT_WORKLOAD_LIMITS,
  type DeadLetterReason,
  type DeadLetterRecord,
  type DecisionRecord,
  deadLetterRecordSchema,
  decisionRecordSchema,
  decodeMessage,
  encodeMessage,
  errorInfoSchema,
  eventJsonSchema,
  MESSAGE_SCHEMAS,
  type MessageSchemaName,
  type MessageTypes,
  parseMessage,
  type WorkItem,
  type WorkloadLimits,
  type WorkloadSpec,
  type WorkResult,
  workItemSchema,
  workloadLimitsSchema,
  workloadSpecSchema,
  workResultSchema,
} from './schemas.js';
export { fromSdkEvent, toSdkEvent } from './sdk-interop.js';
export {
  DEFAULT_SUBJECT_PREFIX,
  DEFAULT_TENANT_TOKEN,
  EVENT_BUCKETS,
  eventBucket,
  type MeshNames,
  meshNames,
} from './subjects.js';
