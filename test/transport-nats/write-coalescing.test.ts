import { meshNames } from '@meshroute/mesh';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import { connectMesh, type MeshConnection, natsAgentMesh, natsMesh, provisionMesh } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resultFor, sampleWork, uniquePrefix } from './fixtures.js';

let server: TestNatsServer;
const open: MeshConnection[] = [];

beforeAll(async () => {
  server = await startNatsServer();
});

afterAll(async () => {
  for (const c of open) await c.close().catch(() => undefined);
  await server?.stop();
});

async function connect(name: string, coalesceWrites: boolean): Promise<MeshConnection> {
  const c = await connectMesh({ servers: server.url, name, coalesceWrites });
  open.push(c);
  return c;
}

/** Count the socket writes of a connection (the client's transport, nats.js v3). */
function countWrites(conn: MeshConnection): { writes: number } {
  const transport = (conn.nc as unknown as { protocol: { transport: { send(f: Uint8Array): unknown } } }).protocol
    .transport;
  const counter = { writes: 0 };
  const send = transport.send.bind(transport);
  transport.send = (f: Uint8Array) => {
    counter.writes++;
    return send(f);
  };
  return counter;
}

/** Publish `n` messages, each from its own promise continuation (as a router does). */
async function publishFromContinuations(conn: MeshConnection, subject: string, n: number): Promise<void> {
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      await Promise.resolve();
      for (let k = 0; k < i % 3; k++) await Promise.resolve();
      conn.nc.publish(subject, new TextEncoder().encode(String(i)));
    }),
  );
}

describe('coalesced writes (coalesceWrites)', () => {
  it('writes what one event-loop turn publishes in at most two socket writes, and every message arrives', async () => {
    const receiver = await connect('wc-receiver', false);
    const got: string[] = [];
    receiver.nc.subscribe('wc.one', { callback: (_e, m) => got.push(m.string()) });
    await receiver.nc.flush();

    const coalesced = await connect('wc-coalesced', true);
    const plain = await connect('wc-plain', false);
    const coalescedWrites = countWrites(coalesced);
    const plainWrites = countWrites(plain);
    await publishFromContinuations(plain, 'wc.one', 300);
    await plain.nc.flush();
    await publishFromContinuations(coalesced, 'wc.one', 300);
    await coalesced.nc.flush();
    await waitFor('600 messages', () => got.length === 600);
    // The client's own flushing writes once per microtask burst; coalesced, the first flush of the
    // turn at once and the rest (with the flush's PING) at its end.
    expect(plainWrites.writes).toBeGreaterThanOrEqual(3);
    expect(coalescedWrites.writes).toBeLessThanOrEqual(2);
    expect(new Set(got).size).toBe(300);
  });

  it('writes a lone publish at once, without waiting for the end of the turn', async () => {
    const conn = await connect('wc-lone', true);
    const writes = countWrites(conn);
    await new Promise((r) => setImmediate(r));
    const before = writes.writes;
    conn.nc.publish('wc.lone', new TextEncoder().encode('x'));
    await Promise.resolve();
    await Promise.resolve();
    expect(writes.writes).toBe(before + 1);
  });

  it('writes a subscription at once, so the process is subscribed when it says it is', async () => {
    const conn = await connect('wc-sub', true);
    const writes = countWrites(conn);
    const before = writes.writes;
    conn.nc.subscribe('wc.sub', { callback: () => {} });
    expect(writes.writes).toBe(before + 1);
  });

  it.each([true, false])('loses nothing published right before close() (coalesceWrites %s)', async (coalesceWrites) => {
    const receiver = await connect('wc-close-receiver', false);
    const subject = `wc.close.${coalesceWrites}`;
    let got = 0;
    receiver.nc.subscribe(subject, {
      callback: () => {
        got++;
      },
    });
    await receiver.nc.flush();
    const conn = await connectMesh({ servers: server.url, name: 'wc-close', coalesceWrites });
    for (let i = 0; i < 2_000; i++) conn.nc.publish(subject, new TextEncoder().encode(String(i)));
    await conn.close();
    await waitFor('2,000 messages', () => got === 2_000, { timeoutMs: 5_000 });
    expect(got).toBe(2_000);
  });

  it('dispatches work and JetStream publishes as before', async () => {
    const conn = await connect('wc-mesh', true);
    const names = meshNames(uniquePrefix());
    await provisionMesh(conn, { names, storage: 'memory' });
    const agent = natsAgentMesh(conn, { names });
    const mesh = natsMesh(conn, { names, routerId: 'r1' });
    const stop = agent.serveWork('a1', async (w) => resultFor(w));
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => mesh.dispatch(sampleWork('a1', { workId: `w${i}` }), { timeoutMs: 5000 })),
    );
    expect(results.map((r) => r.workId)).toEqual(Array.from({ length: 50 }, (_, i) => `w${i}`));
    await Promise.all(results.map((r) => mesh.publishResult(r, undefined)));
    stop();
  });
});
