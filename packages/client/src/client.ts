/**
 * The producer client: `publish` (fire and forget, acknowledged by the mesh) and `invoke` (wait
 * for the outcome), over NATS (JetStream ingress) or over the router's HTTP ingress.
 */
import { randomUUID } from 'node:crypto';
import {
  type Clock,
  type CloudEventJson,
  ConfigError,
  DEFAULT_MAX_EVENT_BYTES,
  ErrorCode,
  encodeHttpBinary,
  type IntentInput,
  type Logger,
  MeshError,
  type MeshNames,
  meshNames,
  noopLogger,
  systemClock,
  TimeoutError,
  TransportError,
  toMeshError,
} from '@meshroute/mesh';
import { type MeshConnection, publishEvent, queryOutcome } from '@meshroute/transport-nats';
import { context, type Span, SpanKind, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';
import { type Answer, answerOfHttp, type InvokeResult, parseAnswer, resultOfAnswer } from './answer.js';
import { EventRejectedError } from './errors.js';
import {
  type BuildEventDefaults,
  buildEvent,
  DEFAULT_CLIENT_SOURCE,
  DEFAULT_INVOKE_TYPE,
  type EventInput,
  randomEventId,
} from './event.js';
import { traceparentOf } from './trace-context.js';

/** How long `invoke` waits for the outcome by default. */
export const DEFAULT_INVOKE_TIMEOUT_MS = 30_000;
/** How long `publish` waits for the mesh to accept an event by default. */
export const DEFAULT_CLIENT_PUBLISH_TIMEOUT_MS = 5_000;
/**
 * How often `invoke` over NATS asks for the outcome of a de-duplicated re-send when the router
 * asked answers that it is stopping (`SHUTTING_DOWN`, another router may answer).
 */
const OUTCOME_QUERY_ATTEMPTS = 3;
/** Name of the client's OpenTelemetry tracer. */
export const CLIENT_TRACER_NAME = '@meshroute/client';

/** Options common to both transports. */
export interface CommonClientOptions {
  /** `source` of events that do not set one. @default DEFAULT_CLIENT_SOURCE */
  source?: string;
  /** Tenant applied when the intent names none. */
  tenant?: string;
  /** @default DEFAULT_INVOKE_TIMEOUT_MS */
  invokeTimeoutMs?: number;
  /** @default DEFAULT_CLIENT_PUBLISH_TIMEOUT_MS */
  publishTimeoutMs?: number;
  /** Largest event accepted before sending. @default DEFAULT_MAX_EVENT_BYTES */
  maxEventBytes?: number;
  /** @default systemClock */
  clock?: Clock;
  /** Event id generator. @default a random UUID */
  newId?: () => string;
  /** @default noopLogger */
  logger?: Logger;
  /** Tracer for the producer spans. @default trace.getTracer(CLIENT_TRACER_NAME) (no-op unless an SDK is registered) */
  tracer?: Tracer;
}

/** A client publishing into the JetStream ingress over a NATS connection (the caller owns it). */
export interface NatsClientOptions extends CommonClientOptions {
  nats: MeshConnection;
  /** @default meshNames() */
  names?: MeshNames;
  /** NATS binding mode. @default 'binary' */
  mode?: 'binary' | 'structured';
}

/** A client posting to a router's HTTP ingress (`POST <url>/events`). */
export interface HttpClientOptions extends CommonClientOptions {
  /** The router's base URL, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Extra headers on every request (authentication). */
  headers?: Readonly<Record<string, string>>;
}

/** Options of {@link createClient}: `{ nats }` or `{ url }`. */
export type ClientOptions = NatsClientOptions | HttpClientOptions;

/** Per-call options of {@link MeshClient.invoke}. */
export interface InvokeOptions {
  /** How long to wait for the outcome. @default the client's invokeTimeoutMs */
  timeoutMs?: number;
  /** Event type. @default DEFAULT_INVOKE_TYPE */
  type?: string;
  /** Event id. @default a new id */
  id?: string;
  /** Event source. @default the client's source */
  source?: string;
  /** Event subject. */
  subject?: string;
  /** Content type of `input`. */
  datacontenttype?: string;
}

/** The producer client. */
export interface MeshClient {
  /**
   * Publish an event with an intent and resolve with its id once the mesh accepted it (JetStream
   * ack, or HTTP 202). Does not wait for the work. Publishing the same `source`+`id` again is
   * de-duplicated by the mesh.
   * @throws InvalidEventError / InvalidIntentError (nothing sent); EventRejectedError when the
   *   HTTP ingress refused it; TimeoutError; TransportError
   */
  publish(event: EventInput, intent?: IntentInput): Promise<string>;
  /**
   * Run `workload` on `input` under `intent` and wait for the outcome. Invoking again with the
   * same `source` and `id` (a retry after a lost answer) runs nothing again: the mesh
   * de-duplicates the event and the answer is the first one's outcome (`replayed: true`, same
   * `decisionId`), waited for when the first is still running. Over NATS the client then asks
   * the routers on `<prefix>.outcome.<tenant>` (`queryOutcome`).
   * @throws EventRejectedError (invalid; or `id`/`duplicate-id` when the source and id belong to
   *   another tenant's event), NoEligibleAgentError, DeadLetteredError (with `reason`),
   *   InvocationFailedError (ran and failed), TimeoutError (no outcome within `timeoutMs`)
   */
  invoke<T = unknown>(
    workload: string,
    input: unknown,
    intent?: IntentInput,
    options?: InvokeOptions,
  ): Promise<InvokeResult<T>>;
  /** Build (and validate) the event `publish` would send, without sending it. */
  event(event: EventInput, intent?: IntentInput): CloudEventJson;
  /** Release what the client holds (not the caller's NATS connection). */
  close(): Promise<void>;
}

interface ResolvedCommon {
  source: string;
  tenant: string | undefined;
  invokeTimeoutMs: number;
  publishTimeoutMs: number;
  maxEventBytes: number;
  clock: Clock;
  newId: () => string;
  logger: Logger;
  tracer: Tracer;
}

function positiveInt(option: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v <= 0) throw new ConfigError(option, `must be a positive integer, got ${v}`);
  return v;
}

function resolveCommon(o: CommonClientOptions): ResolvedCommon {
  return {
    source: o.source ?? DEFAULT_CLIENT_SOURCE,
    tenant: o.tenant,
    invokeTimeoutMs: positiveInt('invokeTimeoutMs', o.invokeTimeoutMs, DEFAULT_INVOKE_TIMEOUT_MS),
    publishTimeoutMs: positiveInt('publishTimeoutMs', o.publishTimeoutMs, DEFAULT_CLIENT_PUBLISH_TIMEOUT_MS),
    maxEventBytes: positiveInt('maxEventBytes', o.maxEventBytes, DEFAULT_MAX_EVENT_BYTES),
    clock: o.clock ?? systemClock,
    newId: o.newId ?? randomEventId,
    logger: (o.logger ?? noopLogger).child({ component: 'client' }),
    tracer: o.tracer ?? trace.getTracer(CLIENT_TRACER_NAME),
  };
}

/** Moves events and answers; one per transport. */
interface ClientTransport {
  readonly system: 'nats' | 'http';
  /** Send; resolves when accepted. */
  send(event: CloudEventJson, tenant: string | undefined, timeoutMs: number): Promise<void>;
  /** Send and wait for the answer. */
  request(event: CloudEventJson, tenant: string | undefined, timeoutMs: number): Promise<Answer>;
}

const textDecoder = new TextDecoder();

function natsTransport(o: NatsClientOptions, c: ResolvedCommon): ClientTransport {
  const conn = o.nats;
  const names = o.names ?? meshNames();
  const mode = o.mode ?? 'binary';
  return {
    system: 'nats',
    async send(event, tenant, timeoutMs) {
      await publishEvent(conn, event, { ...(tenant ? { tenant } : {}), names, mode, timeoutMs });
    },
    async request(event, tenant, timeoutMs) {
      const inbox = `${conn.info.inboxPrefix}.${randomUUID().replace(/-/g, '')}`;
      const started = c.clock.monotonicMs();
      return new Promise<Answer>((resolve, reject) => {
        let done = false;
        let cancelTimer: () => void = () => {};
        let sub: ReturnType<MeshConnection['nc']['subscribe']> | undefined;
        const finish = (settle: () => void): void => {
          if (done) return;
          done = true;
          cancelTimer();
          if (sub && !sub.isClosed()) sub.unsubscribe();
          settle();
        };
        const settleWith = (data: Uint8Array): void => {
          try {
            const answer = parseAnswer(JSON.parse(textDecoder.decode(data)));
            finish(() => resolve(answer));
          } catch (e) {
            finish(() => reject(toMeshError(e)));
          }
        };
        /**
         * The ingress de-duplicated the event (a re-send of the same source and id): no router
         * sees this copy nor its inbox, so ask the routers for the first one's outcome for what is
         * left of the wait (a router working on it answers when it finishes). No outcome: keep
         * waiting on the inbox until the timeout, as before.
         */
        const askOutcome = async (): Promise<void> => {
          for (let attempt = 1; !done; attempt++) {
            const waitMs = Math.floor(started + timeoutMs - c.clock.monotonicMs());
            if (waitMs <= 0) return;
            let bytes: Uint8Array | undefined;
            try {
              bytes = await queryOutcome(conn, { source: event.source, id: event.id, tenant, waitMs }, { names });
            } catch (err) {
              const e = toMeshError(err);
              // The router asked stopped while waiting: another one may answer.
              if (e.code === ErrorCode.SHUTTING_DOWN && e.retryable && attempt < OUTCOME_QUERY_ATTEMPTS) continue;
              if (e.code === ErrorCode.INVALID_EVENT)
                finish(() => reject(new EventRejectedError(event.id, e.toJSON())));
              else finish(() => reject(e));
              return;
            }
            if (bytes !== undefined) settleWith(bytes);
            return;
          }
        };
        sub = conn.nc.subscribe(inbox, {
          max: 1,
          callback: (err, msg) => {
            if (err) {
              finish(() =>
                reject(new TransportError(`waiting for the answer to event ${event.id} failed`, { cause: err })),
              );
              return;
            }
            settleWith(msg.data);
          },
        });
        cancelTimer = c.clock.setTimeout(() => {
          finish(() =>
            reject(new TimeoutError(`invocation of event ${event.id}`, timeoutMs, { details: { eventId: event.id } })),
          );
        }, timeoutMs);
        publishEvent(conn, event, {
          ...(tenant ? { tenant } : {}),
          names,
          mode,
          replyTo: inbox,
          timeoutMs: Math.min(timeoutMs, c.publishTimeoutMs),
        }).then(
          (ack) => {
            c.logger.debug('event accepted', {
              id: event.id,
              seq: ack.seq,
              duplicate: ack.duplicate,
              ms: c.clock.monotonicMs() - started,
            });
            if (ack.duplicate && !done) {
              c.logger.debug('event was a duplicate; asking the routers for its outcome', { id: event.id });
              void askOutcome();
            }
          },
          (err: unknown) => finish(() => reject(toMeshError(err))),
        );
      });
    },
  };
}

function httpTransport(o: HttpClientOptions): ClientTransport {
  let base: URL;
  try {
    base = new URL(o.url);
  } catch (cause) {
    throw new ConfigError('url', `${JSON.stringify(o.url)} is not a URL`, { cause });
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new ConfigError('url', `${JSON.stringify(o.url)} must be an http: or https: URL`);
  }
  const doFetch = o.fetch ?? globalThis.fetch;
  const endpoint = new URL('events', base.href.endsWith('/') ? base.href : `${base.href}/`);
  const post = async (
    event: CloudEventJson,
    wait: boolean,
    timeoutMs: number,
  ): Promise<{ status: number; body: unknown }> => {
    const { headers, body } = encodeHttpBinary(event);
    const h: Record<string, string> = { ...headers, ...o.headers };
    if (typeof event.traceparent === 'string') h.traceparent = event.traceparent;
    if (typeof event.tracestate === 'string') h.tracestate = event.tracestate;
    const url = wait ? `${endpoint.href}?wait=1` : endpoint.href;
    let res: Response;
    try {
      res = await doFetch(url, { method: 'POST', headers: h, body, signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
        throw new TimeoutError(`${wait ? 'invocation' : 'publish'} of event ${event.id}`, timeoutMs, {
          cause: err,
          details: { eventId: event.id },
        });
      }
      throw new TransportError(`POST ${url} failed: ${(err as Error).message}`, { cause: err });
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? {} : JSON.parse(text);
    } catch {
      parsed = { detail: text.slice(0, 500) };
    }
    return { status: res.status, body: parsed };
  };
  return {
    system: 'http',
    async send(event, _tenant, timeoutMs) {
      const { status, body } = await post(event, false, timeoutMs);
      if (status === 202 || status === 200) return;
      answerOfHttp(event.id, status, body, timeoutMs);
      throw new MeshError('INTERNAL', `unexpected HTTP ${status} from the ingress`, { details: { eventId: event.id } });
    },
    async request(event, _tenant, timeoutMs) {
      const { status, body } = await post(event, true, timeoutMs);
      return answerOfHttp(event.id, status, body, timeoutMs);
    },
  };
}

function endSpan(span: Span, err?: unknown): void {
  if (err !== undefined) {
    const e = toMeshError(err);
    span.recordException(e);
    span.setAttribute('error.type', e.code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
  }
  span.end();
}

/**
 * Create a producer client over NATS (`{ nats }`, a {@link MeshConnection} the caller owns) or over
 * a router's HTTP ingress (`{ url }`).
 * @throws ConfigError for invalid options
 * @example
 * const client = createClient({ nats: conn, source: '/shop/orders' });
 * const id = await client.publish({ type: 'order.created', data: order }, { residency: 'eu', workload: 'fraud-score' });
 * const r = await client.invoke<{ score: number }>('fraud-score', order, { residency: 'eu', latencyBudgetMs: 200 });
 * console.log(r.output?.score, 'on', r.agent?.id);
 */
export function createClient(options: ClientOptions): MeshClient {
  const c = resolveCommon(options);
  let transport: ClientTransport;
  if ('nats' in options && options.nats !== undefined) transport = natsTransport(options, c);
  else if ('url' in options && typeof options.url === 'string') transport = httpTransport(options);
  else throw new ConfigError('nats|url', 'give either a NATS connection (nats) or an HTTP ingress URL (url)');
  const defaults: BuildEventDefaults = {
    source: c.source,
    now: () => c.clock.now(),
    newId: c.newId,
    maxEventBytes: c.maxEventBytes,
  };
  let closed = false;
  const withTenant = (intent: IntentInput | undefined): IntentInput =>
    intent?.tenant === undefined && c.tenant !== undefined ? { ...intent, tenant: c.tenant } : (intent ?? {});
  const checkOpen = (): void => {
    if (closed) throw new MeshError('SHUTTING_DOWN', 'the client is closed');
  };
  /** Start the span, then stamp its context on the event (the CloudEvents tracing extension). */
  const traced = (name: string, kind: SpanKind, event: CloudEventJson): Span => {
    const span = c.tracer.startSpan(
      name,
      {
        kind,
        attributes: {
          'messaging.system': transport.system,
          'messaging.operation.type': 'send',
          'messaging.message.id': event.id,
          'cloudevents.event_id': event.id,
          'cloudevents.event_source': event.source,
          'cloudevents.event_type': event.type,
          ...(typeof event.workload === 'string' ? { 'meshroute.workload': event.workload } : {}),
          ...(typeof event.tenant === 'string' ? { 'meshroute.tenant': event.tenant } : {}),
        },
      },
      context.active(),
    );
    const tp = traceparentOf(span.spanContext());
    if (tp !== undefined) {
      event.traceparent = tp;
      const ts = span.spanContext().traceState?.serialize();
      if (ts) event.tracestate = ts;
    }
    return span;
  };

  return {
    event: (event, intent) => buildEvent(event, withTenant(intent), defaults),
    async publish(input, intent) {
      checkOpen();
      const event = buildEvent(input, withTenant(intent), defaults);
      const span = traced(`publish ${event.type}`, SpanKind.PRODUCER, event);
      try {
        await transport.send(event, event.tenant as string | undefined, c.publishTimeoutMs);
        endSpan(span);
        return event.id;
      } catch (err) {
        endSpan(span, err);
        throw err;
      }
    },
    async invoke<T>(workload: string, input: unknown, intent?: IntentInput, opts: InvokeOptions = {}) {
      checkOpen();
      const timeoutMs = positiveInt('timeoutMs', opts.timeoutMs, c.invokeTimeoutMs);
      const event = buildEvent(
        {
          type: opts.type ?? DEFAULT_INVOKE_TYPE,
          ...(opts.id !== undefined ? { id: opts.id } : {}),
          ...(opts.source !== undefined ? { source: opts.source } : {}),
          ...(opts.subject !== undefined ? { subject: opts.subject } : {}),
          ...(opts.datacontenttype !== undefined ? { datacontenttype: opts.datacontenttype } : {}),
          ...(input !== undefined ? { data: input } : {}),
        },
        { ...withTenant(intent), workload },
        defaults,
      );
      const span = traced(`invoke ${workload}`, SpanKind.CLIENT, event);
      try {
        const answer = await transport.request(event, event.tenant as string | undefined, timeoutMs);
        if (answer.agent) span.setAttribute('meshroute.agent.id', answer.agent.id);
        span.setAttribute('meshroute.outcome', answer.outcome);
        const result = resultOfAnswer<T>(answer);
        endSpan(span);
        return result;
      } catch (err) {
        endSpan(span, err);
        throw err;
      }
    },
    async close() {
      closed = true;
    },
  };
}
