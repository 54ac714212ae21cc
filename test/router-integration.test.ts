/**
 * The router end to end on a real nats-server (file-backed JetStream) with the shipped policies:
 * producers publish into the JetStream ingress with a reply inbox, routers consume the shared
 * durable consumer, agents are in-process NATS agents (own connections, real heartbeats and
 * request/reply work). Failures: an agent's connection dies with work in flight, a router dies
 * under load, nats-server restarts under load.
 */
import { type Logger, meshNames, type WorkloadSpec, type WorkResult } from '@meshroute/mesh';
import { memoryStateStore, watchWorkloadCatalog } from '@meshroute/router';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import { connectMesh, natsWorkloadRegistry, provisionMesh } from '@meshroute/transport-nats';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConnectionOverrides,
  eventFactory,
  startAgent,
  startRouter as startMeshRouter,
  startProducer,
  type TestRouter,
  type TestRouterOptions,
} from './support/mesh-fixtures.js';

const EU = new Set(['AT', 'BE', 'DE', 'FR', 'NL', 'IE', 'IT', 'ES', 'SE', 'FI', 'PL']);

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

/** Routers and producers here reconnect forever (at the client's default pace). */
const RECONNECT: ConnectionOverrides = { maxReconnectAttempts: -1 };

/** A router with short ingress pulls whose consumer logs into {@link sourceLogs}. */
function startRouter(
  url: string,
  routerId: string,
  opts: Pick<TestRouterOptions, 'store' | 'workloads'> = {},
): Promise<TestRouter> {
  return startMeshRouter(url, routerId, {
    ...opts,
    connection: RECONNECT,
    eventSource: { pullExpiresMs: 1_000, pullRetryDelayMs: 100, logger: sourceLog(routerId) },
  });
}

const { event, count } = eventFactory('/it/router');

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
    const de = await startAgent(nats.url, `de-${count()}`, { jurisdiction: 'DE', slots: 1, workMs: 50 });
    const us = await startAgent(nats.url, `us-${count()}`, { jurisdiction: 'US', slots: 16, workMs: 1, carbon: 10 });
    cleanups.push(de.stop, us.stop);
    const r = await startRouter(nats.url, 'r-eu');
    cleanups.push(r.stop);
    await waitFor('condition', () => r.router.agents().length === 2, { timeoutMs: 5_000 });
    const producer = await startProducer(nats.url, { connection: RECONNECT });
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
    const us = await startAgent(nats.url, `us-only-${count()}`, { jurisdiction: 'US' });
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
    const producer = await startProducer(nats.url, { connection: RECONNECT });
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
      name: `qasm-bell-${count()}`,
      version: '1',
      artifacts: { quantum: { digest: `sha256:${'f'.repeat(64)}`, name: 'bell.qasm', options: {} } },
      limits: { timeoutMs: 5_000, memoryBytes: 1_048_576, outputBytes: 65_536 },
      capabilities: [],
    };
    await registry.put(qasm);
    const workloads = await watchWorkloadCatalog(registry);
    cleanups.push(async () => workloads.close());
    // The wasm and gpu agents are greener and faster: a workload-blind router would pick them.
    const wasm = await startAgent(nats.url, `wasm-${count()}`, { jurisdiction: 'DE', carbon: 5, backends: ['wasm'] });
    const gpu = await startAgent(nats.url, `gpu-${count()}`, { jurisdiction: 'DE', carbon: 10, backends: ['gpu'] });
    const quantum = await startAgent(nats.url, `qsim-${count()}`, {
      jurisdiction: 'DE',
      carbon: 400,
      slots: 16,
      backends: ['quantum'],
    });
    cleanups.push(wasm.stop, gpu.stop, quantum.stop);
    const r = await startRouter(nats.url, 'r-workloads', { workloads });
    cleanups.push(r.stop);
    const ids = [wasm.id, gpu.id, quantum.id];
    await waitFor(
      'router to see the three agents',
      () => ids.every((id) => r.router.agents().some((a) => a.id === id)),
      {
        timeoutMs: 5_000,
      },
    );
    const producer = await startProducer(nats.url, { connection: RECONNECT });
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
    const a = await startAgent(nats.url, `victim-${count()}`, {
      jurisdiction: 'DE',
      slots: 8,
      workMs: 3_000,
      carbon: 1,
    });
    const b = await startAgent(nats.url, `survivor-${count()}`, {
      jurisdiction: 'FR',
      slots: 8,
      workMs: 5,
      carbon: 500,
    });
    cleanups.push(a.stop, b.stop);
    const r = await startRouter(nats.url, 'r-failover');
    cleanups.push(r.stop);
    await waitFor(
      'victim and survivor routable',
      () => {
        const ids = r.router.agents().map((v) => v.id);
        return ids.includes(a.id) && ids.includes(b.id);
      },
      { timeoutMs: 10_000 },
    );
    const producer = await startProducer(nats.url, { connection: RECONNECT });
    cleanups.push(producer.close);
    const events = Array.from({ length: 6 }, () => event({ residency: 'eu' }));
    await Promise.all(events.map((e) => producer.publish(e)));
    await waitFor('the victim holding all six items', () => a.served.length >= 6, { timeoutMs: 30_000 });
    await a.kill();
    await waitFor('condition', () => events.every((e) => producer.answers.has(e.id)), { timeoutMs: 20_000 });
    for (const e of events) {
      const list = producer.answers.get(e.id) ?? [];
      expect(list).toHaveLength(1);
      expect(list[0]).toMatchObject({ outcome: 'succeeded', agent: { id: b.id } });
    }
  });

  it('loses nothing when one of two routers dies under load', async () => {
    const agent = await startAgent(nats.url, `shared-${count()}`, { jurisdiction: 'NL', slots: 32, workMs: 20 });
    cleanups.push(agent.stop);
    const store = memoryStateStore();
    const r1 = await startRouter(nats.url, 'r-one', { store });
    const r2 = await startRouter(nats.url, 'r-two', { store });
    cleanups.push(r1.stop, r2.stop);
    await waitFor('condition', () => r1.router.agents().length > 0 && r2.router.agents().length > 0, {
      timeoutMs: 5_000,
    });
    const producer = await startProducer(nats.url, { connection: RECONNECT });
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
    const agent = await startAgent(nats.url, `restart-${count()}`, { jurisdiction: 'IE', slots: 32, workMs: 5 });
    cleanups.push(agent.stop);
    const r = await startRouter(nats.url, 'r-restart');
    cleanups.push(r.stop);
    await waitFor('condition', () => r.router.agents().length > 0, { timeoutMs: 5_000 });
    const producer = await startProducer(nats.url, { connection: RECONNECT });
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
    const r = await startRouter(nats.url, 'r-redis', { store });
    const producer = await startProducer(nats.url, { connection: RECONNECT });
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
