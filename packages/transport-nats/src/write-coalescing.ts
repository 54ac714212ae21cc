/**
 * Write coalescing for a NATS connection: the client (nats.js v3) writes its outbound buffer to
 * the socket in a microtask after the first command of a burst, so a process that publishes from
 * many promise continuations (a router: dispatch, answer, result, decision record, ingress ack,
 * each after its own await) makes about one socket write per publish. On loopback and LAN a write
 * costs more CPU than the message (the kernel delivers the segment inside the call); measured on
 * the router with JetStream ingress: 2.1 writes per event, 620-713 µs of CPU per event, against
 * 0.01-0.03 writes and 543-568 µs with coalescing (three A/B pairs).
 *
 * {@link coalesceWrites} writes the first flush of an event-loop turn at once, as the client
 * would, and defers every later one to the end of the turn (`setImmediate`), so a turn makes at
 * most two writes however much it publishes. A lone request or reply is not delayed; under load
 * the latency cost is the rest of the turn (microseconds for a router; a long synchronous task
 * delays it more, as it would delay the reply anyway). A burst larger than
 * {@link COALESCE_MAX_BYTES} is written at once, as the client does past its own pending limit. A subscription is written at once too, so
 * that a process that subscribes and then says it is ready (on stdout, over HTTP) is subscribed on
 * the server when it says so; and {@link flushPending} writes what is pending before the
 * connection closes.
 *
 * Meant for long-running processes that close their connection before exiting (the router and
 * agent processes): a one-shot client that calls `process.exit()` in the turn it published would
 * lose what was still pending, so it is off by default (`coalesceWrites`).
 *
 * This reaches one internal of the client: the protocol handler's `flushPending` and `outbound`
 * (nats-core 3.x). When they are not there (another client version), nothing is changed and the
 * client's own flushing stays.
 */
import type { NatsConnection } from '@nats-io/transport-node';

/** Outbound bytes past which a coalesced burst is written at once. */
export const COALESCE_MAX_BYTES = 1024 * 1024;

/** What {@link coalesceWrites} uses of the client's protocol handler. */
interface ProtocolInternals {
  flushPending(): void;
  outbound?: { size(): number };
}

/** The client's protocol handler, as far as this module uses it. */
function protocolOf(nc: NatsConnection): Partial<ProtocolInternals> | undefined {
  return (nc as unknown as { protocol?: Partial<ProtocolInternals> }).protocol;
}

/** How to write now what a coalescing connection holds back (see {@link flushPending}). */
const writeNow = new WeakMap<NatsConnection, () => void>();

/**
 * Coalesce the writes of `nc` per event-loop turn. Returns whether it could: `false` (and nothing
 * changed) when the client does not have the internals this needs.
 */
export function coalesceWrites(nc: NatsConnection): boolean {
  const protocol = protocolOf(nc);
  if (protocol === undefined || typeof protocol.flushPending !== 'function') return false;
  const outbound = protocol.outbound;
  if (outbound === undefined || typeof outbound.size !== 'function') return false;
  const flush = protocol.flushPending.bind(protocol);
  let scheduled: ReturnType<typeof setImmediate> | undefined;
  const flushNow = (): void => {
    if (scheduled !== undefined) {
      clearImmediate(scheduled);
      scheduled = undefined;
    }
    flush();
  };
  const subscribe = nc.subscribe.bind(nc);
  nc.subscribe = (...args: Parameters<NatsConnection['subscribe']>) => {
    const sub = subscribe(...args);
    flushNow();
    return sub;
  };
  protocol.flushPending = (): void => {
    if (outbound.size() >= COALESCE_MAX_BYTES) {
      flushNow();
      return;
    }
    if (scheduled !== undefined) return; // written at the end of this turn
    // The first flush of a turn is written at once, as the client would (a lone request or reply
    // waits for nothing); what the rest of the turn publishes goes out together at its end.
    flush();
    scheduled = setImmediate(() => {
      scheduled = undefined;
      flush();
    });
  };
  writeNow.set(nc, flushNow);
  return true;
}

/**
 * Write whatever `nc` still holds in its outbound buffer now. The client's `close()` does not:
 * a message published in the same turn as `close()` was dropped with the socket (measured: 2,000
 * publishes then `close()`, none arrived). A no-op when the client lacks the internal.
 */
export function flushPending(nc: NatsConnection): void {
  const coalesced = writeNow.get(nc);
  if (coalesced !== undefined) {
    coalesced();
    return;
  }
  const protocol = protocolOf(nc);
  if (protocol !== undefined && typeof protocol.flushPending === 'function') protocol.flushPending();
}
