import { ErrorCode } from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import { sampleCapacityReport, sampleDecisionRecord, sampleResult, sampleWorkItem } from '../samples.js';
import { simulatedClock } from '../simulated-clock.js';
import { runArtifactStoreSuite } from '../suites/artifact-store-suite.js';
import { runEventSourceSuite } from '../suites/event-source-suite.js';
import { runMeshSuite } from '../suites/mesh-suite.js';
import { memoryArtifactStore, sha256Digest } from './memory-artifact-store.js';
import { memoryEventSource } from './memory-event-source.js';
import { memoryMesh } from './memory-mesh.js';

runArtifactStoreSuite('memoryArtifactStore', () => memoryArtifactStore());

runEventSourceSuite('memoryEventSource', ({ maxInFlight, maxDeliver }) => {
  const source = memoryEventSource({ maxInFlight, ...(maxDeliver !== undefined ? { maxDeliver } : {}) });
  return {
    source,
    publish: async (body, options) => {
      source.push(body, options);
    },
  };
});

runMeshSuite('memoryMesh', () => {
  const m = memoryMesh();
  return { mesh: m.mesh, agentMesh: m.agentMesh(), otherAgentMesh: m.agentMesh() };
});

describe('memoryArtifactStore', () => {
  it('refuses bytes that no longer match their digest', async () => {
    const store = memoryArtifactStore();
    const { digest } = await store.put('a.wasm', Uint8Array.from([0, 97, 115, 109]));
    store.corrupt(digest, Uint8Array.from([1, 2, 3]));
    await expect(store.get(digest)).rejects.toMatchObject({
      code: ErrorCode.ARTIFACT_ERROR,
      details: { rule: 'digest-mismatch', actual: sha256Digest(Uint8Array.from([1, 2, 3])) },
    });
  });
});

describe('memoryEventSource', () => {
  it('redelivers an unsettled delivery after ackWaitMs unless working() renews it', async () => {
    const clock = simulatedClock();
    const source = memoryEventSource({ clock, ackWaitMs: 1_000 });
    const counts: number[] = [];
    const parked: (() => void)[] = [];
    await source.start(async (d) => {
      counts.push(d.redeliveryCount);
      if (d.redeliveryCount === 0) {
        // Keep working past one ack wait, then go silent (a crashed router).
        clock.setTimeout(() => d.working(), 900);
        parked.push(() => {});
        return;
      }
      await d.ack();
    });
    source.push('slow');
    await clock.advanceAsync(0);
    expect(counts).toEqual([0]);
    await clock.advanceAsync(1_500); // renewed at 900: not yet redelivered at 1500
    expect(counts).toEqual([0]);
    await clock.advanceAsync(500); // 900 + 1000 = 1900 passed
    expect(counts).toEqual([0, 1]);
    await source.settled();
    expect(source.acked.map((m) => m.seq)).toEqual([1]);
    expect(source.messages[0]?.deliveries).toBe(2);
    await source.close();
  });

  it('records terminated messages with their reason and resolves settled()', async () => {
    const source = memoryEventSource();
    await source.start(async (d) => d.term('not a CloudEvent'));
    source.push('garbage', { headers: { 'content-type': 'text/plain' } });
    await source.settled();
    expect(source.terminated[0]).toMatchObject({ seq: 1, state: 'terminated', termReason: 'not a CloudEvent' });
    await source.close();
  });
});

describe('memoryMesh', () => {
  it('records what the router published and dispatched, and copies messages at every hop', async () => {
    const m = memoryMesh();
    const agent = m.agentMesh();
    agent.serveWork('edge-eu-1', async (w) => {
      w.event.data = 'mutated by the agent';
      return sampleResult(w);
    });
    const work = sampleWorkItem();
    const result = await m.mesh.dispatch(work, { timeoutMs: 1_000 });
    expect(work.event.data).toEqual({ n: 1 });
    expect(m.dispatched).toEqual([work]);
    expect(result.ok).toBe(true);
    await m.mesh.publishResult(result, 'acme');
    await m.mesh.publishDecision(sampleDecisionRecord());
    await m.mesh.reply('_INBOX.1', Uint8Array.from([1]));
    expect(m.results).toEqual([{ result, tenant: 'acme' }]);
    expect(m.decisions).toHaveLength(1);
    expect(m.replies).toEqual([{ replyTo: '_INBOX.1', body: Uint8Array.from([1]), headers: undefined }]);
    await agent.publishCapacity(sampleCapacityReport());
    expect(m.heartbeats).toHaveLength(1);
    expect(m.servingAgents()).toEqual(['edge-eu-1']);
    await agent.close();
    expect(m.servingAgents()).toEqual([]);
    await m.mesh.close();
    await expect(m.mesh.dispatch(work, { timeoutMs: 1_000 })).rejects.toMatchObject({ code: ErrorCode.SHUTTING_DOWN });
  });

  it('times out on the injected clock', async () => {
    const clock = simulatedClock();
    const m = memoryMesh({ clock });
    m.agentMesh().serveWork('edge-eu-1', () => new Promise(() => {}));
    const p = m.mesh.dispatch(sampleWorkItem(), { timeoutMs: 5_000 }).catch((e: unknown) => e);
    clock.advance(4_999);
    await clock.advanceAsync(1);
    expect(await p).toMatchObject({ code: ErrorCode.TIMEOUT, details: { elapsedMs: 5_000 } });
  });

  it('round-robins between several processes serving one agent id (a queue group)', async () => {
    const m = memoryMesh();
    m.agentMesh().serveWork('edge-eu-1', async (w) => sampleResult(w, { output: 'p1' }));
    m.agentMesh().serveWork('edge-eu-1', async (w) => sampleResult(w, { output: 'p2' }));
    const outs = [];
    for (let i = 0; i < 4; i++) outs.push((await m.mesh.dispatch(sampleWorkItem(), { timeoutMs: 1_000 })).output);
    expect(outs).toEqual(['p1', 'p2', 'p1', 'p2']);
  });

  it('pushes ingress events to the router through its event source', async () => {
    const m = memoryMesh();
    const bodies: string[] = [];
    await m.ingress.start(async (d) => {
      bodies.push(new TextDecoder().decode(d.body));
      await d.ack();
    });
    m.ingress.push('{"specversion":"1.0"}', { replyTo: '_INBOX.r' });
    await m.ingress.settled();
    expect(bodies).toEqual(['{"specversion":"1.0"}']);
  });
});
