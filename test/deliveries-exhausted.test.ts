/**
 * Nothing is lost when JetStream's deliveries of an event run out: a router that would hand an
 * event back on its last delivery (`max_deliver`) dead-letters it `DELIVERIES_EXHAUSTED` instead,
 * saying why, and answers the producer. Real nats-server, real router engine and policy holder.
 */
import { meshNames } from '@meshroute/mesh';
import { createPolicyHolder } from '@meshroute/policy';
import type { Router } from '@meshroute/router';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import { connectMesh, type MeshConnection, provisionMesh } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventFactory,
  policyFiles,
  startProducer,
  startRouter,
  type TestProducer,
  type TestRouter,
} from './support/mesh-fixtures.js';
import {
  type AgentRun,
  followOutcomes,
  type OutcomeFeeds,
  startTimedAgent,
  watchGivenUp,
} from './support/processes.js';

const MAX_DELIVER = 3;
const { event } = eventFactory('/it/exhausted');

describe('an event whose deliveries run out', () => {
  let nats: TestNatsServer;
  let conn: MeshConnection;
  let testRouter: TestRouter;
  let router: Router;
  let producer: TestProducer;
  let outcomes: OutcomeFeeds;
  const holder = createPolicyHolder();

  beforeAll(async () => {
    nats = await startNatsServer();
    conn = await connectMesh({ servers: nats.url, name: 'r-exhausted' });
    await provisionMesh(conn, { storage: 'file', ingressAckWaitMs: 2_000, maxDeliver: MAX_DELIVER });
    outcomes = await followOutcomes(conn);
    // A router that came up before compliance pushed any policy: it can place nothing, so it
    // hands every event back to ingress.
    testRouter = await startRouter(nats.url, 'r-exhausted', {
      policies: holder,
      eventSource: { maxInFlight: 16 },
      options: { nakDelayMs: 50 },
    });
    router = testRouter.router;
    producer = await startProducer(nats.url);
  });
  afterAll(async () => {
    await producer?.close();
    await outcomes?.close();
    await testRouter?.stop();
    await conn?.close();
    await nats?.stop();
  });

  it('is dead-lettered DELIVERIES_EXHAUSTED on its last delivery, saying why; the producer is answered and the stream keeps nothing pending', async () => {
    const watch = await watchGivenUp(conn);
    const e = event({ residency: 'eu' });
    await producer.publish(e);
    await Promise.race([
      waitFor('the answer', () => producer.answers.has(e.id), { timeoutMs: 15_000 }),
      watch.lostEvent,
    ]);
    expect(producer.answers.get(e.id)).toEqual([
      expect.objectContaining({ outcome: 'dead-lettered', deadLetterReason: 'DELIVERIES_EXHAUSTED' }),
    ]);
    await waitFor('the dead letter', () => outcomes.deadLetters.some((d) => d.eventId === e.id), { timeoutMs: 5_000 });
    const dl = outcomes.deadLetters.find((d) => d.eventId === e.id);
    expect(dl).toMatchObject({
      reason: 'DELIVERIES_EXHAUSTED',
      eventSource: '/it/exhausted',
      error: {
        code: 'DELIVERIES_EXHAUSTED',
        details: { deliveries: MAX_DELIVER, handedBackBecause: 'no policy bundle was active' },
      },
      event: expect.objectContaining({ id: e.id, residency: 'eu' }),
    });
    const jsm = await conn.jetstreamManager();
    const names = meshNames();
    await waitFor(
      'nothing pending on the ingress consumer',
      async () => {
        const info = await jsm.consumers.info(names.streams.ingress, names.ingressConsumer);
        return info.num_pending === 0 && info.num_ack_pending === 0;
      },
      { timeoutMs: 5_000 },
    );
    expect(watch.gaveUp).toEqual([]);
  });

  it('once the policies are active, the next event runs as usual', async () => {
    const runs: AgentRun[] = [];
    const stopAgent = await startTimedAgent(nats.url, 'de-exhausted', { workMs: 1, slots: 4, runs });
    try {
      const loaded = holder.propose(policyFiles(), { source: 'policies' });
      expect(loaded.ok).toBe(true);
      await waitFor('the agent', () => router.agents().length === 1, { timeoutMs: 5_000 });
      const e = event({ residency: 'eu' });
      await producer.publish(e);
      await waitFor('the answer', () => producer.answers.has(e.id), { timeoutMs: 15_000 });
      expect(producer.answers.get(e.id)).toEqual([
        expect.objectContaining({ outcome: 'succeeded', agent: expect.objectContaining({ id: 'de-exhausted' }) }),
      ]);
    } finally {
      await stopAgent();
    }
  });
});
