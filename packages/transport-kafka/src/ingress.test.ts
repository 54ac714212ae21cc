import {
  type CloudEventJson,
  decodeKafka,
  encodeKafkaBinary,
  encodeKafkaStructured,
  TransportError,
} from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import { kafkaClients } from './client.js';
import { createKafkaEgress, DEAD_LETTER_EVENT_TYPE, RESULT_EVENT_TYPE } from './egress.js';
import { createKafkaIngress, KAFKA_DLQ_HEADERS } from './ingress.js';
import { resolveKafkaBridgeOptions } from './options.js';
import type {
  EachMessageInput,
  KafkaConsumerPort,
  KafkaProducerPort,
  ProducedRecord,
  TopicPartitionOffset,
} from './ports.js';

const options = resolveKafkaBridgeOptions({
  brokers: 'localhost:9092',
  topics: 'orders',
  acceptAttempts: 3,
  acceptBackoffMs: 0,
});

const event = (id: string, extra: Record<string, unknown> = {}): CloudEventJson => ({
  specversion: '1.0',
  id,
  source: '/shop',
  type: 'order.created',
  workload: 'fraud-score',
  residency: 'eu',
  datacontenttype: 'application/json',
  data: { n: 1 },
  ...extra,
});

/** A consumer and producer that record every call, in order, into one log. */
function fakes() {
  const log: string[] = [];
  const commits: TopicPartitionOffset[] = [];
  const produced: { topic: string; record: ProducedRecord }[] = [];
  let failSend = false;
  const consumer: KafkaConsumerPort = {
    connect: async () => void log.push('consumer.connect'),
    disconnect: async () => void log.push('consumer.disconnect'),
    subscribe: async (s) => void log.push(`subscribe ${s.topics.join(',')}`),
    run: async () => void log.push('run'),
    commitOffsets: async (o) => {
      log.push(`commit ${o.map((x) => `${x.topic}/${x.partition}@${x.offset}`).join(',')}`);
      commits.push(...o);
    },
  };
  const producer: KafkaProducerPort = {
    connect: async () => void log.push('producer.connect'),
    disconnect: async () => void log.push('producer.disconnect'),
    send: async ({ topic, messages }) => {
      if (failSend) throw new Error('broker down');
      for (const record of messages) {
        log.push(`send ${topic}`);
        produced.push({ topic, record });
      }
      return [];
    },
  };
  return { log, commits, produced, consumer, producer, setFailSend: (v: boolean) => (failSend = v) };
}

const binaryRecord = (ev: CloudEventJson, offset: string, partition = 0): EachMessageInput => {
  const r = encodeKafkaBinary(ev);
  const headers: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(r.headers)) headers[k] = Buffer.from(v, 'utf8');
  return { topic: 'orders', partition, message: { key: null, value: Buffer.from(r.value), offset, headers } };
};

describe('kafka ingress', () => {
  it('commits a record only after the mesh accepted it, at the next offset', async () => {
    const f = fakes();
    let release!: () => void;
    const accepted: CloudEventJson[] = [];
    const ingress = createKafkaIngress({
      ...f,
      options,
      accept: (e) =>
        new Promise<void>((resolve) => {
          f.log.push(`accept ${e.id}`);
          accepted.push(e);
          release = resolve;
        }),
    });
    const done = ingress.handle(binaryRecord(event('e1'), '41', 2));
    await new Promise((r) => setImmediate(r));
    expect(f.log).toEqual(['accept e1']);
    expect(f.commits).toEqual([]);
    release();
    await done;
    expect(f.log).toEqual(['accept e1', 'commit orders/2@42']);
    expect(accepted[0]).toMatchObject({ id: 'e1', workload: 'fraud-score', residency: 'eu', data: { n: 1 } });
    expect(ingress.stats()).toEqual({ accepted: 1, deadLettered: 0, acceptFailures: 0 });
  });

  it('reads structured-mode records too', async () => {
    const f = fakes();
    const got: CloudEventJson[] = [];
    const ingress = createKafkaIngress({ ...f, options, accept: async (e) => void got.push(e) });
    const r = encodeKafkaStructured(event('s1'));
    await ingress.handle({
      topic: 'orders',
      partition: 0,
      message: { key: null, value: Buffer.from(r.value), offset: '0', headers: r.headers },
    });
    expect(got[0]).toMatchObject({ id: 's1', data: { n: 1 } });
    expect(f.commits).toEqual([{ topic: 'orders', partition: 0, offset: '1' }]);
  });

  it('retries a failed hand-over and, when every attempt fails, does not commit (the record is re-read)', async () => {
    const f = fakes();
    let calls = 0;
    const flaky = createKafkaIngress({
      ...f,
      options,
      accept: async () => {
        calls++;
        if (calls === 1) throw new TransportError('nats down');
      },
    });
    await flaky.handle(binaryRecord(event('r1'), '7'));
    expect(calls).toBe(2);
    expect(f.commits).toEqual([{ topic: 'orders', partition: 0, offset: '8' }]);
    expect(flaky.stats().acceptFailures).toBe(1);

    const g = fakes();
    const down = createKafkaIngress({
      ...g,
      options,
      accept: async () => {
        throw new TransportError('nats down');
      },
    });
    await expect(down.handle(binaryRecord(event('r2'), '9'))).rejects.toMatchObject({ code: 'TRANSPORT_ERROR' });
    expect(g.commits).toEqual([]);
    expect(down.stats()).toMatchObject({ accepted: 0, acceptFailures: 3 });
  });

  it('sends an invalid record to the dead-letter topic with the reason in headers, then commits it', async () => {
    const f = fakes();
    const accepted: string[] = [];
    const ingress = createKafkaIngress({ ...f, options, accept: async (e) => void accepted.push(e.id) });
    const rec = binaryRecord(event('bad'), '3', 1);
    (rec.message.headers as Record<string, Buffer>).ce_specversion = Buffer.from('0.3');
    await ingress.handle(rec);
    expect(accepted).toEqual([]);
    expect(f.log).toEqual([`send ${options.deadLetterTopic}`, 'commit orders/1@4']);
    const dl = f.produced[0]?.record;
    expect(dl?.headers).toMatchObject({
      [KAFKA_DLQ_HEADERS.code]: 'INVALID_EVENT',
      [KAFKA_DLQ_HEADERS.attribute]: 'specversion',
      [KAFKA_DLQ_HEADERS.topic]: 'orders',
      [KAFKA_DLQ_HEADERS.partition]: '1',
      [KAFKA_DLQ_HEADERS.offset]: '3',
      ce_id: 'bad',
    });
    expect(dl?.value.equals(rec.message.value as Buffer)).toBe(true);

    const bad = binaryRecord(event('bad-intent'), '5');
    (bad.message.headers as Record<string, Buffer>).ce_residency = Buffer.from('UK');
    await ingress.handle(bad);
    expect(f.produced[1]?.record.headers).toMatchObject({
      [KAFKA_DLQ_HEADERS.code]: 'INVALID_INTENT',
      [KAFKA_DLQ_HEADERS.attribute]: 'residency',
    });
    expect(ingress.stats().deadLettered).toBe(2);
  });

  it('does not commit an invalid record when the dead-letter topic cannot be written', async () => {
    const f = fakes();
    f.setFailSend(true);
    const ingress = createKafkaIngress({ ...f, options, accept: async () => {} });
    const rec = binaryRecord(event('bad'), '3');
    rec.message.value = Buffer.from('{not json');
    (rec.message.headers as Record<string, Buffer>)['content-type'] = Buffer.from('application/cloudevents+json');
    await expect(ingress.handle(rec)).rejects.toThrow(/broker down/);
    expect(f.commits).toEqual([]);
  });

  it('start connects, subscribes to the configured topics and runs; stop disconnects', async () => {
    const f = fakes();
    const ingress = createKafkaIngress({ ...f, options, accept: async () => {} });
    await ingress.start();
    await ingress.stop();
    expect(f.log).toEqual([
      'producer.connect',
      'consumer.connect',
      'subscribe orders',
      'run',
      'consumer.disconnect',
      'producer.disconnect',
    ]);
  });
});

describe('kafka egress', () => {
  const result = {
    schema: 'meshroute.result/v1' as const,
    workId: 'w1',
    eventId: 'e1',
    eventSource: '/shop',
    agentId: 'edge-de-1',
    attempt: 2,
    ok: true,
    output: { score: 0.3 },
    queueMs: 1,
    executionMs: 2,
    finishedAtMs: Date.parse('2026-01-01T00:00:00Z'),
  };

  it('writes results as binary-mode CloudEvents with ce_ headers; the key only when opted in', async () => {
    const f = fakes();
    await createKafkaEgress(f.producer, options).sendResult(result, 'acme');
    const r = f.produced[0];
    expect(r?.topic).toBe(options.resultsTopic);
    expect(r?.record.key).toBeNull();
    expect(r?.record.headers).toMatchObject({
      ce_type: RESULT_EVENT_TYPE,
      ce_subject: 'e1',
      ce_tenant: 'acme',
      ce_id: 'w1/2',
    });
    const back = decodeKafka({ headers: r?.record.headers, key: r?.record.key ?? null, value: r?.record.value });
    expect(back.data).toEqual(result);

    const keyed = fakes();
    await createKafkaEgress(
      keyed.producer,
      resolveKafkaBridgeOptions({ brokers: 'k:9092', topics: 't', partitionKeyToKey: true }),
    ).sendResult(result);
    expect(keyed.produced[0]?.record.key).toBe('e1');
  });

  it('writes dead letters with the reason and keeps the dead event partition key', async () => {
    const f = fakes();
    await createKafkaEgress(
      f.producer,
      resolveKafkaBridgeOptions({ brokers: 'k:9092', topics: 't', partitionKeyToKey: true }),
    ).sendDeadLetter({
      schema: 'meshroute.deadletter/v1',
      eventId: 'e9',
      eventSource: '/shop',
      reason: 'NO_ELIGIBLE_AGENT',
      error: { code: 'NO_ELIGIBLE_AGENT', message: 'none', retryable: false },
      attempts: 1,
      decisionIds: ['d1'],
      timeMs: 1_700_000_000_000,
      event: event('e9', { partitionkey: 'customer-4' }),
    });
    const r = f.produced[0];
    expect(r?.topic).toBe(DEFAULT_DLQ);
    expect(r?.record.key).toBe('customer-4');
    expect(r?.record.headers).toMatchObject({
      ce_type: DEAD_LETTER_EVENT_TYPE,
      ce_deadletterreason: 'NO_ELIGIBLE_AGENT',
    });
  });
});

const DEFAULT_DLQ = resolveKafkaBridgeOptions({ brokers: 'k:9092', topics: 't' }).deadLettersTopic;

describe('bridge options and the real client', () => {
  it('rejects bad options, naming the option', () => {
    expect(() => resolveKafkaBridgeOptions({ brokers: '', topics: 't' })).toThrow(/brokers: must name at least one/);
    expect(() => resolveKafkaBridgeOptions({ brokers: 'nohost', topics: 't' })).toThrow(
      /brokers: "nohost" is not host:port/,
    );
    expect(() => resolveKafkaBridgeOptions({ brokers: 'k:9092', topics: 'bad topic' })).toThrow(
      /topics: .*not a Kafka topic/,
    );
    expect(() => resolveKafkaBridgeOptions({ brokers: 'k:9092', topics: 'a', deadLetterTopic: 'a' })).toThrow(
      /deadLetterTopic: .*loop/,
    );
    expect(() => resolveKafkaBridgeOptions({ brokers: 'k:9092', topics: 'a', acceptAttempts: 0 })).toThrow(
      /acceptAttempts/,
    );
    expect(resolveKafkaBridgeOptions({ brokers: 'a:1, b:2', topics: 'x,y' })).toMatchObject({
      brokers: ['a:1', 'b:2'],
      topics: ['x', 'y'],
      groupId: 'meshroute-bridge',
      partitionKeyToKey: false,
    });
  });

  it('constructs real KafkaJS-style clients with manual commits; they refuse to work before connect', async () => {
    const { consumer, producer } = kafkaClients(resolveKafkaBridgeOptions({ brokers: '127.0.0.1:1', topics: 't' }));
    await expect(consumer.commitOffsets([{ topic: 't', partition: 0, offset: '1' }])).rejects.toThrow(/connected/);
    await expect(
      producer.send({ topic: 't', messages: [{ key: null, value: Buffer.from('x'), headers: {} }] }),
    ).rejects.toThrow(/connect/);
  });
});
