import { type CapacityReport, decodeMessage, eventBucket, meshNames, type WorkItem } from '@meshroute/mesh';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import {
  connectMesh,
  type MeshConnection,
  natsAgentMesh,
  natsArtifactStore,
  natsMesh,
  natsPolicyStore,
  natsWorkloadRegistry,
  provisionMesh,
  type StoredPolicyBundle,
  sha256Digest,
  type WorkloadChange,
} from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  latch,
  resultFor,
  sampleCapacity,
  sampleDeadLetter,
  sampleDecision,
  sampleWork,
  sampleWorkload,
  uniquePrefix,
} from './fixtures.js';

let server: TestNatsServer;
let conn: MeshConnection;

beforeAll(async () => {
  server = await startNatsServer();
  conn = await connectMesh({ servers: server.url, name: 'mesh-test' });
});

afterAll(async () => {
  await conn?.close();
  await server?.stop();
});

async function fresh() {
  const names = meshNames(uniquePrefix());
  await provisionMesh(conn, { names, storage: 'memory' });
  return names;
}

describe('dispatch and serveWork', () => {
  it('round-trips a work item and its result, carrying trace headers', async () => {
    const names = await fresh();
    const agent = natsAgentMesh(conn, { names });
    const mesh = natsMesh(conn, { names, routerId: 'r1' });
    const seenTrace: (string | undefined)[] = [];
    const sub = conn.nc.subscribe(names.workSubject('a1'), {
      callback: (_e, m) => seenTrace.push(m.headers?.get('traceparent')),
    });
    const stop = agent.serveWork('a1', async (w) => resultFor(w));
    const work = sampleWork('a1', {
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: 'k=v',
    });
    const result = await mesh.dispatch(work, { timeoutMs: 2_000 });
    expect(result).toEqual(resultFor(work));
    expect(seenTrace).toEqual(['00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']);
    sub.unsubscribe();
    await stop();
    await mesh.close();
  });

  it('no agent listening: AGENT_REJECTED, retryable', async () => {
    const names = await fresh();
    const mesh = natsMesh(conn, { names, routerId: 'r1' });
    await expect(mesh.dispatch(sampleWork('nobody'), { timeoutMs: 1_000 })).rejects.toMatchObject({
      code: 'AGENT_REJECTED',
      retryable: true,
    });
  });

  it('an agent that does not answer in time: TIMEOUT', async () => {
    const names = await fresh();
    const agent = natsAgentMesh(conn, { names });
    const never = latch<never>();
    const stop = agent.serveWork('slow', () => never.promise);
    const mesh = natsMesh(conn, { names, routerId: 'r1' });
    await expect(mesh.dispatch(sampleWork('slow'), { timeoutMs: 200 })).rejects.toMatchObject({
      code: 'TIMEOUT',
      retryable: true,
    });
    void stop();
  });

  it('an aborted signal ends the wait', async () => {
    const names = await fresh();
    const agent = natsAgentMesh(conn, { names });
    const never = latch<never>();
    agent.serveWork('slow', () => never.promise);
    const mesh = natsMesh(conn, { names, routerId: 'r1' });
    const ac = new AbortController();
    const p = mesh.dispatch(sampleWork('slow'), { timeoutMs: 10_000, signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
  });

  it('answers invalid, misaddressed and failing work with error results, and keeps serving', async () => {
    const names = await fresh();
    const agent = natsAgentMesh(conn, { names });
    const stop = agent.serveWork('a1', async (w: WorkItem) => {
      if (w.workload === 'explode') throw new Error('kaboom');
      return resultFor(w);
    });
    const enc = new TextEncoder();
    const invalid = await conn.nc.request(
      names.workSubject('a1'),
      enc.encode(JSON.stringify({ schema: 'meshroute.work/v1', workId: 'w9' })),
      {
        timeout: 2_000,
      },
    );
    const r1 = decodeMessage('meshroute.result/v1', invalid.data);
    expect(r1).toMatchObject({ ok: false, workId: 'w9', agentId: 'a1', error: { code: 'INVALID_MESSAGE' } });
    const garbage = await conn.nc.request(names.workSubject('a1'), enc.encode('not json'), { timeout: 2_000 });
    expect(decodeMessage('meshroute.result/v1', garbage.data).error?.code).toBe('INVALID_MESSAGE');
    const mesh = natsMesh(conn, { names, routerId: 'r1' });
    const other = await mesh.dispatch({ ...sampleWork('a2'), agentId: 'a2' }, { timeoutMs: 1_000 }).catch((e) => e);
    expect(other).toMatchObject({ code: 'AGENT_REJECTED' }); // nobody serves a2
    const mis = await conn.nc.request(names.workSubject('a1'), enc.encode(JSON.stringify(sampleWork('a2'))), {
      timeout: 2_000,
    });
    expect(decodeMessage('meshroute.result/v1', mis.data).error?.code).toBe('AGENT_REJECTED');
    const failed = await mesh.dispatch(sampleWork('a1', { workload: 'explode' }), { timeoutMs: 2_000 });
    expect(failed).toMatchObject({ ok: false, error: { code: 'INTERNAL', message: 'kaboom' } });
    const ok = sampleWork('a1');
    expect(await mesh.dispatch(ok, { timeoutMs: 2_000 })).toEqual(resultFor(ok));
    await stop();
  });

  it('stop() waits for running handlers to answer, then receives no more', async () => {
    const names = await fresh();
    const agent = natsAgentMesh(conn, { names });
    const started = latch();
    const release = latch();
    const stop = agent.serveWork('a1', async (w) => {
      started.resolve();
      await release.promise;
      return resultFor(w);
    });
    const mesh = natsMesh(conn, { names, routerId: 'r1' });
    const work = sampleWork('a1');
    const p = mesh.dispatch(work, { timeoutMs: 5_000 });
    await started.promise;
    const stopped = stop();
    release.resolve();
    await stopped;
    expect(await p).toEqual(resultFor(work));
    await expect(mesh.dispatch(sampleWork('a1'), { timeoutMs: 1_000 })).rejects.toMatchObject({
      code: 'AGENT_REJECTED',
    });
  });
});

describe('capacity', () => {
  it('delivers valid heartbeats and drops invalid or spoofed ones', async () => {
    const names = await fresh();
    const mesh = natsMesh(conn, { names, routerId: 'r1' });
    const agent = natsAgentMesh(conn, { names });
    const got: CapacityReport[] = [];
    const third = latch();
    const unsub = mesh.onCapacity((r) => {
      got.push(r);
      if (got.length === 2) third.resolve();
    });
    await conn.nc.flush();
    await agent.publishCapacity(sampleCapacity('a1', { seq: 1 }));
    conn.nc.publish(names.capacitySubject('a1'), new TextEncoder().encode('{"schema":"meshroute.capacity/v1"}'));
    conn.nc.publish(names.capacitySubject('a1'), new TextEncoder().encode(JSON.stringify(sampleCapacity('evil'))));
    await agent.publishCapacity(sampleCapacity('a1', { seq: 2 }));
    await third.promise;
    expect(got.map((r) => [r.agentId, r.seq])).toEqual([
      ['a1', 1],
      ['a1', 2],
    ]);
    unsub();
    await expect(agent.publishCapacity({ ...sampleCapacity('a1'), freeSlots: -1 })).rejects.toMatchObject({
      code: 'INVALID_MESSAGE',
    });
  });

  it('keeps the last heartbeat per agent in the KV snapshot', async () => {
    const names = await fresh();
    const mesh = natsMesh(conn, { names, routerId: 'r1' });
    expect(await mesh.snapshotCapacity()).toEqual([]);
    await mesh.saveCapacity(sampleCapacity('b', { seq: 1 }));
    await mesh.saveCapacity(sampleCapacity('a', { seq: 1 }));
    await mesh.saveCapacity(sampleCapacity('b', { seq: 7 }));
    const snap = await mesh.snapshotCapacity();
    expect(snap.map((r) => [r.agentId, r.seq])).toEqual([
      ['a', 1],
      ['b', 7],
    ]);
    // A second router sees the same snapshot at once.
    const other = natsMesh(conn, { names, routerId: 'r2' });
    expect(await other.snapshotCapacity()).toEqual(snap);
  });
});

describe('outcome streams', () => {
  it('publishes results, decisions and dead letters to per-tenant subjects, results de-duplicated by work and attempt', async () => {
    const names = await fresh();
    const mesh = natsMesh(conn, { names, routerId: 'r1' });
    const work = sampleWork('a1');
    await mesh.publishResult(resultFor(work), 'acme');
    await mesh.publishResult(resultFor(work), 'acme');
    const decision = sampleDecision('acme');
    const deadLetter = sampleDeadLetter(undefined);
    await mesh.publishDecision(decision);
    await mesh.publishDeadLetter(deadLetter);
    const jsm = await conn.jetstreamManager();
    const results = await jsm.streams.info(names.streams.results, { subjects_filter: '>' });
    expect(results.state.subjects).toEqual({ [names.resultsSubject('acme')]: 1 });
    const decisions = await jsm.streams.info(names.streams.decisions, { subjects_filter: '>' });
    // One level below the tenant: the event's bucket (so that a lookup by event id reads ~1/4096).
    expect(decisions.state.subjects).toEqual({
      [`${names.decisionsSubject('acme')}.${eventBucket(decision.event.id)}`]: 1,
    });
    expect(names.decisionSubject('acme', decision.event.id)).toMatch(/\.decisions\.acme\.[0-9a-f]{3}$/);
    const dlq = await jsm.streams.info(names.streams.deadLetters, { subjects_filter: '>' });
    expect(dlq.state.subjects).toEqual({
      [`${names.deadLetterSubject(undefined)}.${eventBucket(deadLetter.eventId)}`]: 1,
    });
    const stored = await jsm.streams.getMessage(names.streams.results, { seq: 1 });
    expect(decodeMessage('meshroute.result/v1', stored?.data ?? new Uint8Array())).toEqual(resultFor(work));
    await expect(mesh.publishResult(resultFor(work), 'a.b')).rejects.toMatchObject({ code: 'INVALID_MESSAGE' });
  });

  it('stores a dead letter published twice once (by event source and id, or by digest of a broken event)', async () => {
    const names = await fresh();
    const mesh = natsMesh(conn, { names, routerId: 'r1' });
    await mesh.publishDeadLetter(sampleDeadLetter(undefined));
    await mesh.publishDeadLetter({ ...sampleDeadLetter(undefined), timeMs: 1_700_000_000_500 });
    await mesh.publishDeadLetter({ ...sampleDeadLetter(undefined), eventId: 'e2' });
    const broken = (raw: string) => ({
      ...sampleDeadLetter(undefined),
      eventId: '',
      eventSource: '',
      reason: 'INVALID_EVENT' as const,
      event: raw,
    });
    await mesh.publishDeadLetter(broken('{"id": 1'));
    await mesh.publishDeadLetter(broken('{"id": 1'));
    await mesh.publishDeadLetter(broken('{"id": 2'));
    const jsm = await conn.jetstreamManager();
    const dlq = await jsm.streams.info(names.streams.deadLetters);
    // e1 once, e2, and the two different broken events.
    expect(dlq.state.messages).toBe(4);
  });

  it('reply() reaches a producer waiting on its inbox, with headers', async () => {
    const names = await fresh();
    const mesh = natsMesh(conn, { names, routerId: 'r1' });
    const got = latch<{ body: string; status: string | undefined }>();
    const inbox = `${conn.info.inboxPrefix}.producer-1`;
    conn.nc.subscribe(inbox, {
      max: 1,
      callback: (_e, m) => got.resolve({ body: m.string(), status: m.headers?.get('meshroute-status') }),
    });
    await conn.nc.flush();
    await mesh.reply(inbox, new TextEncoder().encode('{"ok":true}'), { 'meshroute-status': 'succeeded' });
    expect(await got.promise).toEqual({ body: '{"ok":true}', status: 'succeeded' });
  });
});

describe('artifact store', () => {
  it('stores by digest, idempotently, and verifies on get', async () => {
    const names = await fresh();
    const store = natsArtifactStore(conn, { names });
    const bytes = new Uint8Array(300_000).map((_, i) => (i * 7) % 251); // several chunks
    const info = await store.put('checksum.wasm', bytes);
    expect(info).toEqual({ digest: sha256Digest(bytes), sizeBytes: bytes.length, name: 'checksum.wasm' });
    const again = await store.put('other-name.wasm', bytes);
    expect(again.digest).toBe(info.digest);
    const jsm = await conn.jetstreamManager();
    const before = (await jsm.streams.info(`OBJ_${names.artifacts}`)).state.messages;
    await store.put('checksum.wasm', bytes);
    expect((await jsm.streams.info(`OBJ_${names.artifacts}`)).state.messages).toBe(before);
    expect(await store.has(info.digest)).toBe(true);
    expect(await store.get(info.digest)).toEqual(bytes);
    const missing = sha256Digest(new Uint8Array([1]));
    expect(await store.get(missing)).toBeUndefined();
    expect(await store.has(missing)).toBe(false);
    await expect(store.get('md5:abc')).rejects.toMatchObject({ code: 'ARTIFACT_ERROR' });
  });
});

describe('workload registry', () => {
  it('validates, stores, lists and watches specs', async () => {
    const names = await fresh();
    const reg = natsWorkloadRegistry(conn, { names });
    await reg.put(sampleWorkload('checksum'));
    const changes: WorkloadChange[] = [];
    const second = latch();
    const stop = await reg.watch((c) => {
      changes.push(c);
      if (changes.length === 3) second.resolve();
    });
    await reg.put(sampleWorkload('resize', '2.0.0'));
    await reg.delete('checksum');
    await second.promise;
    stop();
    expect(
      changes.map((c) => (c.type === 'put' ? `put ${c.spec.name}@${c.spec.version}` : `delete ${c.name}`)),
    ).toEqual(['put checksum@1.0.0', 'put resize@2.0.0', 'delete checksum']);
    expect(await reg.get('checksum')).toBeUndefined();
    expect(await reg.get('resize')).toEqual(sampleWorkload('resize', '2.0.0'));
    expect((await reg.list()).map((s) => s.name)).toEqual(['resize']);
    await expect(reg.put({ ...sampleWorkload('x'), name: 'Bad Name' })).rejects.toMatchObject({
      code: 'INVALID_MESSAGE',
    });
  });
});

describe('policy store', () => {
  it('stores the active bundle and notifies watchers of each push', async () => {
    const names = await fresh();
    const store = natsPolicyStore(conn, { names, nowMs: () => 1_000 });
    expect(await store.get()).toBeUndefined();
    const files = [{ path: 'residency.policy.yaml', content: 'name: residency\nversion: 1\n' }];
    const rev1 = await store.put({ files, digest: 'sha256:1', pushedBy: 'ci' });
    const seen: StoredPolicyBundle[] = [];
    const two = latch();
    const stop = await store.watch((b) => {
      seen.push(b);
      if (seen.length === 2) two.resolve();
    });
    const rev2 = await store.put({
      files: [...files, { path: 'carbon.policy.yaml', content: 'x' }],
      digest: 'sha256:2',
      pushedBy: 'alice',
    });
    await two.promise;
    stop();
    expect(rev2).toBeGreaterThan(rev1);
    expect(seen.map((b) => [b.digest, b.pushedBy, b.files.length, b.revision])).toEqual([
      ['sha256:1', 'ci', 1, rev1],
      ['sha256:2', 'alice', 2, rev2],
    ]);
    expect(await store.get()).toMatchObject({
      digest: 'sha256:2',
      pushedAtMs: 1_000,
      schema: 'meshroute.policy-bundle/v1',
    });
    await expect(store.put({ files: [{ path: '', content: 'x' }], digest: 'd', pushedBy: 'x' })).rejects.toMatchObject({
      code: 'INVALID_MESSAGE',
    });
  });
});

describe('permissions', () => {
  it('refuses bad credentials and surfaces permission violations as PERMISSION_DENIED', async () => {
    const secured = await startNatsServer({
      extraConfig: `authorization {
  users = [
    { user: "admin", password: "s3cret" }
    { user: "producer", password: "p", permissions: { publish: { allow: ["other.>"] }, subscribe: { allow: ["_INBOX_meshroute.>"] } } }
  ]
}`,
    });
    try {
      await expect(connectMesh({ servers: secured.url, user: 'admin', pass: 'wrong' })).rejects.toMatchObject({
        code: 'PERMISSION_DENIED',
      });
      const admin = await connectMesh({ servers: secured.url, user: 'admin', pass: 's3cret' });
      await provisionMesh(admin, { storage: 'memory' });
      await admin.close();
      const producer = await connectMesh({ servers: secured.url, user: 'producer', pass: 'p' });
      const errors: string[] = [];
      void (async () => {
        for await (const s of producer.status()) if (s.type === 'error') errors.push(s.error.code);
      })();
      const mesh = natsMesh(producer, { routerId: 'r' });
      await expect(mesh.publishDecision(sampleDecision(undefined))).rejects.toMatchObject({
        code: 'PERMISSION_DENIED',
      });
      await waitFor('error status', () => errors.includes('PERMISSION_DENIED'), { timeoutMs: 5_000 });
      await producer.close();
    } finally {
      await secured.stop();
    }
  });
});
