/**
 * Request/reply for the router's hot path: one wildcard inbox subscription per connection, a map
 * of pending requests and one timer for all their deadlines.
 *
 * The NATS client's own `request()` arms a timer and a deferred per request and, on every
 * successful reply, builds (and throws away) a `RequestError` with a stack trace; at tens of
 * thousands of dispatches and JetStream publishes per second that was a measurable share of the
 * router's CPU. Here a request is a map entry and a promise; errors are only built for the
 * requests that fail.
 */
import { type Clock, ErrorCode, MeshError, TimeoutError } from '@meshroute/mesh';
import { createInbox, type Msg, type MsgHdrs, type Subscription } from '@nats-io/nats-core';
import type { MeshConnection } from './connection.js';
import { mapNatsError } from './errors.js';

/** Options of one {@link RequestMux.request}. */
export interface MuxRequestOptions {
  /** Reject with a {@link TimeoutError} when no reply came within this many milliseconds. */
  timeoutMs: number;
  /** Headers of the request message. */
  headers?: MsgHdrs;
  /** Rejects the request with `onAbort(signal)` when aborted. */
  signal?: AbortSignal;
  /** The error an aborted request rejects with. */
  onAbort?: (signal: AbortSignal) => Error;
  /** What the request is, for error messages (e.g. `dispatch of work w1 to agent a`). */
  what: string;
}

/** Request/reply over one inbox subscription. */
export interface RequestMux {
  /**
   * Publish `body` to `subject` with a reply inbox and resolve with the first reply (which may be
   * a status message, e.g. 503 "no responders": callers look at `headers`).
   * @throws TimeoutError after `timeoutMs`; MeshError `PERMISSION_DENIED` when the server refuses
   *   the publish; `SHUTTING_DOWN` when the mux or the connection closes first
   */
  request(subject: string, body: Uint8Array, options: MuxRequestOptions): Promise<Msg>;
  /** Requests waiting for a reply. */
  readonly pending: number;
  /** Reject every pending request with `SHUTTING_DOWN` and unsubscribe. Idempotent. */
  close(): void;
}

interface Pending {
  subject: string;
  deadlineMs: number;
  timeoutMs: number;
  startedMs: number;
  what: string;
  resolve: (m: Msg) => void;
  reject: (e: Error) => void;
  signal: AbortSignal | undefined;
  onAbortListener: (() => void) | undefined;
}

/**
 * Create a {@link RequestMux} on `conn` (inboxes under `conn.info.inboxPrefix`, so permissions
 * that allow `<prefix>.>` cover it). The subscription is made on the first request.
 */
export function createRequestMux(conn: MeshConnection, clock: Clock): RequestMux {
  const pending = new Map<string, Pending>();
  let inbox = '';
  let sub: Subscription | undefined;
  let seq = 0;
  let closed = false;
  /** Whether every request so far used the same timeout (deadlines then expire in map order). */
  let uniformTimeoutMs: number | undefined;
  let mixed = false;
  let cancelTimer: (() => void) | undefined;
  let timerAtMs = Number.POSITIVE_INFINITY;

  const settle = (token: string, p: Pending): void => {
    pending.delete(token);
    if (p.onAbortListener !== undefined) p.signal?.removeEventListener('abort', p.onAbortListener);
  };

  const fail = (token: string, p: Pending, err: Error): void => {
    settle(token, p);
    p.reject(err);
  };

  const sweep = (): void => {
    cancelTimer = undefined;
    timerAtMs = Number.POSITIVE_INFINITY;
    const now = clock.monotonicMs();
    for (const [token, p] of pending) {
      if (p.deadlineMs > now) {
        if (mixed) continue;
        break;
      }
      fail(token, p, new TimeoutError(p.what, p.timeoutMs, { details: { elapsedMs: Math.round(now - p.startedMs) } }));
    }
    arm();
  };

  const arm = (): void => {
    if (closed) return;
    let next = Number.POSITIVE_INFINITY;
    if (mixed) {
      for (const p of pending.values()) if (p.deadlineMs < next) next = p.deadlineMs;
    } else {
      for (const p of pending.values()) {
        next = p.deadlineMs;
        break;
      }
    }
    if (next === Number.POSITIVE_INFINITY || next >= timerAtMs) return;
    cancelTimer?.();
    timerAtMs = next;
    cancelTimer = clock.setTimeout(sweep, Math.max(0, next - clock.monotonicMs()) + 1);
  };

  const rejectAll = (err: () => Error): void => {
    for (const [token, p] of pending) fail(token, p, err());
  };

  const watch = (): void => {
    void (async () => {
      for await (const s of conn.status()) {
        if (closed) return;
        if (s.type === 'closed') {
          rejectAll(() => new MeshError(ErrorCode.SHUTTING_DOWN, 'the NATS connection closed', { retryable: true }));
          return;
        }
        if (s.type !== 'error' || s.error.code !== ErrorCode.PERMISSION_DENIED) continue;
        const details = s.error.details as { operation?: string; subject?: string } | undefined;
        if (details?.operation === 'publish' && details.subject !== undefined) {
          // Like the NATS client: the oldest request to that subject is the one refused.
          for (const [token, p] of pending) {
            if (p.subject !== details.subject) continue;
            fail(
              token,
              p,
              new MeshError(ErrorCode.PERMISSION_DENIED, `${p.what}: ${s.error.message}`, { cause: s.error }),
            );
            break;
          }
        } else if (details?.operation === 'subscription' && details.subject?.startsWith(inbox)) {
          rejectAll(() => new MeshError(ErrorCode.PERMISSION_DENIED, `reply inbox: ${s.error.message}`));
        }
      }
    })().catch(() => {});
  };

  const start = (): void => {
    inbox = `${createInbox(conn.info.inboxPrefix)}.`;
    const prefixLength = inbox.length;
    sub = conn.nc.subscribe(`${inbox}*`, {
      callback: (err, msg) => {
        if (err) {
          rejectAll(() => mapNatsError(err, 'reply inbox'));
          return;
        }
        const token = msg.subject.slice(prefixLength);
        const p = pending.get(token);
        if (p === undefined) return; // late reply to a request that timed out
        settle(token, p);
        p.resolve(msg);
      },
    });
    watch();
  };

  return {
    request(subject, body, options) {
      if (closed) {
        return Promise.reject(new MeshError(ErrorCode.SHUTTING_DOWN, `${options.what}: closed`, { retryable: true }));
      }
      if (options.signal?.aborted) {
        return Promise.reject(options.onAbort ? options.onAbort(options.signal) : new Error('aborted'));
      }
      if (sub === undefined) start();
      const token = (++seq).toString(36);
      const now = clock.monotonicMs();
      if (uniformTimeoutMs === undefined) uniformTimeoutMs = options.timeoutMs;
      else if (uniformTimeoutMs !== options.timeoutMs) mixed = true;
      return new Promise<Msg>((resolve, reject) => {
        const p: Pending = {
          subject,
          deadlineMs: now + options.timeoutMs,
          timeoutMs: options.timeoutMs,
          startedMs: now,
          what: options.what,
          resolve,
          reject,
          signal: options.signal,
          onAbortListener: undefined,
        };
        if (options.signal !== undefined) {
          const signal = options.signal;
          p.onAbortListener = () => {
            if (pending.get(token) !== p) return;
            fail(token, p, options.onAbort ? options.onAbort(signal) : new Error('aborted'));
          };
          signal.addEventListener('abort', p.onAbortListener, { once: true });
        }
        pending.set(token, p);
        try {
          conn.nc.publish(
            subject,
            body,
            options.headers ? { reply: inbox + token, headers: options.headers } : { reply: inbox + token },
          );
        } catch (err) {
          fail(token, p, mapNatsError(err, options.what, options.timeoutMs));
          return;
        }
        if (p.deadlineMs < timerAtMs) arm();
      });
    },
    get pending() {
      return pending.size;
    },
    close() {
      if (closed) return;
      rejectAll(() => new MeshError(ErrorCode.SHUTTING_DOWN, 'the mesh was closed', { retryable: true }));
      closed = true;
      cancelTimer?.();
      cancelTimer = undefined;
      if (sub !== undefined && !sub.isClosed()) sub.unsubscribe();
    },
  };
}
