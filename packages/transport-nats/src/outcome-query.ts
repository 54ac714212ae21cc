/**
 * Outcome questions over NATS: a producer whose re-sent event was de-duplicated by the JetStream
 * ingress (same `source` and `id`, so no router ever sees the copy nor its reply inbox) asks the
 * routers for the first one's outcome.
 *
 * Wire protocol (core NATS request/reply):
 * - request on `names.outcomeSubject(tenant)` (`<prefix>.outcome.<tenant>`, `_` for no tenant),
 *   body JSON `{ "source": string, "id": string, "waitMs": number }` (see {@link OutcomeQueryBody});
 * - the routers serve `names.outcomeWildcard` in one queue group ({@link DEFAULT_OUTCOME_QUEUE_GROUP}),
 *   so one of them answers each question;
 * - the reply carries header {@link OUTCOME_STATUS_HEADER}:
 *   - `answer`: the body is the router's answer (`meshroute.answer/v1` JSON) as the handler encoded it;
 *   - `none`: empty body; no outcome within the wait;
 *   - `error`: the body is an `ErrorInfo` JSON (`{ code, message, retryable, details? }`), e.g.
 *     `INVALID_EVENT` (`id`, `duplicate-id`) when the event belongs to another tenant, or
 *     `INVALID_MESSAGE` naming the field of a malformed question.
 */
import {
  ConfigError,
  ErrorCode,
  type ErrorInfo,
  fromErrorInfo,
  InvalidEventError,
  InvalidMessageError,
  type Logger,
  MeshError,
  type MeshNames,
  meshNames,
  noopLogger,
  TransportError,
  toMeshError,
} from '@meshroute/mesh';
import type { Msg, Subscription } from '@nats-io/nats-core';
import type { MeshConnection } from './connection.js';
import { isNatsTimeout, isNoResponders, mapNatsError } from './errors.js';
import { headersFromMap } from './headers.js';
import { isSubjectToken } from './options.js';

/** Queue group all routers share for outcome questions (one router answers each). */
export const DEFAULT_OUTCOME_QUEUE_GROUP = 'meshroute-outcome';
/** The longest a question may ask a router to wait for an outcome; longer waits are cut to it. */
export const MAX_OUTCOME_WAIT_MS = 300_000;
/** How much longer than `waitMs` {@link queryOutcome} waits for the router's reply. */
export const DEFAULT_OUTCOME_QUERY_GRACE_MS = 2_000;
/** Reply header saying what the reply is: `answer`, `none` or `error` ({@link OutcomeReplyStatus}). */
export const OUTCOME_STATUS_HEADER = 'Meshroute-Outcome-Status';
/** Name of the question's format in error messages. */
export const OUTCOME_QUERY_SCHEMA = 'meshroute.outcome-query';

/** Value of {@link OUTCOME_STATUS_HEADER}. */
export type OutcomeReplyStatus = 'answer' | 'none' | 'error';

/** The JSON body of an outcome question. */
export interface OutcomeQueryBody {
  /** The event's `source`. Non-empty. */
  source: string;
  /** The event's `id`. Non-empty. */
  id: string;
  /** How long the router may wait for the outcome: a positive integer, cut to {@link MAX_OUTCOME_WAIT_MS}. */
  waitMs: number;
}

/** A validated outcome question, as the handler of {@link serveOutcomeQueries} gets it. */
export interface OutcomeQuery extends OutcomeQueryBody {
  /** The tenant: the last token of the subject, `undefined` for the default token (`_`). */
  tenant: string | undefined;
}

/**
 * Answers one question: the encoded answer (`meshroute.answer/v1` JSON), or `undefined` when no
 * outcome came within `waitMs`. A thrown {@link MeshError} is replied as a typed error.
 */
export type OutcomeQueryHandler = (query: OutcomeQuery) => Promise<Uint8Array | undefined>;

/** Options of {@link serveOutcomeQueries}. */
export interface ServeOutcomeQueriesOptions {
  /** @default meshNames() */
  names?: MeshNames;
  /** Queue group of the subscription. @default DEFAULT_OUTCOME_QUEUE_GROUP */
  queueGroup?: string;
  /** Longest wait a question gets (longer ones are cut to it). @default MAX_OUTCOME_WAIT_MS */
  maxWaitMs?: number;
  /** @default noopLogger */
  logger?: Logger;
}

/** Options of {@link queryOutcome}. */
export interface QueryOutcomeOptions {
  /** @default meshNames() */
  names?: MeshNames;
  /** Extra time over `waitMs` to wait for the reply. @default DEFAULT_OUTCOME_QUERY_GRACE_MS */
  graceMs?: number;
}

/** What {@link queryOutcome} asks. */
export interface OutcomeQuestion {
  source: string;
  id: string;
  /** The event's tenant (omitted or empty: the default tenant). */
  tenant?: string | undefined;
  /** How long the router may wait for the outcome (positive integer; cut to {@link MAX_OUTCOME_WAIT_MS}). */
  waitMs: number;
}

const utf8 = new TextDecoder();
const utf8Encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

function positiveInt(option: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v <= 0) throw new ConfigError(option, `must be a positive integer, got ${v}`);
  return v;
}

/**
 * Parse and validate a question's body.
 * @throws InvalidMessageError naming the field at fault
 */
export function parseOutcomeQuery(data: Uint8Array, maxWaitMs: number = MAX_OUTCOME_WAIT_MS): OutcomeQueryBody {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(data));
  } catch {
    throw new InvalidMessageError(OUTCOME_QUERY_SCHEMA, ['(root): not JSON']);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidMessageError(OUTCOME_QUERY_SCHEMA, ['(root): expected an object { source, id, waitMs }']);
  }
  const o = value as Record<string, unknown>;
  const issues: string[] = [];
  if (typeof o.source !== 'string' || o.source === '') issues.push('source: expected a non-empty string');
  if (typeof o.id !== 'string' || o.id === '') issues.push('id: expected a non-empty string');
  if (typeof o.waitMs !== 'number' || !Number.isInteger(o.waitMs) || o.waitMs <= 0) {
    issues.push('waitMs: expected a positive integer (milliseconds)');
  }
  if (issues.length > 0) throw new InvalidMessageError(OUTCOME_QUERY_SCHEMA, issues);
  return { source: o.source as string, id: o.id as string, waitMs: Math.min(o.waitMs as number, maxWaitMs) };
}

/**
 * Serve outcome questions: subscribe to `names.outcomeWildcard` in a queue group all routers
 * share, validate each question, call `handler` and reply (see the module header for the reply
 * format). A malformed question is answered with an `INVALID_MESSAGE` error naming the field; a
 * handler that throws is answered with its error (`code`, `message`). Resolves nothing; returns
 * the function that unsubscribes: questions still waiting for their handler are then answered
 * with a retryable `SHUTTING_DOWN` error (another router may answer the question asked again),
 * and what their handlers resolve later is dropped.
 * @throws MeshError `PERMISSION_DENIED` / TransportError when the subscription cannot be made
 * @example
 * const stop = serveOutcomeQueries(conn, async (q) => {
 *   const a = await router.outcome({ source: q.source, id: q.id, tenant: q.tenant }, { waitMs: q.waitMs });
 *   return a ? encodeAnswer(a) : undefined;
 * });
 */
export function serveOutcomeQueries(
  conn: MeshConnection,
  handler: OutcomeQueryHandler,
  options: ServeOutcomeQueriesOptions = {},
): () => void {
  const names = options.names ?? meshNames();
  const queue = options.queueGroup ?? DEFAULT_OUTCOME_QUEUE_GROUP;
  const maxWaitMs = Math.min(positiveInt('maxWaitMs', options.maxWaitMs, MAX_OUTCOME_WAIT_MS), MAX_OUTCOME_WAIT_MS);
  const log = (options.logger ?? noopLogger).child({ component: 'outcome-queries' });
  const subjectPrefix = `${names.prefix}.outcome.`;
  const waiting = new Set<Msg>();
  let stopped = false;

  const reply = (msg: Msg, status: OutcomeReplyStatus, body: Uint8Array): void => {
    try {
      msg.respond(body, { headers: headersFromMap({ [OUTCOME_STATUS_HEADER]: status }) });
    } catch (err) {
      log.warn('outcome reply failed', { subject: msg.subject, error: mapNatsError(err, 'reply').message });
    }
  };
  const replyError = (msg: Msg, err: unknown): void =>
    reply(msg, 'error', utf8Encoder.encode(JSON.stringify(toMeshError(err).toJSON())));

  const onMessage = (msg: Msg): void => {
    if (!msg.reply) {
      log.warn('outcome question without reply subject dropped', { subject: msg.subject });
      return;
    }
    let query: OutcomeQuery;
    try {
      const token = msg.subject.startsWith(subjectPrefix) ? msg.subject.slice(subjectPrefix.length) : '';
      const body = parseOutcomeQuery(msg.data, maxWaitMs);
      query = { ...body, tenant: token === '' || token === '_' ? undefined : token };
    } catch (err) {
      replyError(msg, err);
      return;
    }
    waiting.add(msg);
    let result: Promise<Uint8Array | undefined>;
    try {
      result = handler(query);
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (answer) => {
        if (!waiting.delete(msg)) return;
        if (answer === undefined) reply(msg, 'none', EMPTY);
        else reply(msg, 'answer', answer);
      },
      (err: unknown) => {
        if (!waiting.delete(msg)) return;
        const e = toMeshError(err);
        if (e.code === ErrorCode.INTERNAL) log.error('outcome question failed', { id: query.id, error: e.message });
        replyError(msg, e);
      },
    );
  };

  let sub: Subscription;
  try {
    sub = conn.nc.subscribe(names.outcomeWildcard, {
      queue,
      callback: (err, msg) => {
        if (err) {
          log.error('outcome subscription failed', {
            subject: names.outcomeWildcard,
            error: mapNatsError(err, `subscribe ${names.outcomeWildcard}`).message,
          });
          return;
        }
        onMessage(msg);
      },
    });
  } catch (err) {
    throw mapNatsError(err, `subscribe ${names.outcomeWildcard}`);
  }
  log.info('serving outcome questions', { subject: names.outcomeWildcard, queue });
  return () => {
    if (stopped) return;
    stopped = true;
    if (!sub.isClosed()) sub.unsubscribe();
    for (const msg of waiting) {
      replyError(
        msg,
        new MeshError(ErrorCode.SHUTTING_DOWN, 'the router answering this outcome question is stopping; ask again', {
          retryable: true,
        }),
      );
    }
    waiting.clear();
  };
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

/** Rebuild the error a router replied (an `INVALID_EVENT` with attribute and rule as an {@link InvalidEventError}). */
function errorOfReply(data: Uint8Array, what: string): MeshError {
  let o: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(utf8.decode(data));
    if (typeof v !== 'object' || v === null) throw new Error('not an object');
    o = v as Record<string, unknown>;
  } catch {
    return new TransportError(`${what}: the router replied an error that is not JSON`);
  }
  const details =
    typeof o.details === 'object' && o.details !== null ? { ...(o.details as Record<string, unknown>) } : undefined;
  const info: ErrorInfo = {
    code: typeof o.code === 'string' && KNOWN_CODES.has(o.code) ? (o.code as ErrorCode) : ErrorCode.INTERNAL,
    message: typeof o.message === 'string' ? o.message : `${what}: the router replied an error without a message`,
    retryable: o.retryable === true,
    ...(details ? { details } : {}),
  };
  if (
    info.code === ErrorCode.INVALID_EVENT &&
    typeof details?.attribute === 'string' &&
    typeof details.rule === 'string'
  ) {
    const { attribute, rule, ...rest } = details;
    return new InvalidEventError(attribute, rule, info.message, { details: rest });
  }
  return fromErrorInfo(info);
}

/**
 * Ask the routers for the outcome of an event accepted before (same `source` and `id`): a request
 * on `names.outcomeSubject(tenant)` that waits up to `waitMs` (cut to {@link MAX_OUTCOME_WAIT_MS})
 * plus `graceMs` for the reply. Resolves the answer's bytes (`meshroute.answer/v1` JSON), or
 * `undefined` when there is no outcome: the router had none within `waitMs`, no router serves
 * outcome questions (no responders), or no reply came in time.
 * @throws ConfigError for a bad question (empty source or id, a tenant that is no subject token,
 *   a `waitMs` that is no positive integer); the error the router replied (e.g. InvalidEventError
 *   `id`/`duplicate-id` when the event belongs to another tenant, MeshError `SHUTTING_DOWN`,
 *   retryable, when the router stopped while waiting); MeshError `PERMISSION_DENIED`;
 *   TransportError otherwise
 * @example
 * const bytes = await queryOutcome(conn, { source: '/shop', id: 'o-42', tenant: 'acme', waitMs: 10_000 });
 */
export async function queryOutcome(
  conn: MeshConnection,
  question: OutcomeQuestion,
  options: QueryOutcomeOptions = {},
): Promise<Uint8Array | undefined> {
  const names = options.names ?? meshNames();
  const graceMs = positiveInt('graceMs', options.graceMs, DEFAULT_OUTCOME_QUERY_GRACE_MS);
  if (typeof question.source !== 'string' || question.source === '') {
    throw new ConfigError('source', 'must be a non-empty string');
  }
  if (typeof question.id !== 'string' || question.id === '') throw new ConfigError('id', 'must be a non-empty string');
  const waitMs = Math.min(positiveInt('waitMs', question.waitMs, 1), MAX_OUTCOME_WAIT_MS);
  const tenant = question.tenant;
  if (tenant !== undefined && tenant !== '' && !isSubjectToken(tenant)) {
    throw new ConfigError(
      'tenant',
      `${JSON.stringify(tenant)} cannot be a subject token (no '.', '*', '>' or whitespace)`,
    );
  }
  const subject = names.outcomeSubject(tenant);
  const what = `outcome question for event ${question.id} on ${subject}`;
  const body: OutcomeQueryBody = { source: question.source, id: question.id, waitMs };
  const timeoutMs = waitMs + graceMs;
  let msg: Msg;
  try {
    msg = await conn.nc.request(subject, utf8Encoder.encode(JSON.stringify(body)), { timeout: timeoutMs });
  } catch (err) {
    if (isNoResponders(err) || isNatsTimeout(err)) return undefined;
    throw mapNatsError(err, what, timeoutMs);
  }
  const status = msg.headers?.get(OUTCOME_STATUS_HEADER);
  if (status === 'answer') return msg.data;
  if (status === 'none') return undefined;
  if (status === 'error') throw errorOfReply(msg.data, what);
  if (msg.headers?.hasError && msg.headers.code === 503) return undefined;
  throw new TransportError(`${what}: the reply has no ${OUTCOME_STATUS_HEADER} header`);
}
