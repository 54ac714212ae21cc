/**
 * The compute agent engine: takes the work addressed to it from the {@link AgentMesh}, runs it
 * on its {@link ComputeBackend} within slots and the workload's limits, answers with a
 * `meshroute.result/v1` (output or typed error), and heartbeats capacity. Talks to ports only.
 */
import { createRequire } from 'node:module';
import {
  type CancelTimer,
  type CapacityReport,
  ErrorCode,
  MeshError,
  parseMessage,
  toMeshError,
  type WorkItem,
  WorkloadError,
  type WorkloadSpec,
  type WorkResult,
} from '@meshroute/mesh';
import { createActor } from 'xstate';
import { type ArtifactCacheStats, createArtifactCache } from './artifact-cache.js';
import type { CarbonReading } from './carbon.js';
import { jobInput, resultOutput } from './job-io.js';
import { createLatencyWindow } from './latency-window.js';
import { type AgentLifecycleState, agentLifecycleMachine } from './lifecycle-machine.js';
import { type ComputeAgentOptions, resolveAgentOptions } from './options.js';
import { tracedHandler } from './telemetry.js';

const require = createRequire(import.meta.url);
/** The version of this package, announced in heartbeats as `versions['compute-agent']`. */
export const COMPUTE_AGENT_VERSION: string = (require('../package.json') as { version: string }).version;

/** The agent refused work: misaddressed, draining, no slot, or a workload it does not take. */
export class AgentRejectedError extends MeshError {
  override readonly name = 'AgentRejectedError';
  constructor(message: string, options: { retryable: boolean; details?: Record<string, unknown> }) {
    super(ErrorCode.AGENT_REJECTED, message, options);
  }
}

/** A snapshot of the agent. */
export interface ComputeAgentStatus {
  state: AgentLifecycleState;
  slots: number;
  freeSlots: number;
  inFlight: number;
  queueDepth: number;
  /** Seq of the last heartbeat sent (-1 before the first). */
  seq: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  carbon: CarbonReading;
  /** Jobs answered with `ok: true`. */
  succeeded: number;
  /** Jobs answered with an error after they were accepted. */
  failed: number;
  /** Work refused (`AGENT_REJECTED`). */
  rejected: number;
  artifactCache: ArtifactCacheStats;
}

/** Typed lifecycle and health events of an agent. */
export type ComputeAgentEvent =
  | { type: 'state'; state: AgentLifecycleState }
  | { type: 'heartbeat'; report: CapacityReport }
  | { type: 'heartbeat-failed'; error: MeshError }
  | { type: 'job-failed'; workId: string; workload: string; error: MeshError }
  | { type: 'work-rejected'; workId: string; error: MeshError }
  | { type: 'drain-timeout'; aborted: number };

/** A running compute agent. */
export interface ComputeAgent {
  /** Announce the agent and start taking work. */
  start(): Promise<void>;
  /**
   * Stop taking work (new work gets `AGENT_REJECTED`, retryable), let in-flight and queued work
   * finish for up to `graceMs`, abort the rest (`SHUTTING_DOWN`, retryable), publish `leaving`.
   * Idempotent: later calls return the first drain.
   */
  drain(graceMs?: number): Promise<void>;
  /** Drain with no grace: aborts in-flight work at once. */
  stop(): Promise<void>;
  /** A snapshot. */
  status(): ComputeAgentStatus;
  /** Listen to typed events. Returns a function that stops listening. */
  onEvent(listener: (event: ComputeAgentEvent) => void): () => void;
  /**
   * Handle one work item as if it came from the mesh (the mesh handler). Never rejects: every
   * outcome is a result.
   */
  handle(work: WorkItem): Promise<WorkResult>;
}

interface Waiter {
  resolve(): void;
  reject(err: MeshError): void;
}

interface CachedSpec {
  spec: WorkloadSpec;
  expiresAtMs: number;
}

/**
 * Create a compute agent.
 * @example
 * const agent = createComputeAgent({ mesh, backend, workloads, artifacts, carbon: fixedCarbon(120),
 *   identity: { id: 'edge-eu-1', region: 'eu-west', jurisdiction: 'DE' } });
 * await agent.start();
 * process.once('SIGTERM', () => void agent.drain());
 */
export function createComputeAgent(options: ComputeAgentOptions): ComputeAgent {
  const opts = resolveAgentOptions(options);
  const { mesh, backend, workloads, clock, identity, carbon } = opts;
  const log = opts.logger.child({ agentId: identity.id });
  const cache = createArtifactCache(opts.artifacts, opts.artifactCacheBytes);
  const latency = createLatencyWindow(opts.latencyWindowSize);
  const accept = new Set(opts.acceptWorkloads);
  const versions = { 'compute-agent': COMPUTE_AGENT_VERSION, node: process.versions.node, ...opts.versions };
  const specs = new Map<string, CachedSpec>();
  const listeners = new Set<(event: ComputeAgentEvent) => void>();
  const controllers = new Set<AbortController>();
  const queue: Waiter[] = [];
  let idleWaiters: Array<() => void> = [];
  let running = 0;
  let seq = -1;
  let succeeded = 0;
  let failed = 0;
  let rejected = 0;
  let unserve: (() => Promise<void>) | undefined;
  let cancelHeartbeat: CancelTimer | undefined;
  let heartbeatRequested = false;
  let startPromise: Promise<void> | undefined;
  let drainPromise: Promise<void> | undefined;

  const actor = createActor(agentLifecycleMachine);
  let state: AgentLifecycleState = 'idle';
  actor.subscribe((snapshot) => {
    const next = snapshot.value as AgentLifecycleState;
    if (next === state) return;
    state = next;
    log.info('agent state', { state });
    emit({ type: 'state', state });
  });
  actor.start();

  function emit(event: ComputeAgentEvent): void {
    for (const l of listeners) {
      try {
        l(event);
      } catch (err) {
        log.warn('agent event listener threw', { error: (err as Error).message });
      }
    }
  }

  // ---- heartbeats -------------------------------------------------------------------------

  function announcedStatus(): CapacityReport['status'] {
    if (state === 'draining') return 'draining';
    if (state === 'stopped') return 'leaving';
    return 'ready';
  }

  function buildReport(): CapacityReport {
    const { p50Ms, p99Ms } = latency.percentiles();
    const reading = carbon.current();
    const taking = state === 'ready';
    seq++;
    return {
      schema: 'meshroute.capacity/v1',
      agentId: identity.id,
      seq,
      instanceId: opts.instanceId,
      sentAtMs: clock.now(),
      heartbeatIntervalMs: opts.heartbeatIntervalMs,
      status: announcedStatus(),
      backends: [backend.kind],
      region: identity.region,
      jurisdiction: identity.jurisdiction,
      carbonIntensity: reading.intensity,
      carbonSource: reading.source,
      latencyP50Ms: p50Ms,
      latencyP99Ms: p99Ms,
      slots: opts.slots,
      freeSlots: taking ? Math.max(0, opts.slots - running) : 0,
      inFlight: running,
      queueDepth: queue.length,
      costPerJob: identity.costPerJob,
      labels: identity.labels,
      versions,
      workloads: [...accept],
      facts: safeFacts(),
    };
  }

  function safeFacts(): Record<string, unknown> {
    try {
      return backend.facts();
    } catch (err) {
      log.warn('backend facts() threw', { error: (err as Error).message });
      return {};
    }
  }

  async function sendHeartbeat(): Promise<void> {
    let report: CapacityReport;
    try {
      report = parseMessage('meshroute.capacity/v1', buildReport());
    } catch (err) {
      const error = toMeshError(err);
      log.error('heartbeat is invalid', { error: error.message });
      emit({ type: 'heartbeat-failed', error });
      return;
    }
    try {
      await mesh.publishCapacity(report);
      emit({ type: 'heartbeat', report });
    } catch (err) {
      const error = toMeshError(err);
      log.warn('heartbeat failed', { error: error.message, code: error.code });
      emit({ type: 'heartbeat-failed', error });
    }
  }

  function scheduleHeartbeat(): void {
    cancelHeartbeat?.();
    cancelHeartbeat = clock.setTimeout(() => {
      if (state !== 'ready' && state !== 'draining') return;
      scheduleHeartbeat();
      void sendHeartbeat();
    }, opts.heartbeatIntervalMs);
  }

  /** Heartbeat now (coalesced within a tick) because something a router cares about changed. */
  function requestHeartbeat(): void {
    if (heartbeatRequested || (state !== 'ready' && state !== 'draining')) return;
    heartbeatRequested = true;
    queueMicrotask(() => {
      heartbeatRequested = false;
      if (state !== 'ready' && state !== 'draining') return;
      scheduleHeartbeat();
      void sendHeartbeat();
    });
  }

  // ---- slots ------------------------------------------------------------------------------

  /** Take a slot: `undefined` when one was free, a promise when queued; throws when full. */
  function acquire(workId: string): Promise<void> | undefined {
    if (running < opts.slots) {
      running++;
      if (running === opts.slots) requestHeartbeat();
      return undefined;
    }
    if (queue.length >= opts.maxQueued) {
      throw new AgentRejectedError(
        `agent ${identity.id} is full: ${running} jobs running, ${queue.length} queued (maxQueued ${opts.maxQueued})`,
        { retryable: true, details: { reason: 'no-slot', workId, slots: opts.slots, maxQueued: opts.maxQueued } },
      );
    }
    return new Promise<void>((resolve, reject) => queue.push({ resolve, reject }));
  }

  function release(): void {
    const next = queue.shift();
    if (next) {
      next.resolve();
      return;
    }
    running--;
    if (running === opts.slots - 1) requestHeartbeat();
    if (running === 0 && idleWaiters.length > 0) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  function whenIdle(): Promise<void> {
    if (running === 0 && queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => idleWaiters.push(resolve));
  }

  // ---- work -------------------------------------------------------------------------------

  async function lookupWorkload(name: string): Promise<WorkloadSpec> {
    const now = clock.monotonicMs();
    const cached = specs.get(name);
    if (cached && cached.expiresAtMs > now) return cached.spec;
    let spec: WorkloadSpec | undefined;
    try {
      spec = await workloads.get(name);
    } catch (cause) {
      if (cached) {
        log.warn('workload registry unreachable; using the cached spec', { workload: name });
        return cached.spec;
      }
      throw new WorkloadError(
        ErrorCode.WORKLOAD_NOT_FOUND,
        `workload ${JSON.stringify(name)} could not be looked up: ${(cause as Error).message}`,
        {
          cause,
          retryable: true,
          details: { workload: name },
        },
      );
    }
    if (!spec) {
      specs.delete(name);
      throw new WorkloadError(ErrorCode.WORKLOAD_NOT_FOUND, `workload ${JSON.stringify(name)} is not registered`, {
        details: { workload: name },
      });
    }
    specs.set(name, { spec, expiresAtMs: now + opts.workloadCacheTtlMs });
    return spec;
  }

  function backendError(err: unknown): MeshError {
    if (err instanceof MeshError) {
      if ((Object.values(ErrorCode) as string[]).includes(err.code)) return err;
      return new WorkloadError(
        ErrorCode.WORKLOAD_FAILED,
        `backend failed with unknown code ${String(err.code)}: ${err.message}`,
        {
          cause: err,
        },
      );
    }
    const message = err instanceof Error ? err.message : String(err);
    return new WorkloadError(ErrorCode.WORKLOAD_FAILED, `backend ${backend.kind} failed: ${message}`, { cause: err });
  }

  async function execute(work: WorkItem, queueMs: number, ac: AbortController): Promise<WorkResult> {
    const spec = await lookupWorkload(work.workload);
    if (accept.size > 0 && !accept.has(spec.name)) {
      throw new AgentRejectedError(`agent ${identity.id} does not run workload ${JSON.stringify(spec.name)}`, {
        retryable: true,
        details: { reason: 'workload', workload: spec.name },
      });
    }
    const ref = spec.artifacts[backend.kind];
    if (!ref) {
      throw new WorkloadError(
        ErrorCode.WORKLOAD_NOT_FOUND,
        `workload ${JSON.stringify(spec.name)} has no ${backend.kind} artifact`,
        {
          retryable: true,
          details: { workload: spec.name, backend: backend.kind },
        },
      );
    }
    const artifact = await cache.get(ref.digest);
    const input = jobInput(work.event);
    const timeoutMs = Math.max(1, Math.min(spec.limits.timeoutMs, work.timeoutMs - queueMs));
    const aborted = new Promise<never>((_, reject) => {
      ac.signal.addEventListener('abort', () => reject(ac.signal.reason), { once: true });
    });
    const cancelTimeout = clock.setTimeout(() => {
      ac.abort(
        new WorkloadError(ErrorCode.TIMEOUT, `workload ${spec.name} did not finish within ${timeoutMs} ms`, {
          details: { workload: spec.name, timeoutMs },
        }),
      );
    }, timeoutMs);
    const t0 = clock.monotonicMs();
    let out: unknown;
    try {
      out = await Promise.race([
        backend.run({
          workload: spec,
          artifact,
          input: input.bytes,
          contentType: input.contentType,
          signal: ac.signal,
        }),
        aborted,
      ]);
    } catch (err) {
      throw backendError(err);
    } finally {
      cancelTimeout();
      latency.record(clock.monotonicMs() - t0);
    }
    const o = resultOutput(out, clock.monotonicMs() - t0, spec.limits.outputBytes);
    const result: WorkResult = {
      schema: 'meshroute.result/v1',
      workId: work.workId,
      eventId: work.event.id,
      eventSource: work.event.source,
      agentId: identity.id,
      attempt: work.attempt,
      ok: true,
      contentType: o.contentType,
      queueMs,
      executionMs: o.executionMs,
      finishedAtMs: clock.now(),
    };
    if (o.output !== undefined) result.output = o.output;
    if (o.outputBase64 !== undefined) result.outputBase64 = o.outputBase64;
    return result;
  }

  function errorResult(work: WorkItem, error: MeshError, queueMs: number): WorkResult {
    return {
      schema: 'meshroute.result/v1',
      workId: typeof work?.workId === 'string' && work.workId !== '' ? work.workId : 'unknown',
      eventId: typeof work?.event?.id === 'string' && work.event.id !== '' ? work.event.id : 'unknown',
      eventSource: typeof work?.event?.source === 'string' && work.event.source !== '' ? work.event.source : 'unknown',
      agentId: identity.id,
      attempt: Number.isSafeInteger(work?.attempt) && work.attempt > 0 ? work.attempt : 1,
      ok: false,
      error: error.toJSON(),
      queueMs,
      executionMs: 0,
      finishedAtMs: clock.now(),
    };
  }

  function reject(work: WorkItem, error: MeshError): WorkResult {
    rejected++;
    if (listeners.size > 0) emit({ type: 'work-rejected', workId: String(work?.workId), error });
    log.debug('work rejected', { workId: work?.workId, reason: error.message });
    return errorResult(work, error, 0);
  }

  async function handle(work: WorkItem): Promise<WorkResult> {
    const received = clock.monotonicMs();
    if (state !== 'ready') {
      return reject(
        work,
        new AgentRejectedError(
          `agent ${identity.id} is ${state === 'draining' ? 'draining' : state} and takes no work`,
          {
            retryable: true,
            details: { reason: 'not-ready', state },
          },
        ),
      );
    }
    if (work?.agentId !== identity.id) {
      return reject(
        work,
        new AgentRejectedError(
          `work ${String(work?.workId)} is addressed to agent ${JSON.stringify(work?.agentId)}, not ${identity.id}`,
          {
            retryable: true,
            details: { reason: 'misaddressed', agentId: work?.agentId },
          },
        ),
      );
    }
    try {
      parseMessage('meshroute.work/v1', work);
    } catch (err) {
      failed++;
      return errorResult(work, toMeshError(err), 0);
    }
    let queued: Promise<void> | undefined;
    try {
      queued = acquire(work.workId);
    } catch (err) {
      return reject(work, toMeshError(err));
    }
    if (queued) {
      try {
        await queued;
      } catch (err) {
        failed++;
        return errorResult(work, toMeshError(err), clock.monotonicMs() - received);
      }
    }
    const queueMs = clock.monotonicMs() - received;
    const ac = new AbortController();
    controllers.add(ac);
    try {
      const result = await execute(work, queueMs, ac);
      succeeded++;
      return result;
    } catch (err) {
      const error = toMeshError(err);
      if (error.code === ErrorCode.AGENT_REJECTED) return reject(work, error);
      failed++;
      if (listeners.size > 0) emit({ type: 'job-failed', workId: work.workId, workload: work.workload, error });
      log.info('job failed', { workId: work.workId, workload: work.workload, code: error.code, error: error.message });
      return errorResult(work, error, queueMs);
    } finally {
      controllers.delete(ac);
      release();
    }
  }

  // ---- lifecycle --------------------------------------------------------------------------

  async function doStart(): Promise<void> {
    actor.send({ type: 'START' });
    try {
      await carbon.start();
      unserve = mesh.serveWork(identity.id, tracedHandler(identity.id, backend.kind, handle));
    } catch (err) {
      actor.send({ type: 'START_FAILED' });
      throw toMeshError(err);
    }
    actor.send({ type: 'STARTED' });
    log.info('agent started', { backend: backend.kind, slots: opts.slots, instanceId: opts.instanceId });
    scheduleHeartbeat();
    await sendHeartbeat();
  }

  async function doDrain(graceMs: number): Promise<void> {
    if (startPromise) await startPromise.catch(() => undefined);
    if (state === 'idle') {
      actor.send({ type: 'DRAIN' });
      return;
    }
    if (state !== 'ready') return;
    actor.send({ type: 'DRAIN' });
    log.info('draining', { inFlight: running, queued: queue.length, graceMs });
    const announced = sendHeartbeat();
    scheduleHeartbeat();
    try {
      await unserve?.();
    } catch (err) {
      log.warn('stopping work subscription failed', { error: (err as Error).message });
    }
    let cancelGrace: CancelTimer | undefined;
    const graceOver = new Promise<'timeout'>((resolve) => {
      cancelGrace = clock.setTimeout(() => resolve('timeout'), graceMs);
    });
    const outcome = await Promise.race([whenIdle().then(() => 'idle' as const), graceOver]);
    cancelGrace?.();
    if (outcome === 'timeout') {
      const abortedCount = controllers.size + queue.length;
      log.warn('drain grace period over; aborting work', { inFlight: controllers.size, queued: queue.length });
      emit({ type: 'drain-timeout', aborted: abortedCount });
      const reason = new MeshError(ErrorCode.SHUTTING_DOWN, `agent ${identity.id} stopped before the job finished`, {
        retryable: true,
        details: { graceMs },
      });
      for (const w of queue.splice(0)) w.reject(reason);
      for (const ac of controllers) ac.abort(reason);
      await whenIdle();
    }
    await announced;
    cancelHeartbeat?.();
    actor.send({ type: 'STOPPED' });
    await sendHeartbeat();
    await carbon.close();
    log.info('agent stopped', { succeeded, failed, rejected });
  }

  return {
    start() {
      startPromise ??= doStart();
      return startPromise;
    },
    drain(graceMs = opts.drainGraceMs) {
      drainPromise ??= doDrain(graceMs);
      return drainPromise;
    },
    stop() {
      drainPromise ??= doDrain(0);
      return drainPromise;
    },
    status() {
      const { p50Ms, p99Ms } = latency.percentiles();
      return {
        state,
        slots: opts.slots,
        freeSlots: state === 'ready' ? Math.max(0, opts.slots - running) : 0,
        inFlight: running,
        queueDepth: queue.length,
        seq,
        latencyP50Ms: p50Ms,
        latencyP99Ms: p99Ms,
        carbon: carbon.current(),
        succeeded,
        failed,
        rejected,
        artifactCache: cache.stats(),
      };
    },
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    handle,
  };
}
