/**
 * A 3-node JetStream cluster (real nats-server processes, streams with 3 replicas) under a run of
 * thousands of events: the node leading the ingress stream is killed mid-run. Every event
 * completes, none is lost, none is answered twice, and every event has exactly one result in the
 * results stream. Routers are the real router engine over NATS; agents are in-process NATS
 * agents (own connections, real heartbeats, request/reply work).
 */
import { type CloudEventJson, decodeMessage, meshNames, type WorkResult } from '@meshroute/mesh';
import { memoryStateStore } from '@meshroute/router';
import { startNatsCluster, type TestNatsCluster, waitFor } from '@meshroute/testing';
import { connectMesh, type MeshConnection, provisionMesh } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventFactory, RECONNECT_FOREVER, startAgent, startProducer, startRouter } from './support/mesh-fixtures.js';

const EVENTS = 2_000;

/**
 * Every result message in a stream, by sequence (message gets: no consumer to place on a cluster
 * that just lost a node).
 */
async function readStream(conn: MeshConnection, stream: string): Promise<WorkResult[]> {
  const jsm = await conn.jetstreamManager();
  const { first_seq: firstSeq, last_seq: lastSeq, messages } = (await jsm.streams.info(stream)).state;
  if (messages === 0) return [];
  const out: WorkResult[] = [];
  for (let from = firstSeq; from <= lastSeq; from += 64) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(64, lastSeq - from + 1) }, (_, i) =>
        // A get may time out while the cluster settles after the kill: ask again.
        waitFor(
          `result message ${from + i}`,
          () => jsm.streams.getMessage(stream, { seq: from + i }).then((m) => ({ m })),
          {
            timeoutMs: 20_000,
            intervalMs: 100,
          },
        ).then(({ m }) => m),
      ),
    );
    for (const m of batch) if (m) out.push(decodeMessage('meshroute.result/v1', m.data));
  }
  return out;
}

const { event } = eventFactory('/it/topology-cluster');

describe('3-node JetStream cluster, replicas 3', () => {
  let cluster: TestNatsCluster;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    cluster = await startNatsCluster({ nodes: 3 });
    const conn = await connectMesh({ servers: cluster.urls, name: 'provision' });
    await provisionMesh(conn, { replicas: 3, ingressAckWaitMs: 2_000 });
    await conn.close();
  });
  afterAll(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
    await cluster?.stop();
  });

  it('completes every event exactly once when the ingress stream leader is killed mid-run', async () => {
    const agents = await Promise.all(
      ['core-a', 'core-b', 'core-c'].map((id) =>
        startAgent(cluster.urls, id, { jurisdiction: 'DE', slots: 32, connection: RECONNECT_FOREVER }),
      ),
    );
    for (const a of agents) cleanups.push(a.stop);
    // Routers share their state store (Redis in production): a redelivery that lands on the other
    // router is answered from the recorded outcome (or acked unanswered when already answered).
    const shared = memoryStateStore();
    const routers = [
      await startRouter(cluster.urls, 'r-1', { store: shared, connection: RECONNECT_FOREVER }),
      await startRouter(cluster.urls, 'r-2', { store: shared, connection: RECONNECT_FOREVER }),
    ];
    for (const r of routers) cleanups.push(r.stop);
    // Events a router finished from the recorded outcome (redeliveries), for the failure report.
    const replayed = new Set<string>();
    for (const r of routers) {
      void (async () => {
        for await (const st of r.router.status())
          if (st.type === 'workFinished' && st.state === 'duplicate') replayed.add(st.eventId);
      })();
    }
    await waitFor('routers to see the agents', () => routers.every((r) => r.router.agents().length === 3), {
      timeoutMs: 10_000,
    });
    const producer = await startProducer(cluster.urls, { connection: RECONNECT_FOREVER });
    cleanups.push(producer.close);

    const admin = await connectMesh({ servers: cluster.urls, name: 'admin' });
    cleanups.push(() => admin.close());
    const jsm = await admin.jetstreamManager();
    // Events the ingress consumer gives up on (every delivery spent): for the failure report.
    const maxDeliveries: string[] = [];
    const advisories = admin.nc.subscribe(
      `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${meshNames().streams.ingress}.>`,
      {
        callback: (_err, m) => maxDeliveries.push(m.string()),
      },
    );
    cleanups.push(async () => advisories.unsubscribe());
    const info = await jsm.streams.info(meshNames().streams.ingress);
    expect(info.config.num_replicas).toBe(3);
    const leaderName = info.cluster?.leader;
    const leader = cluster.nodes.find((n) => n.serverName === leaderName);
    expect(leader, `the ingress leader ${leaderName}`).toBeDefined();

    const events = Array.from({ length: EVENTS }, (_, i) => event({ data: { n: i } }));
    let published = 0;
    let killed: Promise<void> | undefined;
    const publishing = (async () => {
      // Eight concurrent publishers; the leader dies once a quarter of the events are in.
      const queue = [...events];
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let e = queue.shift(); e; e = queue.shift()) {
            await producer.publish(e);
            published++;
            if (published === EVENTS / 4) killed = leader?.kill('SIGKILL');
          }
        }),
      );
    })();
    await publishing;
    await killed;
    expect(leader?.running()).toBe(false);

    // A reply is a core NATS message: one the router sends while the producer's server is being
    // replaced is lost in transit, and nothing sends it again (a redelivery of an event the router
    // already answered is acked without a second answer: "none answered twice"). So an event
    // counts as answered when its reply arrived or the router recorded that it replied; the
    // results stream holds every outcome durably.
    const key = (e: CloudEventJson) => `${e.source}#${e.id}`;
    const answeredAtRouter = async (e: CloudEventJson) => (await shared.outcome(key(e)))?.answeredAtMs !== undefined;
    try {
      await waitFor(
        'every event answered',
        async () => {
          for (const e of events) if (!producer.answers.has(e.id) && !(await answeredAtRouter(e))) return false;
          return true;
        },
        { timeoutMs: 90_000, intervalMs: 200 },
      );
    } catch (err) {
      // Say what became of the unanswered events (recorded? answered? served by an agent?).
      const missing = events.filter((e) => !producer.answers.has(e.id));
      const detail = await Promise.all(
        missing.slice(0, 10).map(async (e) => ({
          id: e.id,
          stored: await shared.outcome(key(e)),
          served: agents.filter((a) => a.served.includes(e.id)).map((a) => a.id),
          replayedFromStore: replayed.has(e.id),
        })),
      );
      throw new Error(`${missing.length} event(s) unanswered: ${JSON.stringify(detail)}`, { cause: err });
    }
    const outcomes = new Map<string, number>();
    for (const e of events) {
      const a = producer.answers.get(e.id)?.[0];
      const outcome = a?.outcome ?? (await shared.outcome(key(e)))?.outcome ?? 'none';
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    expect(Object.fromEntries(outcomes)).toEqual({ succeeded: EVENTS });
    const twice = events.filter((e) => (producer.answers.get(e.id) ?? []).length > 1).map((e) => e.id);
    expect(twice).toEqual([]);
    // Answers for ids nobody published would mean a leak or a phantom.
    const publishedIds = new Set(events.map((e) => e.id));
    expect([...producer.answers.keys()].filter((id) => !publishedIds.has(id))).toEqual([]);
    // Replies are lost only in the failover window, never as a rule.
    const lostInTransit = events.filter((e) => !producer.answers.has(e.id)).length;
    expect(lostInTransit).toBeLessThan(EVENTS / 20);
    // Every event has exactly one result in the results stream. The publish of a result that
    // finished right at the kill is refused while the killed node's streams elect new leaders (a
    // stream without a leader answers 503 at once, for seconds); the router hands the event back
    // with a growing delay and publishes the recorded result again from a later delivery (same
    // msg id, so the stream keeps one). Wait until the ingress consumer has settled every
    // delivery, then read the stream.
    const consumer = await waitFor(
      'the ingress consumer to settle every delivery',
      async () => {
        const ci = await jsm.consumers.info(meshNames().streams.ingress, meshNames().ingressConsumer);
        return ci.num_pending === 0 && ci.num_ack_pending === 0 ? ci : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 200 },
    );
    const results = await readStream(admin, meshNames().streams.results);
    const perEvent = new Map<string, number>();
    for (const r of results) perEvent.set(r.eventId, (perEvent.get(r.eventId) ?? 0) + 1);
    expect(events.filter((e) => (perEvent.get(e.id) ?? 0) > 1).map((e) => [e.id, perEvent.get(e.id)])).toEqual([]);
    // An event JetStream gave up on (max_deliver spent) before its result was in would be missing.
    expect(
      events.filter((e) => !perEvent.has(e.id)).map((e) => e.id),
      `results missing; max-deliveries advisories: ${maxDeliveries.length}, redelivered: ${consumer.num_redelivered}`,
    ).toEqual([]);
    expect(results.length).toBe(EVENTS);
  });
});
