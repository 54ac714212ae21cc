/**
 * {@link EventSource} over the routers' shared durable pull consumer on the ingress stream.
 *
 * Flow control is exact: the source pulls only as many messages as it has free handler slots
 * (`maxInFlight` minus running handlers minus messages already requested), so no message waits
 * in a client-side buffer while its ack timer runs, and a second router sharing the consumer
 * gets whatever this one has no room for.
 */

import {
  type Clock,
  ConfigError,
  ErrorCode,
  type EventSource,
  type IngressDelivery,
  type Logger,
  MeshError,
  type MeshNames,
  meshNames,
  noopLogger,
  systemClock,
} from '@meshroute/mesh';
import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { MeshConnection } from './connection.js';
import { mapNatsError } from './errors.js';
import { mapFromHeaders } from './headers.js';
import { REPLY_TO_HEADER } from './publish.js';

/** Last token of `admittedIngressSubject`: the event was counted against its rate limit already. */
const ADMITTED_SUFFIX = '.admitted';

/** Handlers running at once, by default. */
export const DEFAULT_MAX_IN_FLIGHT = 64;
/** How long one pull request waits for messages before it is renewed. */
export const DEFAULT_PULL_EXPIRES_MS = 5_000;
/** Pause before pulling again after a failed pull (server restarting, consumer missing). */
export const DEFAULT_PULL_RETRY_DELAY_MS = 500;
/** Pull requests open at once. */
export const DEFAULT_MAX_OPEN_PULLS = 4;
/**
 * How long past its `expires` a pull may stay open before the source abandons it and returns
 * its credit (at least this, or half of `pullExpiresMs` when that is longer).
 */
export const DEFAULT_PULL_GRACE_MS = 1_000;

/** Options of {@link natsEventSource}. */
export interface NatsEventSourceOptions {
  /** @default meshNames() */
  names?: MeshNames;
  /** Handlers running at once. @default DEFAULT_MAX_IN_FLIGHT */
  maxInFlight?: number;
  /**
   * While a handler runs and its delivery is not settled, the source tells JetStream it is
   * still working (`+WPI`) every `ackWaitMs / 2`, so a long job is not redelivered to another
   * router; a crashed router stops doing so and the event is redelivered after `ackWaitMs`.
   * `0` turns this off. Defaults to the consumer's ack wait.
   */
  ackWaitMs?: number;
  /** @default DEFAULT_PULL_EXPIRES_MS (at least 1000) */
  pullExpiresMs?: number;
  /** @default DEFAULT_PULL_RETRY_DELAY_MS */
  pullRetryDelayMs?: number;
  /** @default DEFAULT_MAX_OPEN_PULLS */
  maxOpenPulls?: number;
  /**
   * Client-side deadline of one pull, past its `expires`: a pull still open after
   * `pullExpiresMs + pullGraceMs` (the server lost the request, e.g. across a restart) is
   * abandoned and its credit pulled again. Messages the server still sends to an abandoned pull
   * are redelivered after the ack wait.
   * @default max(DEFAULT_PULL_GRACE_MS, pullExpiresMs / 2)
   */
  pullGraceMs?: number;
  /** Timeout of a confirmed ack (`ackAck`). Defaults to the connection's JetStream timeout. */
  ackTimeoutMs?: number;
  /** @default systemClock */
  clock?: Clock;
  /** @default noopLogger */
  logger?: Logger;
}

interface ResolvedSourceOptions {
  names: MeshNames;
  maxInFlight: number;
  ackWaitMs: number | undefined;
  pullExpiresMs: number;
  pullRetryDelayMs: number;
  maxOpenPulls: number;
  pullGraceMs: number;
  ackTimeoutMs: number;
  clock: Clock;
  logger: Logger;
}

function resolveSourceOptions(conn: MeshConnection, o: NatsEventSourceOptions): ResolvedSourceOptions {
  const maxInFlight = o.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1)
    throw new ConfigError('maxInFlight', `must be a positive integer, got ${maxInFlight}`);
  const pullExpiresMs = o.pullExpiresMs ?? DEFAULT_PULL_EXPIRES_MS;
  if (!(pullExpiresMs >= 1_000)) throw new ConfigError('pullExpiresMs', `must be at least 1000, got ${pullExpiresMs}`);
  if (o.ackWaitMs !== undefined && !(o.ackWaitMs >= 0))
    throw new ConfigError('ackWaitMs', `must be >= 0, got ${o.ackWaitMs}`);
  const maxOpenPulls = o.maxOpenPulls ?? DEFAULT_MAX_OPEN_PULLS;
  if (!Number.isInteger(maxOpenPulls) || maxOpenPulls < 1)
    throw new ConfigError('maxOpenPulls', `must be a positive integer, got ${maxOpenPulls}`);
  const pullGraceMs = o.pullGraceMs ?? Math.max(DEFAULT_PULL_GRACE_MS, Math.floor(pullExpiresMs / 2));
  if (!(pullGraceMs >= 0)) throw new ConfigError('pullGraceMs', `must be >= 0, got ${pullGraceMs}`);
  return {
    names: o.names ?? meshNames(),
    maxInFlight,
    ackWaitMs: o.ackWaitMs,
    pullExpiresMs,
    pullRetryDelayMs: o.pullRetryDelayMs ?? DEFAULT_PULL_RETRY_DELAY_MS,
    maxOpenPulls,
    pullGraceMs,
    ackTimeoutMs: o.ackTimeoutMs ?? conn.info.jetstreamTimeoutMs,
    clock: o.clock ?? systemClock,
    logger: (o.logger ?? noopLogger).child({ component: 'nats-event-source' }),
  };
}

/** An ingress delivery backed by a JetStream message. */
class JsDelivery implements IngressDelivery {
  readonly headers: ReadonlyMap<string, string>;
  readonly body: Uint8Array;
  readonly replyTo: string | undefined;
  readonly redeliveryCount: number;
  readonly deliveriesLeft: number | undefined;
  readonly admitted: boolean;
  /** How the delivery was settled, if it was. */
  settled: 'ack' | 'nak' | 'term' | undefined;

  constructor(
    private readonly msg: JsMsg,
    private readonly ackTimeoutMs: number,
    private readonly logger: Logger,
    maxDeliver: number,
  ) {
    const headers = mapFromHeaders(msg.headers);
    this.headers = headers;
    this.body = msg.data;
    const reply = headers.get(REPLY_TO_HEADER);
    this.replyTo = reply === undefined || reply === '' ? undefined : reply;
    this.redeliveryCount = Math.max(0, msg.info.deliveryCount - 1);
    this.deliveriesLeft = maxDeliver > 0 ? Math.max(0, maxDeliver - msg.info.deliveryCount) : undefined;
    this.admitted = msg.subject.endsWith(ADMITTED_SUFFIX);
  }

  /** Stream sequence, for logs. */
  get seq(): number {
    return this.msg.seq;
  }

  async ack(): Promise<void> {
    if (this.settled !== undefined) return;
    this.settled = 'ack';
    try {
      await this.msg.ackAck({ timeout: this.ackTimeoutMs });
    } catch (err) {
      throw mapNatsError(err, `ack of ingress message ${this.msg.seq}`, this.ackTimeoutMs);
    }
  }

  nak(delayMs?: number): void {
    if (this.settled !== undefined) return;
    this.settled = 'nak';
    this.msg.nak(delayMs !== undefined && delayMs > 0 ? Math.round(delayMs) : undefined);
  }

  working(): void {
    if (this.settled !== undefined) return;
    this.msg.working();
  }

  term(reason: string): void {
    if (this.settled !== undefined) return;
    this.settled = 'term';
    this.logger.warn('ingress message terminated', { seq: this.msg.seq, reason });
    // The reason travels to the server only from 2.11 on (`+TERM <reason>`); older servers
    // accept the bare `+TERM`, so send that.
    this.msg.term();
  }
}

/**
 * An {@link EventSource} over the routers' shared durable consumer
 * (`names.ingressConsumer` on `names.streams.ingress`, created by `provisionMesh`). Several
 * routers may share it: each message goes to one of them. Deliveries carry the binding
 * headers and body, the producer's reply subject (from `meshroute-reply-to`) and the
 * redelivery count; `ack()` waits for the server's confirmation. A handler that throws gets
 * its delivery nak'ed (redelivered after `pullRetryDelayMs`). Pulling resumes by itself after
 * a reconnect or server restart.
 * @example
 * const source = natsEventSource(conn, { maxInFlight: 128, logger });
 * await source.start(async (d) => { await route(d); await d.ack(); });
 */
export function natsEventSource(conn: MeshConnection, options: NatsEventSourceOptions = {}): EventSource {
  const opts = resolveSourceOptions(conn, options);
  const log = opts.logger;
  let started = false;
  let closed = false;
  let consumer: Consumer | undefined;
  let handler: ((d: IngressDelivery) => Promise<void>) | undefined;
  let keepAliveMs = 0;
  // The consumer's `max_deliver` (read when the source starts; -1 or 0: unlimited).
  let maxDeliver = -1;
  let inFlight = 0;
  let requested = 0;
  let openPulls = 0;
  let retryScheduled = false;
  const openIters = new Set<ConsumerMessages>();
  let stopStatus: (() => void) | undefined;
  const running = new Set<Promise<void>>();
  let idle: (() => void) | undefined;

  const pump = (): void => {
    if (closed || consumer === undefined || retryScheduled) return;
    while (openPulls < opts.maxOpenPulls) {
      const want = opts.maxInFlight - inFlight - requested;
      if (want <= 0) return;
      void pull(consumer, want);
    }
  };

  const pull = async (c: Consumer, n: number): Promise<void> => {
    openPulls++;
    requested += n;
    let got = 0;
    let failed = false;
    let cancelDeadline: (() => void) | undefined;
    try {
      const iter = await c.fetch({ max_messages: n, expires: opts.pullExpiresMs });
      openIters.add(iter);
      // The server ends a pull at `expires` (408) and the client after two missed heartbeats,
      // but a pull whose request the server lost while the client's heartbeat monitor was off
      // (disconnected, then reconnected to a restarted server) may never end and would keep
      // its credit forever: give up on it past a client-side deadline.
      cancelDeadline = opts.clock.setTimeout(() => {
        if (!openIters.has(iter)) return;
        log.warn('pull from ingress consumer outlived its deadline; abandoning it', {
          requested: n,
          received: got,
          deadlineMs: opts.pullExpiresMs + opts.pullGraceMs,
        });
        iter.stop();
      }, opts.pullExpiresMs + opts.pullGraceMs);
      try {
        for await (const m of iter) {
          got++;
          requested--;
          dispatch(m);
          if (closed) break;
        }
      } finally {
        openIters.delete(iter);
      }
    } catch (err) {
      failed = true;
      if (!closed) log.warn('pull from ingress consumer failed; retrying', { error: (err as Error).message });
    } finally {
      cancelDeadline?.();
      openPulls--;
      requested -= n - got;
    }
    if (failed && !closed && !retryScheduled) {
      retryScheduled = true;
      opts.clock.setTimeout(() => {
        retryScheduled = false;
        pump();
      }, opts.pullRetryDelayMs);
      return;
    }
    pump();
  };

  /**
   * After a reconnect the server may have lost every open pull request (a restarted server
   * keeps none): abandon them all so their credit is pulled again at once.
   */
  const abandonOpenPulls = (reason: string): void => {
    if (openIters.size === 0) return;
    log.info('abandoning open pulls', { reason, openPulls: openIters.size });
    for (const it of openIters) it.stop();
  };

  const watchReconnects = (): void => {
    const statuses = conn.nc.status();
    // The client's status iterator is a queued iterator with `stop()` (typed as a plain
    // AsyncIterable); without it the loop below ends at the next status after close.
    stopStatus = () => (statuses as { stop?: () => void }).stop?.();
    void (async () => {
      for await (const s of statuses) {
        if (closed) return;
        if (s.type === 'reconnect') abandonOpenPulls('reconnected');
      }
    })().catch(() => undefined);
  };

  const dispatch = (m: JsMsg): void => {
    const d = new JsDelivery(m, opts.ackTimeoutMs, log, maxDeliver);
    const h = handler as (d: IngressDelivery) => Promise<void>;
    inFlight++;
    let cancelKeepAlive: (() => void) | undefined;
    if (keepAliveMs > 0) {
      const tick = (): void => {
        if (d.settled !== undefined || closed) return;
        d.working();
        cancelKeepAlive = opts.clock.setTimeout(tick, keepAliveMs);
      };
      cancelKeepAlive = opts.clock.setTimeout(tick, keepAliveMs);
    }
    const p = (async () => {
      try {
        await h(d);
      } catch (err) {
        log.error('ingress handler failed; message will be redelivered', { seq: d.seq, error: (err as Error).message });
        d.nak(opts.pullRetryDelayMs);
      } finally {
        cancelKeepAlive?.();
        inFlight--;
      }
    })();
    running.add(p);
    void p.finally(() => {
      running.delete(p);
      if (closed && running.size === 0) idle?.();
      pump();
    });
  };

  return {
    async start(h) {
      if (closed) throw new MeshError(ErrorCode.SHUTTING_DOWN, 'event source is closed');
      if (started) throw new MeshError(ErrorCode.INTERNAL, 'event source already started');
      started = true;
      handler = h;
      const { streams, ingressConsumer } = opts.names;
      try {
        consumer = await conn.js.consumers.get(streams.ingress, ingressConsumer);
        const info = await consumer.info(true);
        const ackWaitMs = opts.ackWaitMs ?? (info.config.ack_wait ?? 0) / 1_000_000;
        keepAliveMs = ackWaitMs > 0 ? Math.max(250, Math.floor(ackWaitMs / 2)) : 0;
        maxDeliver = info.config.max_deliver ?? -1;
      } catch (err) {
        started = false;
        const e = mapNatsError(
          err,
          `bind to consumer ${streams.ingress}/${ingressConsumer}`,
          conn.info.jetstreamTimeoutMs,
        );
        if (/not found/i.test((err as Error).message)) {
          throw new MeshError(
            ErrorCode.NOT_FOUND,
            `ingress consumer ${streams.ingress}/${ingressConsumer} not found: run provisionMesh (meshroute up) first`,
            {
              cause: err,
            },
          );
        }
        throw e;
      }
      log.info('consuming ingress', {
        stream: streams.ingress,
        consumer: ingressConsumer,
        maxInFlight: opts.maxInFlight,
      });
      watchReconnects();
      pump();
    },
    async close() {
      if (closed) return;
      closed = true;
      stopStatus?.();
      for (const it of openIters) it.stop();
      if (running.size > 0) {
        await new Promise<void>((resolve) => {
          idle = resolve;
        });
      }
    },
  };
}
