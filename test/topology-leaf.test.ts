/**
 * An edge site on a leaf node (real nats-server processes: a hub with JetStream, a leaf linked
 * through the harness's cuttable proxy) with its own agent in the EU; a core agent outside the EU
 * on the hub. The router places EU-resident work on the edge; when the leaf link drops, work that
 * may run anywhere fails over to the core agent and EU-resident work waits (the shipped residency
 * policy forbids the core agent); when the link returns, the waiting work runs on the edge agent.
 */
import type { CloudEventJson } from '@meshroute/mesh';
import { startLeafNode, startNatsServer, type TestLeafNode, type TestNatsServer, waitFor } from '@meshroute/testing';
import { connectMesh, provisionMesh } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventFactory, RECONNECT_FOREVER, startAgent, startProducer, startRouter } from './support/mesh-fixtures.js';

const { event } = eventFactory('/it/topology-leaf');

describe('edge site on a leaf node', () => {
  let hub: TestNatsServer;
  let edge: TestLeafNode;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    hub = await startNatsServer({ leafnodes: { listenPort: 0 } });
    edge = await startLeafNode(hub);
    const conn = await connectMesh({ servers: hub.url, name: 'provision' });
    await provisionMesh(conn, { ingressAckWaitMs: 2_000 });
    await conn.close();
  });
  afterAll(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
    await edge?.stop();
    await hub?.stop();
  });

  it('uses the edge agent, fails over or dead-letters by policy while the link is down, and uses it again after', async () => {
    const edgeAgent = await startAgent(edge.url, 'edge-fra-1', {
      jurisdiction: 'DE',
      slots: 8,
      connection: RECONNECT_FOREVER,
    });
    const core = await startAgent(hub.url, 'core-us-1', {
      jurisdiction: 'US',
      slots: 8,
      carbon: 10,
      connection: RECONNECT_FOREVER,
    });
    cleanups.push(edgeAgent.stop, core.stop);
    const r = await startRouter(hub.url, 'r-leaf', { connection: RECONNECT_FOREVER });
    cleanups.push(r.stop);
    const ids = () =>
      r.router
        .agents()
        .map((a) => a.id)
        .sort();
    await waitFor('the router to see both agents', () => ids().length === 2, { timeoutMs: 10_000 });
    const producer = await startProducer(hub.url, { connection: RECONNECT_FOREVER });
    cleanups.push(producer.close);
    const answerOf = (e: CloudEventJson) => producer.answers.get(e.id)?.[0];
    const settle = (events: CloudEventJson[]) =>
      waitFor('answers', () => events.every((e) => producer.answers.has(e.id)), { timeoutMs: 20_000 });

    // Link up: EU-resident work runs at the edge site.
    const before = Array.from({ length: 10 }, () => event({ residency: 'eu' }));
    await Promise.all(before.map((e) => producer.publish(e)));
    await settle(before);
    for (const e of before) expect(answerOf(e)).toMatchObject({ outcome: 'succeeded', agent: { id: 'edge-fra-1' } });

    // Link down: the router loses the edge agent (its heartbeats stop crossing the link).
    await edge.disconnect();
    await waitFor('the edge agent to be lost', () => ids().join() === 'core-us-1', { timeoutMs: 15_000 });
    const resident = Array.from({ length: 5 }, () => event({ residency: 'eu' }));
    const anywhere = Array.from({ length: 10 }, () => event());
    await Promise.all([...resident, ...anywhere].map((e) => producer.publish(e)));
    await settle(anywhere);
    for (const e of anywhere) expect(answerOf(e)).toMatchObject({ outcome: 'succeeded', agent: { id: 'core-us-1' } });
    // EU-resident work has no eligible agent while the edge is away: it is dead-lettered with the
    // reason, never run in the US.
    await settle(resident);
    for (const e of resident) expect(answerOf(e)).toMatchObject({ outcome: 'dead-lettered' });
    expect(core.served.filter((id) => resident.some((e) => e.id === id))).toEqual([]);

    // Link back: the edge agent heartbeats again and EU-resident work runs there again.
    await edge.reconnect();
    await waitFor('the edge agent to be back', () => ids().length === 2, { timeoutMs: 15_000 });
    const after = Array.from({ length: 5 }, () => event({ residency: 'eu' }));
    await Promise.all(after.map((e) => producer.publish(e)));
    await settle(after);
    for (const e of after) expect(answerOf(e)?.agent?.id).toBe('edge-fra-1');
  });
});
