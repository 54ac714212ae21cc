/**
 * Producers' side of ingress: publish a CloudEvent to the ingress stream with JetStream
 * message-id de-duplication.
 */
import { createHash } from 'node:crypto';
import {
  type CloudEventJson,
  ConfigError,
  ErrorCode,
  encodeNatsBinary,
  encodeNatsStructured,
  MeshError,
  type MeshNames,
  meshNames,
} from '@meshroute/mesh';
import type { PubAck } from '@nats-io/jetstream';
import type { MeshConnection } from './connection.js';
import { mapNatsError } from './errors.js';
import { headersFromMap } from './headers.js';
import { isSubjectToken } from './options.js';

/**
 * Header carrying the subject where the producer waits for the outcome. The router answers
 * there once the event's work reached a terminal state (a JetStream publish has no reply
 * subject of its own: the PubAck answers the publish).
 */
export const REPLY_TO_HEADER = 'meshroute-reply-to';

/** Timeout of a publish acknowledgement. */
export const DEFAULT_PUBLISH_TIMEOUT_MS = 5_000;

/**
 * The JetStream message id (`Nats-Msg-Id`) of an event: `ce-` followed by the hex SHA-256 of
 * `JSON.stringify([source, id])`. Two events share it exactly when their `source` and `id` are
 * equal (the CloudEvents uniqueness rule): JSON array encoding cannot be ambiguous the way a
 * plain concatenation (`"a b" + "c"` vs `"a" + "b c"`) is, and the hash keeps the header short
 * and free of characters a header cannot carry, whatever `source` and `id` hold.
 * @example eventMsgId({ source: '/sensors/7', id: '42' }) // 'ce-3f1c…' (64 hex digits)
 */
export function eventMsgId(event: Pick<CloudEventJson, 'source' | 'id'>): string {
  return `ce-${createHash('sha256')
    .update(JSON.stringify([event.source, event.id]))
    .digest('hex')}`;
}

/** Options of {@link publishEvent}. */
export interface PublishEventOptions {
  /** Tenant: the last token of the ingress subject. Omitted: the default tenant token (`_`). */
  tenant?: string;
  /** Override the de-duplication id. @default eventMsgId(event) */
  msgId?: string;
  /**
   * The caller already counted the event against its tenant's rate limit (the router's HTTP
   * ingress): it goes on `admittedIngressSubject`, and routers do not count it again.
   * @default false
   */
  admitted?: boolean;
  /** Where the producer waits for the outcome (carried in {@link REPLY_TO_HEADER}). */
  replyTo?: string;
  /** @default DEFAULT_PUBLISH_TIMEOUT_MS */
  timeoutMs?: number;
  /** @default meshNames() */
  names?: MeshNames;
  /** NATS binding mode. @default 'binary' */
  mode?: 'binary' | 'structured';
}

/** The stream's acknowledgement of a publish. */
export interface PublishEventAck {
  /** The stream that stored the event. */
  stream: string;
  /** Its sequence in the stream (for a duplicate: the sequence of the first copy). */
  seq: number;
  /** True when the stream had seen this id within its de-duplication window and dropped the copy. */
  duplicate: boolean;
  /** The `Nats-Msg-Id` used. */
  msgId: string;
}

/**
 * Publish a CloudEvent to the ingress stream (JetStream publish, acknowledged by the stream)
 * on `names.ingressSubject(tenant)`, in the NATS binding's binary mode by default, with
 * `Nats-Msg-Id` = {@link eventMsgId}: a republish of the same `source`+`id` inside the
 * de-duplication window is acknowledged with `duplicate: true` and not stored again.
 * @throws InvalidEventError when the event is invalid; ConfigError for a bad tenant;
 *   TimeoutError when the stream does not acknowledge in time; MeshError `PERMISSION_DENIED`;
 *   TransportError (retryable) otherwise
 * @example
 * const ack = await publishEvent(conn, event, { tenant: 'acme' });
 */
export async function publishEvent(
  conn: MeshConnection,
  event: CloudEventJson,
  options: PublishEventOptions = {},
): Promise<PublishEventAck> {
  const names = options.names ?? meshNames();
  if (options.tenant !== undefined && options.tenant !== '' && !isSubjectToken(options.tenant)) {
    throw new ConfigError(
      'tenant',
      `${JSON.stringify(options.tenant)} cannot be a subject token (no '.', '*', '>' or whitespace)`,
    );
  }
  if (options.replyTo !== undefined && !options.replyTo.split('.').every(isSubjectToken)) {
    throw new ConfigError('replyTo', `${JSON.stringify(options.replyTo)} is not a subject`);
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS;
  const parts = options.mode === 'structured' ? encodeNatsStructured(event) : encodeNatsBinary(event);
  const map = new Map(parts.headers);
  if (options.replyTo !== undefined) map.set(REPLY_TO_HEADER, options.replyTo);
  const msgId = options.msgId ?? eventMsgId(event);
  const subject = options.admitted
    ? names.admittedIngressSubject(options.tenant)
    : names.ingressSubject(options.tenant);
  let ack: PubAck;
  try {
    ack = await conn.js.publish(subject, parts.body, {
      msgID: msgId,
      headers: headersFromMap(map),
      timeout: timeoutMs,
    });
  } catch (err) {
    const e = mapNatsError(err, `publish event ${event.id} to ${subject}`, timeoutMs);
    if (e.code === ErrorCode.PAYLOAD_TOO_LARGE) {
      const maxPayloadBytes = conn.nc.info?.max_payload;
      throw new MeshError(
        ErrorCode.PAYLOAD_TOO_LARGE,
        `event ${event.id}: its NATS message (${parts.body.byteLength} bytes of data plus headers) is over the server's max_payload of ${maxPayloadBytes} bytes; raise max_payload in the nats-server config or send less`,
        { cause: err, details: { dataBytes: parts.body.byteLength, maxPayloadBytes } },
      );
    }
    throw e;
  }
  return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate, msgId };
}
