import { decodeNats, type IngressDelivery, meshNames } from '@meshroute/mesh';
import { simulatedClock, startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import {
  connectMesh,
  type MeshConnection,
  type MeshStatusEvent,
  natsEventSource,
  provisionMesh,
  publishEvent,
  REPLY_TO_HEADER,
} from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { latch, sampleEvent, uniquePrefix } from './fixtures.js';

/**
 * A connection whose consumer's pulls never end on their own (the server lost the request and
 * the client's heartbeat monitor is off), with a status stream the test drives.
 */
function connWithLostPulls() {
  const fetches: { maxMessages: number; stopped: boolean }[] = [];
  const consumer = {
    info: async () => ({ config: { ack_wait: 0 } }),
    fetch: async (o: { max_messages: number }) => {
      const rec = { maxMessages: o.max_messages, stopped: false };
      fetches.push(rec);
      let wake: (() => void) | undefined;
      return {
        stop() {
          rec.stopped = true;
          wake?.();
        },
        async *[Symbol.asyncIterator]() {
          if (!rec.stopped) await new Promise<void>((r) => (wake = r));
        },
      };
    },
  };
  const statusQueue: { type: string }[] = [];
  let statusWake: (() => void) | undefined;
  let statusStopped = false;
  const statuses = {
    stop() {
      statusStopped = true;
      statusWake?.();
    },
    async *[Symbol.asyncIterator]() {
      while (!statusStopped) {
        const s = statusQueue.shift();
        if (s) yield s;
        else await new Promise<void>((r) => (statusWake = r));
      }
    },
  };
  const fake = {
    js: { consumers: { get: async () => consumer } },
    nc: { status: () => statuses },
    info: { jetstreamTimeoutMs: 1_000 },
  } as unknown as MeshConnection;
  const emitStatus = (type: string) => {
    statusQueue.push({ type });
    statusWake?.();
  };
  return { conn: fake, fetches, emitStatus };
}

let server: TestNatsServer;
let conn: MeshConnection;

beforeAll(async () => {
  server = await startNatsServer();
  conn = await connectMesh({ servers: server.url, name: 'ingress-test', reconnectTimeWaitMs: 100 });
});

afterAll(async () => {
  await conn?.close();
  await server?.stop();
});

async function freshMesh(storage: 'file' | 'memory' = 'memory') {
  const names = meshNames(uniquePrefix());
  const report = await provisionMesh(conn, { names, storage, ingressAckWaitMs: 2_000 });
  return { names, report };
}

async function streamMessages(stream: string): Promise<number> {
  const jsm = await conn.jetstreamManager();
  return (await jsm.streams.info(stream)).state.messages;
}

describe('provisionMesh', () => {
  it('creates every resource once; a second run changes nothing', async () => {
    const { names, report } = await freshMesh();
    expect(report.resources.map((r) => `${r.kind}:${r.action}`)).toEqual([
      'stream:created',
      'stream:created',
      'stream:created',
      'stream:created',
      'consumer:created',
      'kv:created',
      'kv:created',
      'kv:created',
      'object-store:created',
    ]);
    const again = await provisionMesh(conn, { names, storage: 'memory', ingressAckWaitMs: 2_000 });
    expect(again.resources.filter((r) => r.action !== 'unchanged')).toEqual([]);
    const jsm = await conn.jetstreamManager();
    const ingress = await jsm.streams.info(names.streams.ingress);
    expect(ingress.config).toMatchObject({
      retention: 'workqueue',
      storage: 'memory',
      duplicate_window: 120_000_000_000,
      subjects: [names.ingressWildcard],
    });
    const consumer = await jsm.consumers.info(names.streams.ingress, names.ingressConsumer);
    expect(consumer.config).toMatchObject({
      ack_policy: 'explicit',
      ack_wait: 2_000_000_000,
      max_deliver: 10,
      durable_name: names.ingressConsumer,
    });
  });

  it('updates a changed setting in place and refuses an impossible change', async () => {
    const { names } = await freshMesh();
    const r = await provisionMesh(conn, { names, storage: 'memory', ingressAckWaitMs: 3_000, resultsMaxAgeMs: 60_000 });
    expect(r.resources.filter((x) => x.action === 'updated').map((x) => [x.name, x.changed])).toEqual([
      [names.streams.results, ['max_age', 'duplicate_window']],
      [names.ingressConsumer, ['ack_wait']],
    ]);
    await expect(provisionMesh(conn, { names, storage: 'file' })).rejects.toMatchObject({
      code: 'CONFIG_ERROR',
      option: 'storage',
    });
  });
});

describe('publishEvent', () => {
  it('de-duplicates a republish of the same source and id', async () => {
    const { names } = await freshMesh();
    const event = sampleEvent();
    const first = await publishEvent(conn, event, { names, tenant: 'acme' });
    const second = await publishEvent(conn, { ...event, data: { other: true } }, { names, tenant: 'acme' });
    const third = await publishEvent(conn, { ...event, source: `${event.source}/x` }, { names, tenant: 'acme' });
    expect(first.duplicate).toBe(false);
    expect(second).toMatchObject({ duplicate: true, seq: first.seq });
    expect(third.duplicate).toBe(false);
    expect(await streamMessages(names.streams.ingress)).toBe(2);
  });

  it("refuses an event over the server's max_payload with PAYLOAD_TOO_LARGE naming it (not a retryable transport error)", async () => {
    const small = await startNatsServer({ maxPayloadBytes: 64 * 1024 });
    const smallConn = await connectMesh({ servers: small.url, name: 'small-payload' });
    try {
      const names = meshNames(uniquePrefix());
      await provisionMesh(smallConn, { names, storage: 'memory' });
      const err = await publishEvent(smallConn, { ...sampleEvent(), data: 'x'.repeat(70 * 1024) }, { names }).catch(
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', retryable: false });
      expect((err as Error).message).toContain('max_payload of 65536 bytes');
      // Under it, the same server takes the event.
      await publishEvent(smallConn, { ...sampleEvent(), data: 'x'.repeat(60 * 1024) }, { names });
    } finally {
      await smallConn.close();
      await small.stop();
    }
  });

  it('refuses a tenant that is not one subject token', async () => {
    const { names } = await freshMesh();
    await expect(publishEvent(conn, sampleEvent(), { names, tenant: 'a.b' })).rejects.toMatchObject({
      code: 'CONFIG_ERROR',
      option: 'tenant',
    });
  });
});

describe('natsEventSource', () => {
  it('abandons a pull that outlives pullExpiresMs + pullGraceMs and pulls its credit again', async () => {
    const { conn: fake, fetches } = connWithLostPulls();
    const clock = simulatedClock(0);
    const source = natsEventSource(fake, {
      maxInFlight: 8,
      maxOpenPulls: 1,
      pullExpiresMs: 1_000,
      pullGraceMs: 500,
      clock,
    });
    await source.start(async () => {});
    await waitFor('first pull', () => fetches.length === 1);
    expect(fetches[0]).toEqual({ maxMessages: 8, stopped: false });
    await clock.advanceAsync(1_499);
    expect(fetches).toHaveLength(1);
    expect(fetches[0]?.stopped).toBe(false);
    await clock.advanceAsync(1);
    expect(fetches[0]?.stopped).toBe(true);
    // The whole credit comes back: the next pull asks for all 8 again.
    await waitFor('a new pull', () => fetches.length === 2);
    expect(fetches[1]).toEqual({ maxMessages: 8, stopped: false });
    await source.close();
    expect(fetches[1]?.stopped).toBe(true);
  });

  it('abandons every open pull when the connection reconnects, and pulls again at once', async () => {
    const { conn: fake, fetches, emitStatus } = connWithLostPulls();
    const clock = simulatedClock(0);
    const source = natsEventSource(fake, { maxInFlight: 8, maxOpenPulls: 1, pullExpiresMs: 30_000, clock });
    await source.start(async () => {});
    await waitFor('first pull', () => fetches.length === 1);
    emitStatus('disconnect');
    emitStatus('reconnect');
    await waitFor('a new pull', () => fetches.length === 2);
    expect(fetches.map((f) => f.stopped)).toEqual([true, false]);
    await source.close();
  });

  it('delivers the exact event (binary binding round trip) with the reply subject, and acks on request', async () => {
    const { names } = await freshMesh();
    const event = sampleEvent({ id: 'round-trip', tenant: 'acme', data: { text: 'héllo "world"', n: [1, 2.5, null] } });
    await publishEvent(conn, event, { names, tenant: 'acme', replyTo: '_INBOX_meshroute.producer.1' });
    const got = latch<IngressDelivery>();
    const source = natsEventSource(conn, { names });
    await source.start(async (d) => got.resolve(d));
    const d = await got.promise;
    expect(decodeNats(d.headers, d.body)).toEqual(event);
    expect(d.headers.get('ce-id')).toBe('round-trip');
    expect(d.headers.get(REPLY_TO_HEADER)).toBe('_INBOX_meshroute.producer.1');
    expect(d.replyTo).toBe('_INBOX_meshroute.producer.1');
    expect(d.redeliveryCount).toBe(0);
    // Not acked yet: the work-queue stream keeps it.
    expect(await streamMessages(names.streams.ingress)).toBe(1);
    await d.ack();
    expect(await streamMessages(names.streams.ingress)).toBe(0);
    await source.close();
  });

  it('structured mode decodes to the same event', async () => {
    const { names } = await freshMesh();
    const event = sampleEvent();
    await publishEvent(conn, event, { names, mode: 'structured' });
    const got = latch<IngressDelivery>();
    const source = natsEventSource(conn, { names });
    await source.start(async (d) => {
      await d.ack();
      got.resolve(d);
    });
    const d = await got.promise;
    expect(decodeNats(d.headers, d.body)).toEqual(event);
    await source.close();
  });

  it('redelivers after nak, counting redeliveries', async () => {
    const { names } = await freshMesh();
    await publishEvent(conn, sampleEvent(), { names });
    const counts: number[] = [];
    const done = latch();
    const source = natsEventSource(conn, { names });
    await source.start(async (d) => {
      counts.push(d.redeliveryCount);
      if (d.redeliveryCount < 2) d.nak(10);
      else {
        await d.ack();
        done.resolve();
      }
    });
    await done.promise;
    expect(counts).toEqual([0, 1, 2]);
    await source.close();
  });

  it("hands back what reaches a closed source's open pulls at once, not after the ack wait", async () => {
    // A router stopping while its connection stays open (draining dispatches): the server still
    // delivers to its open pull requests until they expire. Those deliveries must reach another
    // router now, not after the 30 s ack wait.
    const names = meshNames(uniquePrefix());
    await provisionMesh(conn, { names, storage: 'memory', ingressAckWaitMs: 30_000 });
    const stoppingConn = await connectMesh({
      servers: server.url,
      name: 'ingress-test-stopping',
      coalesceWrites: true,
    });
    const stopping = natsEventSource(stoppingConn, { names, maxInFlight: 2048, pullExpiresMs: 5_000 });
    let taken = 0;
    await stopping.start(async (d) => {
      await d.ack();
      taken++;
    });
    // It has taken part of its pulls' credit when it stops: those pulls stay open on the server.
    const before = Array.from({ length: 500 }, (_, i) => `before-close-${i}`);
    for (const id of before) await publishEvent(conn, sampleEvent({ id }), { names });
    await waitFor('the first events taken', () => taken === 500);
    await new Promise((r) => setTimeout(r, 300));
    await stopping.close();
    const ids = Array.from({ length: 3000 }, (_, i) => `after-close-${i}`);
    for (const id of ids) await publishEvent(conn, sampleEvent({ id }), { names });
    const other = await connectMesh({ servers: server.url, name: 'ingress-test-other' });
    const got = new Set<string>();
    const all = latch();
    const source = natsEventSource(other, { names });
    await source.start(async (d) => {
      const e = decodeNats(d.headers, d.body);
      got.add(e.id);
      await d.ack();
      if (got.size === ids.length) all.resolve();
    });
    const started = Date.now();
    await all.promise;
    expect(Date.now() - started).toBeLessThan(10_000);
    await source.close();
    await other.close();
    await stoppingConn.close();
  }, 40_000);

  it('redelivers a delivery that was never acked once the ack wait passes', async () => {
    const { names } = await freshMesh();
    await publishEvent(conn, sampleEvent(), { names });
    const second = latch<number>();
    const source = natsEventSource(conn, { names, ackWaitMs: 0 });
    await source.start(async (d) => {
      if (d.redeliveryCount === 0) return; // returns without settling: not acked
      await d.ack();
      second.resolve(d.redeliveryCount);
    });
    expect(await second.promise).toBe(1);
    await source.close();
  });

  it('keeps a long-running delivery alive with working() while its handler runs', async () => {
    const { names } = await freshMesh(); // consumer ack wait 2 s
    await publishEvent(conn, sampleEvent(), { names });
    const jsm = await conn.jetstreamManager();
    const started = latch();
    const release = latch();
    const deliveries: number[] = [];
    const source = natsEventSource(conn, { names });
    await source.start(async (d) => {
      deliveries.push(d.redeliveryCount);
      started.resolve();
      await release.promise;
      await d.ack();
    });
    await started.promise;
    // Wait past two ack waits, observed on the server's clock: the consumer's ack floor stays
    // put and nothing is redelivered while the handler runs.
    const t0 = Date.now();
    await waitFor('two ack waits', () => Date.now() - t0 > 4_500, { timeoutMs: 10_000, intervalMs: 250 });
    const info = await jsm.consumers.info(names.streams.ingress, names.ingressConsumer);
    expect(info.num_redelivered).toBe(0);
    release.resolve();
    await waitFor('ack', async () => (await streamMessages(names.streams.ingress)) === 0);
    expect(deliveries).toEqual([0]);
    await source.close();
  });

  it('never runs more than maxInFlight handlers at once', async () => {
    const { names } = await freshMesh();
    const total = 20;
    for (let i = 0; i < total; i++) await publishEvent(conn, sampleEvent(), { names });
    let running = 0;
    let maxRunning = 0;
    let done = 0;
    const all = latch();
    const source = natsEventSource(conn, { names, maxInFlight: 3 });
    await source.start(async (d) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise<void>((r) => setImmediate(r));
      running--;
      await d.ack();
      if (++done === total) all.resolve();
    });
    await all.promise;
    expect(maxRunning).toBeLessThanOrEqual(3);
    expect(maxRunning).toBeGreaterThan(1);
    await source.close();
  });

  it('nak-s a delivery whose handler throws, so it comes again', async () => {
    const { names } = await freshMesh();
    await publishEvent(conn, sampleEvent(), { names });
    const again = latch<number>();
    const source = natsEventSource(conn, { names, pullRetryDelayMs: 10 });
    await source.start(async (d) => {
      if (d.redeliveryCount === 0) throw new Error('router bug');
      await d.ack();
      again.resolve(d.redeliveryCount);
    });
    expect(await again.promise).toBe(1);
    await source.close();
  });

  it('says which resource is missing when the mesh was not provisioned', async () => {
    const source = natsEventSource(conn, { names: meshNames(uniquePrefix()) });
    await expect(source.start(async () => {})).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('server restart (file storage)', () => {
  it('reports typed reconnect events and keeps consuming with nothing lost', async () => {
    const names = meshNames(uniquePrefix());
    await provisionMesh(conn, { names, storage: 'file' });
    const seen = new Set<string>();
    const gotFirst = latch();
    const gotAll = latch();
    const source = natsEventSource(conn, { names, pullExpiresMs: 1_000, pullRetryDelayMs: 100 });
    await source.start(async (d) => {
      seen.add(decodeNats(d.headers, d.body).id);
      await d.ack();
      if (seen.size === 1) gotFirst.resolve();
      if (seen.size === 6) gotAll.resolve();
    });
    const statuses: MeshStatusEvent['type'][] = [];
    const reconnected = latch();
    void (async () => {
      for await (const s of conn.status()) {
        statuses.push(s.type);
        if (s.type === 'reconnected') reconnected.resolve();
      }
    })();
    await publishEvent(conn, sampleEvent({ id: 'before-1' }), { names });
    await gotFirst.promise;
    // Published while this router is busy; stored on disk before the restart.
    const producer = await connectMesh({ servers: server.url, name: 'producer' });
    await publishEvent(producer, sampleEvent({ id: 'before-2' }), { names });
    await producer.close();
    await server.restart();
    await reconnected.promise;
    for (const id of ['after-1', 'after-2', 'after-3', 'after-4']) {
      await publishEvent(conn, sampleEvent({ id }), { names, timeoutMs: 10_000 });
    }
    await gotAll.promise;
    expect([...seen].sort()).toEqual(['after-1', 'after-2', 'after-3', 'after-4', 'before-1', 'before-2']);
    expect(statuses[0]).toBe('connected');
    expect(statuses).toContain('disconnected');
    expect(statuses.indexOf('reconnected')).toBeGreaterThan(statuses.indexOf('disconnected'));
    await source.close();
  });

  it('keeps consuming across a restart under load (pulls open during the restart), nothing lost', async () => {
    // Issue 4: a pull left open across a nats-server restart kept its credit forever, so the
    // source never pulled again (see the deterministic tests of natsEventSource above).
    const names = meshNames(uniquePrefix());
    await provisionMesh(conn, { names, storage: 'file', ingressAckWaitMs: 2_000 });
    const before = Array.from({ length: 60 }, (_, i) => `before-${i}`);
    const after = Array.from({ length: 10 }, (_, i) => `after-${i}`);
    const seen = new Set<string>();
    const gotSome = latch();
    const source = natsEventSource(conn, {
      names,
      maxInFlight: 256,
      pullExpiresMs: 1_000,
      pullRetryDelayMs: 100,
    });
    await source.start(async (d) => {
      await new Promise<void>((r) => setTimeout(r, 5)); // simulated work: deliveries in flight at the restart
      seen.add(decodeNats(d.headers, d.body).id);
      if (seen.size >= 10) gotSome.resolve();
      await d.ack().catch(() => undefined);
    });
    const producer = await connectMesh({ servers: server.url, name: 'producer', reconnectTimeWaitMs: 100 });
    const reconnected = latch();
    void (async () => {
      for await (const s of conn.status()) if (s.type === 'reconnected') return reconnected.resolve();
    })();
    const publishAll = async (ids: string[]) => {
      for (const id of ids) {
        // De-duplicated by source and id, so a retry while the server restarts is safe.
        await waitFor(`publish ${id}`, () => publishEvent(producer, sampleEvent({ id }), { names, timeoutMs: 2_000 }), {
          timeoutMs: 20_000,
        });
      }
    };
    const publishing = publishAll(before);
    await gotSome.promise;
    await server.restart();
    await reconnected.promise;
    await publishing;
    await publishAll(after);
    await waitFor('every event consumed', () => seen.size === before.length + after.length, { timeoutMs: 15_000 });
    expect([...seen].sort()).toEqual([...before, ...after].sort());
    await producer.close();
    await source.close();
  }, 40_000);
});
