/**
 * Ports: the interfaces engines (router, agent) talk to. Adapters live in their own packages
 * (`transport-nats`, `store-redis`, ...); in-memory fakes in `@meshroute/testing` pass the same
 * conformance suites.
 */
import type { ErrorInfo } from './errors.js';
import type {
  Backend,
  CapacityReport,
  DeadLetterRecord,
  DecisionRecord,
  WorkItem,
  WorkloadSpec,
  WorkResult,
} from './schemas.js';

/** Something that can be stopped. */
export interface Disposable {
  /** Release resources. Idempotent. */
  close(): Promise<void>;
}

/** A cancel handle returned by {@link Clock.setTimeout}. */
export type CancelTimer = () => void;

/** Time, injectable for tests. */
export interface Clock {
  /** Wall-clock time, epoch milliseconds. */
  now(): number;
  /** A monotonic high-resolution time in milliseconds (for durations). */
  monotonicMs(): number;
  /** Call `fn` after `delayMs`. Returns a function that cancels it. */
  setTimeout(fn: () => void, delayMs: number): CancelTimer;
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimeout(fn, delayMs) {
    const t = setTimeout(fn, delayMs);
    t.unref?.();
    return () => clearTimeout(t);
  },
};

/** Structured fields attached to a log line. */
export type LogFields = Record<string, unknown>;

/** Logger port. Libraries log through this only; `cli` picks pino. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

/** A logger that drops everything. The default of every library. */
export const noopLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return noopLogger;
  },
};

/** The outcome of claiming an idempotency key. */
export type IdempotencyClaim =
  | { kind: 'claimed' }
  | {
      kind: 'in-progress';
      ownerId: string;
      /**
       * How long the owner's claim still lasts, ms (when the store can tell): a router that sees
       * another owner's claim hands the event back for at least this long, so that the claim of
       * a router that died has expired when the event comes again.
       */
      expiresInMs?: number;
    }
  | { kind: 'completed'; result: StoredOutcome };

/** A terminal outcome recorded for an idempotency key. */
export interface StoredOutcome {
  outcome: 'succeeded' | 'failed' | 'dead-lettered';
  /** The result message, when there was one. */
  result?: WorkResult;
  /** The error, when failed or dead-lettered. */
  error?: ErrorInfo;
  /** Epoch ms the outcome was recorded. */
  recordedAtMs: number;
  /** The decision that routed the attempt this outcome came from (answered again on a replay). */
  decisionId?: string;
  /** The agent that ran it, as it was then (it may have left the mesh by the time of a replay). */
  agent?: { id: string; region: string; jurisdiction: string };
  /** The event's tenant (an outcome is only replayed to its own tenant). */
  tenant?: string;
  /**
   * Epoch ms the producer was answered with this outcome; a redelivery of an answered event is
   * acknowledged without answering again. Absent until the answer went out.
   */
  answeredAtMs?: number;
  /** The reply subject that answer went to (a redelivery to another inbox is a new request: answered). */
  answeredReplyTo?: string;
}

/** Result of a budget or rate-limit check. */
export interface QuotaDecision {
  allowed: boolean;
  /** What is left in the window after this call (units of the quota). */
  remaining: number;
  /** When allowed is false: how long until the window frees enough. */
  retryAfterMs: number;
}

/**
 * Shared router state: idempotency keys, tenant cost budgets, rate limits. `memoryStateStore`
 * serves one router; `redisStateStore` is shared by several.
 */
export interface StateStore extends Disposable {
  /**
   * Claim `key` for `ownerId` for `ttlMs`. Returns `claimed` the first time, `in-progress` while
   * another owner holds it, and `completed` once an outcome was recorded.
   */
  claim(key: string, ownerId: string, ttlMs: number): Promise<IdempotencyClaim>;
  /** Record the terminal outcome for a claimed key; keeps it for `ttlMs`. */
  complete(key: string, outcome: StoredOutcome, ttlMs: number): Promise<void>;
  /** Drop a claim without an outcome (so a redelivery can run again). Only the owner may release. */
  release(key: string, ownerId: string): Promise<void>;
  /** Read the recorded outcome of a key, if any. */
  outcome(key: string): Promise<StoredOutcome | undefined>;
  /**
   * Atomically spend `amount` (micro-units, integer) of `tenant`'s budget `limit` for the window
   * of `windowMs`. Never overspends under concurrency.
   */
  spend(tenant: string, amount: number, limit: number, windowMs: number): Promise<QuotaDecision>;
  /**
   * Fixed-window rate limit: `count` hits (default 1) on `key` at once, at most `limit` per
   * `windowMs`. Refused hits count too.
   */
  hit(key: string, limit: number, windowMs: number, count?: number): Promise<QuotaDecision>;
  /** Whether the store can be reached now. */
  healthy(): Promise<boolean>;
}

/** Metadata of a stored artifact. */
export interface ArtifactInfo {
  /** `sha256:<hex>`. */
  digest: string;
  sizeBytes: number;
  /** Human name (e.g. `checksum.wasm`). */
  name: string;
}

/** Content-addressed artifact storage (a NATS Object Store bucket in production). */
export interface ArtifactStore {
  /** Store bytes; returns their digest. Idempotent. */
  put(name: string, bytes: Uint8Array): Promise<ArtifactInfo>;
  /** The bytes for a digest, verified, or `undefined` when missing. */
  get(digest: string): Promise<Uint8Array | undefined>;
  /** Whether the digest is stored. */
  has(digest: string): Promise<boolean>;
}

/** One event delivered from ingress, to be acknowledged when its work reaches a terminal state. */
export interface IngressDelivery {
  /** The raw message: binding headers and body (the router decodes and validates). */
  headers: ReadonlyMap<string, string>;
  body: Uint8Array;
  /** Where the producer waits for the outcome, if anywhere. */
  replyTo: string | undefined;
  /** How often this message was delivered before (0 the first time). */
  redeliveryCount: number;
  /**
   * How many more times the source delivers this message if it is handed back (`nak`, or left
   * unsettled past the ack wait): `0` on the last delivery, after which a hand-back loses it
   * (JetStream's `max_deliver`). `undefined` when the source redelivers without limit.
   */
  deliveriesLeft?: number | undefined;
  /**
   * The edge that accepted the event already counted it against its tenant's rate limit (the
   * router's HTTP ingress publishes such events on `admittedIngressSubject`); the router counts
   * the others.
   */
  admitted?: boolean | undefined;
  /** Done: never deliver again. */
  ack(): Promise<void>;
  /** Not done: deliver again after `delayMs`. */
  nak(delayMs?: number): void;
  /** Still working: reset the redelivery timer. */
  working(): void;
  /** Poison: never deliver again, without success. */
  term(reason: string): void;
}

/** Source of ingress events (a JetStream durable consumer in production). */
export interface EventSource extends Disposable {
  /** Start delivering; `handler` is called for each delivery, at most `maxInFlight` at a time. */
  start(handler: (delivery: IngressDelivery) => Promise<void>): Promise<void>;
}

/** The router's view of the mesh: dispatch work, watch capacity, publish outcomes. */
export interface Mesh extends Disposable {
  /**
   * Send `work` to its agent and wait for the result.
   * @throws TimeoutError after `timeoutMs`; MeshError `AGENT_REJECTED` when no agent answers
   */
  dispatch(work: WorkItem, options: { timeoutMs: number; signal?: AbortSignal }): Promise<WorkResult>;
  /** Subscribe to agents' heartbeats. Returns a function that unsubscribes. */
  onCapacity(handler: (report: CapacityReport) => void): () => void;
  /** Last known heartbeats (from the KV snapshot) for a starting router. */
  snapshotCapacity(): Promise<CapacityReport[]>;
  /** Store a heartbeat in the snapshot. */
  saveCapacity(report: CapacityReport): Promise<void>;
  /** Publish a result to the results stream. */
  publishResult(result: WorkResult, tenant: string | undefined): Promise<void>;
  /** Publish a decision record to the decisions stream. */
  publishDecision(record: DecisionRecord): Promise<void>;
  /** Publish a dead letter to the dead-letter stream. */
  publishDeadLetter(record: DeadLetterRecord): Promise<void>;
  /** Answer a producer waiting at `replyTo`. */
  reply(replyTo: string, body: Uint8Array, headers?: Record<string, string>): Promise<void>;
}

/** The agent's view of the mesh: receive its own work, announce capacity. */
export interface AgentMesh extends Disposable {
  /**
   * Receive the work addressed to `agentId`; the handler's result is the reply.
   * Returns a function that stops receiving (in-flight handlers still answer).
   */
  serveWork(agentId: string, handler: (work: WorkItem) => Promise<WorkResult>): () => Promise<void>;
  /** Publish a heartbeat. */
  publishCapacity(report: CapacityReport): Promise<void>;
}

/** One job for a backend: the workload, its artifact bytes and the input. */
export interface BackendJob {
  /** The registered workload. */
  workload: WorkloadSpec;
  /** The artifact for this backend, digest already verified. */
  artifact: Uint8Array;
  /** The job input (the event's data as bytes). */
  input: Uint8Array;
  /** The input's content type, when known. */
  contentType: string | undefined;
  /** Aborted when the job must stop (timeout, drain). */
  signal: AbortSignal;
}

/** What a backend returns for a job. */
export interface BackendOutput {
  /** JSON output, if the workload's output is JSON (quantum counts, ONNX outputs, parsed stdout). */
  json?: unknown;
  /** Raw output bytes (WebAssembly stdout). */
  bytes?: Uint8Array;
  /** Content type of the output. */
  contentType: string;
  /** Guest execution time, ms. */
  executionMs: number;
}

/** A compute backend (`backend-wasm`, `backend-gpu`, `backend-quantum`) as the agent sees it. */
export interface ComputeBackend extends Disposable {
  /** Which backend this is. */
  readonly kind: Backend;
  /** Facts for the heartbeat: engine version, GPU model and memory, maximum qubits, ... */
  facts(): Record<string, unknown>;
  /**
   * Run one job. Never throws for a bad workload: rejects with a {@link MeshError} whose code says
   * why (`WORKLOAD_FAILED`, `LIMIT_EXCEEDED`, `TIMEOUT`, ...); the backend keeps serving.
   */
  run(job: BackendJob): Promise<BackendOutput>;
}
