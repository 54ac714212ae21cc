/**
 * The Kafka bridge against a real broker (set KAFKA_BROKERS, e.g. with the KRaft compose file in
 * deploy/) and a real nats-server: a valid CloudEvent on a topic reaches the mesh ingress stream;
 * an invalid one goes to the dead-letter topic with the reason in headers; a result published on
 * the mesh comes out on the results topic with ce_ headers.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KafkaJS } from '@confluentinc/kafka-javascript';
import { decodeKafka, decodeNats, encodeKafkaBinary, meshNames } from '@meshroute/mesh';
import { sampleResult, startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import { connectMesh, type MeshConnection, natsMesh, provisionMesh } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = join(fileURLToPath(new URL('..', import.meta.url)), 'packages/cli/dist/bin.js');
const brokers = process.env.KAFKA_BROKERS;
if (!brokers) console.warn('kafka integration skipped: KAFKA_BROKERS not set (start deploy/ compose Kafka and set it)');

describe.skipIf(!brokers)('kafka bridge against a real broker', () => {
  const suffix = randomUUID().slice(0, 8);
  const topic = `mr-in-${suffix}`;
  const dlq = `mr-invalid-${suffix}`;
  const results = `mr-results-${suffix}`;
  let nats: TestNatsServer;
  let conn: MeshConnection;
  let bridge: ChildProcess;
  const kafka = new KafkaJS.Kafka({ kafkaJS: { brokers: (brokers ?? '').split(','), clientId: 'mr-test' } });
  const producer = kafka.producer();

  beforeAll(async () => {
    nats = await startNatsServer();
    conn = await connectMesh({ servers: nats.url });
    await provisionMesh(conn);
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [topic, dlq, results].map((t) => ({ topic: t, numPartitions: 1 })) });
    await admin.disconnect();
    await producer.connect();
    bridge = spawn(
      process.execPath,
      [
        BIN,
        'bridge',
        'kafka',
        '--brokers',
        brokers as string,
        '--topics',
        topic,
        '--group-id',
        `mr-${suffix}`,
        '--dead-letter-topic',
        dlq,
        '--results-topic',
        results,
        '--nats-url',
        nats.url,
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
  });

  afterAll(async () => {
    if (bridge && bridge.exitCode === null) {
      const exited = new Promise((r) => bridge.once('exit', r));
      bridge.kill('SIGTERM');
      await exited;
    }
    await producer.disconnect();
    await conn?.close();
    await nats?.stop();
  });

  it('moves a valid event into the ingress stream and an invalid one to the dead-letter topic', async () => {
    const r = encodeKafkaBinary({
      specversion: '1.0',
      id: `k-${suffix}`,
      source: '/kafka-test',
      type: 'demo.job',
      workload: 'checksum',
      data: { n: 1 },
      datacontenttype: 'application/json',
    });
    await producer.send({ topic, messages: [{ key: null, value: Buffer.from(r.value), headers: r.headers }] });
    await producer.send({ topic, messages: [{ value: Buffer.from('nope'), headers: { ce_specversion: '0.3' } }] });
    const jsm = await conn.jetstreamManager();
    const got = await waitFor(
      'the event on the ingress stream',
      async () => {
        const m = await jsm.streams
          .getMessage(meshNames().streams.ingress, { last_by_subj: meshNames().ingressSubject() })
          .catch(() => null);
        return m ?? undefined;
      },
      { timeoutMs: 30_000 },
    );
    const headers = new Map<string, string>();
    for (const [k, v] of got.header ?? []) headers.set(k, v[0] as string);
    expect(decodeNats(headers, got.data)).toMatchObject({ id: `k-${suffix}`, data: { n: 1 } });

    const consumer = kafka.consumer({ kafkaJS: { groupId: `mr-check-${suffix}`, fromBeginning: true } });
    await consumer.connect();
    await consumer.subscribe({ topics: [dlq, results] });
    const seen: { topic: string; headers: Record<string, string>; value: Buffer | null; key: Buffer | null }[] = [];
    await consumer.run({
      eachMessage: async ({ topic: t, message }) => {
        const h: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) h[k] = String(v);
        seen.push({ topic: t, headers: h, value: message.value, key: message.key });
      },
    });
    await natsMesh(conn, { routerId: 'r' }).publishResult(sampleResult({ eventId: `k-${suffix}` }), undefined);
    await waitFor(
      'the dead letter and the result on kafka',
      () => (seen.some((s) => s.topic === dlq) && seen.some((s) => s.topic === results) ? true : undefined),
      {
        timeoutMs: 30_000,
      },
    );
    await consumer.disconnect();
    expect(seen.find((s) => s.topic === dlq)?.headers).toMatchObject({ 'meshroute-error-code': 'INVALID_EVENT' });
    const out = seen.find((s) => s.topic === results);
    expect(decodeKafka({ headers: out?.headers, key: out?.key ?? null, value: out?.value })).toMatchObject({
      type: 'dev.meshroute.result.v1',
      subject: `k-${suffix}`,
    });
  });
});
