/**
 * Versioned message schemas for everything that crosses a process boundary on the mesh.
 * Every message carries `schema: '<name>/v<N>'`; readers validate with {@link parseMessage}
 * (or a schema's `parse*` helper) at every boundary and reject anything else with
 * {@link InvalidMessageError}.
 */

import { z } from 'zod';
import { ErrorCode, InvalidMessageError } from './errors.js';
import { describeJsonSyntaxError } from './json-syntax.js';

/** Backends an agent can offer. */
export const BACKENDS = ['wasm', 'gpu', 'quantum'] as const;
/** A backend kind. */
export type Backend = (typeof BACKENDS)[number];

const errorCodes = Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]];

/** Schema of {@link ErrorInfo}. */
export const errorInfoSchema = z.object({
  code: z.enum(errorCodes),
  message: z.string(),
  retryable: z.boolean(),
  details: z.record(z.string(), z.unknown()).optional(),
});

const jurisdiction = z.string().regex(/^[A-Z]{2}$/, 'ISO 3166-1 alpha-2, uppercase');
const decimal = z.string().regex(/^(0|[1-9][0-9]*)(\.[0-9]+)?$/, 'non-negative decimal string');
const nonNegInt = z.number().int().nonnegative();
const nonNeg = z.number().nonnegative();

/** Structured-mode CloudEvent JSON as carried inside mesh messages (already strictly validated at ingress). */
export const eventJsonSchema = z
  .object({ specversion: z.literal('1.0'), id: z.string().min(1), source: z.string().min(1), type: z.string().min(1) })
  .catchall(z.unknown());

/** Agent status as announced in its heartbeat. */
export const AGENT_STATUSES = ['ready', 'degraded', 'draining', 'leaving'] as const;

/** `meshroute.capacity/v1`: an agent's heartbeat. */
export const capacityReportSchema = z.object({
  schema: z.literal('meshroute.capacity/v1'),
  agentId: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, _ and -'),
  /** Monotonic per agent process; a lower seq than the last seen is stale. */
  seq: nonNegInt,
  /** Agent process instance id: a restart gets a new one. */
  instanceId: z.string().min(1),
  sentAtMs: nonNeg,
  heartbeatIntervalMs: z.number().int().positive(),
  status: z.enum(AGENT_STATUSES),
  backends: z.array(z.enum(BACKENDS)).min(1),
  region: z.string().min(1),
  jurisdiction,
  /** Grid carbon intensity, gCO2e/kWh. */
  carbonIntensity: nonNeg,
  /** Where the carbon figure came from: `fixed`, `auto:<dataset>`, `provider`, `provider-stale`. */
  carbonSource: z.string(),
  latencyP50Ms: nonNeg,
  latencyP99Ms: nonNeg,
  slots: nonNegInt,
  freeSlots: nonNegInt,
  inFlight: nonNegInt,
  queueDepth: nonNegInt,
  /** Price of one job on this agent, currency units. */
  costPerJob: decimal,
  labels: z.record(z.string(), z.string()),
  versions: z.record(z.string(), z.string()),
  /** Workloads this agent can run (empty: any registered workload for its backends). */
  workloads: z.array(z.string()),
  /** Backend facts: engine version, GPU model and memory, maximum qubits, ... */
  facts: z.record(z.string(), z.unknown()),
});
/** An agent's heartbeat. */
export type CapacityReport = z.infer<typeof capacityReportSchema>;

/** `meshroute.work/v1`: one unit of work dispatched to one agent. */
export const workItemSchema = z.object({
  schema: z.literal('meshroute.work/v1'),
  workId: z.string().min(1),
  /** 1 for the first dispatch, +1 for each retry or failover. */
  attempt: z.number().int().positive(),
  decisionId: z.string().min(1),
  routerId: z.string().min(1),
  agentId: z.string().min(1),
  workload: z.string().min(1),
  /** The event, structured-mode JSON; its data is the job input. */
  event: eventJsonSchema,
  dispatchedAtMs: nonNeg,
  /** How long the agent may take to answer. */
  timeoutMs: z.number().int().positive(),
  traceparent: z.string().optional(),
  tracestate: z.string().optional(),
});
/** One unit of work. */
export type WorkItem = z.infer<typeof workItemSchema>;

/** `meshroute.result/v1`: the outcome of one work item on one agent. */
export const workResultSchema = z.object({
  schema: z.literal('meshroute.result/v1'),
  workId: z.string().min(1),
  eventId: z.string().min(1),
  eventSource: z.string().min(1),
  agentId: z.string().min(1),
  attempt: z.number().int().positive(),
  ok: z.boolean(),
  /** JSON output (when the workload produced JSON or text). */
  output: z.unknown().optional(),
  /** Binary output, base64. */
  outputBase64: z.string().optional(),
  contentType: z.string().optional(),
  error: errorInfoSchema.optional(),
  /** Time spent waiting in the agent's queue. */
  queueMs: nonNeg,
  /** Guest execution time. */
  executionMs: nonNeg,
  finishedAtMs: nonNeg,
});
/** The outcome of a work item. */
export type WorkResult = z.infer<typeof workResultSchema>;

/** Decision outcomes. */
export const DECISION_OUTCOMES = ['routed', 'no-eligible-agent', 'policy-error', 'deferred'] as const;

/** `meshroute.decision/v1`: the audit record of one routing decision. */
export const decisionRecordSchema = z.object({
  schema: z.literal('meshroute.decision/v1'),
  decisionId: z.string().min(1),
  time: z.string(),
  routerId: z.string().optional(),
  bundle: z.object({
    digest: z.string(),
    policies: z.array(
      z.object({ name: z.string(), version: z.number(), hash: z.string(), mode: z.enum(['enforce', 'shadow']) }),
    ),
  }),
  engine: z.object({ name: z.string(), version: z.string() }),
  event: z.object({
    id: z.string(),
    type: z.string(),
    source: z.string(),
    tenant: z.string().optional(),
    /** Allow-listed attributes in clear; the rest masked as `"***"`. */
    attributes: z.record(z.string(), z.unknown()),
  }),
  attempt: z.number().int().positive().optional(),
  candidates: nonNegInt,
  registryRevision: nonNegInt,
  excluded: z.array(z.object({ agentId: z.string(), rules: z.array(z.string()) })),
  topK: z.array(z.object({ agentId: z.string(), score: z.number() })),
  chosen: z.object({ agentId: z.string(), region: z.string(), jurisdiction: z.string() }).nullable(),
  outcome: z.enum(DECISION_OUTCOMES),
  shadow: z.array(
    z.object({ policy: z.string(), outcome: z.string(), chosen: z.string().nullable(), agree: z.boolean() }),
  ),
  /** Set when the work waits for a greener slot (carbon-aware time shifting). */
  deferred: z.object({ untilMs: nonNeg, reason: z.string() }).optional(),
  errors: z.array(z.object({ rule: z.string(), agentId: z.string().optional(), message: z.string() })).optional(),
  /** Approved policy exceptions that relaxed a constraint in this decision (for the agents listed). */
  exceptions: z
    .array(
      z.object({
        rule: z.string(),
        constraint: z.string(),
        approvedBy: z.string(),
        ticket: z.string(),
        expires: z.string(),
        agentIds: z.array(z.string()),
      }),
    )
    .optional(),
  evaluationUs: nonNeg,
});
/** The audit record of a routing decision. */
export type DecisionRecord = z.infer<typeof decisionRecordSchema>;

/** Reasons an event is dead-lettered. */
export const DEAD_LETTER_REASONS = [
  'NO_ELIGIBLE_AGENT',
  'RETRIES_EXHAUSTED',
  'DEADLINE_PASSED',
  'INVALID_EVENT',
  'INVALID_INTENT',
  'POLICY_ERROR',
  'WORKLOAD_FAILED',
  'BUDGET_EXCEEDED',
  /** The event names a workload that is not registered (checked by the router before any dispatch). */
  'WORKLOAD_NOT_FOUND',
  /**
   * The event was handed back to ingress on its last delivery (the consumer's `max_deliver`): the
   * router records it here rather than let the stream stop delivering it unseen.
   */
  'DELIVERIES_EXHAUSTED',
] as const;

/** Why an event was dead-lettered, one of {@link DEAD_LETTER_REASONS}. */
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

/** `meshroute.deadletter/v1`: an event that could not be routed or answered, with the reason. */
export const deadLetterRecordSchema = z.object({
  schema: z.literal('meshroute.deadletter/v1'),
  eventId: z.string(),
  eventSource: z.string(),
  tenant: z.string().optional(),
  reason: z.enum(DEAD_LETTER_REASONS),
  error: errorInfoSchema,
  attempts: nonNegInt,
  decisionIds: z.array(z.string()),
  timeMs: nonNeg,
  /** The event as received: structured JSON when it parsed, else the raw text. */
  event: z.union([eventJsonSchema, z.string()]).optional(),
});
/** A dead letter. */
export type DeadLetterRecord = z.infer<typeof deadLetterRecordSchema>;

/** Limits of a workload; every backend enforces them. */
export const workloadLimitsSchema = z.object({
  /** Wall-clock limit of one invocation. */
  timeoutMs: z.number().int().positive().max(3_600_000),
  /** Memory cap of one invocation (WebAssembly linear memory; model/session memory). */
  memoryBytes: z.number().int().positive(),
  /** Output size cap of one invocation. */
  outputBytes: z.number().int().positive(),
});
/** Limits of a workload. */
export type WorkloadLimits = z.infer<typeof workloadLimitsSchema>;

/** Default workload limits. */
export const DEFAULT_WORKLOAD_LIMITS: WorkloadLimits = {
  timeoutMs: 5_000,
  memoryBytes: 64 * 1024 * 1024,
  outputBytes: 1024 * 1024,
};

/** One artifact of a workload for one backend. */
export const workloadArtifactSchema = z.object({
  /** `sha256:<hex>` of the artifact in the artifact store. */
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'sha256:<64 hex>'),
  /** File name, for humans. */
  name: z.string().min(1),
  /** Backend-specific settings (WebAssembly `form: command|reactor` and `entry`, ONNX input names, ...). */
  options: z.record(z.string(), z.unknown()).default({}),
});

/** `meshroute.workload/v1`: a registered, versioned workload. */
export const workloadSpecSchema = z.object({
  schema: z.literal('meshroute.workload/v1'),
  name: z.string().regex(/^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$/),
  version: z.string().min(1),
  description: z.string().optional(),
  /** Artifacts per backend; the workload can run on each backend listed. */
  artifacts: z.object({
    wasm: workloadArtifactSchema.optional(),
    gpu: workloadArtifactSchema.optional(),
    quantum: workloadArtifactSchema.optional(),
  }),
  limits: workloadLimitsSchema,
  /** Capabilities the workload needs (WASI: `stdin`, `stdout`, `env`, `clock`, `random`, ...). Nothing else is granted. */
  capabilities: z.array(z.string()).default([]),
});
/** A registered workload. */
export type WorkloadSpec = z.infer<typeof workloadSpecSchema>;

/** All message schemas by their `schema` name. */
export const MESSAGE_SCHEMAS = {
  'meshroute.capacity/v1': capacityReportSchema,
  'meshroute.work/v1': workItemSchema,
  'meshroute.result/v1': workResultSchema,
  'meshroute.decision/v1': decisionRecordSchema,
  'meshroute.deadletter/v1': deadLetterRecordSchema,
  'meshroute.workload/v1': workloadSpecSchema,
} as const;

/** A message schema name. */
export type MessageSchemaName = keyof typeof MESSAGE_SCHEMAS;
/** Message type by schema name. */
export interface MessageTypes {
  'meshroute.capacity/v1': CapacityReport;
  'meshroute.work/v1': WorkItem;
  'meshroute.result/v1': WorkResult;
  'meshroute.decision/v1': DecisionRecord;
  'meshroute.deadletter/v1': DeadLetterRecord;
  'meshroute.workload/v1': WorkloadSpec;
}

/**
 * Validate a decoded message against a named schema.
 * @throws InvalidMessageError listing every problem with its path
 */
export function parseMessage<N extends MessageSchemaName>(name: N, value: unknown): MessageTypes[N] {
  const schema = MESSAGE_SCHEMAS[name] as unknown as z.ZodType<MessageTypes[N]>;
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new InvalidMessageError(
    name,
    r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`),
  );
}

const textDecoder = new TextDecoder('utf-8', { fatal: true });
const textEncoder = new TextEncoder();

/**
 * Decode a UTF-8 JSON message and validate it.
 * @throws InvalidMessageError for invalid UTF-8, invalid JSON or a schema violation
 */
export function decodeMessage<N extends MessageSchemaName>(name: N, bytes: Uint8Array): MessageTypes[N] {
  let text: string;
  try {
    text = textDecoder.decode(bytes);
  } catch (cause) {
    throw new InvalidMessageError(name, [`(root): not UTF-8: ${(cause as Error).message}`], { cause });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new InvalidMessageError(name, [`(root): not JSON: ${describeJsonSyntaxError(text, cause).message}`], {
      cause,
    });
  }
  return parseMessage(name, value);
}

/** Validate and encode a message as UTF-8 JSON. */
export function encodeMessage<N extends MessageSchemaName>(name: N, message: MessageTypes[N]): Uint8Array {
  if (name === 'meshroute.decision/v1') return encodeDecisionRecord(message as DecisionRecord);
  return textEncoder.encode(JSON.stringify(parseMessage(name, message)));
}

/** A decision record without its bundle and engine sections (validated on their own). */
const decisionRestSchema = decisionRecordSchema.omit({ bundle: true, engine: true });
/** JSON of frozen `bundle`/`engine` sections already validated, by object. */
const sectionJson = new WeakMap<object, string>();

/**
 * JSON of a frozen record section, validated and serialised once per object (the policy engine
 * shares one frozen `bundle` and `engine` section among all records of a bundle); an unfrozen
 * section is validated and serialised every time. Problems are added to `issues`.
 */
function sectionToJson(section: unknown, schema: z.ZodType, field: string, issues: string[]): string {
  const frozen = typeof section === 'object' && section !== null && Object.isFrozen(section);
  if (frozen) {
    const cached = sectionJson.get(section);
    if (cached !== undefined) return cached;
  }
  const r = schema.safeParse(section);
  if (!r.success) {
    for (const i of r.error.issues) issues.push(`${[field, ...i.path].join('.')}: ${i.message}`);
    return '';
  }
  const json = JSON.stringify(r.data);
  if (frozen) sectionJson.set(section as object, json);
  return json;
}

/**
 * Encode a decision record: the record is validated like any message, but its (usually shared,
 * frozen) `bundle` and `engine` sections only once per object. The JSON is the same message with
 * those two fields first.
 */
function encodeDecisionRecord(record: DecisionRecord): Uint8Array {
  const rest = decisionRestSchema.safeParse(record);
  const issues = rest.success
    ? []
    : rest.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
  const sections = (typeof record === 'object' && record !== null ? record : {}) as Partial<DecisionRecord>;
  const bundle = sectionToJson(sections.bundle, decisionRecordSchema.shape.bundle, 'bundle', issues);
  const engine = sectionToJson(sections.engine, decisionRecordSchema.shape.engine, 'engine', issues);
  if (!rest.success || issues.length > 0) throw new InvalidMessageError('meshroute.decision/v1', issues);
  const json = JSON.stringify(rest.data);
  return textEncoder.encode(`{"bundle":${bundle},"engine":${engine}${json === '{}' ? '}' : `,${json.slice(1)}`}`);
}
