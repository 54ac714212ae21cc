import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { stopAllServers } from './cleanup.js';
import { startNatsCluster } from './nats-cluster.js';

afterAll(stopAllServers);

describe('startNatsCluster', () => {
  it('runs a 3-node JetStream cluster where a replicas-3 stream survives the loss of one node', async () => {
    const cluster = await startNatsCluster({ nodes: 3 });
    expect(cluster.nodes).toHaveLength(3);
    expect(new Set(cluster.urls).size).toBe(3);
    expect(new Set(cluster.nodes.map((n) => n.serverName)).size).toBe(3);

    const nc = await connect({ servers: cluster.urls, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.add({ name: 'R3', subjects: ['r3.>'], num_replicas: 3 });
    expect(info.config.num_replicas).toBe(3);
    const js = jetstream(nc);
    for (let i = 0; i < 20; i++) await js.publish('r3.a', `before-${i}`);

    // Kill the node that leads the stream: the survivors elect a new leader and keep the data.
    const leaderName = (await jsm.streams.info('R3')).cluster?.leader;
    const victim = cluster.nodes.find((n) => n.serverName === leaderName) ?? cluster.nodes[0];
    await victim?.kill('SIGKILL');
    expect(victim?.running()).toBe(false);

    // A publish may fail while the new stream leader is elected; retry with a deadline.
    const deadline = Date.now() + 20_000;
    let published = 0;
    while (published < 20) {
      try {
        await js.publish('r3.a', `after-${published}`, { timeout: 2_000 });
        published++;
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
    }
    const after = await jsm.streams.info('R3');
    expect(after.state.messages).toBe(40);
    expect(after.cluster?.leader).not.toBe(leaderName);

    // The node comes back on its ports and catches up.
    await victim?.restart();
    await cluster.waitForMetaLeader();
    await nc.close();
  });
});
