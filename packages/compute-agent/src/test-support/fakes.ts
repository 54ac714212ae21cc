/**
 * Small in-process fakes for the agent's unit tests (the shared ones in `@meshroute/testing`
 * cover the router's needs; these record exactly what the agent did).
 */
import { createHash } from 'node:crypto';
import type {
  AgentMesh,
  ArtifactInfo,
  ArtifactStore,
  BackendJob,
  BackendOutput,
  CapacityReport,
  Clock,
  ComputeBackend,
  WorkItem,
  WorkloadSpec,
  WorkResult,
} from '@meshroute/mesh';

/** An AgentMesh that records heartbeats and lets the test deliver work. */
export function recordingAgentMesh() {
  const handlers = new Map<string, (w: WorkItem) => Promise<WorkResult>>();
  const heartbeats: CapacityReport[] = [];
  const heartbeatListeners = new Set<(r: CapacityReport) => void>();
  let unserved = 0;
  const mesh: AgentMesh = {
    serveWork(agentId, handler) {
      handlers.set(agentId, handler);
      return async () => {
        handlers.delete(agentId);
        unserved++;
      };
    },
    async publishCapacity(report) {
      heartbeats.push(report);
      for (const l of heartbeatListeners) l(report);
    },
    async close() {},
  };
  return {
    mesh,
    heartbeats,
    unservedCount: () => unserved,
    /** Deliver work the way the transport would: to the subscriber of `agentId`, if any. */
    deliver(agentId: string, work: WorkItem): Promise<WorkResult> | undefined {
      return handlers.get(agentId)?.(work);
    },
    subscribed: (agentId: string) => handlers.has(agentId),
    /** Resolves with the next heartbeat matching `pred`. */
    nextHeartbeat(pred: (r: CapacityReport) => boolean = () => true): Promise<CapacityReport> {
      return new Promise((resolve) => {
        const l = (r: CapacityReport) => {
          if (pred(r)) {
            heartbeatListeners.delete(l);
            resolve(r);
          }
        };
        heartbeatListeners.add(l);
      });
    },
  };
}

/** A content-addressed in-memory artifact store that counts reads; `corrupt` serves wrong bytes. */
export function countingArtifactStore() {
  const blobs = new Map<string, Uint8Array>();
  let gets = 0;
  const store: ArtifactStore = {
    async put(name, bytes): Promise<ArtifactInfo> {
      const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      blobs.set(digest, bytes);
      return { digest, sizeBytes: bytes.byteLength, name };
    },
    async get(digest) {
      gets++;
      return blobs.get(digest);
    },
    async has(digest) {
      return blobs.has(digest);
    },
  };
  return {
    store,
    gets: () => gets,
    corrupt(digest: string, bytes: Uint8Array) {
      blobs.set(digest, bytes);
    },
  };
}

/** A clock whose time moves only when the test says so. */
export function manualClock(startMs = 1_700_000_000_000) {
  let now = 0;
  let nextId = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const clock: Clock = {
    now: () => startMs + now,
    monotonicMs: () => now,
    setTimeout(fn, delayMs) {
      const id = nextId++;
      timers.set(id, { at: now + delayMs, fn });
      return () => timers.delete(id);
    },
  };
  return {
    clock,
    /** Move time forward, firing due timers in order. */
    advance(ms: number) {
      const target = now + ms;
      for (;;) {
        let due: [number, { at: number; fn: () => void }] | undefined;
        for (const e of timers) if (e[1].at <= target && (!due || e[1].at < due[1].at)) due = e;
        if (!due) break;
        timers.delete(due[0]);
        now = Math.max(now, due[1].at);
        due[1].fn();
      }
      now = target;
    },
    pendingTimers: () => timers.size,
  };
}

/** A backend whose behaviour the test scripts per job. */
export function scriptedBackend(
  run: (job: BackendJob) => Promise<BackendOutput> | BackendOutput = (job) => ({
    json: { echo: new TextDecoder().decode(job.input) },
    contentType: 'application/json',
    executionMs: 1,
  }),
): ComputeBackend & { jobs: BackendJob[]; setRun(fn: typeof run): void } {
  let impl = run;
  const jobs: BackendJob[] = [];
  return {
    kind: 'wasm',
    jobs,
    setRun(fn) {
      impl = fn;
    },
    facts: () => ({ engine: 'scripted', engineVersion: '1.0' }),
    async run(job) {
      jobs.push(job);
      return impl(job);
    },
    async close() {},
  };
}

/** A valid workload spec with a wasm artifact of `digest`. */
export function workloadSpec(name: string, digest: string, overrides: Partial<WorkloadSpec> = {}): WorkloadSpec {
  return {
    schema: 'meshroute.workload/v1',
    name,
    version: '1.0.0',
    artifacts: { wasm: { digest, name: `${name}.wasm`, options: {} } },
    limits: { timeoutMs: 1_000, memoryBytes: 16 * 1024 * 1024, outputBytes: 1024 },
    capabilities: [],
    ...overrides,
  };
}

let seq = 0;
/** A valid work item for `agentId`. */
export function workItem(
  agentId: string,
  workload: string,
  data: unknown = 'hello',
  extra: Partial<WorkItem> = {},
): WorkItem {
  seq++;
  return {
    schema: 'meshroute.work/v1',
    workId: `w-${seq}`,
    attempt: 1,
    decisionId: `d-${seq}`,
    routerId: 'router-1',
    agentId,
    workload,
    event: { specversion: '1.0', id: `e-${seq}`, source: '/test', type: 'test.job', data },
    dispatchedAtMs: 0,
    timeoutMs: 10_000,
    ...extra,
  };
}

/** A promise with its resolve function, for latches. */
export function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
