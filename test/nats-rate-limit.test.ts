/**
 * Tenant rate limits hold for producers publishing straight to the NATS ingress, not only at the
 * HTTP ingress: a real nats-server, the real router engine on the JetStream ingress, an in-process
 * agent. Events published by the HTTP ingress (on the admitted subject) are not counted twice.
 */
import { meshNames } from '@meshroute/mesh';
import type { Router } from '@meshroute/router';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import { connectMesh, type MeshConnection, provisionMesh, publishEvent } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventFactory,
  startProducer,
  startRouter,
  type TestProducer,
  type TestRouter,
} from './support/mesh-fixtures.js';
import { type AgentRun, followOutcomes, type OutcomeFeeds, startTimedAgent } from './support/processes.js';

const { event } = eventFactory('/it/rate-limit');

describe('tenant rate limits on the NATS ingress', () => {
  let nats: TestNatsServer;
  let conn: MeshConnection;
  let testRouter: TestRouter;
  let router: Router;
  let producer: TestProducer;
  let outcomes: OutcomeFeeds;
  let stopAgent: () => Promise<void>;
  const runs: AgentRun[] = [];

  beforeAll(async () => {
    nats = await startNatsServer();
    conn = await connectMesh({ servers: nats.url, name: 'r-rate' });
    await provisionMesh(conn, { storage: 'memory' });
    outcomes = await followOutcomes(conn);
    stopAgent = await startTimedAgent(nats.url, 'de-rate', { workMs: 1, slots: 8, runs });
    testRouter = await startRouter(nats.url, 'r-rate', {
      eventSource: { maxInFlight: 1 },
      options: { tenantRateLimits: { acme: { limit: 2, windowMs: 600_000 } } },
    });
    router = testRouter.router;
    await waitFor('the agent', () => router.agents().length === 1, { timeoutMs: 5_000 });
    producer = await startProducer(nats.url);
  });
  afterAll(async () => {
    await producer?.close();
    await outcomes?.close();
    await testRouter?.stop();
    await stopAgent?.();
    await conn?.close();
    await nats?.stop();
  });

  it("dead-letters a NATS producer's event over its tenant's limit BUDGET_EXCEEDED (rate-limit), answering it so; HTTP-admitted events are not counted again", async () => {
    const events = [1, 2, 3].map(() => event({ tenant: 'acme', residency: 'eu' }));
    // One at a time (the router takes one delivery at a time here), so the third is the one over.
    for (const e of events) {
      await producer.publish(e);
      await waitFor(`the answer to ${e.id}`, () => producer.answers.has(e.id), { timeoutMs: 10_000 });
    }
    expect(events.map((e) => producer.answers.get(e.id)?.[0]?.outcome)).toEqual([
      'succeeded',
      'succeeded',
      'dead-lettered',
    ]);
    expect(producer.answers.get(events[2]?.id ?? '')?.[0]).toMatchObject({
      deadLetterReason: 'BUDGET_EXCEEDED',
      error: { code: 'BUDGET_EXCEEDED', details: { rule: 'rate-limit', tenant: 'acme', limit: 2 } },
    });
    await waitFor('the dead letter', () => outcomes.deadLetters.some((d) => d.eventId === events[2]?.id), {
      timeoutMs: 5_000,
    });
    expect(runs.map((r) => r.eventId).sort()).toEqual([events[0]?.id, events[1]?.id].sort());
    // What the HTTP ingress publishes (it counted the event itself) runs although acme is over.
    const viaHttp = event({ tenant: 'acme', residency: 'eu' });
    await publishEvent(conn, viaHttp, { tenant: 'acme', admitted: true });
    await waitFor('the admitted event ran', () => runs.some((r) => r.eventId === viaHttp.id), { timeoutMs: 10_000 });
    expect(outcomes.deadLetters.map((d) => d.eventId)).not.toContain(viaHttp.id);
    expect(meshNames().admittedIngressSubject('acme')).toBe('meshroute.ingress.acme.admitted');
  });
});
