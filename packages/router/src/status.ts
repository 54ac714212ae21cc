/**
 * Typed router lifecycle events (`router.status()`), fanned out to every iterator.
 */
import type { AgentState } from './agent-machine.js';

/** A router lifecycle event. */
export type RouterStatusEvent =
  | { type: 'started'; routerId: string; agents: number }
  | { type: 'stopped'; routerId: string }
  | { type: 'agentJoined'; agentId: string }
  | { type: 'agentState'; agentId: string; state: AgentState }
  | { type: 'agentLost'; agentId: string; reason: string; inFlight: number }
  | { type: 'storeDegraded'; error: string }
  | { type: 'storeRecovered' }
  | { type: 'backpressure'; queued: number; inFlightItems: number }
  | { type: 'policyMissing' }
  | { type: 'workFinished'; eventId: string; state: string };

/** Fans status events out to async iterators; each iterator buffers up to `maxBuffered` events. */
export class StatusHub {
  readonly #subscribers = new Set<{
    buffer: RouterStatusEvent[];
    wake: (() => void) | undefined;
  }>();
  #closed = false;
  readonly #maxBuffered: number;

  constructor(maxBuffered = 10_000) {
    this.#maxBuffered = maxBuffered;
  }

  /** Publish one event. */
  emit(event: RouterStatusEvent): void {
    for (const s of this.#subscribers) {
      if (s.buffer.length >= this.#maxBuffered) s.buffer.shift();
      s.buffer.push(event);
      const w = s.wake;
      s.wake = undefined;
      w?.();
    }
  }

  /** End every iterator. */
  close(): void {
    this.#closed = true;
    for (const s of this.#subscribers) {
      const w = s.wake;
      s.wake = undefined;
      w?.();
    }
  }

  /** A new iterator over future events; it ends when the hub closes. */
  iterate(): AsyncIterable<RouterStatusEvent> {
    const subscribers = this.#subscribers;
    const hub = this;
    return {
      [Symbol.asyncIterator]() {
        const sub = { buffer: [] as RouterStatusEvent[], wake: undefined as (() => void) | undefined };
        subscribers.add(sub);
        return {
          async next(): Promise<IteratorResult<RouterStatusEvent>> {
            for (;;) {
              const e = sub.buffer.shift();
              if (e) return { value: e, done: false };
              if (hub.#closed) {
                subscribers.delete(sub);
                return { value: undefined, done: true };
              }
              await new Promise<void>((resolve) => {
                sub.wake = resolve;
              });
            }
          },
          async return(): Promise<IteratorResult<RouterStatusEvent>> {
            subscribers.delete(sub);
            return { value: undefined, done: true };
          },
        };
      },
    };
  }
}
