/**
 * An in-process {@link Mesh} and {@link AgentMesh} pair, for router and agent tests without
 * NATS. Messages are validated against their schemas and copied (as if serialized) at every hop;
 * what the router publishes is recorded in arrays for assertions.
 */
import {
  type AgentMesh,
  type CapacityReport,
  type Clock,
  type DeadLetterRecord,
  type DecisionRecord,
  ErrorCode,
  type Mesh,
  MeshError,
  parseMessage,
  systemClock,
  TimeoutError,
  toMeshError,
  type WorkItem,
  type WorkResult,
} from '@meshroute/mesh';
import { type MemoryEventSource, type MemoryEventSourceOptions, memoryEventSource } from './memory-event-source.js';

/** Options of {@link memoryMesh}. */
export interface MemoryMeshOptions {
  /** Timeouts and result times. @default systemClock */
  clock?: Clock;
  /** Options of the `ingress` event source (its clock defaults to `clock`). */
  ingress?: MemoryEventSourceOptions;
}

/** A reply the router sent to a producer. */
export interface RecordedReply {
  replyTo: string;
  body: Uint8Array;
  headers: Record<string, string> | undefined;
}

/** The in-memory mesh with its records. */
export interface MemoryMesh {
  /** The router's side. */
  mesh: Mesh;
  /** A new agent's side (each agent process gets its own). */
  agentMesh(): AgentMesh;
  /** The ingress: push raw events here, hand it to the router as its EventSource. */
  ingress: MemoryEventSource;
  /** Work items dispatched, in order. */
  readonly dispatched: readonly WorkItem[];
  /** Results published with their tenant. */
  readonly results: readonly { result: WorkResult; tenant: string | undefined }[];
  /** Decision records published. */
  readonly decisions: readonly DecisionRecord[];
  /** Dead letters published. */
  readonly deadLetters: readonly DeadLetterRecord[];
  /** Replies sent to producers. */
  readonly replies: readonly RecordedReply[];
  /** Heartbeats published by agents. */
  readonly heartbeats: readonly CapacityReport[];
  /** Agents serving work now. */
  servingAgents(): string[];
}

type WorkHandler = (work: WorkItem) => Promise<WorkResult>;

function failedResult(work: WorkItem, error: MeshError, nowMs: number): WorkResult {
  return {
    schema: 'meshroute.result/v1',
    workId: work.workId,
    eventId: work.event.id,
    eventSource: work.event.source,
    agentId: work.agentId,
    attempt: work.attempt,
    ok: false,
    error: error.toJSON(),
    queueMs: 0,
    executionMs: 0,
    finishedAtMs: nowMs,
  };
}

function abortError(signal: AbortSignal, what: string): MeshError {
  const reason: unknown = signal.reason;
  if (reason instanceof MeshError) return reason;
  return new MeshError(ErrorCode.SHUTTING_DOWN, `${what}: aborted`, { cause: reason, retryable: true });
}

/**
 * Create an in-memory mesh. Dispatch goes to an agent serving `work.agentId` (round robin when
 * several serve it, like a NATS queue group); none → `AGENT_REJECTED` (retryable); no answer in
 * `timeoutMs` → `TimeoutError`; a handler that throws answers a failed result.
 * @example
 * const m = memoryMesh();
 * m.agentMesh().serveWork('edge-1', async (work) => okResult(work));
 * const result = await m.mesh.dispatch(work, { timeoutMs: 1_000 });
 */
export function memoryMesh(options: MemoryMeshOptions = {}): MemoryMesh {
  const clock = options.clock ?? systemClock;
  const servers = new Map<string, WorkHandler[]>();
  const rr = new Map<string, number>();
  const capacityHandlers = new Set<(r: CapacityReport) => void>();
  const snapshot = new Map<string, CapacityReport>();
  const dispatched: WorkItem[] = [];
  const results: { result: WorkResult; tenant: string | undefined }[] = [];
  const decisions: DecisionRecord[] = [];
  const deadLetters: DeadLetterRecord[] = [];
  const replies: RecordedReply[] = [];
  const heartbeats: CapacityReport[] = [];
  let closed = false;
  const ensureOpen = (what: string) => {
    if (closed) throw new MeshError(ErrorCode.SHUTTING_DOWN, `${what}: the mesh is closed`);
  };
  const ingress = memoryEventSource({ clock, ...options.ingress });

  const mesh: Mesh = {
    async dispatch(work, opts) {
      ensureOpen('dispatch');
      const item = structuredClone(parseMessage('meshroute.work/v1', work));
      const what = `dispatch of work ${item.workId} (attempt ${item.attempt}) to agent ${item.agentId}`;
      if (opts.signal?.aborted) throw abortError(opts.signal, what);
      dispatched.push(item);
      const handlers = servers.get(item.agentId) ?? [];
      if (handlers.length === 0) {
        throw new MeshError(ErrorCode.AGENT_REJECTED, `${what}: no agent is listening`, {
          retryable: true,
          details: { agentId: item.agentId, reason: 'no-responders' },
        });
      }
      const i = (rr.get(item.agentId) ?? 0) % handlers.length;
      rr.set(item.agentId, i + 1);
      const handler = handlers[i] as WorkHandler;
      const started = clock.monotonicMs();
      const answer = (async (): Promise<WorkResult> => {
        try {
          return structuredClone(parseMessage('meshroute.result/v1', await handler(structuredClone(item))));
        } catch (err) {
          return failedResult(item, toMeshError(err), clock.now());
        }
      })();
      let cancelTimer: (() => void) | undefined;
      let onAbort: (() => void) | undefined;
      const timedOut = new Promise<never>((_, reject) => {
        cancelTimer = clock.setTimeout(
          () =>
            reject(
              new TimeoutError(what, opts.timeoutMs, {
                details: { agentId: item.agentId, elapsedMs: Math.round(clock.monotonicMs() - started) },
              }),
            ),
          opts.timeoutMs,
        );
        if (opts.signal) {
          const signal = opts.signal;
          onAbort = () => reject(abortError(signal, what));
          signal.addEventListener('abort', onAbort, { once: true });
        }
      });
      try {
        return await Promise.race([answer, timedOut]);
      } finally {
        cancelTimer?.();
        if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
      }
    },
    onCapacity(handler) {
      capacityHandlers.add(handler);
      return () => {
        capacityHandlers.delete(handler);
      };
    },
    async snapshotCapacity() {
      ensureOpen('snapshotCapacity');
      return [...snapshot.values()].map((r) => structuredClone(r));
    },
    async saveCapacity(report) {
      ensureOpen('saveCapacity');
      const r = parseMessage('meshroute.capacity/v1', report);
      snapshot.set(r.agentId, structuredClone(r));
    },
    async publishResult(result, tenant) {
      ensureOpen('publishResult');
      results.push({ result: structuredClone(parseMessage('meshroute.result/v1', result)), tenant });
    },
    async publishDecision(record) {
      ensureOpen('publishDecision');
      decisions.push(structuredClone(parseMessage('meshroute.decision/v1', record)));
    },
    async publishDeadLetter(record) {
      ensureOpen('publishDeadLetter');
      deadLetters.push(structuredClone(parseMessage('meshroute.deadletter/v1', record)));
    },
    async reply(replyTo, body, headers) {
      ensureOpen('reply');
      replies.push({ replyTo, body: new Uint8Array(body), headers: headers ? { ...headers } : undefined });
    },
    async close() {
      closed = true;
      capacityHandlers.clear();
      await ingress.close();
    },
  };

  const agentMesh = (): AgentMesh => {
    const stops = new Set<() => Promise<void>>();
    let agentClosed = false;
    return {
      serveWork(agentId, handler) {
        if (agentClosed) throw new MeshError(ErrorCode.SHUTTING_DOWN, 'serveWork: the agent mesh is closed');
        const running = new Set<Promise<WorkResult>>();
        const wrapped: WorkHandler = (work) => {
          const p = handler(work);
          running.add(p);
          void p.then(
            () => running.delete(p),
            () => running.delete(p),
          );
          return p;
        };
        servers.set(agentId, [...(servers.get(agentId) ?? []), wrapped]);
        let stopped: Promise<void> | undefined;
        const stop = (): Promise<void> => {
          if (!stopped) {
            stops.delete(stop);
            const left = (servers.get(agentId) ?? []).filter((h) => h !== wrapped);
            if (left.length > 0) servers.set(agentId, left);
            else servers.delete(agentId);
            stopped = Promise.allSettled([...running]).then(() => undefined);
          }
          return stopped;
        };
        stops.add(stop);
        return stop;
      },
      async publishCapacity(report) {
        if (agentClosed) throw new MeshError(ErrorCode.SHUTTING_DOWN, 'publishCapacity: the agent mesh is closed');
        const r = parseMessage('meshroute.capacity/v1', report);
        heartbeats.push(structuredClone(r));
        for (const h of [...capacityHandlers]) {
          const copy = structuredClone(r);
          queueMicrotask(() => {
            if (capacityHandlers.has(h)) h(copy);
          });
        }
      },
      async close() {
        agentClosed = true;
        await Promise.all([...stops].map((s) => s()));
      },
    };
  };

  return {
    mesh,
    agentMesh,
    ingress,
    dispatched,
    results,
    decisions,
    deadLetters,
    replies,
    heartbeats,
    servingAgents: () => [...servers.keys()],
  };
}
