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

  it('can run without JetStream', async () => {
    const nats = await startNatsServer({ jetstream: false });
    expect(nats.storeDir).toBeUndefined();
    const nc = await connect({ servers: nats.url });
    const err = await jetstreamManager(nc).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    await nc.close();
  });
});
