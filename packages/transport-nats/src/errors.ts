/**
 * Mapping of NATS client errors onto meshroute's {@link MeshError} codes, so that engines match
 * on `code` and never on a NATS class or message text.
 */

import { ErrorCode, MeshError, TimeoutError, TransportError } from '@meshroute/mesh';
import { JetStreamApiError } from '@nats-io/jetstream';
import { errors as natsErrors } from '@nats-io/nats-core';

/**
 * Turn an error thrown by the NATS client into a {@link MeshError}:
 * permission and authorization violations become `PERMISSION_DENIED` (not retryable), client
 * timeouts a {@link TimeoutError}, a message over the server's `max_payload` `PAYLOAD_TOO_LARGE`
 * (not retryable), everything else a retryable `TRANSPORT_ERROR`. The original
 * error is kept as `cause`. A {@link MeshError} is returned unchanged.
 *
 * @param err - what the NATS client threw
 * @param what - the operation, for the message (e.g. `publish to meshroute.ingress.acme`)
 * @param timeoutMs - the timeout the operation ran under, for {@link TimeoutError}
 */
export function mapNatsError(err: unknown, what: string, timeoutMs = 0): MeshError {
  if (err instanceof MeshError) return err;
  const inner = rootNatsError(err);
  if (inner instanceof natsErrors.PermissionViolationError) {
    return new MeshError(
      ErrorCode.PERMISSION_DENIED,
      `${what}: permission denied (${inner.operation} ${inner.subject})`,
      {
        cause: err,
        details: { operation: inner.operation, subject: inner.subject },
      },
    );
  }
  if (inner instanceof natsErrors.AuthorizationError || inner instanceof natsErrors.UserAuthenticationExpiredError) {
    return new MeshError(ErrorCode.PERMISSION_DENIED, `${what}: ${inner.message}`, { cause: err });
  }
  if (inner instanceof JetStreamApiError && /permission/i.test(inner.message)) {
    return new MeshError(ErrorCode.PERMISSION_DENIED, `${what}: ${inner.message}`, {
      cause: err,
      details: { apiCode: inner.code },
    });
  }
  if (inner instanceof natsErrors.TimeoutError) {
    return new TimeoutError(what, timeoutMs, { cause: err });
  }
  if (inner instanceof natsErrors.InvalidArgumentError && /max_payload/.test(inner.message)) {
    return new MeshError(
      ErrorCode.PAYLOAD_TOO_LARGE,
      `${what}: the message is over the NATS server's max_payload; raise max_payload in the nats-server config or send less`,
      { cause: err },
    );
  }
  if (inner instanceof natsErrors.NoRespondersError) {
    return new TransportError(`${what}: no responders on ${inner.subject}`, { cause: err });
  }
  if (inner instanceof natsErrors.ClosedConnectionError || inner instanceof natsErrors.DrainingConnectionError) {
    return new MeshError(
      ErrorCode.SHUTTING_DOWN,
      `${what}: connection ${inner instanceof natsErrors.ClosedConnectionError ? 'closed' : 'draining'}`,
      {
        cause: err,
      },
    );
  }
  const message = err instanceof Error ? err.message : String(err);
  return new TransportError(`${what}: ${message}`, { cause: err });
}

/** Whether `err` (or one of its causes) is a NATS "no responders" error. */
export function isNoResponders(err: unknown): boolean {
  return rootNatsError(err) instanceof natsErrors.NoRespondersError;
}

/** Whether `err` (or one of its causes) is a NATS request timeout. */
export function isNatsTimeout(err: unknown): boolean {
  return rootNatsError(err) instanceof natsErrors.TimeoutError;
}

/**
 * The most specific NATS error in a cause chain: a `RequestError` wraps `NoRespondersError` or
 * `TimeoutError` as its cause.
 */
function rootNatsError(err: unknown): unknown {
  let cur: unknown = err;
  for (let depth = 0; depth < 5; depth++) {
    if (
      cur instanceof natsErrors.RequestError &&
      (cur as Error).cause !== undefined &&
      (cur as Error).cause instanceof Error
    ) {
      cur = (cur as Error).cause;
      continue;
    }
    break;
  }
  if (cur instanceof natsErrors.RequestError && cur.isNoResponders()) {
    return new natsErrors.NoRespondersError('(unknown)', { cause: cur });
  }
  return cur;
}
