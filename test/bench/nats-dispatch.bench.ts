/**
 * Round trips through a real nats-server on localhost, each against its raw-client baseline in
 * the same run:
 * - `nats.dispatch`: `natsMesh.dispatch` → `natsAgentMesh.serveWork` (schema validation and JSON
 *   on both sides) vs a bare `nc.request` to a responder answering fixed bytes.
 * - `nats.publishEvent`: `publishEvent` (binary binding encode, msg-id hash, header conversion)
 *   vs a bare `js.publish` of the same body with a msgID.
 */
import { encodeMessage, meshNames } from '@meshroute/mesh';
import { benchLine, percentiles, reportBench, sampleAsync, startNatsServer, stopAllServers } from '@meshroute/testing';
import { connectMesh, natsAgentMesh, natsMesh, provisionMesh, publishEvent } from '@meshroute/transport-nats';
import { resultFor, sampleEvent, sampleWork } from '../transport-nats/fixtures.js';

const server = await startNatsServer();
try {
  const conn = await connectMesh({ servers: server.url, name: 'bench' });
  const names = meshNames('bench');
  await provisionMesh(conn, { names, storage: 'memory', duplicateWindowMs: 1_000 });

  // dispatch
  const agent = natsAgentMesh(conn, { names });
  agent.serveWork('a1', async (w) => resultFor(w));
  const mesh = natsMesh(conn, { names, routerId: 'bench' });
  const work = sampleWork('a1');
  const workBytes = encodeMessage('meshroute.work/v1', work);
  const resultBytes = encodeMessage('meshroute.result/v1', resultFor(work));
  conn.nc.subscribe('bench.raw', { callback: (_e, m) => m.respond(resultBytes) });
  await conn.nc.flush();
  const iterations = 3_000;
  const ours = await sampleAsync((i) => mesh.dispatch({ ...work, workId: `w${i}` }, { timeoutMs: 5_000 }), {
    iterations,
  });
  const base = await sampleAsync(() => conn.nc.request('bench.raw', workBytes, { timeout: 5_000 }), { iterations });
  reportBench(benchLine('nats.dispatch', 'us', percentiles(ours), percentiles(base), { iterations }));

  // publishEvent
  const event = sampleEvent();
  const body = new TextEncoder().encode(JSON.stringify(event.data));
  const pubOurs = await sampleAsync((i) => publishEvent(conn, { ...event, id: `o${i}` }, { names, tenant: 'acme' }), {
    iterations,
  });
  const pubBase = await sampleAsync((i) => conn.js.publish(names.ingressSubject('acme'), body, { msgID: `b${i}` }), {
    iterations,
  });
  reportBench(benchLine('nats.publishEvent', 'us', percentiles(pubOurs), percentiles(pubBase), { iterations }));
  await conn.close();
} finally {
  await stopAllServers();
}
