/**
 * An edge site on a leaf node (real nats-server processes: a hub with JetStream, a leaf linked
 * through the harness's cuttable proxy) with its own agent in the EU; a core agent outside the EU
 * on the hub. The router places EU-resident work on the edge; when the leaf link drops, work that
 * may run anywhere fails over to the core agent and EU-resident work waits (the shipped residency
 * policy forbids the core agent); when the link returns, the waiting work runs on the edge agent.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CapacityReport, type CloudEventJson, meshNames, type StateStore, type WorkResult } from '@meshroute/mesh';
import { createPolicyHolder } from '@meshroute/policy';
import { createRouter, memoryStateStore, type Router, type RouterAnswer } from '@meshroute/router';
import { startLeafNode, startNatsServer, type TestLeafNode, type TestNatsServer, waitFor } from '@meshroute/testing';
import {
  connectMesh,
  type MeshConnection,
  natsAgentMesh,
  natsEventSource,
  natsMesh,
  provisionMesh,
  publishEvent,
} from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

function policyFiles(): { path: string; content: string }[] {
  const dir = join(root, 'policies');
  const out: { path: string; content: string }[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ya?ml|json)$/.test(e.name)) out.push({ path: relative(dir, p), content: readFileSync(p, 'utf8') });
    }
  };
  walk(dir);
  return out;
}

interface TestAgent {
  id: string;
  served: string[];
  /** Like kill -9: heartbeats stop, in-flight work is never answered. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

async function startAgent(
  url: string | string[],
  id: string,
  opts: { jurisdiction: string; slots?: number; workMs?: number; carbon?: number },
): Promise<TestAgent> {
  const conn = await connectMesh({ servers: url, name: id, maxReconnectAttempts: -1, reconnectTimeWaitMs: 100 });
  const mesh = natsAgentMesh(conn);
  const slots = opts.slots ?? 4;
  const instanceId = randomUUID();
  let inFlight = 0;
  let seq = 0;
  let dead = false;
  const served: string[] = [];
  const stopServing = mesh.serveWork(id, async (work): Promise<WorkResult> => {
    inFlight++;
    served.push(work.event.id);
    const started = Date.now();
    // Simulated job duration (the agent's work, not a test wait).
    if (opts.workMs) await new Promise((r) => setTimeout(r, opts.workMs));
    inFlight--;
    return {
      schema: 'meshroute.result/v1',
      workId: work.workId,
      eventId: work.event.id,
      eventSource: work.event.source,
      agentId: id,
      attempt: work.attempt,
      ok: true,
      output: { agent: id, echo: work.event.data ?? null },
      queueMs: 0,
      executionMs: Date.now() - started,
      finishedAtMs: Date.now(),
    };
  });
  const report = (status: CapacityReport['status']): CapacityReport => ({
    schema: 'meshroute.capacity/v1',
    agentId: id,
    seq: ++seq,
    instanceId,
    sentAtMs: Date.now(),
    heartbeatIntervalMs: 200,
    status,
    backends: ['wasm'],
    region: `${opts.jurisdiction.toLowerCase()}-1`,
    jurisdiction: opts.jurisdiction,
    carbonIntensity: opts.carbon ?? 200,
    carbonSource: 'fixed',
    latencyP50Ms: opts.workMs ?? 1,
    latencyP99Ms: (opts.workMs ?? 1) * 2,
    slots,
    freeSlots: Math.max(0, slots - inFlight),
    inFlight,
    queueDepth: 0,
    costPerJob: '0.001',
    labels: {},
    versions: { agent: 'test' },
    workloads: [],
    facts: {},
  });
  const beat = () => {
    if (!dead) mesh.publishCapacity(report('ready')).catch(() => undefined);
  };
  const timer = setInterval(beat, 200);
  beat();
  return {
    id,
    served,
    async kill() {
      dead = true;
      clearInterval(timer);
      await conn.close();
    },
    async stop() {
      if (dead) return;
      dead = true;
      clearInterval(timer);
      await mesh.publishCapacity(report('leaving')).catch(() => undefined);
      await stopServing();
      await conn.close();
    },
  };
}

interface TestRouter {
  router: Router;
  conn: MeshConnection;
  /** Like kill -9: the connection dies, nothing is acked or answered any more. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A store as one router process sees it: after `kill()` every call fails, like the calls of a
 * process that died (its claims stay behind until they expire; nothing is released or completed).
 */
function processView(inner: StateStore): { store: StateStore; kill(): void } {
  let dead = false;
  const guard = <T>(f: () => Promise<T>): Promise<T> => (dead ? Promise.reject(new Error('process is dead')) : f());
  return {
    kill: () => {
      dead = true;
    },
    store: {
      claim: (k, o, t) => guard(() => inner.claim(k, o, t)),
      complete: (k, out, t) => guard(() => inner.complete(k, out, t)),
      release: (k, o) => guard(() => inner.release(k, o)),
      outcome: (k) => guard(() => inner.outcome(k)),
      spend: (t, a, l, w) => guard(() => inner.spend(t, a, l, w)),
      hit: (k, l, w) => guard(() => inner.hit(k, l, w)),
      healthy: () => guard(() => inner.healthy()),
      close: async () => undefined,
    },
  };
}

async function startRouter(
  url: string | string[],
  routerId: string,
  shared: StateStore = memoryStateStore(),
): Promise<TestRouter> {
  const view = processView(shared);
  const store = view.store;
  const conn = await connectMesh({ servers: url, name: routerId, maxReconnectAttempts: -1, reconnectTimeWaitMs: 100 });
  const holder = createPolicyHolder();
  const loaded = holder.propose(policyFiles(), { source: 'policies' });
  if (!loaded.ok) throw new Error(`shipped policies do not load: ${JSON.stringify(loaded.errors)}`);
  const router = createRouter({
    mesh: natsMesh(conn, { routerId }),
    source: natsEventSource(conn, { maxInFlight: 256, ackWaitMs: 2_000 }),
    store,
    policies: holder,
    routerId,
    options: {
      dispatchTimeoutMs: 5_000,
      backoffBaseMs: 20,
      backoffMaxMs: 200,
      maxAttempts: 8,
      nakDelayMs: 200,
      claimTtlMs: 3_000,
    },
  });
  await router.start();
  let stopped = false;
  return {
    router,
    conn,
    async kill() {
      stopped = true;
      view.kill();
      await conn.close();
      await router.stop({ drainTimeoutMs: 0 });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await router.stop({ drainTimeoutMs: 1_000 });
      await conn.close();
    },
  };
}

/** A producer publishing into the ingress with a reply inbox, collecting every answer. */
async function startProducer(url: string | string[]) {
  const conn = await connectMesh({
    servers: url,
    name: 'producer',
    maxReconnectAttempts: -1,
    reconnectTimeWaitMs: 100,
  });
  const inbox = `${meshNames().replyPrefix}.producer-${randomUUID().slice(0, 8)}`;
  const answers = new Map<string, RouterAnswer[]>();
  conn.nc.subscribe(`${inbox}.>`, {
    callback: (_err, msg) => {
      const a = JSON.parse(new TextDecoder().decode(msg.data)) as RouterAnswer;
      const list = answers.get(a.id) ?? [];
      list.push(a);
      answers.set(a.id, list);
    },
  });
  return {
    answers,
    async publish(event: CloudEventJson) {
      // Retry publishes while the server restarts: de-duplicated by Nats-Msg-Id (source+id).
      for (let i = 0; ; i++) {
        try {
          await publishEvent(conn, event, { replyTo: `${inbox}.${event.id}` });
          return;
        } catch (err) {
          if (i >= 50) throw err;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    },
    close: () => conn.close(),
  };
}

let seq = 0;
function event(attrs: Record<string, unknown> = {}): CloudEventJson {
  return {
    specversion: '1.0',
    id: `ev-${process.pid}-${++seq}`,
    source: '/it/topology-leaf',
    type: 'com.example.job',
    datacontenttype: 'application/json',
    workload: 'echo',
    data: { n: seq },
    ...attrs,
  };
}

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
    const edgeAgent = await startAgent(edge.url, 'edge-fra-1', { jurisdiction: 'DE', slots: 8 });
    const core = await startAgent(hub.url, 'core-us-1', { jurisdiction: 'US', slots: 8, carbon: 10 });
    cleanups.push(edgeAgent.stop, core.stop);
    const r = await startRouter(hub.url, 'r-leaf');
    cleanups.push(r.stop);
    const ids = () =>
      r.router
        .agents()
        .map((a) => a.id)
        .sort();
    await waitFor('the router to see both agents', () => ids().length === 2, { timeoutMs: 10_000 });
    const producer = await startProducer(hub.url);
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
