/**
 * The router's answer to a producer (`meshroute.answer/v1` on a NATS reply; the `?wait=1` body
 * of the HTTP ingress), decoded leniently and turned into a typed result or a typed error.
 */
import {
  ErrorCode,
  type ErrorInfo,
  InvalidMessageError,
  MeshError,
  TimeoutError,
  type WorkResult,
  workResultSchema,
} from '@meshroute/mesh';
import { DeadLetteredError, EventRejectedError, InvocationFailedError, NoEligibleAgentError } from './errors.js';

/** Where the work ran. */
export interface AgentPlacement {
  id: string;
  region: string;
  jurisdiction: string;
}

/** The outcome of one event as its producer sees it (`meshroute.answer/v1`). */
export interface Answer {
  id: string;
  source: string;
  outcome: 'succeeded' | 'failed' | 'dead-lettered';
  agent: AgentPlacement | null;
  decisionId: string | null;
  result?: WorkResult;
  error?: ErrorInfo;
  deadLetterReason?: string;
  replayed?: boolean;
}

/** A successful invocation. */
export interface InvokeResult<T = unknown> {
  /** The event id. */
  id: string;
  /** The event source. */
  source: string;
  /** Where it ran. */
  agent: AgentPlacement | null;
  /** The decision that placed it. */
  decisionId: string | null;
  /** The workload's JSON output (when it produced JSON or text). */
  output: T | undefined;
  /** The workload's binary output, when it produced bytes. */
  outputBytes: Uint8Array | undefined;
  /** Content type of the output. */
  contentType: string | undefined;
  /** Which attempt answered (1 for the first dispatch). */
  attempt: number;
  /** Time spent in the agent's queue, ms. */
  queueMs: number;
  /** Guest execution time, ms. */
  executionMs: number;
  /** Whether the answer came from the recorded outcome of an earlier delivery (a duplicate). */
  replayed: boolean;
  /** The agent's result message, as received. */
  result: WorkResult;
}

const OUTCOMES = new Set(['succeeded', 'failed', 'dead-lettered']);

function asErrorInfo(v: unknown): ErrorInfo | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.code !== 'string' || typeof o.message !== 'string') return undefined;
  return {
    code: o.code as ErrorInfo['code'],
    message: o.message,
    retryable: o.retryable === true,
    ...(typeof o.details === 'object' && o.details !== null ? { details: o.details as Record<string, unknown> } : {}),
  };
}

function asAgent(v: unknown): AgentPlacement | null {
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  return typeof o.id === 'string'
    ? { id: o.id, region: String(o.region ?? ''), jurisdiction: String(o.jurisdiction ?? '') }
    : null;
}

function asResult(v: unknown): WorkResult | undefined {
  if (v === undefined) return undefined;
  const r = workResultSchema.safeParse(v);
  if (!r.success) {
    throw new InvalidMessageError(
      'meshroute.result/v1',
      r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
    );
  }
  return r.data;
}

/**
 * Decode an answer object (already JSON-parsed).
 * @throws InvalidMessageError when it is not an answer
 */
export function parseAnswer(value: unknown): Answer {
  if (typeof value !== 'object' || value === null) {
    throw new InvalidMessageError('meshroute.answer/v1', ['(root): expected an object']);
  }
  const o = value as Record<string, unknown>;
  if (typeof o.id !== 'string' || typeof o.outcome !== 'string' || !OUTCOMES.has(o.outcome)) {
    throw new InvalidMessageError('meshroute.answer/v1', ['id, outcome: expected an answer with an id and an outcome']);
  }
  const answer: Answer = {
    id: o.id,
    source: typeof o.source === 'string' ? o.source : '',
    outcome: o.outcome as Answer['outcome'],
    agent: asAgent(o.agent),
    decisionId: typeof o.decisionId === 'string' ? o.decisionId : null,
  };
  const result = asResult(o.result);
  if (result) answer.result = result;
  const error = asErrorInfo(o.error);
  if (error) answer.error = error;
  if (typeof o.deadLetterReason === 'string') answer.deadLetterReason = o.deadLetterReason;
  if (o.replayed === true) answer.replayed = true;
  return answer;
}

/**
 * Turn an answer into the invocation's result.
 * @throws EventRejectedError, NoEligibleAgentError, DeadLetteredError, InvocationFailedError
 */
export function resultOfAnswer<T>(answer: Answer): InvokeResult<T> {
  if (answer.outcome === 'succeeded' && answer.result) {
    const r = answer.result;
    return {
      id: answer.id,
      source: answer.source,
      agent: answer.agent,
      decisionId: answer.decisionId,
      output: r.output as T | undefined,
      outputBytes: r.outputBase64 === undefined ? undefined : new Uint8Array(Buffer.from(r.outputBase64, 'base64')),
      contentType: r.contentType,
      attempt: r.attempt,
      queueMs: r.queueMs,
      executionMs: r.executionMs,
      replayed: answer.replayed === true,
      result: r,
    };
  }
  const error: ErrorInfo = answer.error ?? {
    code: ErrorCode.INTERNAL,
    message: `the router answered ${answer.outcome} without an error`,
    retryable: false,
  };
  if (answer.outcome === 'dead-lettered') {
    const reason = answer.deadLetterReason ?? error.code;
    if (reason === 'INVALID_EVENT' || reason === 'INVALID_INTENT') throw new EventRejectedError(answer.id, error);
    if (reason === 'NO_ELIGIBLE_AGENT') throw new NoEligibleAgentError(answer.id, error);
    throw new DeadLetteredError(answer.id, reason, error);
  }
  throw new InvocationFailedError(answer.id, error, answer.result);
}

/**
 * Turn an HTTP ingress response (status and parsed body) into an {@link Answer}, or throw the
 * typed error for a refusal that is not an answer (invalid event, backpressure, timeout, ...).
 */
export function answerOfHttp(eventId: string, status: number, body: unknown, waitedMs: number): Answer {
  const o = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  if (status === 200) return parseAnswer({ source: '', ...o, outcome: o.outcome ?? 'succeeded' });
  const code = typeof o.code === 'string' ? o.code : ErrorCode.INTERNAL;
  const detail = typeof o.detail === 'string' ? o.detail : `HTTP ${status}`;
  const details = typeof o.details === 'object' && o.details !== null ? (o.details as Record<string, unknown>) : {};
  if (typeof o.outcome === 'string' && OUTCOMES.has(o.outcome)) {
    return parseAnswer({
      id: o.id ?? eventId,
      source: '',
      outcome: o.outcome,
      agent: o.agent,
      decisionId: o.decisionId,
      result: o.result,
      deadLetterReason: o.reason,
      error: { code, message: detail, retryable: false, details },
    });
  }
  if (code === 'INVALID_EVENT' || code === 'INVALID_INTENT' || status === 400) {
    throw new EventRejectedError(eventId, {
      code: code as ErrorInfo['code'],
      message: detail,
      retryable: false,
      attribute: typeof o.attribute === 'string' ? o.attribute : undefined,
      rule: typeof o.rule === 'string' ? o.rule : undefined,
    });
  }
  if (code === 'TIMEOUT' || status === 504) {
    throw new TimeoutError(`invocation of event ${eventId}`, waitedMs, { details: { eventId, detail } });
  }
  const known = (Object.values(ErrorCode) as string[]).includes(code) ? (code as ErrorCode) : ErrorCode.TRANSPORT_ERROR;
  throw new MeshError(known, `HTTP ingress answered ${status}: ${detail}`, {
    retryable: status === 429 || status === 503,
    details: { eventId, status, ...details },
  });
}
