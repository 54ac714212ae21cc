/**
 * The router end to end on a real nats-server (file-backed JetStream) with the shipped policies:
 * producers publish into the JetStream ingress with a reply inbox, routers consume the shared
 * durable consumer, agents are in-process NATS agents (own connections, real heartbeats and
 * request/reply work). Failures: an agent's connection dies with work in flight, a router dies
 * under load, nats-server restarts under load.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type CapacityReport,
  type CloudEventJson,
  type Logger,
  meshNames,
  type StateStore,
  type WorkloadSpec,
  type WorkResult,
} from '@meshroute/mesh';
import { createPolicyHolder } from '@meshroute/policy';
import {
  createRouter,
  memoryStateStore,
  type Router,
  type RouterAnswer,
  type WorkloadCatalog,
  watchWorkloadCatalog,
} from '@meshroute/router';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import {
  connectMesh,
  type MeshConnection,
  natsAgentMesh,
  natsEventSource,
  natsMesh,
  natsWorkloadRegistry,
  provisionMesh,
  publishEvent,
} from '@meshroute/transport-nats';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const EU = new Set(['AT', 'BE', 'DE', 'FR', 'NL', 'IE', 'IT', 'ES', 'SE', 'FI', 'PL']);

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
  url: string,
  id: string,
  opts: {
    jurisdiction: string;
    slots?: number;
    workMs?: number;
    carbon?: number;
    backends?: CapacityReport['backends'];
  },
): Promise<TestAgent> {
  const conn = await connectMesh({ servers: url, name: id });
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
    backends: opts.backends ?? ['wasm'],
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

/** What the ingress consumers logged at warn and above (printed when a test fails). */
const sourceLogs: string[] = [];
function sourceLog(routerId: string): Logger {
  const push = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    sourceLogs.push(`${routerId} ${level} ${msg} ${JSON.stringify(fields ?? {})}`);
  const l: Logger = {
    debug: () => {},
    info: push('info'),
    warn: push('warn'),
    error: push('error'),
    child: () => l,
  };
  return l;
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
  url: string,
  routerId: string,
  shared: StateStore = memoryStateStore(),
  extra: { workloads?: WorkloadCatalog } = {},
): Promise<TestRouter> {
  const view = processView(shared);
  const store = view.store;
  const conn = await connectMesh({ servers: url, name: routerId, maxReconnectAttempts: -1 });
  const holder = createPolicyHolder();
  const loaded = holder.propose(policyFiles(), { source: 'policies' });
  if (!loaded.ok) throw new Error(`shipped policies do not load: ${JSON.stringify(loaded.errors)}`);
  const router = createRouter({
    mesh: natsMesh(conn, { routerId }),
    source: natsEventSource(conn, {
      maxInFlight: 256,
      ackWaitMs: 2_000,
      pullExpiresMs: 1_000,
      pullRetryDelayMs: 100,
      logger: sourceLog(routerId),
    }),
    store,
    policies: holder,
    routerId,
    ...(extra.workloads ? { workloads: extra.workloads } : {}),
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
async function startProducer(url: string) {
  const conn = await connectMesh({ servers: url, name: 'producer', maxReconnectAttempts: -1 });
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
    source: '/it/router',
    type: 'com.example.job',
    datacontenttype: 'application/json',
    workload: 'echo',
    data: { n: seq },
    ...attrs,
  };
}

describe('router on a real nats-server', () => {
  let nats: TestNatsServer;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    nats = await startNatsServer();
    const conn = await connectMesh({ servers: nats.url, name: 'provision' });
    await provisionMesh(conn, { ingressAckWaitMs: 2_000, storage: 'file' });
    await conn.close();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it('keeps EU-tagged work on EU agents even when only non-EU agents are free (it queues)', async () => {
    const de = await startAgent(nats.url, `de-${seq}`, { jurisdiction: 'DE', slots: 1, workMs: 50 });
    const us = await startAgent(nats.url, `us-${seq}`, { jurisdiction: 'US', slots: 16, workMs: 1, carbon: 10 });
    cleanups.push(de.stop, us.stop);
    const r = await startRouter(nats.url, 'r-eu');
    cleanups.push(r.stop);
    await waitFor('condition', () => r.router.agents().length === 2, { timeoutMs: 5_000 });
    const producer = await startProducer(nats.url);
    cleanups.push(producer.close);
    const events = Array.from({ length: 12 }, (_, i) => event(i % 2 === 0 ? { residency: 'eu' } : {}));
    await Promise.all(events.map((e) => producer.publish(e)));
    await waitFor('condition', () => events.every((e) => producer.answers.has(e.id)), { timeoutMs: 20_000 });
    for (const e of events) {
      const [a] = producer.answers.get(e.id) ?? [];
      expect(a?.outcome).toBe('succeeded');
      if (e.residency === 'eu') expect(EU.has(a?.agent?.jurisdiction ?? '')).toBe(true);
    }
    expect(us.served.filter((id) => events.find((e) => e.id === id)?.residency === 'eu')).toEqual([]);
  });

  it('dead-letters EU-tagged work when there is no EU agent', async () => {
    const us = await startAgent(nats.url, `us-only-${seq}`, { jurisdiction: 'US' });
    cleanups.push(us.stop);
    const r = await startRouter(nats.url, 'r-dlq');
    cleanups.push(r.stop);
    // Agents of earlier tests may still be in the capacity snapshot until they are found lost.
    await waitFor(
      'only the US agent',
      () => r.router.agents().every((a) => a.id === us.id) && r.router.agents().length === 1,
      {
        timeoutMs: 5_000,
      },
    );
    const producer = await startProducer(nats.url);
    cleanups.push(producer.close);
    const e = event({ residency: 'eu' });
    await producer.publish(e);
    await waitFor('condition', () => producer.answers.has(e.id), { timeoutMs: 10_000 });
    expect(producer.answers.get(e.id)?.[0]).toMatchObject({
      outcome: 'dead-lettered',
      deadLetterReason: 'NO_ELIGIBLE_AGENT',
    });
    expect(us.served).not.toContain(e.id);
  });

  it('places a quantum-only workload on the quantum agent only; an unregistered workload is dead-lettered unrun', async () => {
    const admin = await connectMesh({ servers: nats.url, name: 'registry-admin' });
    cleanups.push(() => admin.close());
    const registry = natsWorkloadRegistry(admin);
    const qasm: WorkloadSpec = {
      schema: 'meshroute.workload/v1',
      name: `qasm-bell-${seq}`,
      version: '1',
      artifacts: { quantum: { digest: `sha256:${'f'.repeat(64)}`, name: 'bell.qasm', options: {} } },
      limits: { timeoutMs: 5_000, memoryBytes: 1_048_576, outputBytes: 65_536 },
      capabilities: [],
    };
    await registry.put(qasm);
    const workloads = await watchWorkloadCatalog(registry);
    cleanups.push(async () => workloads.close());
    // The wasm and gpu agents are greener and faster: a workload-blind router would pick them.
    const wasm = await startAgent(nats.url, `wasm-${seq}`, { jurisdiction: 'DE', carbon: 5, backends: ['wasm'] });
    const gpu = await startAgent(nats.url, `gpu-${seq}`, { jurisdiction: 'DE', carbon: 10, backends: ['gpu'] });
    const quantum = await startAgent(nats.url, `qsim-${seq}`, {
      jurisdiction: 'DE',
      carbon: 400,
      slots: 16,
      backends: ['quantum'],
    });
    cleanups.push(wasm.stop, gpu.stop, quantum.stop);
    const r = await startRouter(nats.url, 'r-workloads', memoryStateStore(), { workloads });
    cleanups.push(r.stop);
    const ids = [wasm.id, gpu.id, quantum.id];
    await waitFor(
      'router to see the three agents',
      () => ids.every((id) => r.router.agents().some((a) => a.id === id)),
      {
        timeoutMs: 5_000,
      },
    );
    const producer = await startProducer(nats.url);
    cleanups.push(producer.close);
    const events = Array.from({ length: 10 }, () => event({ workload: qasm.name }));
    const unknown = event({ workload: 'not-registered' });
    await Promise.all([...events, unknown].map((e) => producer.publish(e)));
    await waitFor('every event answered', () => [...events, unknown].every((e) => producer.answers.has(e.id)), {
      timeoutMs: 10_000,
    });
    for (const e of events) {
      expect(producer.answers.get(e.id)).toEqual([
        expect.objectContaining({ outcome: 'succeeded', agent: expect.objectContaining({ id: quantum.id }) }),
      ]);
    }
    expect(producer.answers.get(unknown.id)?.[0]).toMatchObject({
      outcome: 'dead-lettered',
      deadLetterReason: 'WORKLOAD_NOT_FOUND',
      error: { code: 'WORKLOAD_NOT_FOUND' },
    });
    expect([...wasm.served, ...gpu.served]).toEqual([]);
    expect(quantum.served).not.toContain(unknown.id);
  });

  it('completes every item on another agent when an agent dies with work in flight; none lost, none answered twice', async () => {
    const a = await startAgent(nats.url, `victim-${seq}`, { jurisdiction: 'DE', slots: 8, workMs: 3_000, carbon: 1 });
    const b = await startAgent(nats.url, `survivor-${seq}`, { jurisdiction: 'FR', slots: 8, workMs: 5, carbon: 500 });
    cleanups.push(a.stop, b.stop);
    const r = await startRouter(nats.url, 'r-failover');
    cleanups.push(r.stop);
    await waitFor('condition', () => r.router.agents().length >= 2, { timeoutMs: 5_000 });
    const producer = await startProducer(nats.url);
    cleanups.push(producer.close);
    const events = Array.from({ length: 6 }, () => event({ residency: 'eu' }));
    await Promise.all(events.map((e) => producer.publish(e)));
    await waitFor('condition', () => a.served.length >= 6, { timeoutMs: 10_000 });
    await a.kill();
    await waitFor('condition', () => events.every((e) => producer.answers.has(e.id)), { timeoutMs: 20_000 });
    for (const e of events) {
      const list = producer.answers.get(e.id) ?? [];
      expect(list).toHaveLength(1);
      expect(list[0]).toMatchObject({ outcome: 'succeeded', agent: { id: b.id } });
    }
  });

  it('loses nothing when one of two routers dies under load', async () => {
    const agent = await startAgent(nats.url, `shared-${seq}`, { jurisdiction: 'NL', slots: 32, workMs: 20 });
    cleanups.push(agent.stop);
    const store = memoryStateStore();
    const r1 = await startRouter(nats.url, 'r-one', store);
    const r2 = await startRouter(nats.url, 'r-two', store);
    cleanups.push(r1.stop, r2.stop);
    await waitFor('condition', () => r1.router.agents().length > 0 && r2.router.agents().length > 0, {
      timeoutMs: 5_000,
    });
    const producer = await startProducer(nats.url);
    cleanups.push(producer.close);
    const events = Array.from({ length: 200 }, () => event());
    const publishing = (async () => {
      for (const e of events) await producer.publish(e);
    })();
    await waitFor('condition', () => producer.answers.size >= 40, { timeoutMs: 20_000 });
    await r1.kill();
    await publishing;
    await waitFor('condition', () => events.every((e) => producer.answers.has(e.id)), { timeoutMs: 30_000 });
    for (const e of events) expect(producer.answers.get(e.id)?.[0]?.outcome).toBe('succeeded');
  });
});

describe('router across a nats-server restart', () => {
  let nats: TestNatsServer;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    nats = await startNatsServer();
    const conn = await connectMesh({ servers: nats.url, name: 'provision' });
    await provisionMesh(conn, { ingressAckWaitMs: 2_000, storage: 'file' });
    await conn.close();
  });
  afterAll(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
    await nats?.stop();
  });

  it('loses nothing when nats-server restarts under load (file-backed JetStream)', async () => {
    const agent = await startAgent(nats.url, `restart-${seq}`, { jurisdiction: 'IE', slots: 32, workMs: 5 });
    cleanups.push(agent.stop);
    const r = await startRouter(nats.url, 'r-restart');
    cleanups.push(r.stop);
    await waitFor('condition', () => r.router.agents().length > 0, { timeoutMs: 5_000 });
    const producer = await startProducer(nats.url);
    cleanups.push(producer.close);
    const events = Array.from({ length: 150 }, () => event());
    const publishing = (async () => {
      for (const e of events) await producer.publish(e);
    })();
    await waitFor('condition', () => producer.answers.size >= 30, { timeoutMs: 20_000 });
    await nats.restart();
    await publishing;
    // Answers sent while the producer was disconnected are lost in flight; the results stream is
    // the record: every event must have a succeeded result there.
    const conn = await connectMesh({ servers: nats.url, name: 'checker' });
    cleanups.push(() => conn.close());
    const done = new Set<string>();
    await waitFor(
      'every event has a result',
      async () => {
        const jsm = await conn.jetstreamManager();
        const info = await jsm.streams.info(meshNames().streams.results);
        if (info.state.messages === 0) return false;
        const consumer = await conn.js.consumers.get(meshNames().streams.results);
        const iter = await consumer.fetch({ max_messages: info.state.messages, expires: 2_000 });
        for await (const m of iter) {
          const res = JSON.parse(new TextDecoder().decode(m.data)) as WorkResult;
          if (res.ok) done.add(res.eventId);
        }
        return events.every((e) => done.has(e.id));
      },
      { timeoutMs: 40_000, intervalMs: 1_000 },
    ).catch((err) => {
      console.error('restart test state', {
        answers: producer.answers.size,
        results: done.size,
        health: r.router.health(),
        served: agent.served.length,
        sourceLogs: sourceLogs.filter((l) => l.startsWith('r-restart')).slice(-20),
      });
      throw err;
    });
    expect(events.filter((e) => !done.has(e.id))).toEqual([]);
  });
});

describe('router with a shared Redis state store', () => {
  it('keeps routing while Redis restarts, says it is degraded, and recovers', async () => {
    const { startRedisServer } = await import('@meshroute/testing');
    const { redisStateStore } = await import('@meshroute/store-redis');
    const nats = await startNatsServer();
    const redis = await startRedisServer();
    const conn = await connectMesh({ servers: nats.url, name: 'provision-redis' });
    await provisionMesh(conn, { ingressAckWaitMs: 2_000 });
    await conn.close();
    const store = redisStateStore(redis.url, { operationTimeoutMs: 300 });
    const agent = await startAgent(nats.url, 'redis-agent', { jurisdiction: 'DE', slots: 16, workMs: 2 });
    const r = await startRouter(nats.url, 'r-redis', store);
    const producer = await startProducer(nats.url);
    const statuses: string[] = [];
    void (async () => {
      for await (const s of r.router.status()) statuses.push(s.type);
    })();
    try {
      await waitFor('agent known', () => r.router.agents().length > 0, { timeoutMs: 5_000 });
      const before = Array.from({ length: 10 }, () => event());
      for (const e of before) await producer.publish(e);
      await waitFor('answers before', () => before.every((e) => producer.answers.has(e.id)), { timeoutMs: 10_000 });
      await redis.kill('SIGKILL');
      const during = Array.from({ length: 10 }, () => event());
      for (const e of during) await producer.publish(e);
      await waitFor('answers during', () => during.every((e) => producer.answers.has(e.id)), { timeoutMs: 20_000 });
      for (const e of during) expect(producer.answers.get(e.id)?.[0]?.outcome).toBe('succeeded');
      expect(statuses).toContain('storeDegraded');
      expect(r.router.health().status).toBe('degraded');
      await redis.restart();
      const after = Array.from({ length: 10 }, () => event());
      for (const e of after) await producer.publish(e);
      await waitFor('answers after', () => after.every((e) => producer.answers.has(e.id)), { timeoutMs: 20_000 });
      await waitFor('store recovered', () => r.router.health().store === 'ok', { timeoutMs: 10_000 });
      expect(statuses).toContain('storeRecovered');
    } finally {
      await producer.close();
      await r.stop();
      await agent.stop();
      await store.close().catch(() => undefined);
      await redis.stop();
      await nats.stop();
    }
  });
});
