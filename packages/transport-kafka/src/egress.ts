/**
 * Kafka egress: results and dead letters of the mesh as CloudEvents on Kafka topics (binary mode,
 * `ce_` headers), with the `partitionkey` attribute mapped to the record key as an opt-in.
 */
import {
  type CloudEventJson,
  type DeadLetterRecord,
  encodeKafkaBinary,
  validateEvent,
  type WorkResult,
} from '@meshroute/mesh';
import type { ResolvedKafkaBridgeOptions } from './options.js';
import type { KafkaProducerPort } from './ports.js';

/** CloudEvents `type` of a result on Kafka. */
export const RESULT_EVENT_TYPE = 'dev.meshroute.result.v1';
/** CloudEvents `type` of a dead letter on Kafka. */
export const DEAD_LETTER_EVENT_TYPE = 'dev.meshroute.deadletter.v1';
/** CloudEvents `source` of what the egress writes. */
export const EGRESS_EVENT_SOURCE = '/meshroute/egress';

/** The result as a CloudEvent (subject: the id of the event it answers). */
export function resultEvent(result: WorkResult, tenant?: string): CloudEventJson {
  return validateEvent({
    specversion: '1.0',
    id: `${result.workId}/${result.attempt}`,
    source: EGRESS_EVENT_SOURCE,
    type: RESULT_EVENT_TYPE,
    subject: result.eventId,
    time: new Date(result.finishedAtMs).toISOString(),
    datacontenttype: 'application/json',
    partitionkey: result.eventId,
    ...(tenant ? { tenant } : {}),
    data: result,
  });
}

/** The dead letter as a CloudEvent (subject: the id of the dead event; `partitionkey` kept from it). */
export function deadLetterEvent(record: DeadLetterRecord): CloudEventJson {
  const original = typeof record.event === 'object' ? record.event : undefined;
  const pk = typeof original?.partitionkey === 'string' ? original.partitionkey : record.eventId;
  return validateEvent({
    specversion: '1.0',
    id: `${record.eventSource}#${record.eventId}#${record.timeMs}`,
    source: EGRESS_EVENT_SOURCE,
    type: DEAD_LETTER_EVENT_TYPE,
    subject: record.eventId,
    time: new Date(record.timeMs).toISOString(),
    datacontenttype: 'application/json',
    partitionkey: pk,
    deadletterreason: record.reason,
    ...(record.tenant ? { tenant: record.tenant } : {}),
    data: record,
  });
}

/** Writes outcomes to Kafka. */
export interface KafkaEgress {
  /** Produce a result; resolves when the broker acknowledged it. */
  sendResult(result: WorkResult, tenant?: string): Promise<void>;
  /** Produce a dead letter; resolves when the broker acknowledged it. */
  sendDeadLetter(record: DeadLetterRecord): Promise<void>;
}

/**
 * Create the egress over a connected producer.
 * @example
 * const egress = createKafkaEgress(producer, options);
 * await egress.sendResult(result);
 */
export function createKafkaEgress(producer: KafkaProducerPort, options: ResolvedKafkaBridgeOptions): KafkaEgress {
  const send = async (topic: string, event: CloudEventJson): Promise<void> => {
    const r = encodeKafkaBinary(event, { partitionKeyToKey: options.partitionKeyToKey });
    await producer.send({
      topic,
      messages: [
        { key: r.key, value: Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength), headers: r.headers },
      ],
    });
  };
  return {
    sendResult: (result, tenant) => send(options.resultsTopic, resultEvent(result, tenant)),
    sendDeadLetter: (record) => send(options.deadLettersTopic, deadLetterEvent(record)),
  };
}
