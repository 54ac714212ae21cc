/**
 * An in-memory {@link EventSource} with JetStream-like delivery semantics: at most `maxInFlight`
 * handlers at once, `ack` done, `nak(delayMs)` redelivered with `redeliveryCount + 1`, `term`
 * never again, a throwing handler nak'ed, a delivery left unsettled redelivered after
 * `ackWaitMs` (unless `working()` renewed it), and, with `maxDeliver`, a message handed back on
 * its last delivery never delivered again (`exhausted`, like JetStream's `max_deliver`).
 */
import { type Clock, ErrorCode, type EventSource, type IngressDelivery, MeshError, systemClock } from '@meshroute/mesh';

/** Default handlers at once. */
export const DEFAULT_MEMORY_SOURCE_MAX_IN_FLIGHT = 64;
/** Default ack wait: an unsettled delivery is redelivered after this long. */
export const DEFAULT_MEMORY_SOURCE_ACK_WAIT_MS = 30_000;

/** Options of {@link memoryEventSource}. */
export interface MemoryEventSourceOptions {
  /** @default {@link DEFAULT_MEMORY_SOURCE_MAX_IN_FLIGHT} */
  maxInFlight?: number;
  /** @default {@link DEFAULT_MEMORY_SOURCE_ACK_WAIT_MS} */
  ackWaitMs?: number;
  /** Redelivery delay after a handler throws. @default 0 */
  errorRedeliveryDelayMs?: number;
  /**
   * Deliveries of a message at most (JetStream's `max_deliver`): one handed back (or left
   * unsettled) on its last delivery is `exhausted`, never delivered again. Deliveries carry
   * `deliveriesLeft`. Unlimited when not set.
   */
  maxDeliver?: number;
  /** @default systemClock */
  clock?: Clock;
}

/** What {@link MemoryEventSource.push} accepts. */
export interface PushOptions {
  headers?: ReadonlyMap<string, string> | Record<string, string>;
  replyTo?: string;
  /** Published on the admitted ingress subject (counted against its rate limit by the edge). */
  admitted?: boolean;
}

/** One message of the fake, with its fate. */
export interface MemoryMessage {
  /** Sequence, 1-based, in push order. */
  seq: number;
  headers: ReadonlyMap<string, string>;
  body: Uint8Array;
  replyTo: string | undefined;
  /** Counted against its tenant's rate limit by the edge that published it. */
  admitted: boolean;
  /** Deliveries so far. */
  deliveries: number;
  state: 'pending' | 'in-flight' | 'waiting' | 'acked' | 'terminated' | 'exhausted';
  /** The `term` reason. */
  termReason?: string;
}

/** The in-memory event source with controls for tests. */
export interface MemoryEventSource extends EventSource {
  /** Enqueue a raw message (a producer publishing to ingress). */
  push(body: Uint8Array | string, options?: PushOptions): MemoryMessage;
  /** Every message pushed, in order. */
  readonly messages: readonly MemoryMessage[];
  /** Messages acked, in ack order. */
  readonly acked: readonly MemoryMessage[];
  /** Messages terminated, in order. */
  readonly terminated: readonly MemoryMessage[];
  /** Messages handed back on their last delivery (`maxDeliver`), never delivered again, in order. */
  readonly exhausted: readonly MemoryMessage[];
  /** Handlers running now. */
  inFlight(): number;
  /** Resolves once every message is acked, terminated or exhausted and no handler runs. */
  settled(): Promise<void>;
}

const enc = new TextEncoder();

/**
 * Create an in-memory EventSource.
 * @example
 * const source = memoryEventSource();
 * await source.start(async (d) => { await d.ack(); });
 * source.push(JSON.stringify(event), { headers: { 'content-type': 'application/cloudevents+json' } });
 * await source.settled();
 */
export function memoryEventSource(options: MemoryEventSourceOptions = {}): MemoryEventSource {
  const maxInFlight = options.maxInFlight ?? DEFAULT_MEMORY_SOURCE_MAX_IN_FLIGHT;
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1) {
    throw new MeshError(ErrorCode.CONFIG_ERROR, `maxInFlight: must be a positive integer, got ${maxInFlight}`);
  }
  const ackWaitMs = options.ackWaitMs ?? DEFAULT_MEMORY_SOURCE_ACK_WAIT_MS;
  const errorDelayMs = options.errorRedeliveryDelayMs ?? 0;
  const clock = options.clock ?? systemClock;
  const maxDeliver = options.maxDeliver;
  if (maxDeliver !== undefined && (!Number.isInteger(maxDeliver) || maxDeliver < 1)) {
    throw new MeshError(ErrorCode.CONFIG_ERROR, `maxDeliver: must be a positive integer, got ${maxDeliver}`);
  }
  const messages: MemoryMessage[] = [];
  const acked: MemoryMessage[] = [];
  const terminated: MemoryMessage[] = [];
  const exhausted: MemoryMessage[] = [];
  const ready: MemoryMessage[] = [];
  const running = new Set<Promise<void>>();
  const settleWaiters = new Set<() => void>();
  const cancels = new Set<() => void>();
  let handler: ((d: IngressDelivery) => Promise<void>) | undefined;
  let started = false;
  let closed = false;
  let active = 0;

  const allSettled = () =>
    active === 0 && messages.every((m) => m.state === 'acked' || m.state === 'terminated' || m.state === 'exhausted');
  const checkSettled = () => {
    if (!allSettled()) return;
    for (const w of settleWaiters) w();
    settleWaiters.clear();
  };
  const later = (fn: () => void, delayMs: number) => {
    const cancel = clock.setTimeout(() => {
      cancels.delete(cancel);
      fn();
    }, delayMs);
    cancels.add(cancel);
    return cancel;
  };
  const requeue = (m: MemoryMessage, delayMs: number) => {
    if (maxDeliver !== undefined && m.deliveries >= maxDeliver) {
      m.state = 'exhausted';
      exhausted.push(m);
      queueMicrotask(checkSettled);
      return;
    }
    m.state = 'waiting';
    const back = () => {
      if (m.state !== 'waiting') return;
      m.state = 'pending';
      ready.push(m);
      ready.sort((a, b) => a.seq - b.seq);
      pump();
    };
    if (delayMs > 0) later(back, delayMs);
    else queueMicrotask(back);
  };

  const deliver = (m: MemoryMessage): void => {
    const h = handler as (d: IngressDelivery) => Promise<void>;
    m.state = 'in-flight';
    m.deliveries++;
    active++;
    let settledAs: 'ack' | 'nak' | 'term' | undefined;
    let cancelAckWait: (() => void) | undefined;
    const armAckWait = () => {
      cancelAckWait?.();
      cancelAckWait = later(() => {
        if (settledAs === undefined && !closed) {
          settledAs = 'nak';
          requeue(m, 0);
        }
      }, ackWaitMs);
    };
    armAckWait();
    const d: IngressDelivery = {
      headers: m.headers,
      body: m.body,
      replyTo: m.replyTo,
      redeliveryCount: m.deliveries - 1,
      deliveriesLeft: maxDeliver === undefined ? undefined : maxDeliver - m.deliveries,
      admitted: m.admitted,
      async ack() {
        if (settledAs !== undefined) return;
        settledAs = 'ack';
        cancelAckWait?.();
        m.state = 'acked';
        acked.push(m);
        checkSettled();
      },
      nak(delayMs?: number) {
        if (settledAs !== undefined) return;
        settledAs = 'nak';
        cancelAckWait?.();
        requeue(m, delayMs ?? 0);
      },
      working() {
        if (settledAs === undefined) armAckWait();
      },
      term(reason: string) {
        if (settledAs !== undefined) return;
        settledAs = 'term';
        cancelAckWait?.();
        m.state = 'terminated';
        m.termReason = reason;
        terminated.push(m);
        checkSettled();
      },
    };
    const p = (async () => {
      try {
        await h(d);
      } catch {
        d.nak(errorDelayMs);
      } finally {
        active--;
      }
    })();
    running.add(p);
    void p.finally(() => {
      running.delete(p);
      pump();
      checkSettled();
    });
  };

  const pump = (): void => {
    if (!started || closed) return;
    while (active < maxInFlight) {
      const m = ready.shift();
      if (!m) return;
      deliver(m);
    }
  };

  return {
    messages,
    acked,
    terminated,
    exhausted,
    push(body, pushOptions = {}) {
      if (closed) throw new MeshError(ErrorCode.SHUTTING_DOWN, 'event source is closed');
      const h = pushOptions.headers;
      const m: MemoryMessage = {
        seq: messages.length + 1,
        headers: new Map(h instanceof Map ? h : Object.entries(h ?? {})),
        body: typeof body === 'string' ? enc.encode(body) : new Uint8Array(body),
        replyTo: pushOptions.replyTo,
        admitted: pushOptions.admitted === true,
        deliveries: 0,
        state: 'pending',
      };
      messages.push(m);
      ready.push(m);
      queueMicrotask(pump);
      return m;
    },
    inFlight: () => active,
    settled() {
      if (allSettled()) return Promise.resolve();
      return new Promise<void>((resolve) => settleWaiters.add(resolve));
    },
    async start(h) {
      if (closed) throw new MeshError(ErrorCode.SHUTTING_DOWN, 'event source is closed');
      if (started) throw new MeshError(ErrorCode.INTERNAL, 'event source already started');
      started = true;
      handler = h;
      queueMicrotask(pump);
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const c of cancels) c();
      cancels.clear();
      await Promise.allSettled([...running]);
    },
  };
}
