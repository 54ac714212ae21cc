/**
 * Kafka ingress: consume CloudEvents (Kafka binding, binary and structured), validate them
 * strictly, hand them to the mesh ingress, and commit a record's offset only after the mesh
 * durably accepted it (at-least-once: a crash before the commit re-reads the record, and the mesh
 * de-duplicates by `source`+`id`). Invalid records go to a dead-letter topic with the reason in
 * headers, then their offset is committed.
 */
import {
  type Clock,
  type CloudEventJson,
  decodeKafka,
  type KafkaHeaderValue,
  systemClock,
  toMeshError,
} from '@meshroute/mesh';
import type { ResolvedKafkaBridgeOptions } from './options.js';
import type {
  EachMessageInput,
  KafkaConsumerPort,
  KafkaHeaderInput,
  KafkaProducerPort,
  ProducedRecord,
} from './ports.js';

/** Headers on a dead-lettered record (besides the original record's own headers). */
export const KAFKA_DLQ_HEADERS = {
  code: 'meshroute-error-code',
  message: 'meshroute-error-message',
  attribute: 'meshroute-error-attribute',
  rule: 'meshroute-error-rule',
  topic: 'meshroute-source-topic',
  partition: 'meshroute-source-partition',
  offset: 'meshroute-source-offset',
} as const;

/** Hands an event to the mesh; resolves once the mesh durably accepted it (JetStream ack). */
export type AcceptEvent = (event: CloudEventJson) => Promise<void>;

/** Counters of a running ingress. */
export interface KafkaIngressStats {
  accepted: number;
  deadLettered: number;
  /** Hand-overs that failed (each retried; the record is re-read when every attempt failed). */
  acceptFailures: number;
}

/** A running Kafka ingress. */
export interface KafkaIngress {
  /** Connect, subscribe and start consuming. */
  start(): Promise<void>;
  /** Stop consuming and disconnect. */
  stop(): Promise<void>;
  /** Process one record (what the consumer's `eachMessage` calls). */
  handle(payload: EachMessageInput): Promise<void>;
  stats(): KafkaIngressStats;
}

/** Dependencies of {@link createKafkaIngress}. */
export interface KafkaIngressDeps {
  consumer: KafkaConsumerPort;
  /** Producer for the dead-letter topic. */
  producer: KafkaProducerPort;
  accept: AcceptEvent;
  options: ResolvedKafkaBridgeOptions;
  /** @default systemClock */
  clock?: Clock;
}

function headerValues(h: Record<string, KafkaHeaderInput> | undefined): Record<string, KafkaHeaderValue> {
  const out: Record<string, KafkaHeaderValue> = {};
  for (const [k, v] of Object.entries(h ?? {})) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v)
      ? v.map((x) => (typeof x === 'string' ? x : new Uint8Array(x.buffer, x.byteOffset, x.byteLength)))
      : typeof v === 'string'
        ? v
        : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }
  return out;
}

function headerText(v: KafkaHeaderInput): string | undefined {
  if (v === undefined) return undefined;
  const first = Array.isArray(v) ? v[0] : v;
  if (first === undefined) return undefined;
  return typeof first === 'string' ? first : first.toString('latin1');
}

/** The offset to commit after `offset`: the next one to read. */
export function nextOffset(offset: string): string {
  return (BigInt(offset) + 1n).toString();
}

/**
 * Create the Kafka ingress bridge.
 * @example
 * const ingress = createKafkaIngress({ consumer, producer, accept: (e) => publishEvent(conn, e).then(() => {}), options });
 * await ingress.start();
 */
export function createKafkaIngress(deps: KafkaIngressDeps): KafkaIngress {
  const { consumer, producer, accept, options } = deps;
  const clock = deps.clock ?? systemClock;
  const log = options.logger.child({ component: 'kafka-ingress' });
  const stats: KafkaIngressStats = { accepted: 0, deadLettered: 0, acceptFailures: 0 };
  let started = false;

  const sleep = (ms: number) => new Promise<void>((resolve) => clock.setTimeout(resolve, ms));

  const deadLetter = async (payload: EachMessageInput, err: unknown): Promise<void> => {
    const e = toMeshError(err);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(payload.message.headers ?? {})) {
      const t = headerText(v);
      if (t !== undefined) headers[k] = t;
    }
    headers[KAFKA_DLQ_HEADERS.code] = e.code;
    headers[KAFKA_DLQ_HEADERS.message] = e.message.slice(0, 1000);
    if (typeof e.details.attribute === 'string') headers[KAFKA_DLQ_HEADERS.attribute] = e.details.attribute;
    if (typeof e.details.rule === 'string') headers[KAFKA_DLQ_HEADERS.rule] = e.details.rule;
    headers[KAFKA_DLQ_HEADERS.topic] = payload.topic;
    headers[KAFKA_DLQ_HEADERS.partition] = String(payload.partition);
    headers[KAFKA_DLQ_HEADERS.offset] = payload.message.offset;
    const record: ProducedRecord = {
      key: payload.message.key === null ? null : payload.message.key.toString('latin1'),
      value: payload.message.value ?? Buffer.alloc(0),
      headers,
    };
    await producer.send({ topic: options.deadLetterTopic, messages: [record] });
    stats.deadLettered++;
    log.warn('invalid record dead-lettered', {
      topic: payload.topic,
      partition: payload.partition,
      offset: payload.message.offset,
      code: e.code,
      error: e.message,
    });
  };

  const handle = async (payload: EachMessageInput): Promise<void> => {
    const { topic, partition, message } = payload;
    let event: CloudEventJson | undefined;
    try {
      event = decodeKafka(
        { headers: headerValues(message.headers), key: message.key, value: message.value },
        {
          keyToPartitionKey: options.keyToPartitionKey,
          ...(options.maxEventBytes !== undefined ? { maxEventBytes: options.maxEventBytes } : {}),
        },
      );
    } catch (err) {
      // Throws (no commit) when the dead-letter topic cannot be written: the record is re-read.
      await deadLetter(payload, err);
    }
    if (event !== undefined) {
      for (let attempt = 1; ; attempt++) {
        try {
          await accept(event);
          break;
        } catch (err) {
          stats.acceptFailures++;
          const e = toMeshError(err);
          log.warn('the mesh did not accept the event', { id: event.id, attempt, error: e.message });
          if (attempt >= options.acceptAttempts) throw e; // no commit: the consumer re-reads it
          await sleep(options.acceptBackoffMs * attempt);
        }
      }
      stats.accepted++;
    }
    await consumer.commitOffsets([{ topic, partition, offset: nextOffset(message.offset) }]);
  };

  return {
    handle,
    stats: () => ({ ...stats }),
    async start() {
      if (started) return;
      started = true;
      await producer.connect();
      await consumer.connect();
      await consumer.subscribe({ topics: [...options.topics] });
      await consumer.run({ eachMessage: handle });
      log.info('kafka ingress started', { topics: options.topics, groupId: options.groupId });
    },
    async stop() {
      if (!started) return;
      started = false;
      await consumer.disconnect().catch(() => {});
      await producer.disconnect().catch(() => {});
    },
  };
}
