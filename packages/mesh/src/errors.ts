/**
 * Error classes with stable codes. Match on `code` (or `instanceof`), never on message text.
 * Every error says whether a retry can help (`retryable`) and keeps its `cause`.
 */

/** Every stable error code meshroute emits. Codes never change meaning once published. */
export const ErrorCode = {
  /** A CloudEvent broke a rule of the CloudEvents 1.0 spec or a binding. */
  INVALID_EVENT: 'INVALID_EVENT',
  /** An intent extension attribute has an invalid value. */
  INVALID_INTENT: 'INVALID_INTENT',
  /** A mesh message (work item, result, capacity report, ...) failed its schema. */
  INVALID_MESSAGE: 'INVALID_MESSAGE',
  /** The event body or a header is over its size limit. */
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /** The content type or event format is not one meshroute reads. */
  UNSUPPORTED_FORMAT: 'UNSUPPORTED_FORMAT',
  /** No agent satisfies the intent and the active policies. */
  NO_ELIGIBLE_AGENT: 'NO_ELIGIBLE_AGENT',
  /** A policy could not be loaded or evaluated. */
  POLICY_ERROR: 'POLICY_ERROR',
  /** Work did not finish in time. */
  TIMEOUT: 'TIMEOUT',
  /** The agent holding the work stopped heartbeating. */
  AGENT_LOST: 'AGENT_LOST',
  /** The agent refused the work (draining, no slot, unknown workload). */
  AGENT_REJECTED: 'AGENT_REJECTED',
  /** Every retry and failover was used up. */
  RETRIES_EXHAUSTED: 'RETRIES_EXHAUSTED',
  /** The ingress stream's deliveries of an event ran out before it could be routed or answered. */
  DELIVERIES_EXHAUSTED: 'DELIVERIES_EXHAUSTED',
  /** The event's deadline passed before it could run. */
  DEADLINE_PASSED: 'DEADLINE_PASSED',
  /** The router is over capacity; retry later. */
  BACKPRESSURE: 'BACKPRESSURE',
  /** The workload ran and failed (trap, exception, limit). */
  WORKLOAD_FAILED: 'WORKLOAD_FAILED',
  /** The workload is not registered or has no artifact for the backend. */
  WORKLOAD_NOT_FOUND: 'WORKLOAD_NOT_FOUND',
  /** A workload hit one of its limits (memory, output size, time). */
  LIMIT_EXCEEDED: 'LIMIT_EXCEEDED',
  /** An artifact's bytes do not match its digest, or it cannot be fetched. */
  ARTIFACT_ERROR: 'ARTIFACT_ERROR',
  /** A tenant's cost budget or rate limit is used up. */
  BUDGET_EXCEEDED: 'BUDGET_EXCEEDED',
  /** The shared state store cannot be reached. */
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
  /** The transport (NATS, Kafka) failed. */
  TRANSPORT_ERROR: 'TRANSPORT_ERROR',
  /** Permission denied by the mesh or an authenticating edge. */
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  /** Options or configuration are invalid. */
  CONFIG_ERROR: 'CONFIG_ERROR',
  /** Something is missing. */
  NOT_FOUND: 'NOT_FOUND',
  /** The component is shutting down. */
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  /** A bug: an invariant did not hold. */
  INTERNAL: 'INTERNAL',
} as const;

/** A stable error code, see {@link ErrorCode}. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Options common to every {@link MeshError}. */
export interface MeshErrorOptions {
  /** The underlying error. */
  cause?: unknown;
  /** Whether trying again (later, elsewhere) can help. Defaults per class. */
  retryable?: boolean;
  /** Structured facts about the failure, safe to log and to serialize. */
  details?: Record<string, unknown>;
}

/** The JSON form of an error, as carried in results, dead letters and HTTP problem bodies. */
export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  retryable: boolean;
  details?: Record<string, unknown>;
}

/** Base class of every meshroute error. */
export class MeshError extends Error {
  override readonly name: string = 'MeshError';
  /** Stable machine-readable code. */
  readonly code: ErrorCode;
  /** Whether a retry can help. */
  readonly retryable: boolean;
  /** Structured facts about the failure. */
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: MeshErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details ?? {};
  }

  /** The serializable form of this error. */
  toJSON(): ErrorInfo {
    const info: ErrorInfo = { code: this.code, message: this.message, retryable: this.retryable };
    if (Object.keys(this.details).length > 0) info.details = this.details;
    return info;
  }
}

/** A CloudEvent is invalid. Names the attribute and the rule it broke. */
export class InvalidEventError extends MeshError {
  override readonly name = 'InvalidEventError';
  /** The attribute (or `data`, or a header name) at fault. */
  readonly attribute: string;
  /** A short stable rule id, e.g. `required`, `specversion`, `uri-reference`, `rfc3339`. */
  readonly rule: string;
  /** For batches: the index of the offending event. */
  readonly index: number | undefined;

  constructor(attribute: string, rule: string, message: string, options: MeshErrorOptions & { index?: number } = {}) {
    super(ErrorCode.INVALID_EVENT, message, {
      ...options,
      details: {
        attribute,
        rule,
        ...(options.index === undefined ? {} : { index: options.index }),
        ...options.details,
      },
    });
    this.attribute = attribute;
    this.rule = rule;
    this.index = options.index;
  }
}

/** An intent extension attribute carries an invalid value. */
export class InvalidIntentError extends MeshError {
  override readonly name = 'InvalidIntentError';
  /** The intent attribute at fault, e.g. `residency`. */
  readonly attribute: string;
  /** A short stable rule id. */
  readonly rule: string;

  constructor(attribute: string, rule: string, message: string, options: MeshErrorOptions = {}) {
    super(ErrorCode.INVALID_INTENT, message, { ...options, details: { attribute, rule, ...options.details } });
    this.attribute = attribute;
    this.rule = rule;
  }
}

/** A mesh message failed its schema. */
export class InvalidMessageError extends MeshError {
  override readonly name = 'InvalidMessageError';
  /** The schema that rejected the message, e.g. `meshroute.capacity/v1`. */
  readonly schema: string;
  /** Path and rule of each problem, e.g. `freeSlots: expected number`. */
  readonly issues: readonly string[];

  constructor(schema: string, issues: readonly string[], options: MeshErrorOptions = {}) {
    super(ErrorCode.INVALID_MESSAGE, `invalid ${schema} message: ${issues.join('; ')}`, {
      ...options,
      details: { schema, issues, ...options.details },
    });
    this.schema = schema;
    this.issues = issues;
  }
}

/** The body or a header is over its size limit. */
export class PayloadTooLargeError extends MeshError {
  override readonly name = 'PayloadTooLargeError';
  constructor(what: string, sizeBytes: number, limitBytes: number, options: MeshErrorOptions = {}) {
    super(ErrorCode.PAYLOAD_TOO_LARGE, `${what} is ${sizeBytes} bytes, over the limit of ${limitBytes} bytes`, {
      ...options,
      details: { what, sizeBytes, limitBytes, ...options.details },
    });
  }
}

/** The content type or event format is not supported. */
export class UnsupportedFormatError extends MeshError {
  override readonly name = 'UnsupportedFormatError';
  constructor(contentType: string, options: MeshErrorOptions = {}) {
    super(ErrorCode.UNSUPPORTED_FORMAT, `unsupported event format: ${JSON.stringify(contentType)}`, {
      ...options,
      details: { contentType, ...options.details },
    });
  }
}

/** No agent satisfies the intent and the active policies. */
export class NoEligibleAgentError extends MeshError {
  override readonly name = 'NoEligibleAgentError';
  constructor(eventId: string, options: MeshErrorOptions = {}) {
    super(ErrorCode.NO_ELIGIBLE_AGENT, `no eligible agent for event ${eventId}`, {
      ...options,
      details: { eventId, ...options.details },
    });
  }
}

/** Work did not finish in time. Retryable. */
export class TimeoutError extends MeshError {
  override readonly name = 'TimeoutError';
  constructor(what: string, timeoutMs: number, options: MeshErrorOptions = {}) {
    super(ErrorCode.TIMEOUT, `${what} timed out after ${timeoutMs} ms`, {
      retryable: true,
      ...options,
      details: { timeoutMs, ...options.details },
    });
  }
}

/** Options or configuration are invalid. Names the option. */
export class ConfigError extends MeshError {
  override readonly name = 'ConfigError';
  /** The option at fault. */
  readonly option: string;
  constructor(option: string, message: string, options: MeshErrorOptions = {}) {
    super(ErrorCode.CONFIG_ERROR, `${option}: ${message}`, { ...options, details: { option, ...options.details } });
    this.option = option;
  }
}

/** A workload ran and failed, or could not run. */
export class WorkloadError extends MeshError {
  override readonly name = 'WorkloadError';
  constructor(
    code:
      | typeof ErrorCode.WORKLOAD_FAILED
      | typeof ErrorCode.WORKLOAD_NOT_FOUND
      | typeof ErrorCode.LIMIT_EXCEEDED
      | typeof ErrorCode.ARTIFACT_ERROR
      | typeof ErrorCode.TIMEOUT,
    message: string,
    options: MeshErrorOptions = {},
  ) {
    super(code, message, options);
  }
}

/** The shared state store cannot be reached. Retryable. */
export class StoreUnavailableError extends MeshError {
  override readonly name = 'StoreUnavailableError';
  constructor(message: string, options: MeshErrorOptions = {}) {
    super(ErrorCode.STORE_UNAVAILABLE, message, { retryable: true, ...options });
  }
}

/** The transport failed. Retryable by default. */
export class TransportError extends MeshError {
  override readonly name = 'TransportError';
  constructor(message: string, options: MeshErrorOptions = {}) {
    super(ErrorCode.TRANSPORT_ERROR, message, { retryable: true, ...options });
  }
}

/** Turn any thrown value into a {@link MeshError} (unknown errors become `INTERNAL`). */
export function toMeshError(err: unknown): MeshError {
  if (err instanceof MeshError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new MeshError(ErrorCode.INTERNAL, message, { cause: err });
}

/** Rebuild a {@link MeshError} from its JSON form (e.g. from a result message). */
export function fromErrorInfo(info: ErrorInfo): MeshError {
  return new MeshError(info.code, info.message, {
    retryable: info.retryable,
    ...(info.details ? { details: info.details } : {}),
  });
}
