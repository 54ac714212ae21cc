import {
  deadLetterRecordSchema,
  EU_COUNTRIES,
  type Logger,
  TransportError,
  type WorkItem,
  type WorkloadSpec,
} from '@meshroute/mesh';
import { type SimulatedClock, simulatedClock } from '@meshroute/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { memoryStateStore } from './memory-state-store.js';
import { createRouter, DUPLICATE_PUBLISH, type IngressPublisher, type Router } from './router.js';
import { capacity, cloudEvent, delivery, FakeMesh, okResult, testPolicy } from './test-support/fakes.js';
import { memoryWorkloadCatalog, type WorkloadCatalog } from './workloads.js';

const flush = () => new Promise<void>((r) => setImmediate(r));

describe('router engine', () => {
  let clock: SimulatedClock;
  let mesh: FakeMesh;
  let router: Router;

  /** Start router `r1` on the fake mesh, a fresh memory store and the carbon test policy, overridden by `deps`. */
  const startRouter = async (deps: Partial<Parameters<typeof createRouter>[0]> = {}) => {
    router = createRouter({
      mesh,
      store: memoryStateStore({ clock }),
      policies: testPolicy(),
      clock,
      routerId: 'r1',
      ...deps,
    });
    await router.start();
  };

  /** {@link startRouter} with fixed jitter and short backoff. */
  const make = (
    options: Parameters<typeof createRouter>[0]['options'] = {},
    rank: 'carbon' | 'latency' = 'carbon',
    deps: Partial<Parameters<typeof createRouter>[0]> = {},
  ) =>
    startRouter({
      policies: testPolicy(rank),
      random: () => 0.5,
      options: { backoffBaseMs: 10, backoffMaxMs: 100, ...options },
      ...deps,
    });

  /** Serve agent `id` with answers held back until the returned function is called (the latest job). */
  const heldAgent = (id: string, output?: unknown): (() => void) => {
    let release: () => void = () => {};
    mesh.agents.set(id, (w) => new Promise((resolve) => (release = () => resolve(okResult(w, output)))));
    return () => release();
  };

  /**
   * A router whose ingress behaves as JetStream's: an event with the same source and id is
   * published once (a re-send resolves DUPLICATE_PUBLISH); published events are delivered here.
   */
  const makeWithDedupIngress = async () => {
    const published = new Set<string>();
    const ingressPublisher: IngressPublisher = {
      async publish(event, { waitMs }) {
        const key = `${event.source}#${event.id}`;
        if (published.has(key)) return DUPLICATE_PUBLISH;
        published.add(key);
        void router.handleDelivery(delivery(event));
        return waitMs === undefined ? undefined : router.outcome(event, { waitMs });
      },
    };
    await startRouter({ ingressPublisher });
  };

  beforeEach(() => {
    clock = simulatedClock(Date.parse('2026-01-01T00:00:00Z'));
    mesh = new FakeMesh(clock);
  });
  afterEach(async () => {
    await router?.stop({ drainTimeoutMs: 0 });
  });

  it('routes to the best eligible agent, answers the producer once, records result and decision, then acks', async () => {
    mesh.agents.set('de-1', async (w) => okResult(w, { echo: w.event.data }));
    mesh.agents.set('us-1', async (w) => okResult(w));
    await make();
    mesh.heartbeat(capacity('de-1', { carbonIntensity: 300, sentAtMs: clock.now() }));
    mesh.heartbeat(
      capacity('us-1', { jurisdiction: 'US', region: 'us-east', carbonIntensity: 100, sentAtMs: clock.now() }),
    );
    const d = delivery(cloudEvent('e1', { residency: 'eu' }), '_INBOX.1');
    await router.handleDelivery(d);
    expect(d.acked).toBe(1);
    expect(mesh.dispatched.map((w) => w.agentId)).toEqual(['de-1']);
    expect(mesh.results).toHaveLength(1);
    expect(mesh.replies).toHaveLength(1);
    await flush();
    expect(mesh.replies[0]?.body).toMatchObject({
      id: 'e1',
      outcome: 'succeeded',
      agent: { id: 'de-1', jurisdiction: 'DE' },
      result: { ok: true, output: { echo: { n: 1 } } },
    });
    const routed = mesh.decisions.find((r) => r.outcome === 'routed');
    expect(routed?.chosen?.agentId).toBe('de-1');
    expect(routed?.routerId).toBe('r1');
  });

  it('reports degraded on health while its state store is unhealthy, with no work arriving, and ok again once it is back', async () => {
    const memory = memoryStateStore({ clock });
    let up = true;
    const store = { ...memory, healthy: async () => up && (await memory.healthy()) };
    await startRouter({ store });
    const statuses: string[] = [];
    void (async () => {
      for await (const s of router.status()) statuses.push(s.type);
    })();
    await clock.advanceAsync(router.options.heartbeatIntervalMs);
    expect(router.health()).toMatchObject({ status: 'ok', store: 'ok' });
    up = false;
    await clock.advanceAsync(router.options.heartbeatIntervalMs);
    expect(router.health()).toMatchObject({ status: 'degraded', store: 'degraded' });
    up = true;
    await clock.advanceAsync(router.options.heartbeatIntervalMs);
    expect(router.health()).toMatchObject({ status: 'ok', store: 'ok' });
    await flush();
    expect(statuses.filter((s) => s.startsWith('store'))).toEqual(['storeDegraded', 'storeRecovered']);
  });

  it('queues EU work when only non-EU agents are free and runs it on the EU agent once a slot frees', async () => {
    const pending: (() => void)[] = [];
    mesh.agents.set('de-1', (w) => new Promise((resolve) => pending.push(() => resolve(okResult(w)))));
    mesh.agents.set('us-1', async (w) => okResult(w));
    await make();
    mesh.heartbeat(capacity('de-1', { slots: 1, freeSlots: 1, sentAtMs: clock.now() }));
    mesh.heartbeat(capacity('us-1', { jurisdiction: 'US', slots: 8, freeSlots: 8, sentAtMs: clock.now() }));
    const first = delivery(cloudEvent('a', { residency: 'eu' }));
    const second = delivery(cloudEvent('b', { residency: 'eu' }));
    const p1 = router.handleDelivery(first);
    const p2 = router.handleDelivery(second);
    await flush();
    expect(mesh.dispatched.map((w) => w.agentId)).toEqual(['de-1']);
    expect(router.health().queued).toBe(1);
    pending.shift()?.();
    await p1;
    await flush();
    expect(mesh.dispatched.map((w) => w.agentId)).toEqual(['de-1', 'de-1']);
    pending.shift()?.();
    await p2;
    expect(first.acked + second.acked).toBe(2);
    expect(mesh.dispatched.every((w) => EU_COUNTRIES.includes(w.agentId === 'de-1' ? 'DE' : 'US'))).toBe(true);
  });

  it('hands work back instead of dead-lettering while no agent has been heard since a reconnect', async () => {
    mesh.agents.set('de-1', async (w) => okResult(w));
    await make({ heartbeatIntervalMs: 1_000, missedHeartbeatsBeforeLost: 3 });
    clock.advance(5_000); // past the start-up window; the registry is empty
    router.meshReconnected();
    const early = delivery(cloudEvent('r1', {}), '_INBOX.r1');
    await router.handleDelivery(early);
    expect(early.naks).toHaveLength(1);
    expect(early.acked).toBe(0);
    expect(mesh.deadLetters).toHaveLength(0);
    // The agent announces itself within the window: the redelivery runs.
    mesh.heartbeat(capacity('de-1', { sentAtMs: clock.now() }));
    const again = delivery(cloudEvent('r1', {}), '_INBOX.r1');
    await router.handleDelivery(again);
    expect(again.acked).toBe(1);
    expect(mesh.dispatched.map((w) => w.agentId)).toEqual(['de-1']);
    // Once the window has passed, no agent means a dead letter again.
    clock.advance(10_000);
    mesh.agents.clear();
    const late = delivery(cloudEvent('r2', { residency: 'JP' }), '_INBOX.r2');
    await router.handleDelivery(late);
    expect(mesh.deadLetters[0]).toMatchObject({ eventId: 'r2', reason: 'NO_ELIGIBLE_AGENT' });
  });

  it('keeps work that finds no agent while the mesh connection is down, and runs it once the agents are heard again', async () => {
    mesh.agents.set('de-1', async (w) => okResult(w));
    await make({ heartbeatIntervalMs: 1_000, missedHeartbeatsBeforeLost: 3 });
    mesh.heartbeat(capacity('de-1', { sentAtMs: clock.now() }));
    clock.advance(5_000); // past the start-up window
    // The connection drops: no heartbeats arrive, the registry loses the agent.
    router.meshDisconnected();
    clock.advance(4_000);
    expect(router.agents()).toHaveLength(0);
    const waiting = delivery(cloudEvent('cut-off', {}), '_INBOX.c.1');
    const done = router.handleDelivery(waiting);
    await flush();
    expect(router.health().queued).toBe(1);
    expect(mesh.deadLetters).toHaveLength(0);
    // Back: the agent's next heartbeat wakes the queued work.
    router.meshReconnected();
    mesh.heartbeat(capacity('de-1', { seq: 2, sentAtMs: clock.now() }));
    await done;
    expect(waiting.acked).toBe(1);
    expect(mesh.dispatched.map((w) => w.event.id)).toEqual(['cut-off']);
    expect(mesh.deadLetters).toHaveLength(0);
  });

  it("spends each dispatch from its tenant's budget and dead-letters BUDGET_EXCEEDED work that would overspend", async () => {
    mesh.agents.set('de-1', async (w) => okResult(w));
    await make({ tenantBudgets: { acme: { limit: 1, windowMs: 60_000 } } });
    mesh.heartbeat(capacity('de-1', { costPerJob: '0.4', sentAtMs: clock.now() }));
    const run = async (id: string, tenant: string) => {
      const d = delivery(cloudEvent(id, { tenant }), `_INBOX.${id}`);
      await router.handleDelivery(d);
      return d;
    };
    await run('b1', 'acme');
    await run('b2', 'acme');
    const third = await run('b3', 'acme');
    expect(third.acked).toBe(1);
    expect(mesh.dispatched.map((w) => w.event.id)).toEqual(['b1', 'b2']);
    expect(mesh.deadLetters.map((d) => [d.eventId, d.reason, d.error.details])).toEqual([
      [
        'b3',
        'BUDGET_EXCEEDED',
        expect.objectContaining({ tenant: 'acme', cost: 0.4, limit: 1, remaining: 0.2, retryAfterMs: 60_000 }),
      ],
    ]);
    // The producer is told why.
    expect(mesh.replies.find((r) => r.replyTo === '_INBOX.b3')?.headers).toMatchObject({
      'Meshroute-Error-Code': 'BUDGET_EXCEEDED',
    });
    // Other tenants have no budget; a new window starts afresh.
    await run('g1', 'globex');
    clock.advance(60_001);
    mesh.heartbeat(capacity('de-1', { costPerJob: '0.4', sentAtMs: clock.now() }));
    await run('b4', 'acme');
    expect(mesh.dispatched.map((w) => w.event.id)).toEqual(['b1', 'b2', 'g1', 'b4']);
    expect(() =>
      createRouter({
        mesh,
        store: memoryStateStore(),
        policies: testPolicy(),
        options: { tenantBudgets: { acme: { limit: 0, windowMs: 1 } } },
      }),
    ).toThrow(/tenantBudgets\.acme\.limit/);
  });

  it('dead-letters EU work with NO_ELIGIBLE_AGENT when no EU agent exists', async () => {
    mesh.agents.set('us-1', async (w) => okResult(w));
    await make();
    mesh.heartbeat(capacity('us-1', { jurisdiction: 'US', sentAtMs: clock.now() }));
    const d = delivery(cloudEvent('x', { residency: 'eu' }), '_INBOX.x');
    await router.handleDelivery(d);
    expect(mesh.dispatched).toHaveLength(0);
    expect(mesh.deadLetters[0]).toMatchObject({ eventId: 'x', reason: 'NO_ELIGIBLE_AGENT' });
    expect(mesh.replies[0]?.body).toMatchObject({ outcome: 'dead-lettered', deadLetterReason: 'NO_ELIGIBLE_AGENT' });
    const record = mesh.decisions.find((r) => r.outcome === 'no-eligible-agent');
    expect(record?.decisionId).toEqual(expect.any(String));
    expect(mesh.replies[0]?.body).toMatchObject({ decisionId: record?.decisionId });
    expect(mesh.deadLetters[0]?.decisionIds).toEqual([record?.decisionId]);
    expect(d.acked).toBe(1);
  });

  it('records the decision of work whose wait in the queue timed out, and lists it in the dead letter', async () => {
    mesh.agents.set('a', async () => 'hang');
    await make({ maxQueueWaitMs: 1_000, dispatchTimeoutMs: 1_000_000 });
    mesh.heartbeat(capacity('a', { slots: 1, freeSlots: 1, sentAtMs: clock.now() }));
    void router.handleDelivery(delivery(cloudEvent('busy')));
    const waiting = delivery(cloudEvent('waits'), '_INBOX.w');
    const p = router.handleDelivery(waiting);
    await flush();
    expect(router.health().queued).toBe(1);
    await clock.advanceAsync(1_001);
    await p;
    const record = mesh.decisions.find((r) => r.event.id === 'waits');
    expect(record).toMatchObject({ outcome: 'no-eligible-agent', chosen: null });
    expect(mesh.deadLetters[0]).toMatchObject({ eventId: 'waits', decisionIds: [record?.decisionId] });
    expect(mesh.replies[0]?.body).toMatchObject({
      deadLetterReason: 'NO_ELIGIBLE_AGENT',
      decisionId: record?.decisionId,
    });
  });

  it('never dispatches more work to an agent than it has free slots between heartbeats', async () => {
    const pending: (() => void)[] = [];
    mesh.agents.set('a', (w) => new Promise((resolve) => pending.push(() => resolve(okResult(w)))));
    await make();
    mesh.heartbeat(capacity('a', { slots: 2, freeSlots: 2, sentAtMs: clock.now() }));
    const ps = ['1', '2', '3', '4', '5'].map((id) => router.handleDelivery(delivery(cloudEvent(id))));
    await flush();
    expect(mesh.dispatched).toHaveLength(2);
    // A heartbeat saying "2 free" that predates our dispatches must not open more slots.
    mesh.heartbeat(capacity('a', { slots: 2, freeSlots: 0, inFlight: 2, sentAtMs: clock.now() }));
    await flush();
    expect(mesh.dispatched).toHaveLength(2);
    while (pending.length > 0 || mesh.dispatched.length < 5) {
      pending.shift()?.();
      await flush();
    }
    await Promise.all(ps);
    expect(mesh.dispatched).toHaveLength(5);
  });

  it('fails work over to another eligible agent when its agent is lost, answering once', async () => {
    mesh.agents.set('a', async () => 'hang');
    mesh.agents.set('b', async (w) => okResult(w));
    await make({ dispatchTimeoutMs: 60_000 }, 'latency');
    mesh.heartbeat(capacity('a', { latencyP50Ms: 1, sentAtMs: clock.now() }));
    mesh.heartbeat(capacity('b', { latencyP50Ms: 50, sentAtMs: clock.now() }));
    const lost: string[] = [];
    void (async () => {
      for await (const s of router.status()) if (s.type === 'agentLost') lost.push(s.agentId);
    })();
    const d = delivery(cloudEvent('f1'), '_INBOX.f');
    const p = router.handleDelivery(d);
    await flush();
    expect(mesh.dispatched.map((w) => w.agentId)).toEqual(['a']);
    for (let i = 0; i < 4; i++) {
      await clock.advanceAsync(1000);
      mesh.heartbeat(capacity('b', { latencyP50Ms: 50, sentAtMs: clock.now() }));
    }
    await clock.advanceAsync(200);
    await p;
    expect(lost).toEqual(['a']);
    expect(mesh.dispatched.map((w) => [w.agentId, w.attempt])).toEqual([
      ['a', 1],
      ['b', 2],
    ]);
    expect(mesh.replies).toHaveLength(1);
    expect(mesh.replies[0]?.body).toMatchObject({ outcome: 'succeeded', agent: { id: 'b' } });
  });

  it('retries rejected work with backoff and dead-letters RETRIES_EXHAUSTED after maxAttempts', async () => {
    await make({ maxAttempts: 3 });
    mesh.heartbeat(capacity('ghost', { sentAtMs: clock.now() }));
    const d = delivery(cloudEvent('r1'));
    const p = router.handleDelivery(d);
    for (let i = 0; i < 10; i++) await clock.advanceAsync(100);
    await p;
    expect(mesh.dispatched.map((w) => w.attempt)).toEqual([1, 2, 3]);
    expect(mesh.deadLetters[0]).toMatchObject({ reason: 'RETRIES_EXHAUSTED', attempts: 3 });
    expect(mesh.deadLetters[0]?.decisionIds).toHaveLength(3);
    expect(d.acked).toBe(1);
  });

  it('answers a redelivered event from the recorded outcome without running it twice', async () => {
    mesh.agents.set('a', async (w) => okResult(w, 'first-run'));
    await make();
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    await router.handleDelivery(delivery(cloudEvent('dup'), '_INBOX.1'));
    const again = delivery(cloudEvent('dup'), '_INBOX.2');
    await router.handleDelivery(again);
    expect(mesh.dispatched).toHaveLength(1);
    expect(again.acked).toBe(1);
    expect(mesh.replies[1]).toMatchObject({
      replyTo: '_INBOX.2',
      body: { outcome: 'succeeded', replayed: true, result: { output: 'first-run' } },
    });
  });

  it('replays the decision id and the agent (as it was) with a recorded outcome, even after the agent left', async () => {
    mesh.agents.set('a', async (w) => okResult(w, 'first-run'));
    await make();
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    await router.handleDelivery(delivery(cloudEvent('replay-ids'), '_INBOX.1'));
    const first = mesh.replies[0]?.body as { decisionId: string; agent: unknown };
    expect(first.decisionId).toEqual(expect.any(String));
    // The agent leaves the mesh: lost after its missed heartbeats.
    for (let i = 0; i < 5; i++) await clock.advanceAsync(1_000);
    expect(router.agents().map((a) => a.id)).not.toContain('a');
    await router.handleDelivery(delivery(cloudEvent('replay-ids'), '_INBOX.2'));
    expect(mesh.dispatched).toHaveLength(1);
    expect(mesh.replies[1]?.body).toMatchObject({
      replayed: true,
      decisionId: first.decisionId,
      agent: { id: 'a', region: 'eu-west', jurisdiction: 'DE' },
    });
    expect(mesh.deadLetters).toEqual([]);
  });

  it("answers an event sent again (de-duplicated by the ingress) with the first one's outcome: waiting while it runs, at once once recorded", async () => {
    const finishWork = heldAgent('a', 'ran-once');
    await makeWithDedupIngress();
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    const event = cloudEvent('resent');
    const first = router.submit(event, { waitMs: 5_000 });
    await flush();
    const again = router.submit(event, { waitMs: 5_000 });
    await flush();
    expect(mesh.dispatched).toHaveLength(1);
    finishWork();
    const [a1, a2] = await Promise.all([first, again]);
    expect(a1).toMatchObject({ outcome: 'succeeded', result: { output: 'ran-once' } });
    expect(a2).toMatchObject({
      outcome: 'succeeded',
      replayed: true,
      decisionId: a1?.decisionId,
      result: { output: 'ran-once' },
    });
    // Once recorded: answered from the store at once, without running it again.
    const third = await router.submit(event, { waitMs: 5_000 });
    expect(third).toMatchObject({
      outcome: 'succeeded',
      replayed: true,
      decisionId: a1?.decisionId,
      agent: { id: 'a' },
    });
    expect(mesh.dispatched).toHaveLength(1);
    // Without a wait, a re-sent event is simply accepted again.
    expect(await router.submit(event)).toBeUndefined();
  });

  it("never tells one tenant the outcome of another tenant's event with the same source and id", async () => {
    mesh.agents.set('a', async (w) => okResult(w, 'acme-secret'));
    await makeWithDedupIngress();
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    const acme = await router.submit(cloudEvent('shared-id', { tenant: 'acme' }), { waitMs: 5_000 });
    expect(acme).toMatchObject({ outcome: 'succeeded', result: { output: 'acme-secret' } });
    const other = router.submit(cloudEvent('shared-id', { tenant: 'globex' }), { waitMs: 5_000 });
    await expect(other).rejects.toMatchObject({
      code: 'INVALID_EVENT',
      details: { attribute: 'id', rule: 'duplicate-id' },
    });
    // The same tenant is answered.
    expect(await router.submit(cloudEvent('shared-id', { tenant: 'acme' }), { waitMs: 5_000 })).toMatchObject({
      replayed: true,
      result: { output: 'acme-secret' },
    });
  });

  it("dead-letters a delivery re-using another tenant's source and id (duplicate-id) rather than answering it with that tenant's outcome", async () => {
    const finish = heldAgent('a', 'acme-secret');
    await make();
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    const acme = router.handleDelivery(delivery(cloudEvent('same', { tenant: 'acme' }), '_INBOX.acme'));
    await flush();
    // While acme's event runs, and after it has finished.
    const during = delivery(cloudEvent('same', { tenant: 'globex' }), '_INBOX.globex.1');
    await router.handleDelivery(during);
    finish();
    await acme;
    const after = delivery(cloudEvent('same', { tenant: 'globex' }), '_INBOX.globex.2');
    await router.handleDelivery(after);
    await flush();
    expect(mesh.dispatched).toHaveLength(1);
    expect(during.acked + after.acked).toBe(2);
    for (const inbox of ['_INBOX.globex.1', '_INBOX.globex.2']) {
      const reply = mesh.replies.find((r) => r.replyTo === inbox);
      expect(reply?.body).toMatchObject({ outcome: 'dead-lettered', error: { code: 'INVALID_EVENT' } });
      expect(JSON.stringify(reply?.body)).not.toContain('acme-secret');
    }
    expect(mesh.deadLetters.map((d) => [d.reason, d.error.details?.rule])).toEqual([
      ['INVALID_EVENT', 'duplicate-id'],
      ['INVALID_EVENT', 'duplicate-id'],
    ]);
    expect(mesh.replies.find((r) => r.replyTo === '_INBOX.acme')?.body).toMatchObject({ outcome: 'succeeded' });
  });

  it('logs an agent that announced it was leaving as left (info), one that went silent as lost (warn)', async () => {
    const lines: [string, string, Record<string, unknown> | undefined][] = [];
    const logger: Logger = {
      debug: () => {},
      info: (msg, fields) => lines.push(['info', msg, fields]),
      warn: (msg, fields) => lines.push(['warn', msg, fields]),
      error: (msg, fields) => lines.push(['error', msg, fields]),
      child: () => logger,
    };
    await startRouter({ logger });
    mesh.heartbeat(capacity('polite', { sentAtMs: clock.now() }));
    mesh.heartbeat(capacity('silent', { sentAtMs: clock.now() }));
    mesh.heartbeat(capacity('polite', { status: 'leaving', sentAtMs: clock.now() }));
    for (let i = 0; i < 5; i++) await clock.advanceAsync(1_000);
    const about = (id: string) => lines.filter(([, , f]) => f?.agentId === id).map(([level, msg]) => `${level} ${msg}`);
    expect(about('polite')).toEqual(['info agent left']);
    expect(about('silent')).toEqual(['warn agent lost']);
  });

  it('stop() settles outcome() waits at once (undefined), and a stopped router answers none', async () => {
    await make();
    const pending = router.outcome({ source: '/test', id: 'waiting' }, { waitMs: 300_000 });
    await router.stop({ drainTimeoutMs: 0 });
    expect(await pending).toBeUndefined();
    expect(await router.outcome({ source: '/test', id: 'after' }, { waitMs: 300_000 })).toBeUndefined();
  });

  it("limits each tenant's events from NATS producers (first deliveries only; HTTP-admitted events were counted at the edge)", async () => {
    mesh.agents.set('a', async (w) => okResult(w));
    await make({ tenantRateLimits: { acme: { limit: 2, windowMs: 60_000 } } });
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    const acme = (id: string, extra: Record<string, unknown> = {}) =>
      Object.assign(delivery(cloudEvent(id, { tenant: 'acme' }), `_INBOX.${id}`), extra);
    const runs = [
      acme('r1'),
      acme('r2'),
      acme('r3'),
      acme('r4', { admitted: true }),
      acme('r5', { redeliveryCount: 1 }),
    ];
    for (const d of runs) await router.handleDelivery(d);
    await router.handleDelivery(delivery(cloudEvent('other-tenant', { tenant: 'globex' })));
    await flush();
    expect(runs.map((d) => d.acked)).toEqual([1, 1, 1, 1, 1]);
    // r3 is the third event in the window; r4 was counted by the HTTP ingress, r5 at its first delivery.
    expect(mesh.dispatched.map((w) => w.event.id).sort()).toEqual(['other-tenant', 'r1', 'r2', 'r4', 'r5']);
    expect(mesh.deadLetters.map((d) => [d.eventId, d.reason, d.error.details?.rule])).toEqual([
      ['r3', 'BUDGET_EXCEEDED', 'rate-limit'],
    ]);
    expect(mesh.replies.find((r) => r.replyTo === '_INBOX.r3')?.body).toMatchObject({
      outcome: 'dead-lettered',
      error: { code: 'BUDGET_EXCEEDED', details: { tenant: 'acme', limit: 2, retryAfterMs: expect.any(Number) } },
    });
    // A new window admits again.
    await clock.advanceAsync(60_000);
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    await router.handleDelivery(acme('r6'));
    expect(mesh.dispatched.map((w) => w.event.id)).toContain('r6');
  });

  it('outcome() of an event nobody recorded resolves undefined after its wait', async () => {
    await make();
    const pending = router.outcome({ source: '/test', id: 'never' }, { waitMs: 1_000 });
    await clock.advanceAsync(999);
    let done = false;
    void pending.then(() => {
      done = true;
    });
    await flush();
    expect(done).toBe(false);
    await clock.advanceAsync(1);
    expect(await pending).toBeUndefined();
  });

  it('acks a redelivery of an answered event without answering again (same reply inbox)', async () => {
    mesh.agents.set('a', async (w) => okResult(w, 'once'));
    const store = memoryStateStore({ clock });
    await startRouter({ store });
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    await router.handleDelivery(delivery(cloudEvent('lost-ack'), '_INBOX.p.1'));
    expect(await store.outcome('/test#lost-ack')).toMatchObject({
      outcome: 'succeeded',
      answeredAtMs: clock.now(),
      answeredReplyTo: '_INBOX.p.1',
    });
    const redelivered = Object.assign(delivery(cloudEvent('lost-ack'), '_INBOX.p.1'), { redeliveryCount: 1 });
    await router.handleDelivery(redelivered);
    expect(redelivered.acked).toBe(1);
    expect(mesh.dispatched).toHaveLength(1);
    expect(mesh.replies.map((r) => r.replyTo)).toEqual(['_INBOX.p.1']);
    // The result is published again with the same work id and attempt (the stream de-duplicates).
    expect(new Set(mesh.results.map((r) => `${r.workId}/${r.attempt}`)).size).toBe(1);
  });

  it('backs off between deliveries while the results stream refuses the result, then publishes the recorded one', async () => {
    // A replicated stream whose leader was killed refuses publishes at once (no responders) until
    // a new leader is elected, for seconds: at a fixed nak delay the event's deliveries ran out
    // first and JetStream gave it up, its outcome recorded but its result never published.
    mesh.agents.set('a', async (w) => okResult(w));
    const store = memoryStateStore({ clock });
    await startRouter({ store, options: { nakDelayMs: 1_000 } });
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    const publish = mesh.publishResult.bind(mesh);
    let refusing = true;
    mesh.publishResult = async (result, tenant) => {
      if (refusing) throw new TransportError('publish result: no stream listens (no responders)');
      await publish(result, tenant);
    };
    const naks: (number | undefined)[] = [];
    for (let n = 0; n < 7; n++) {
      const d = Object.assign(delivery(cloudEvent('refused'), '_INBOX.r'), { redeliveryCount: n });
      await router.handleDelivery(d);
      expect(d.acked).toBe(0);
      naks.push(...d.naks);
    }
    expect(naks).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
    refusing = false;
    const last = Object.assign(delivery(cloudEvent('refused'), '_INBOX.r'), { redeliveryCount: 7 });
    await router.handleDelivery(last);
    expect(last.acked).toBe(1);
    expect(mesh.dispatched).toHaveLength(1);
    expect(mesh.results.map((r) => r.eventId)).toEqual(['refused']);
  });

  it("does not ack a second delivery of an event before the first one's result is in the results stream", async () => {
    // Acking either delivery acks the message: if the second were acked when the producer was
    // answered, a result publish failing after that could never be retried.
    const release = heldAgent('a');
    await make();
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    mesh.publishResult = async () => {
      throw new TransportError('publish result: no stream listens (no responders)');
    };
    const first = delivery(cloudEvent('twice'), '_INBOX.t.1');
    const second = Object.assign(delivery(cloudEvent('twice'), '_INBOX.t.1'), { redeliveryCount: 1 });
    const p1 = router.handleDelivery(first);
    await flush();
    const p2 = router.handleDelivery(second);
    await flush();
    release();
    await Promise.all([p1, p2]);
    expect(first.acked + second.acked).toBe(0);
    expect(first.naks).toHaveLength(1);
    expect(second.naks).toHaveLength(1);
  });

  it('hands an event claimed by another router back until that claim expires, then runs it', async () => {
    // A router that died holding the claim: its event comes to this router after the ack wait.
    const store = memoryStateStore({ clock });
    await store.claim('/test#orphan', 'r-dead', 60_000);
    clock.advance(30_000);
    mesh.agents.set('de-1', async (w) => okResult(w));
    await startRouter({ store, options: { nakDelayMs: 1_000 } });
    mesh.heartbeat(capacity('de-1', { sentAtMs: clock.now() }));
    const first = delivery(cloudEvent('orphan'), '_INBOX.o.1');
    await router.handleDelivery(first);
    // Not after the usual 1 s (which would spend the event's deliveries while the claim lives):
    // after the 30 s the claim has left, plus the nak delay.
    expect(first.naks).toEqual([31_000]);
    expect(mesh.dispatched).toHaveLength(0);
    clock.advance(31_000);
    mesh.heartbeat(capacity('de-1', { seq: 2, sentAtMs: clock.now() }));
    const again = delivery(cloudEvent('orphan'), '_INBOX.o.1');
    await router.handleDelivery(again);
    expect(again.acked).toBe(1);
    expect(mesh.dispatched).toHaveLength(1);
  });

  it('dead-letters DELIVERIES_EXHAUSTED, saying why, an event it would hand back on its last delivery', async () => {
    // Another router holds the claim (a hung router): handing the event back on its last delivery
    // would make the stream stop delivering it, unseen.
    const store = memoryStateStore({ clock });
    await store.claim('/test#stuck', 'r-hung', 600_000);
    mesh.agents.set('de-1', async (w) => okResult(w));
    await startRouter({ store });
    mesh.heartbeat(capacity('de-1', { sentAtMs: clock.now() }));
    const early = Object.assign(delivery(cloudEvent('stuck'), '_INBOX.s.1'), { redeliveryCount: 8, deliveriesLeft: 1 });
    await router.handleDelivery(early);
    expect(early.naks).toHaveLength(1);
    expect(mesh.deadLetters).toHaveLength(0);
    const last = Object.assign(delivery(cloudEvent('stuck'), '_INBOX.s.1'), { redeliveryCount: 9, deliveriesLeft: 0 });
    await router.handleDelivery(last);
    await flush();
    expect(last.naks).toHaveLength(0);
    expect(last.acked).toBe(1);
    expect(mesh.dispatched).toHaveLength(0);
    expect(mesh.deadLetters).toHaveLength(1);
    const dl = deadLetterRecordSchema.parse(mesh.deadLetters[0]);
    expect(dl).toMatchObject({ eventId: 'stuck', reason: 'DELIVERIES_EXHAUSTED' });
    expect(dl.error.code).toBe('DELIVERIES_EXHAUSTED');
    expect(dl.error.message).toContain('last delivery (10)');
    expect(dl.error.message).toContain('router r-hung held the event');
    expect(mesh.replies.at(-1)?.body).toMatchObject({ id: 'stuck', outcome: 'dead-lettered' });
  });

  it('dead-letters DELIVERIES_EXHAUSTED the last delivery of an event it has no room for, instead of handing it back', async () => {
    mesh.agents.set('de-1', () => new Promise(() => {}));
    await make({ maxInFlightItems: 1 });
    mesh.heartbeat(capacity('de-1', { sentAtMs: clock.now() }));
    void router.handleDelivery(delivery(cloudEvent('busy')));
    await flush();
    const spare = Object.assign(delivery(cloudEvent('spare')), { deliveriesLeft: 3 });
    await router.handleDelivery(spare);
    expect(spare.naks).toHaveLength(1);
    const last = Object.assign(delivery(cloudEvent('full'), '_INBOX.f.1'), { redeliveryCount: 4, deliveriesLeft: 0 });
    await router.handleDelivery(last);
    await flush();
    expect(last.naks).toHaveLength(0);
    expect(last.acked).toBe(1);
    expect(mesh.deadLetters.map((d) => [d.eventId, d.reason, d.error.details?.handedBackBecause])).toEqual([
      ['full', 'DELIVERIES_EXHAUSTED', 'the router was full (1 work items)'],
    ]);
    expect(mesh.replies.at(-1)?.body).toMatchObject({ id: 'full', outcome: 'dead-lettered' });
  });

  it('stop() resolves only once the dead letter of a last delivery it released is published', async () => {
    let openGate: () => void = () => {};
    const gate = new Promise<void>((r) => {
      openGate = r;
    });
    const publish = mesh.publishDeadLetter.bind(mesh);
    mesh.publishDeadLetter = async (record) => {
      await gate;
      await publish(record);
    };
    mesh.agents.set('de-1', () => new Promise(() => {}));
    await make();
    mesh.heartbeat(capacity('de-1', { sentAtMs: clock.now() }));
    const last = Object.assign(delivery(cloudEvent('at-stop')), { redeliveryCount: 9, deliveriesLeft: 0 });
    void router.handleDelivery(last);
    await flush();
    expect(mesh.dispatched).toHaveLength(1);
    let stopped = false;
    const stopping = router.stop({ drainTimeoutMs: 0 }).then(() => {
      stopped = true;
    });
    await flush();
    await flush();
    expect(stopped).toBe(false);
    openGate();
    await stopping;
    expect(last.acked).toBe(1);
    expect(mesh.deadLetters.map((d) => [d.eventId, d.reason, d.error.details?.handedBackBecause])).toEqual([
      ['at-stop', 'DELIVERIES_EXHAUSTED', 'the router stopped before the work finished'],
    ]);
  });

  it('dead-letters a structured event that repeats an intent attribute as INVALID_EVENT (duplicate-member), never running it', async () => {
    mesh.agents.set('de-1', async (w) => okResult(w));
    mesh.agents.set('us-1', async (w) => okResult(w));
    await make();
    mesh.heartbeat(capacity('de-1', { sentAtMs: clock.now() }));
    mesh.heartbeat(
      capacity('us-1', { jurisdiction: 'US', region: 'us-east', carbonIntensity: 10, sentAtMs: clock.now() }),
    );
    const twice = delivery(
      '{"specversion":"1.0","id":"twice","source":"/test","type":"t","workload":"echo","residency":"US","residency":"eu"}',
    );
    await router.handleDelivery(twice);
    expect(twice.acked).toBe(1);
    expect(mesh.dispatched).toHaveLength(0);
    expect(mesh.deadLetters.map((d) => [d.reason, d.error.details])).toEqual([
      ['INVALID_EVENT', expect.objectContaining({ attribute: 'residency', rule: 'duplicate-member' })],
    ]);
  });

  it('dead-letters an event nested deeper than maxJsonDepth as INVALID_EVENT (data, max-depth), never running it', async () => {
    mesh.agents.set('de-1', async (w) => okResult(w));
    await make({ maxJsonDepth: 64 });
    mesh.heartbeat(capacity('de-1', { sentAtMs: clock.now() }));
    const nested = (levels: number) =>
      `{"specversion":"1.0","id":"deep-${levels}","source":"/test","type":"t","workload":"echo","data":${'['.repeat(levels)}${']'.repeat(levels)}}`;
    const deep = delivery(nested(100_000), '_INBOX.d.1');
    await router.handleDelivery(deep);
    expect(deep.acked).toBe(1);
    expect(mesh.dispatched).toHaveLength(0);
    expect(mesh.deadLetters.map((d) => [d.reason, d.error.details])).toEqual([
      ['INVALID_EVENT', expect.objectContaining({ attribute: 'data', rule: 'max-depth' })],
    ]);
    // Brackets inside strings do not count; 63 levels of data (64 with the event object) pass.
    const fine = delivery(nested(63).replace('"type":"t"', `"type":"${'['.repeat(500)}"`), '_INBOX.d.2');
    await router.handleDelivery(fine);
    expect(mesh.dispatched).toHaveLength(1);
  });

  it('answers once a redelivery whose outcome was recorded but whose answer never went out', async () => {
    const store = memoryStateStore({ clock });
    await store.claim('/test#crashed', 'r-dead', 60_000);
    const result = okResult(
      {
        schema: 'meshroute.work/v1',
        workId: 'w-1',
        attempt: 1,
        decisionId: 'd-1',
        routerId: 'r-dead',
        agentId: 'a',
        workload: 'echo',
        event: cloudEvent('crashed'),
        dispatchedAtMs: clock.now(),
        timeoutMs: 1000,
      },
      'recorded',
    );
    await store.complete('/test#crashed', { outcome: 'succeeded', result, recordedAtMs: clock.now() }, 60_000);
    mesh.agents.set('a', async (w) => okResult(w, 'second-run'));
    await startRouter({ store });
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    const first = Object.assign(delivery(cloudEvent('crashed'), '_INBOX.c'), { redeliveryCount: 1 });
    await router.handleDelivery(first);
    const second = Object.assign(delivery(cloudEvent('crashed'), '_INBOX.c'), { redeliveryCount: 2 });
    await router.handleDelivery(second);
    expect(mesh.dispatched).toHaveLength(0);
    expect(mesh.replies).toHaveLength(1);
    expect(mesh.replies[0]?.body).toMatchObject({ replayed: true, result: { output: 'recorded' } });
    expect(first.acked + second.acked).toBe(2);
  });

  it('answers a redelivery that arrives while the first delivery is still running, without running it again', async () => {
    const pending: (() => void)[] = [];
    mesh.agents.set('a', (w) => new Promise((resolve) => pending.push(() => resolve(okResult(w)))));
    await make();
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    const first = delivery(cloudEvent('slow'), '_INBOX.first');
    const again = delivery(cloudEvent('slow'), '_INBOX.again');
    const p1 = router.handleDelivery(first);
    await flush();
    const p2 = router.handleDelivery(again);
    await flush();
    pending.shift()?.();
    await Promise.all([p1, p2]);
    expect(mesh.dispatched).toHaveLength(1);
    expect([first.acked, again.acked]).toEqual([1, 1]);
    expect(mesh.replies.map((r) => r.replyTo).sort()).toEqual(['_INBOX.again', '_INBOX.first']);
  });

  it('hands a waiting redelivery back too when the first delivery is handed back', async () => {
    mesh.agents.set('a', async () => 'hang');
    await make({ dispatchTimeoutMs: 1_000_000 });
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    const first = delivery(cloudEvent('held'));
    const again = delivery(cloudEvent('held'));
    const p1 = router.handleDelivery(first);
    await flush();
    const p2 = router.handleDelivery(again);
    await flush();
    await router.stop({ drainTimeoutMs: 0 });
    await Promise.all([p1, p2]);
    expect(first.naks).toHaveLength(1);
    expect(again.naks).toHaveLength(1);
    expect(first.acked + again.acked).toBe(0);
  });

  it('dead-letters invalid events and invalid intents with the reason, and acks them', async () => {
    await make();
    const bad = delivery('{"specversion":"1.0","id":"","source":"/x","type":"t"}');
    await router.handleDelivery(bad);
    const badIntent = delivery(cloudEvent('i', { residency: 'atlantis' }));
    await router.handleDelivery(badIntent);
    const noWorkload = delivery(cloudEvent('w', { workload: undefined }));
    await router.handleDelivery(noWorkload);
    expect(mesh.deadLetters.map((d) => d.reason)).toEqual(['INVALID_EVENT', 'INVALID_INTENT', 'INVALID_INTENT']);
    expect(mesh.deadLetters[1]?.error.details).toMatchObject({ attribute: 'residency' });
    expect(mesh.deadLetters[2]?.error.details).toMatchObject({ attribute: 'workload', rule: 'required' });
    expect(bad.acked + badIntent.acked + noWorkload.acked).toBe(3);
  });

  it('defers deadline work to a greener busy agent and says so in the decision record', async () => {
    mesh.agents.set('green', async (w) => okResult(w));
    mesh.agents.set('dirty', async (w) => okResult(w));
    await make({ deferRecheckMs: 5_000 });
    mesh.heartbeat(
      capacity('green', { carbonIntensity: 50, slots: 1, freeSlots: 0, inFlight: 1, sentAtMs: clock.now() }),
    );
    mesh.heartbeat(capacity('dirty', { carbonIntensity: 500, sentAtMs: clock.now() }));
    const deadline = new Date(clock.now() + 3_600_000).toISOString();
    const p = router.handleDelivery(delivery(cloudEvent('d1', { deadline })));
    await flush();
    expect(mesh.dispatched).toHaveLength(0);
    expect(mesh.decisions[0]).toMatchObject({
      outcome: 'deferred',
      deferred: { reason: expect.stringContaining('green') },
    });
    expect(router.health()).toMatchObject({ inFlightItems: 1, deferred: 1 });
    for (let i = 0; i < 5; i++) {
      await clock.advanceAsync(1000);
      mesh.heartbeat(capacity('green', { carbonIntensity: 50, slots: 1, freeSlots: 1, sentAtMs: clock.now() }));
      mesh.heartbeat(capacity('dirty', { carbonIntensity: 500, sentAtMs: clock.now() }));
    }
    await p;
    await flush();
    expect(mesh.dispatched.map((w) => w.agentId)).toEqual(['green']);
    expect(router.health()).toMatchObject({ inFlightItems: 0, deferred: 0 });
    const routed = mesh.decisions.find((r) => r.outcome === 'routed');
    expect(routed?.deferred?.reason).toContain('carbon');
  });

  it('runs work without a deadline at once on the free agent even when a greener one is busy', async () => {
    mesh.agents.set('green', async (w) => okResult(w));
    mesh.agents.set('dirty', async (w) => okResult(w));
    await make();
    mesh.heartbeat(
      capacity('green', { carbonIntensity: 50, slots: 1, freeSlots: 0, inFlight: 1, sentAtMs: clock.now() }),
    );
    mesh.heartbeat(capacity('dirty', { carbonIntensity: 500, sentAtMs: clock.now() }));
    await router.handleDelivery(delivery(cloudEvent('n1')));
    expect(mesh.dispatched.map((w: WorkItem) => w.agentId)).toEqual(['dirty']);
  });

  it('dead-letters DEADLINE_PASSED when the deadline is already over', async () => {
    mesh.agents.set('a', async (w) => okResult(w));
    await make();
    mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
    await router.handleDelivery(delivery(cloudEvent('late', { deadline: '2025-01-01T00:00:00Z' })));
    expect(mesh.deadLetters[0]?.reason).toBe('DEADLINE_PASSED');
    expect(mesh.dispatched).toHaveLength(0);
  });

  it('knows the mesh at once from the capacity snapshot', async () => {
    mesh.snapshot = [capacity('snap', { sentAtMs: clock.now() }), capacity('old', { sentAtMs: clock.now() - 60_000 })];
    await make();
    expect(router.agents().map((a) => a.id)).toEqual(['snap']);
  });

  it('hands work back to ingress (nak) when the wait queue is full', async () => {
    mesh.agents.set('a', async () => 'hang');
    await make({ maxQueued: 1, dispatchTimeoutMs: 1_000_000 });
    mesh.heartbeat(capacity('a', { slots: 1, freeSlots: 1, sentAtMs: clock.now() }));
    void router.handleDelivery(delivery(cloudEvent('1')));
    void router.handleDelivery(delivery(cloudEvent('2')));
    const third = delivery(cloudEvent('3'));
    await router.handleDelivery(third);
    expect(third.naks).toHaveLength(1);
    expect(router.overloaded()).toBe(true);
  });

  describe('workload-aware placement', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const spec = (name: string, backends: ('wasm' | 'gpu' | 'quantum')[]): WorkloadSpec => ({
      schema: 'meshroute.workload/v1',
      name,
      version: '1',
      artifacts: Object.fromEntries(backends.map((b) => [b, { digest, name: `${name}.${b}`, options: {} }])),
      limits: { timeoutMs: 1000, memoryBytes: 1024, outputBytes: 1024 },
      capabilities: [],
    });
    const makeWith = (workloads: WorkloadCatalog) => make({}, 'carbon', { workloads });

    it('dead-letters an unregistered workload WORKLOAD_NOT_FOUND before any dispatch', async () => {
      mesh.agents.set('a', async (w) => okResult(w));
      await makeWith(memoryWorkloadCatalog([spec('echo', ['wasm'])]));
      mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
      const d = delivery(cloudEvent('u1', { workload: 'nope' }), '_INBOX.u');
      await router.handleDelivery(d);
      expect(mesh.dispatched).toHaveLength(0);
      expect(mesh.deadLetters[0]).toMatchObject({
        eventId: 'u1',
        reason: 'WORKLOAD_NOT_FOUND',
        error: { code: 'WORKLOAD_NOT_FOUND', details: { attribute: 'workload', workload: 'nope' } },
      });
      expect(deadLetterRecordSchema.safeParse(mesh.deadLetters[0]).success).toBe(true);
      expect(mesh.replies[0]?.body).toMatchObject({ outcome: 'dead-lettered', deadLetterReason: 'WORKLOAD_NOT_FOUND' });
      expect(d.acked).toBe(1);
      expect(router.knowsWorkload('nope')).toBe(false);
      expect(router.knowsWorkload('echo')).toBe(true);
    });

    it('never places a quantum-only workload on wasm or gpu agents, and records them as excluded', async () => {
      for (const id of ['gpu-1', 'wasm-1', 'q-1']) mesh.agents.set(id, async (w) => okResult(w));
      const catalog = memoryWorkloadCatalog([spec('qasm', ['quantum'])]);
      await makeWith(catalog);
      // The gpu and wasm agents are greener: the policy alone would pick them.
      mesh.heartbeat(capacity('gpu-1', { backends: ['gpu'], carbonIntensity: 10, sentAtMs: clock.now() }));
      mesh.heartbeat(capacity('wasm-1', { backends: ['wasm'], carbonIntensity: 20, sentAtMs: clock.now() }));
      mesh.heartbeat(capacity('q-1', { backends: ['quantum'], carbonIntensity: 500, sentAtMs: clock.now() }));
      for (let i = 0; i < 3; i++) await router.handleDelivery(delivery(cloudEvent(`q${i}`, { workload: 'qasm' })));
      await flush();
      expect(mesh.dispatched.map((w) => w.agentId)).toEqual(['q-1', 'q-1', 'q-1']);
      const routed = mesh.decisions.find((r) => r.outcome === 'routed');
      expect(routed?.excluded).toEqual(
        expect.arrayContaining([
          { agentId: 'gpu-1', rules: ['router/workload-backend'] },
          { agentId: 'wasm-1', rules: ['router/workload-backend'] },
        ]),
      );
      expect(routed?.candidates).toBe(3);
    });

    it('excludes agents whose announced workloads list leaves the workload out', async () => {
      for (const id of ['picky', 'open']) mesh.agents.set(id, async (w) => okResult(w));
      await makeWith(memoryWorkloadCatalog([spec('echo', ['wasm'])]));
      mesh.heartbeat(capacity('picky', { workloads: ['other'], carbonIntensity: 10, sentAtMs: clock.now() }));
      mesh.heartbeat(capacity('open', { workloads: [], carbonIntensity: 400, sentAtMs: clock.now() }));
      await router.handleDelivery(delivery(cloudEvent('p1')));
      expect(mesh.dispatched.map((w) => w.agentId)).toEqual(['open']);
    });

    it('dead-letters NO_ELIGIBLE_AGENT with the decision id when only incapable agents exist', async () => {
      mesh.agents.set('gpu-1', async (w) => okResult(w));
      await makeWith(memoryWorkloadCatalog([spec('qasm', ['quantum'])]));
      mesh.heartbeat(capacity('gpu-1', { backends: ['gpu'], sentAtMs: clock.now() }));
      const d = delivery(cloudEvent('n1', { workload: 'qasm' }), '_INBOX.n');
      await router.handleDelivery(d);
      expect(mesh.dispatched).toHaveLength(0);
      const record = mesh.decisions.find((r) => r.outcome === 'no-eligible-agent');
      expect(record?.excluded).toEqual([{ agentId: 'gpu-1', rules: ['router/workload-backend'] }]);
      expect(mesh.deadLetters[0]).toMatchObject({ reason: 'NO_ELIGIBLE_AGENT', decisionIds: [record?.decisionId] });
      expect(mesh.replies[0]?.body).toMatchObject({ outcome: 'dead-lettered', decisionId: record?.decisionId });
    });

    it('picks up workloads registered after the router started', async () => {
      mesh.agents.set('a', async (w) => okResult(w));
      const catalog = memoryWorkloadCatalog();
      await makeWith(catalog);
      mesh.heartbeat(capacity('a', { sentAtMs: clock.now() }));
      await router.handleDelivery(delivery(cloudEvent('late-1')));
      catalog.put(spec('echo', ['wasm']));
      await router.handleDelivery(delivery(cloudEvent('late-2')));
      expect(mesh.deadLetters.map((d) => d.eventId)).toEqual(['late-1']);
      expect(mesh.dispatched.map((w) => w.event.id)).toEqual(['late-2']);
    });
  });

  it('reports health with the policy digest and the store state', async () => {
    await make();
    expect(router.health()).toMatchObject({ status: 'ok', policyDigest: 'sha256:test-carbon', store: 'ok' });
    expect(router.ready()).toBe(true);
  });
});
