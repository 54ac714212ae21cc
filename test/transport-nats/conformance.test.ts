/** The port conformance suites of `@meshroute/testing`, run against the NATS adapters. */
import { meshNames } from '@meshroute/mesh';
import {
  runArtifactStoreSuite,
  runEventSourceSuite,
  runMeshSuite,
  startNatsServer,
  type TestNatsServer,
} from '@meshroute/testing';
import {
  connectMesh,
  headersFromMap,
  type MeshConnection,
  natsAgentMesh,
  natsArtifactStore,
  natsEventSource,
  natsMesh,
  provisionMesh,
  REPLY_TO_HEADER,
} from '@meshroute/transport-nats';
import { afterAll, beforeAll } from 'vitest';
import { uniquePrefix } from './fixtures.js';

let server: TestNatsServer;
let conn: MeshConnection;
let agentConn: MeshConnection;

beforeAll(async () => {
  server = await startNatsServer();
  conn = await connectMesh({ servers: server.url, name: 'conformance-router' });
  agentConn = await connectMesh({ servers: server.url, name: 'conformance-agent' });
});

afterAll(async () => {
  await agentConn?.close();
  await conn?.close();
  await server?.stop();
});

async function freshNames(maxDeliver?: number) {
  const names = meshNames(uniquePrefix());
  await provisionMesh(conn, {
    names,
    storage: 'memory',
    ingressAckWaitMs: 2_000,
    ...(maxDeliver !== undefined ? { maxDeliver } : {}),
  });
  return names;
}

runMeshSuite('natsMesh', async () => {
  const names = await freshNames();
  return {
    mesh: natsMesh(conn, { names, routerId: 'router-1' }),
    agentMesh: natsAgentMesh(agentConn, { names }),
    otherAgentMesh: natsAgentMesh(conn, { names }),
  };
});

runArtifactStoreSuite('natsArtifactStore', async () => natsArtifactStore(conn, { names: await freshNames() }));

runEventSourceSuite('natsEventSource', async ({ maxInFlight, maxDeliver }) => {
  const names = await freshNames(maxDeliver);
  return {
    source: natsEventSource(conn, { names, maxInFlight, pullRetryDelayMs: 50 }),
    async publish(body, options = {}) {
      const headers = new Map(Object.entries(options.headers ?? {}));
      if (options.replyTo !== undefined) headers.set(REPLY_TO_HEADER, options.replyTo);
      await conn.js.publish(
        options.admitted ? names.admittedIngressSubject('_') : names.ingressSubject('_'),
        body,
        headers.size > 0 ? { headers: headersFromMap(headers) } : {},
      );
    },
  };
});
