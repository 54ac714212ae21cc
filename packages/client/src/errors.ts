/**
 * Typed outcomes of an invocation that did not succeed. Each is a {@link MeshError} with a stable
 * `code`; match on the class or the code, never on the message.
 */
import { ErrorCode, type ErrorInfo, MeshError, type MeshErrorOptions, type WorkResult } from '@meshroute/mesh';

/**
 * The mesh refused the event as invalid (`INVALID_EVENT`, `INVALID_INTENT`): it was never routed.
 * Names the attribute and the rule when the mesh said which.
 */
export class EventRejectedError extends MeshError {
  override readonly name = 'EventRejectedError';
  /** The event id. */
  readonly eventId: string;
  /** The attribute at fault, when known. */
  readonly attribute: string | undefined;
  /** The rule it broke, when known. */
  readonly rule: string | undefined;

  constructor(
    eventId: string,
    info: ErrorInfo & { attribute?: string | undefined; rule?: string | undefined },
    options: MeshErrorOptions = {},
  ) {
    const attribute = info.attribute ?? (info.details?.attribute as string | undefined);
    const rule = info.rule ?? (info.details?.rule as string | undefined);
    super(info.code === ErrorCode.INVALID_INTENT ? ErrorCode.INVALID_INTENT : ErrorCode.INVALID_EVENT, info.message, {
      ...options,
      retryable: false,
      details: {
        eventId,
        ...(attribute === undefined ? {} : { attribute }),
        ...(rule === undefined ? {} : { rule }),
        ...info.details,
      },
    });
    this.eventId = eventId;
    this.attribute = attribute;
    this.rule = rule;
  }
}

/**
 * The event was dead-lettered without running: `reason` says why (`NO_ELIGIBLE_AGENT`,
 * `RETRIES_EXHAUSTED`, `DEADLINE_PASSED`, `POLICY_ERROR`, `BUDGET_EXCEEDED`, ...). The `code` is
 * the error code the mesh recorded. For `NO_ELIGIBLE_AGENT` see {@link NoEligibleAgentError}.
 */
export class DeadLetteredError extends MeshError {
  override readonly name: string = 'DeadLetteredError';
  /** The event id. */
  readonly eventId: string;
  /** The dead-letter reason. */
  readonly reason: string;

  constructor(eventId: string, reason: string, info: ErrorInfo, options: MeshErrorOptions = {}) {
    super(info.code, `event ${eventId} was dead-lettered (${reason}): ${info.message}`, {
      ...options,
      retryable: info.retryable,
      details: { eventId, reason, ...info.details },
    });
    this.eventId = eventId;
    this.reason = reason;
  }
}

/**
 * No agent satisfies the intent and the active policies (dead-lettered with reason
 * `NO_ELIGIBLE_AGENT`; code `NO_ELIGIBLE_AGENT`). `details.excluded` lists the agents and the rules
 * that excluded them, when the router said.
 */
export class NoEligibleAgentError extends DeadLetteredError {
  override readonly name = 'NoEligibleAgentError';
  constructor(eventId: string, info: ErrorInfo, options: MeshErrorOptions = {}) {
    super(eventId, 'NO_ELIGIBLE_AGENT', { ...info, code: ErrorCode.NO_ELIGIBLE_AGENT }, options);
  }
}

/**
 * The workload ran on an agent and failed (`WORKLOAD_FAILED`, `LIMIT_EXCEEDED`,
 * `WORKLOAD_NOT_FOUND`, ...). `result` is the agent's result message.
 */
export class InvocationFailedError extends MeshError {
  override readonly name = 'InvocationFailedError';
  /** The event id. */
  readonly eventId: string;
  /** The agent's result, when it sent one. */
  readonly result: WorkResult | undefined;

  constructor(eventId: string, info: ErrorInfo, result: WorkResult | undefined, options: MeshErrorOptions = {}) {
    super(info.code, `event ${eventId} failed on agent ${result?.agentId ?? '?'}: ${info.message}`, {
      ...options,
      retryable: info.retryable,
      details: { eventId, ...(result ? { agentId: result.agentId } : {}), ...info.details },
    });
    this.eventId = eventId;
    this.result = result;
  }
}
