import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { stopAllServers } from './cleanup.js';
import { startNatsServer } from './nats.js';
import { startLeafNode } from './nats-leaf.js';

afterAll(stopAllServers);

describe('startLeafNode', () => {
  it('links an edge leaf to the hub; disconnect() cuts the link while both keep their clients', async () => {
    const hub = await startNatsServer({ leafnodes: { listenPort: 0 } });
    const edge = await startLeafNode(hub);
    expect(await edge.linked()).toBe(true);

    const edgeClient = await connect({ servers: edge.url });
    const hubClient = await connect({ servers: hub.url });
    // An "agent" at the edge answers work requests sent from the hub side.
    const sub = edgeClient.subscribe('work.edge-1', {
      callback: (_err, msg) => {
        msg.respond(`done:${msg.string()}`);
      },
    });
    await edgeClient.flush();
    // Interest crosses the link asynchronously: retry the first request with a deadline.
    const deadline = Date.now() + 10_000;
    let answer = '';
    while (answer === '') {
      try {
        answer = (await hubClient.request('work.edge-1', 'a', { timeout: 500 })).string();
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
    }
    expect(answer).toBe('done:a');

    await edge.disconnect();
    expect(await edge.linked()).toBe(false);
    expect(edgeClient.isClosed()).toBe(false);
    await expect(hubClient.request('work.edge-1', 'b', { timeout: 500 })).rejects.toThrow();
    // The edge keeps working locally while cut off.
    const local = await edgeClient.request('work.edge-1', 'local', { timeout: 1_000 });
    expect(local.string()).toBe('done:local');

    await edge.reconnect();
    expect(await edge.linked()).toBe(true);
    const deadline2 = Date.now() + 10_000;
    let back = '';
    while (back === '') {
      try {
        back = (await hubClient.request('work.edge-1', 'c', { timeout: 500 })).string();
      } catch (err) {
        if (Date.now() > deadline2) throw err;
      }
    }
    expect(back).toBe('done:c');
    sub.unsubscribe();
    await edgeClient.close();
    await hubClient.close();
  });

  it('refuses a hub that does not listen for leaf nodes', async () => {
    const hub = await startNatsServer({ jetstream: false });
    await expect(startLeafNode(hub)).rejects.toThrow(/does not listen for leaf nodes/);
  });
});
