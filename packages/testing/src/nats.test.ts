import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { stopAllServers } from './cleanup.js';
import { startNatsServer } from './nats.js';

afterAll(stopAllServers);

describe('startNatsServer', () => {
  it('starts JetStream on a free port; a restart under file storage loses nothing', async () => {
    const nats = await startNatsServer();
    const other = await startNatsServer();
    expect(other.port).not.toBe(nats.port);
    let nc = await connect({ servers: nats.url });
    await (await jetstreamManager(nc)).streams.add({ name: 'ORDERS', subjects: ['orders.>'] });
    const js = jetstream(nc);
    const acks = await Promise.all(Array.from({ length: 100 }, (_, i) => js.publish('orders.new', `o${i}`)));
    expect(acks.at(-1)?.seq).toBe(100);
    await nc.close();

    await nats.restart();
    nc = await connect({ servers: nats.url });
    const info = await (await jetstreamManager(nc)).streams.info('ORDERS');
    expect(info.state.messages).toBe(100);
    await nc.close();
  });

  it('loses no acknowledged message when restarted under publish load', async () => {
    const nats = await startNatsServer();
    const nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 50 });
    await (await jetstreamManager(nc)).streams.add({
      name: 'LOAD',
      subjects: ['load.>'],
      duplicate_window: 60_000_000_000,
    });
    const js = jetstream(nc);
    const total = 400;
    const pidBefore = nats.pid;
    let acked = 0;
    let restarted: Promise<void> | undefined;
    const deadline = Date.now() + 30_000;
    const publishOne = async (i: number) => {
      // Retry until acknowledged; the message id makes a retry of a stored message a duplicate.
      for (;;) {
        try {
          await js.publish('load.x', `m${i}`, { msgID: `m${i}`, timeout: 1_000 });
          acked++;
          if (acked === total / 2) restarted = nats.restart();
          return;
        } catch (err) {
          if (Date.now() > deadline) throw err;
        }
      }
    };
    for (let i = 0; i < total; i += 20) {
      await Promise.all(Array.from({ length: 20 }, (_, j) => publishOne(i + j)));
    }
    expect(restarted).toBeDefined();
    await restarted;
    expect(nats.pid).not.toBe(pidBefore);
    expect(acked).toBe(total);
    const info = await (await jetstreamManager(nc)).streams.info('LOAD');
    expect(info.state.messages).toBe(total);
    await nc.close();
  });

  it('can run without JetStream', async () => {
    const nats = await startNatsServer({ jetstream: false });
    expect(nats.storeDir).toBeUndefined();
    const nc = await connect({ servers: nats.url });
    const err = await jetstreamManager(nc).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    await nc.close();
  });
});
