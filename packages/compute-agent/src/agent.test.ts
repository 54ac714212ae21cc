import { ConfigError, ErrorCode, MeshError, type WorkResult } from '@meshroute/mesh';
import { beforeEach, describe, expect, it } from 'vitest';
import { type ComputeAgent, createComputeAgent } from './agent.js';
import { fixedCarbon } from './carbon.js';
import {
  countingArtifactStore,
  deferred,
  manualClock,
  recordingAgentMesh,
  scriptedBackend,
  workItem,
  workloadSpec,
} from './test-support/fakes.js';
import { memoryWorkloadSource } from './workload-source.js';

const AGENT = 'edge-eu-1';
const MODULE = new TextEncoder().encode('\0asm fake module bytes');

async function setup(overrides: { slots?: number; maxQueued?: number; drainGraceMs?: number } = {}) {
  const net = recordingAgentMesh();
  const artifacts = countingArtifactStore();
  const info = await artifacts.store.put('echo.wasm', MODULE);
  const workloads = memoryWorkloadSource([workloadSpec('echo', info.digest)]);
  const backend = scriptedBackend();
  const time = manualClock();
  const agent = createComputeAgent({
    mesh: net.mesh,
    backend,
    workloads,
    artifacts: artifacts.store,
    identity: { id: AGENT, region: 'eu-west', jurisdiction: 'DE', labels: { tier: 'edge' }, costPerJob: '0.002' },
    carbon: fixedCarbon(120),
    clock: time.clock,
    heartbeatIntervalMs: 1_000,
    slots: overrides.slots ?? 2,
    maxQueued: overrides.maxQueued ?? 4,
    drainGraceMs: overrides.drainGraceMs ?? 5_000,
  });
  await agent.start();
  return { net, artifacts, digest: info.digest, workloads, backend, time, agent };
}

function send(ctx: Awaited<ReturnType<typeof setup>>, work = workItem(AGENT, 'echo')): Promise<WorkResult> {
  const p = ctx.net.deliver(AGENT, work);
  if (!p) throw new Error(`nothing serves ${AGENT}`);
  return p;
}

describe('compute agent: work', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  let agent: ComputeAgent;
  beforeEach(async () => {
    ctx = await setup();
    agent = ctx.agent;
  });

  it('runs a job through the backend and answers with its output, input and artifact intact', async () => {
    const work = workItem(AGENT, 'echo', 'hi there');
    const result = await send(ctx, work);
    expect(result).toMatchObject({
      schema: 'meshroute.result/v1',
      ok: true,
      workId: work.workId,
      eventId: work.event.id,
      eventSource: '/test',
      agentId: AGENT,
      attempt: 1,
      output: { echo: 'hi there' },
      contentType: 'application/json',
      executionMs: 1,
      queueMs: 0,
    });
    const job = ctx.backend.jobs[0];
    expect(job?.artifact).toEqual(MODULE);
    expect(job?.workload.name).toBe('echo');
    expect(job?.signal.aborted).toBe(false);
  });

  it('passes JSON event data as JSON bytes and data_base64 as raw bytes', async () => {
    await send(ctx, workItem(AGENT, 'echo', { qasm: 'OPENQASM 2.0;', shots: 10 }));
    expect(new TextDecoder().decode(ctx.backend.jobs[0]?.input)).toBe('{"qasm":"OPENQASM 2.0;","shots":10}');
    expect(ctx.backend.jobs[0]?.contentType).toBe('application/json');
    const b64 = workItem(AGENT, 'echo');
    b64.event = { ...b64.event, data: undefined, data_base64: Buffer.from([1, 2, 255]).toString('base64') };
    await send(ctx, b64);
    expect([...(ctx.backend.jobs[1]?.input ?? [])]).toEqual([1, 2, 255]);
  });

  it('carries binary output as base64 and text output as a string', async () => {
    ctx.backend.setRun(() => ({
      bytes: new Uint8Array([0, 159, 146]),
      contentType: 'application/octet-stream',
      executionMs: 2,
    }));
    const bin = await send(ctx);
    expect(bin.outputBase64).toBe(Buffer.from([0, 159, 146]).toString('base64'));
    expect(bin.output).toBeUndefined();
    ctx.backend.setRun(() => ({
      bytes: new TextEncoder().encode('crc32=abcd'),
      contentType: 'text/plain',
      executionMs: 2,
    }));
    expect((await send(ctx)).output).toBe('crc32=abcd');
  });

  it('rejects work addressed to another agent without running it', async () => {
    const result = await send(ctx, workItem('edge-us-1', 'echo'));
    expect(result.ok).toBe(false);
    expect(result.error).toMatchObject({ code: ErrorCode.AGENT_REJECTED, retryable: true });
    expect(result.error?.message).toContain('edge-us-1');
    expect(ctx.backend.jobs).toHaveLength(0);
    expect(agent.status().rejected).toBe(1);
  });

  it('answers an invalid work item with INVALID_MESSAGE naming the field', async () => {
    const bad = { ...workItem(AGENT, 'echo'), timeoutMs: -5 };
    const result = await send(ctx, bad);
    expect(result.error?.code).toBe(ErrorCode.INVALID_MESSAGE);
    expect(result.error?.message).toContain('timeoutMs');
  });

  it('answers WORKLOAD_NOT_FOUND for an unknown workload or one without an artifact for its backend', async () => {
    const unknown = await send(ctx, workItem(AGENT, 'nope'));
    expect(unknown.error).toMatchObject({ code: ErrorCode.WORKLOAD_NOT_FOUND });
    expect(unknown.error?.message).toContain('"nope" is not registered');
    ctx.workloads.put({
      ...workloadSpec('gpu-only', ctx.digest),
      artifacts: { gpu: { digest: ctx.digest, name: 'm.onnx', options: {} } },
    });
    const noArtifact = await send(ctx, workItem(AGENT, 'gpu-only'));
    expect(noArtifact.error?.code).toBe(ErrorCode.WORKLOAD_NOT_FOUND);
    expect(noArtifact.error?.message).toContain('no wasm artifact');
  });

  it('fetches an artifact once, verifies it, and serves later jobs from the cache', async () => {
    for (let i = 0; i < 5; i++) expect((await send(ctx)).ok).toBe(true);
    expect(ctx.artifacts.gets()).toBe(1);
    expect(agent.status().artifactCache).toMatchObject({ entries: 1, fetches: 1, hits: 4 });
  });

  it('refuses an artifact whose bytes do not match its digest (ARTIFACT_ERROR)', async () => {
    const spec = workloadSpec('tampered', `sha256:${'ab'.repeat(32)}`);
    ctx.workloads.put(spec);
    ctx.artifacts.corrupt(`sha256:${'ab'.repeat(32)}`, new TextEncoder().encode('evil'));
    const result = await send(ctx, workItem(AGENT, 'tampered'));
    expect(result.error?.code).toBe(ErrorCode.ARTIFACT_ERROR);
    expect(result.error?.message).toContain('failed verification');
    expect(ctx.backend.jobs).toHaveLength(0);
  });

  it('survives a backend that throws, one that returns garbage, and one that overflows the output limit', async () => {
    ctx.backend.setRun(() => {
      throw new TypeError('kaboom');
    });
    const thrown = await send(ctx);
    expect(thrown.error).toMatchObject({ code: ErrorCode.WORKLOAD_FAILED });
    expect(thrown.error?.message).toContain('kaboom');

    ctx.backend.setRun(() => 42 as never);
    const garbage = await send(ctx);
    expect(garbage.error?.code).toBe(ErrorCode.WORKLOAD_FAILED);
    expect(garbage.error?.message).toContain('invalid output');

    ctx.backend.setRun(() => ({ json: 'x'.repeat(5_000), contentType: 'application/json', executionMs: 1 }));
    const big = await send(ctx);
    expect(big.error).toMatchObject({ code: ErrorCode.LIMIT_EXCEEDED, details: { limit: 'outputBytes' } });

    ctx.backend.setRun(() => Promise.reject(new MeshError(ErrorCode.WORKLOAD_FAILED, 'trap: unreachable')));
    expect((await send(ctx)).error?.message).toBe('trap: unreachable');

    ctx.backend.setRun((job) => ({
      json: { ok: job.input.byteLength },
      contentType: 'application/json',
      executionMs: 1,
    }));
    expect((await send(ctx)).ok).toBe(true);
    expect(agent.status()).toMatchObject({ succeeded: 1, failed: 4, inFlight: 0, freeSlots: 2 });
  });

  it('times out a hung job at the workload limit, aborting its signal, and keeps serving', async () => {
    const started = deferred();
    ctx.backend.setRun((job) => {
      started.resolve();
      return new Promise(() => {
        job.signal.addEventListener('abort', () => {});
      });
    });
    const hung = send(ctx);
    await started.promise;
    expect(agent.status().inFlight).toBe(1);
    ctx.time.advance(999);
    ctx.time.advance(1);
    const result = await hung;
    expect(result.error).toMatchObject({ code: ErrorCode.TIMEOUT, details: { timeoutMs: 1_000 } });
    expect(ctx.backend.jobs[0]?.signal.aborted).toBe(true);
    ctx.backend.setRun(() => ({ json: 1, contentType: 'application/json', executionMs: 1 }));
    expect((await send(ctx)).ok).toBe(true);
    expect(agent.status().inFlight).toBe(0);
  });

  it('uses the work item timeout when it is shorter than the workload limit', async () => {
    const started = deferred();
    ctx.backend.setRun(() => {
      started.resolve();
      return new Promise(() => {});
    });
    const hung = send(ctx, workItem(AGENT, 'echo', 'x', { timeoutMs: 200 }));
    await started.promise;
    ctx.time.advance(200);
    expect((await hung).error?.details).toMatchObject({ timeoutMs: 200 });
  });
});

describe('compute agent: slots and queue', () => {
  it('runs at most `slots` jobs, queues up to maxQueued, then rejects retryably', async () => {
    const ctx = await setup({ slots: 1, maxQueued: 1 });
    const gate = deferred();
    const firstStarted = deferred();
    ctx.backend.setRun(async () => {
      firstStarted.resolve();
      await gate.promise;
      return { json: 'done', contentType: 'application/json', executionMs: 1 };
    });
    const first = send(ctx);
    await firstStarted.promise;
    const second = send(ctx);
    const third = await send(ctx);
    expect(third.error).toMatchObject({
      code: ErrorCode.AGENT_REJECTED,
      retryable: true,
      details: { reason: 'no-slot' },
    });
    expect(ctx.agent.status()).toMatchObject({ inFlight: 1, queueDepth: 1, freeSlots: 0 });
    expect(ctx.backend.jobs).toHaveLength(1);
    ctx.time.advance(30);
    gate.resolve();
    expect((await first).ok).toBe(true);
    const r2 = await second;
    expect(r2.ok).toBe(true);
    expect(r2.queueMs).toBe(30);
    expect(ctx.backend.jobs).toHaveLength(2);
  });

  it('announces saturation at once, without waiting for the next interval', async () => {
    const ctx = await setup({ slots: 1 });
    const gate = deferred();
    ctx.backend.setRun(async () => {
      await gate.promise;
      return { json: 1, contentType: 'application/json', executionMs: 1 };
    });
    const full = ctx.net.nextHeartbeat((r) => r.freeSlots === 0);
    const job = send(ctx);
    expect(await full).toMatchObject({ status: 'ready', inFlight: 1, freeSlots: 0 });
    const free = ctx.net.nextHeartbeat((r) => r.freeSlots === 1);
    gate.resolve();
    await job;
    expect((await free).inFlight).toBe(0);
  });
});

describe('compute agent: heartbeats', () => {
  it('announces itself with identity, carbon, facts and capacity, then every interval with increasing seq', async () => {
    const ctx = await setup();
    const [first] = ctx.net.heartbeats;
    expect(first).toMatchObject({
      schema: 'meshroute.capacity/v1',
      agentId: AGENT,
      seq: 0,
      status: 'ready',
      backends: ['wasm'],
      region: 'eu-west',
      jurisdiction: 'DE',
      carbonIntensity: 120,
      carbonSource: 'fixed',
      slots: 2,
      freeSlots: 2,
      inFlight: 0,
      queueDepth: 0,
      costPerJob: '0.002',
      labels: { tier: 'edge' },
      heartbeatIntervalMs: 1_000,
      facts: { engine: 'scripted', engineVersion: '1.0' },
    });
    expect(first?.versions['compute-agent']).toMatch(/^\d+\.\d+\.\d+/);
    ctx.time.advance(999);
    expect(ctx.net.heartbeats).toHaveLength(1);
    ctx.time.advance(1);
    ctx.time.advance(1_000);
    await Promise.resolve();
    expect(ctx.net.heartbeats.map((h) => h.seq)).toEqual([0, 1, 2]);
    expect(ctx.net.heartbeats.every((h) => h.instanceId === first?.instanceId)).toBe(true);
  });

  it('reports observed execution p50 and p99 over the recent jobs', async () => {
    const ctx = await setup();
    let n = 0;
    ctx.backend.setRun(async () => {
      n++;
      ctx.time.advance(n <= 99 ? 10 : 500);
      return { json: n, contentType: 'application/json', executionMs: 1 };
    });
    for (let i = 0; i < 100; i++) await send(ctx);
    const next = ctx.net.nextHeartbeat();
    ctx.time.advance(1_000);
    const hb = await next;
    expect(hb.latencyP50Ms).toBe(10);
    expect(hb.latencyP99Ms).toBe(10);
    await send(ctx);
    const after = ctx.net.nextHeartbeat();
    ctx.time.advance(1_000);
    expect((await after).latencyP99Ms).toBe(500);
  });

  it('keeps heartbeating when a publish fails, and says so as an event', async () => {
    const ctx = await setup();
    const events: string[] = [];
    ctx.agent.onEvent((e) => events.push(e.type));
    const original = ctx.net.mesh.publishCapacity;
    ctx.net.mesh.publishCapacity = async () => {
      throw new Error('nats down');
    };
    ctx.time.advance(1_000);
    await new Promise((r) => setImmediate(r));
    ctx.net.mesh.publishCapacity = original;
    ctx.time.advance(1_000);
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual(['heartbeat-failed', 'heartbeat']);
    expect(ctx.net.heartbeats.at(-1)?.seq).toBe(2);
  });
});

describe('compute agent: drain', () => {
  it('stops taking work, finishes in-flight work, then announces leaving', async () => {
    const ctx = await setup();
    const gate = deferred();
    const started = deferred();
    ctx.backend.setRun(async () => {
      started.resolve();
      await gate.promise;
      return { json: 'finished', contentType: 'application/json', executionMs: 1 };
    });
    const inflight = send(ctx);
    await started.promise;
    const draining = ctx.net.nextHeartbeat((r) => r.status === 'draining');
    const drained = ctx.agent.drain();
    expect(await draining).toMatchObject({ status: 'draining', freeSlots: 0, inFlight: 1 });
    expect(ctx.agent.status().state).toBe('draining');
    expect(ctx.net.subscribed(AGENT)).toBe(false);
    const late = await ctx.agent.handle(workItem(AGENT, 'echo'));
    expect(late.error).toMatchObject({ code: ErrorCode.AGENT_REJECTED, retryable: true });
    gate.resolve();
    expect(await inflight).toMatchObject({ ok: true, output: 'finished' });
    await drained;
    expect(ctx.agent.status().state).toBe('stopped');
    expect(ctx.net.heartbeats.at(-1)).toMatchObject({ status: 'leaving', inFlight: 0 });
    expect(ctx.time.pendingTimers()).toBe(0);
  });

  it('aborts work still running when the grace period ends (SHUTTING_DOWN, retryable)', async () => {
    const ctx = await setup({ drainGraceMs: 500, slots: 1 });
    const started = deferred();
    ctx.backend.setRun(() => {
      started.resolve();
      return new Promise(() => {});
    });
    const stuck = send(ctx, workItem(AGENT, 'echo', 'x'));
    const queued = send(ctx);
    await started.promise;
    const events: string[] = [];
    ctx.agent.onEvent((e) => events.push(e.type));
    const drained = ctx.agent.drain();
    await new Promise((r) => setImmediate(r));
    ctx.time.advance(500);
    const [a, b] = await Promise.all([stuck, queued]);
    expect(a.error).toMatchObject({ code: ErrorCode.SHUTTING_DOWN, retryable: true });
    expect(b.error).toMatchObject({ code: ErrorCode.SHUTTING_DOWN, retryable: true });
    await drained;
    expect(events).toContain('drain-timeout');
    expect(ctx.net.heartbeats.at(-1)?.status).toBe('leaving');
  });

  it('is idempotent and stop() drains without grace', async () => {
    const ctx = await setup();
    await Promise.all([ctx.agent.stop(), ctx.agent.drain()]);
    expect(ctx.net.heartbeats.filter((h) => h.status === 'leaving')).toHaveLength(1);
    expect(ctx.net.unservedCount()).toBe(1);
  });
});

describe('compute agent: options', () => {
  it('names the option at fault', async () => {
    const net = recordingAgentMesh();
    const base = {
      mesh: net.mesh,
      backend: scriptedBackend(),
      workloads: memoryWorkloadSource(),
      artifacts: countingArtifactStore().store,
      carbon: fixedCarbon(1),
    };
    expect(() => createComputeAgent({ ...base, identity: { id: 'a', region: 'r', jurisdiction: 'UK' } })).toThrow(
      /identity\.jurisdiction/,
    );
    expect(() => createComputeAgent({ ...base, identity: { id: 'a.b', region: 'r', jurisdiction: 'DE' } })).toThrow(
      ConfigError,
    );
    expect(() =>
      createComputeAgent({ ...base, identity: { id: 'a', region: 'r', jurisdiction: 'DE' }, slots: 0 }),
    ).toThrow(/slots: must be an integer >= 1/);
    expect(() =>
      createComputeAgent({ ...base, identity: { id: 'a', region: 'r', jurisdiction: 'DE', costPerJob: '-1' } }),
    ).toThrow(/costPerJob/);
  });
});
