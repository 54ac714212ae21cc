/**
 * `meshroute security init` against a real nats-server: the generated nkey users and per-subject
 * permissions are loaded by the server, and every identity can do its job and nothing else.
 * An agent cannot receive another agent's work, a producer cannot publish a capacity report or
 * impersonate an agent, a client without credentials is refused; each attempt fails with a
 * permission error and the messages never reach anyone.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  type CapacityReport,
  decodeMessage,
  ErrorCode,
  encodeMessage,
  MeshError,
  meshNames,
  type WorkItem,
} from '@meshroute/mesh';
import {
  sampleCapacityReport,
  sampleDecisionRecord,
  sampleResult,
  sampleWorkItem,
  startNatsServer,
  type TestNatsServer,
  waitFor,
} from '@meshroute/testing';
import {
  connectMesh,
  type MeshConnection,
  natsAgentMesh,
  natsArtifactStore,
  natsMesh,
  natsWorkloadRegistry,
  provisionMesh,
  publishEvent,
} from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(root, 'packages/cli/dist/bin.js');
const names = meshNames();

interface ManifestEntry {
  role: string;
  name: string;
  publicKey: string;
  seedFile: string;
  inboxPrefix: string;
  tenants: string[];
}

let dir: string;
let manifest: ManifestEntry[];
let nats: TestNatsServer;
const open: MeshConnection[] = [];

async function connectAs(role: string, name: string): Promise<MeshConnection> {
  const id = manifest.find((m) => m.role === role && m.name === name);
  if (!id) throw new Error(`no identity ${role} ${name} in the manifest`);
  const conn = await connectMesh({
    servers: nats.url,
    name: `${role}-${name}`,
    nkeySeed: readFileSync(join(dir, id.seedFile), 'utf8').trim(),
    inboxPrefix: id.inboxPrefix,
    maxReconnectAttempts: 0,
  });
  open.push(conn);
  return conn;
}

/**
 * The next permission error the server reports on `conn` for `subject` (publish and
 * subscription violations arrive asynchronously as `-ERR`).
 */
function permissionError(conn: MeshConnection, subject: string, timeoutMs = 5_000): Promise<MeshError> {
  const it = conn.status()[Symbol.asyncIterator]();
  return new Promise<MeshError>((resolve, reject) => {
    const timer = setTimeout(() => {
      void it.return?.();
      reject(new Error(`no permission error for ${subject} within ${timeoutMs} ms`));
    }, timeoutMs);
    void (async () => {
      for (;;) {
        const next = await it.next();
        if (next.done) return;
        const s = next.value;
        if (s.type === 'error' && s.error.code === ErrorCode.PERMISSION_DENIED && s.error.message.includes(subject)) {
          clearTimeout(timer);
          void it.return?.();
          resolve(s.error);
          return;
        }
      }
    })();
  });
}

/** Capacity heartbeats seen by a router (the legitimate listener). */
const seenCapacity: CapacityReport[] = [];
let router: MeshConnection;
let admin: MeshConnection;

function work(agentId: string, n: number): WorkItem {
  return sampleWorkItem({ workId: `sec-${n}`, agentId, decisionId: `d-sec-${n}` });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshroute-security-'));
  const { stdout } = await promisify(execFile)(process.execPath, [
    BIN,
    'security',
    'init',
    '--out',
    dir,
    '--json',
    '--admin',
    'admin',
    '--router',
    'router-1',
    '--agent',
    'edge-1',
    '--agent',
    'core-1',
    '--producer',
    'acme=acme,acme-eu',
    '--operator',
    'ops',
  ]);
  manifest = JSON.parse(stdout) as ManifestEntry[];
  // The server loads the generated block as is (`include auth.conf` in a real deployment).
  nats = await startNatsServer({ extraConfig: readFileSync(join(dir, 'auth.conf'), 'utf8') });
  admin = await connectAs('admin', 'admin');
  await provisionMesh(admin);
  router = await connectAs('router', 'router-1');
  natsMesh(router, { routerId: 'router-1' }).onCapacity((r) => seenCapacity.push(r));
  await router.nc.flush();
});

afterAll(async () => {
  await Promise.allSettled(open.map((c) => c.close()));
  await nats?.stop();
});

describe('meshroute security init on a real nats-server', () => {
  it('writes seeds only to 0600 files and public keys only to auth.conf', () => {
    const auth = readFileSync(join(dir, 'auth.conf'), 'utf8');
    for (const m of manifest) {
      const seed = readFileSync(join(dir, m.seedFile), 'utf8').trim();
      expect(seed).toMatch(/^SU[A-Z2-7]+$/);
      expect(auth).toContain(m.publicKey);
      expect(auth).not.toContain(seed);
    }
  });

  it('refuses a client with no credentials, and one with an unknown key', async () => {
    const anon = connectMesh({ servers: nats.url, maxReconnectAttempts: 0 });
    await expect(anon).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
    const stranger = connectMesh({
      servers: nats.url,
      nkeySeed: 'SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4',
      maxReconnectAttempts: 0,
    });
    await expect(stranger).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
  });

  it('lets the router dispatch work and each agent receive only its own', async () => {
    const edge = await connectAs('agent', 'edge-1');
    const core = await connectAs('agent', 'core-1');
    const gotByCore: string[] = [];
    const gotByEdge: string[] = [];
    natsAgentMesh(core).serveWork('core-1', async (w) => {
      gotByCore.push(w.workId);
      return sampleResult(w, { agentId: 'core-1' });
    });
    natsAgentMesh(edge).serveWork('edge-1', async (w) => {
      gotByEdge.push(w.workId);
      return sampleResult(w, { agentId: 'edge-1' });
    });
    await Promise.all([edge.nc.flush(), core.nc.flush()]);

    // edge-1 tries to take core-1's work, all work, and every reply on the mesh's inboxes.
    const stolen: string[] = [];
    for (const subject of [names.workSubject('core-1'), 'meshroute.work.>', `${names.replyPrefix}.>`, '>']) {
      const denied = permissionError(edge, subject);
      const sub = edge.nc.subscribe(subject, {
        callback: (e, m) => {
          // The client hands the subscription's error to the callback: that is the refusal.
          if (e === null) stolen.push(m.subject);
        },
      });
      const err = await denied;
      expect(err.code).toBe(ErrorCode.PERMISSION_DENIED);
      expect(err.message).toMatch(/subscription/i);
      await sub.closed;
    }

    const mesh = natsMesh(router, { routerId: 'router-1' });
    const toCore = await mesh.dispatch(work('core-1', 1), { timeoutMs: 5_000 });
    const toEdge = await mesh.dispatch(work('edge-1', 2), { timeoutMs: 5_000 });
    expect(toCore).toMatchObject({ ok: true, agentId: 'core-1', workId: 'sec-1' });
    expect(toEdge).toMatchObject({ ok: true, agentId: 'edge-1', workId: 'sec-2' });
    expect(gotByCore).toEqual(['sec-1']);
    expect(gotByEdge).toEqual(['sec-2']);
    await edge.nc.flush();
    expect(stolen).toEqual([]);
  });

  it("refuses an agent publishing another agent's capacity, results or events", async () => {
    const edge = await connectAs('agent', 'edge-1');
    for (const subject of [
      names.capacitySubject('core-1'),
      names.resultsSubject('acme'),
      names.ingressSubject('acme'),
    ]) {
      const denied = permissionError(edge, subject);
      edge.nc.publish(subject, encodeMessage('meshroute.capacity/v1', sampleCapacityReport({ agentId: 'core-1' })));
      expect((await denied).message).toMatch(/publish/i);
    }
    // Its own heartbeat goes through, and it is the only one the router saw from this connection.
    await natsAgentMesh(edge).publishCapacity(sampleCapacityReport({ agentId: 'edge-1', seq: 77 }));
    await waitForCapacity((r) => r.agentId === 'edge-1' && r.seq === 77);
    expect(seenCapacity.filter((r) => r.agentId === 'core-1')).toEqual([]);
  });

  it('refuses a producer publishing a capacity report, taking work or answering as an agent', async () => {
    const producer = await connectAs('producer', 'acme');
    const forged = sampleCapacityReport({ agentId: 'core-1', seq: 999, freeSlots: 4 });
    let denied = permissionError(producer, names.capacitySubject('core-1'));
    producer.nc.publish(names.capacitySubject('core-1'), encodeMessage('meshroute.capacity/v1', forged));
    expect((await denied).code).toBe(ErrorCode.PERMISSION_DENIED);

    denied = permissionError(producer, names.workSubject('core-1'));
    const sub = producer.nc.subscribe(names.workSubject('core-1'));
    expect((await denied).message).toMatch(/subscription/i);
    await sub.closed;

    const w = work('core-1', 3);
    denied = permissionError(producer, names.resultsSubject('acme'));
    producer.nc.publish(names.resultsSubject('acme'), encodeMessage('meshroute.result/v1', sampleResult(w)));
    expect((await denied).code).toBe(ErrorCode.PERMISSION_DENIED);

    // A genuine heartbeat published after the forged one arrives; the forged one never does.
    const core = await connectAs('agent', 'core-1');
    await natsAgentMesh(core).publishCapacity(sampleCapacityReport({ agentId: 'core-1', seq: 5 }));
    await waitForCapacity((r) => r.agentId === 'core-1' && r.seq === 5);
    expect(seenCapacity.some((r) => r.seq === 999)).toBe(false);
  });

  it('lets a producer publish only for its own tenants, and read only its own replies', async () => {
    const producer = await connectAs('producer', 'acme');
    const event = { specversion: '1.0' as const, id: 'sec-e1', source: '/sec', type: 'sec.test', data: { a: 1 } };
    const ack = await publishEvent(producer, event, { tenant: 'acme' });
    expect(ack).toMatchObject({ stream: names.streams.ingress, duplicate: false });
    await expect(
      publishEvent(producer, { ...event, id: 'sec-e2' }, { tenant: 'globex', timeoutMs: 2_000 }),
    ).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
    const jsm = await admin.jetstreamManager();
    const info = await jsm.streams.info(names.streams.ingress);
    expect(info.state.messages).toBe(1);

    // The router answers on the producer's inbox; another identity cannot listen there.
    const replyTo = `${producer.info.inboxPrefix}.outcome-1`;
    const answered = new Promise<string>((resolve) => {
      producer.nc.subscribe(replyTo, { max: 1, callback: (_e, m) => resolve(m.string()) });
    });
    const edge = await connectAs('agent', 'edge-1');
    const denied = permissionError(edge, replyTo);
    edge.nc.subscribe(replyTo);
    await denied;
    await producer.nc.flush();
    await natsMesh(router, { routerId: 'router-1' }).reply(replyTo, new TextEncoder().encode('done'));
    expect(await answered).toBe('done');
  });

  it('lets an agent read workloads and artifacts, and nothing it must not write', async () => {
    const artifact = await natsArtifactStore(admin).put('blob.wasm', new TextEncoder().encode('wasm bytes'));
    await natsWorkloadRegistry(admin).put({
      schema: 'meshroute.workload/v1',
      name: 'sec-blob',
      version: '1.0.0',
      artifacts: { wasm: { digest: artifact.digest, name: 'blob.wasm', options: {} } },
      limits: { timeoutMs: 1_000, memoryBytes: 1_048_576, outputBytes: 1_024 },
      capabilities: [],
    });
    const edge = await connectAs('agent', 'edge-1');
    const spec = await natsWorkloadRegistry(edge).get('sec-blob');
    expect(spec?.version).toBe('1.0.0');
    expect((await natsWorkloadRegistry(edge).list()).map((s) => s.name)).toContain('sec-blob');
    const bytes = await natsArtifactStore(edge).get(artifact.digest);
    expect(new TextDecoder().decode(bytes)).toBe('wasm bytes');
    // Registering a workload is an admin's job.
    await expect(
      natsWorkloadRegistry(edge).put({ ...(spec as NonNullable<typeof spec>), version: '6.6.6' }),
    ).rejects.toBeInstanceOf(MeshError);
    expect((await natsWorkloadRegistry(admin).get('sec-blob'))?.version).toBe('1.0.0');
  });

  it('lets an operator read decisions but not publish events or dispatch work', async () => {
    const record = sampleDecisionRecord({ decisionId: 'sec-decision-1' });
    await natsMesh(router, { routerId: 'router-1' }).publishDecision(record);
    const ops = await connectAs('operator', 'ops');
    const consumer = await ops.js.consumers.get(names.streams.decisions);
    const msg = await consumer.next({ expires: 2_000 });
    expect(msg && decodeMessage('meshroute.decision/v1', msg.data).decisionId).toBe('sec-decision-1');

    const event = { specversion: '1.0' as const, id: 'sec-op', source: '/sec', type: 'sec.test' };
    await expect(publishEvent(ops, event, { tenant: 'acme', timeoutMs: 2_000 })).rejects.toMatchObject({
      code: ErrorCode.PERMISSION_DENIED,
    });
    const denied = permissionError(ops, names.workSubject('core-1'));
    ops.nc.publish(names.workSubject('core-1'), encodeMessage('meshroute.work/v1', work('core-1', 4)));
    expect((await denied).code).toBe(ErrorCode.PERMISSION_DENIED);
  });
});

async function waitForCapacity(pred: (r: CapacityReport) => boolean): Promise<void> {
  await waitFor('the expected heartbeat', () => seenCapacity.some(pred), { timeoutMs: 5_000, intervalMs: 10 });
}
