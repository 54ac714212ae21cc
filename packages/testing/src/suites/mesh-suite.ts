/** The {@link Mesh} + {@link AgentMesh} conformance suite (memory fake, NATS). */
import { type AgentMesh, type CapacityReport, ErrorCode, type Mesh, MeshError, type WorkItem } from '@meshroute/mesh';
import { afterEach, describe, expect, it } from 'vitest';
import {
  sampleCapacityReport,
  sampleDeadLetter,
  sampleDecisionRecord,
  sampleResult,
  sampleWorkItem,
} from '../samples.js';
import { waitFor } from '../wait.js';

/** What a mesh suite factory returns: a router side and an agent side on one fresh mesh. */
export interface MeshFixture {
  mesh: Mesh;
  agentMesh: AgentMesh;
  /** A second agent process on the same mesh (for routing tests). Defaults to `agentMesh`. */
  otherAgentMesh?: AgentMesh;
  cleanup?: () => void | Promise<void>;
}

/** A factory of fresh meshes (unique subject prefix / buckets each call). */
export type MeshFactory = () => MeshFixture | Promise<MeshFixture>;

const DEADLINE_MS = 15_000;

/** Dispatch until the agent's subscription is visible (subscriptions propagate asynchronously). */
async function dispatchWhenServed(mesh: Mesh, work: WorkItem, timeoutMs = 5_000) {
  return await waitFor(
    `agent ${work.agentId} to serve work`,
    async () => {
      try {
        return await mesh.dispatch(work, { timeoutMs });
      } catch (err) {
        if (err instanceof MeshError && err.code === ErrorCode.AGENT_REJECTED) return undefined;
        throw err;
      }
    },
    { timeoutMs: DEADLINE_MS, intervalMs: 20 },
  );
}

/**
 * Register the Mesh conformance tests under `describe(name)`.
 * @example runMeshSuite('memoryMesh', () => { const m = memoryMesh(); return { mesh: m.mesh, agentMesh: m.agentMesh() }; });
 */
export function runMeshSuite(name: string, factory: MeshFactory): void {
  describe(`Mesh conformance: ${name}`, () => {
    const fixtures: MeshFixture[] = [];
    const make = async () => {
      const fx = await factory();
      fixtures.push(fx);
      return fx;
    };
    afterEach(async () => {
      for (const fx of fixtures.splice(0)) {
        await fx.agentMesh.close();
        await fx.otherAgentMesh?.close();
        await fx.mesh.close();
        await fx.cleanup?.();
      }
    });

    it('dispatches work to the agent serving work.agentId and returns its result', async () => {
      const { mesh, agentMesh } = await make();
      const received: WorkItem[] = [];
      agentMesh.serveWork('edge-eu-1', async (work) => {
        received.push(work);
        return sampleResult(work, { output: { sum: 42 } });
      });
      const work = sampleWorkItem({
        workId: 'w-dispatch',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      });
      const result = await dispatchWhenServed(mesh, work);
      expect(result).toEqual(sampleResult(work, { output: { sum: 42 } }));
      expect(received.at(-1)).toEqual(work);
    });

    it('routes by agent id between two agents', async () => {
      const fx = await make();
      const other = fx.otherAgentMesh ?? fx.agentMesh;
      fx.agentMesh.serveWork('agent-a', async (w) => sampleResult(w, { output: 'from-a' }));
      other.serveWork('agent-b', async (w) => sampleResult(w, { output: 'from-b' }));
      const a = await dispatchWhenServed(fx.mesh, sampleWorkItem({ agentId: 'agent-a', workId: 'wa' }));
      const b = await dispatchWhenServed(fx.mesh, sampleWorkItem({ agentId: 'agent-b', workId: 'wb' }));
      expect([a.output, a.agentId, b.output, b.agentId]).toEqual(['from-a', 'agent-a', 'from-b', 'agent-b']);
    });

    it('rejects work for an agent nobody serves with AGENT_REJECTED (retryable)', async () => {
      const { mesh } = await make();
      const err = await mesh
        .dispatch(sampleWorkItem({ agentId: 'nobody-here' }), { timeoutMs: 5_000 })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MeshError);
      expect(err).toMatchObject({ code: ErrorCode.AGENT_REJECTED, retryable: true });
    });

    it('times out with TimeoutError when the agent does not answer in time', async () => {
      const { mesh, agentMesh } = await make();
      let release: () => void = () => {};
      const gate = new Promise<void>((r) => {
        release = r;
      });
      let calls = 0;
      agentMesh.serveWork('slow-agent', async (w) => {
        calls++;
        if (w.workId === 'w-slow') await gate;
        return sampleResult(w);
      });
      await dispatchWhenServed(mesh, sampleWorkItem({ agentId: 'slow-agent', workId: 'w-warm' }));
      const err = await mesh
        .dispatch(sampleWorkItem({ agentId: 'slow-agent', workId: 'w-slow' }), { timeoutMs: 200 })
        .catch((e: unknown) => e);
      release();
      expect(err).toMatchObject({ code: ErrorCode.TIMEOUT, retryable: true });
      expect(calls).toBe(2);
    });

    it('answers a failed result when the agent handler throws', async () => {
      const { mesh, agentMesh } = await make();
      agentMesh.serveWork('faulty', async () => {
        throw new MeshError(ErrorCode.WORKLOAD_FAILED, 'trap: unreachable');
      });
      const r = await dispatchWhenServed(mesh, sampleWorkItem({ agentId: 'faulty', workId: 'w-f', attempt: 2 }));
      expect(r).toMatchObject({ ok: false, workId: 'w-f', attempt: 2, agentId: 'faulty' });
      expect(r.error).toMatchObject({ code: ErrorCode.WORKLOAD_FAILED, message: 'trap: unreachable' });
    });

    it('stops routing to an agent after its serveWork stop function', async () => {
      const { mesh, agentMesh } = await make();
      const stop = agentMesh.serveWork('leaving', async (w) => sampleResult(w));
      await dispatchWhenServed(mesh, sampleWorkItem({ agentId: 'leaving' }));
      await stop();
      await waitFor(
        'dispatch to be rejected after stop',
        async () => {
          const e = await mesh.dispatch(sampleWorkItem({ agentId: 'leaving' }), { timeoutMs: 1_000 }).then(
            () => undefined,
            (x: unknown) => x,
          );
          return e instanceof MeshError && e.code === ErrorCode.AGENT_REJECTED ? true : undefined;
        },
        { timeoutMs: DEADLINE_MS, intervalMs: 20 },
      );
    });

    it('rejects an aborted dispatch', async () => {
      const { mesh, agentMesh } = await make();
      agentMesh.serveWork('edge-eu-1', async (w) => sampleResult(w));
      const ac = new AbortController();
      ac.abort();
      await expect(mesh.dispatch(sampleWorkItem(), { timeoutMs: 1_000, signal: ac.signal })).rejects.toBeInstanceOf(
        MeshError,
      );
    });

    it('rejects an invalid work item with INVALID_MESSAGE before sending it', async () => {
      const { mesh } = await make();
      const bad = { ...sampleWorkItem(), attempt: 0 } as WorkItem;
      await expect(mesh.dispatch(bad, { timeoutMs: 1_000 })).rejects.toMatchObject({ code: ErrorCode.INVALID_MESSAGE });
    });

    it('delivers heartbeats to capacity subscribers until they unsubscribe', async () => {
      const { mesh, agentMesh } = await make();
      const a: CapacityReport[] = [];
      const b: CapacityReport[] = [];
      const stopA = mesh.onCapacity((r) => a.push(r));
      mesh.onCapacity((r) => b.push(r));
      let seq = 0;
      // Subscriptions propagate asynchronously: heartbeat until one arrives, as an agent would.
      await waitFor(
        'a heartbeat',
        async () => {
          await agentMesh.publishCapacity(sampleCapacityReport({ agentId: 'hb-agent', seq: ++seq }));
          return a.length > 0 && b.length > 0 ? true : undefined;
        },
        { timeoutMs: DEADLINE_MS, intervalMs: 50 },
      );
      expect(a[0]).toEqual(sampleCapacityReport({ agentId: 'hb-agent', seq: a[0]?.seq ?? -1 }));
      stopA();
      const countA = a.length;
      await agentMesh.publishCapacity(sampleCapacityReport({ agentId: 'hb-agent', seq: 1_000 }));
      await waitFor('the last heartbeat', () => b.some((r) => r.seq === 1_000) || undefined, {
        timeoutMs: DEADLINE_MS,
      });
      expect(a).toHaveLength(countA);
    });

    it('keeps the latest saved heartbeat per agent in the snapshot', async () => {
      const { mesh } = await make();
      expect(await mesh.snapshotCapacity()).toEqual([]);
      await mesh.saveCapacity(sampleCapacityReport({ agentId: 'snap-1', seq: 1 }));
      await mesh.saveCapacity(sampleCapacityReport({ agentId: 'snap-1', seq: 2, freeSlots: 1 }));
      await mesh.saveCapacity(sampleCapacityReport({ agentId: 'snap-2', seq: 7 }));
      const snap = (await mesh.snapshotCapacity()).sort((x, y) => x.agentId.localeCompare(y.agentId));
      expect(snap).toEqual([
        sampleCapacityReport({ agentId: 'snap-1', seq: 2, freeSlots: 1 }),
        sampleCapacityReport({ agentId: 'snap-2', seq: 7 }),
      ]);
    });

    it('publishes results, decisions, dead letters and replies, and refuses invalid records', async () => {
      const { mesh } = await make();
      const work = sampleWorkItem();
      await mesh.publishResult(sampleResult(work), 'acme');
      await mesh.publishResult(sampleResult(work), undefined);
      await mesh.publishDecision(sampleDecisionRecord());
      await mesh.publishDeadLetter(sampleDeadLetter());
      await mesh.reply('_INBOX.suite.1', new TextEncoder().encode('{"ok":true}'), {
        'content-type': 'application/json',
      });
      await expect(mesh.publishResult({ ...sampleResult(work), ok: 'yes' } as never, 'acme')).rejects.toMatchObject({
        code: ErrorCode.INVALID_MESSAGE,
      });
      await expect(
        mesh.publishDecision({ ...sampleDecisionRecord(), outcome: 'maybe' } as never),
      ).rejects.toMatchObject({
        code: ErrorCode.INVALID_MESSAGE,
      });
      await expect(mesh.publishDeadLetter({ ...sampleDeadLetter(), reason: 'BORED' } as never)).rejects.toMatchObject({
        code: ErrorCode.INVALID_MESSAGE,
      });
    });
  });
}
