/**
 * In-process mesh participants for the multi-process suites in `test/`: NATS agents (own
 * connections, real heartbeats, request/reply work), real router engines over NATS with the
 * shipped policies, and producers that publish into the JetStream ingress with a reply inbox.
 * Servers come from `@meshroute/testing`; this module only builds what talks to them.
 *
 * @example
 * ```ts
 * const agent = await startAgent(nats.url, 'de-1', { jurisdiction: 'DE' });
 * const router = await startRouter(nats.url, 'r-1');
 * const producer = await startProducer(nats.url);
 * const { event } = eventFactory('/it/example');
 * const e = event({ residency: 'eu' });
 * await producer.publish(e);
 * ```
 * @module
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CapacityReport, CloudEventJson, StateStore, WorkResult } from '@meshroute/mesh';
import { meshNames } from '@meshroute/mesh';
import { createPolicyHolder, type PolicyHolder } from '@meshroute/policy';
import {
  createRouter,
  memoryStateStore,
  type PolicySource,
  type Router,
  type RouterAnswer,
  type RouterOptions,
  type WorkloadCatalog,
} from '@meshroute/router';
import {
  connectMesh,
  type MeshConnection,
  type NatsConnectOptions,
  type NatsEventSourceOptions,
  natsAgentMesh,
  natsEventSource,
  natsMesh,
  publishEvent,
} from '@meshroute/transport-nats';

/** The repository root (this file lives in `test/support/`). */
const root = fileURLToPath(new URL('../..', import.meta.url));

/** How often a test agent heartbeats its capacity. */
export const TEST_HEARTBEAT_INTERVAL_MS = 200;

/** Connection settings that follow a server through restarts and failovers without giving up. */
export const RECONNECT_FOREVER: ConnectionOverrides = { maxReconnectAttempts: -1, reconnectTimeWaitMs: 100 };

/** Connection settings a fixture passes on to `connectMesh` (the servers and name are its own). */
export type ConnectionOverrides = Omit<NatsConnectOptions, 'servers' | 'name'>;

/** The shipped policy files under `policies/` (YAML and JSON), paths relative to that folder. */
export function policyFiles(): { path: string; content: string }[] {
  const dir = join(root, 'policies');
  const out: { path: string; content: string }[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ya?ml|json)$/.test(e.name)) out.push({ path: relative(dir, p), content: readFileSync(p, 'utf8') });
    }
  };
  walk(dir);
  return out;
}

/** An in-process agent started by {@link startAgent}. */
export interface TestAgent {
  id: string;
  /** Ids of the events whose work this agent received, in arrival order. */
  served: string[];
  /** Like kill -9: heartbeats stop, in-flight work is never answered. */
  kill(): Promise<void>;
  /** Says it is leaving, stops serving work and closes its connection. */
  stop(): Promise<void>;
}

/** What a {@link startAgent} agent reports and how it works. */
export interface TestAgentOptions {
  /** ISO country code reported as the agent's jurisdiction; the region is `<code>-1`. */
  jurisdiction: string;
  /** @default 4 */
  slots?: number;
  /** Simulated duration of each job. @default 0 */
  workMs?: number;
  /** Reported carbon intensity (gCO2/kWh). @default 200 */
  carbon?: number;
  /** @default ['wasm'] */
  backends?: CapacityReport['backends'];
  /** Passed on to `connectMesh`. @default {} */
  connection?: ConnectionOverrides;
  /** Where the router's policies come from. @default a policy holder with the shipped policies */
  policies?: PolicySource;
  /** Router options over the quick-retry defaults below. */
  options?: RouterOptions;
}

/**
 * Starts an agent on its own NATS connection: it heartbeats a capacity report every
 * {@link TEST_HEARTBEAT_INTERVAL_MS} and answers every work item with a succeeded result that
 * echoes the event data (`output: { agent, echo }`).
 */
export async function startAgent(servers: string | string[], id: string, opts: TestAgentOptions): Promise<TestAgent> {
  const conn = await connectMesh({ servers, name: id, ...opts.connection });
  const mesh = natsAgentMesh(conn);
  const slots = opts.slots ?? 4;
  const instanceId = randomUUID();
  let inFlight = 0;
  let seq = 0;
  let dead = false;
  const served: string[] = [];
  const stopServing = mesh.serveWork(id, async (work): Promise<WorkResult> => {
    inFlight++;
    served.push(work.event.id);
    const started = Date.now();
    // Simulated job duration (the agent's work, not a test wait).
    if (opts.workMs) await new Promise((r) => setTimeout(r, opts.workMs));
    inFlight--;
    return {
      schema: 'meshroute.result/v1',
      workId: work.workId,
      eventId: work.event.id,
      eventSource: work.event.source,
      agentId: id,
      attempt: work.attempt,
      ok: true,
      output: { agent: id, echo: work.event.data ?? null },
      queueMs: 0,
      executionMs: Date.now() - started,
      finishedAtMs: Date.now(),
    };
  });
  const report = (status: CapacityReport['status']): CapacityReport => ({
    schema: 'meshroute.capacity/v1',
    agentId: id,
    seq: ++seq,
    instanceId,
    sentAtMs: Date.now(),
    heartbeatIntervalMs: TEST_HEARTBEAT_INTERVAL_MS,
    status,
    backends: opts.backends ?? ['wasm'],
    region: `${opts.jurisdiction.toLowerCase()}-1`,
    jurisdiction: opts.jurisdiction,
    carbonIntensity: opts.carbon ?? 200,
    carbonSource: 'fixed',
    latencyP50Ms: opts.workMs ?? 1,
    latencyP99Ms: (opts.workMs ?? 1) * 2,
    slots,
    freeSlots: Math.max(0, slots - inFlight),
    inFlight,
    queueDepth: 0,
    costPerJob: '0.001',
    labels: {},
    versions: { agent: 'test' },
    workloads: [],
    facts: {},
  });
  const beat = () => {
    if (!dead) mesh.publishCapacity(report('ready')).catch(() => undefined);
  };
  const timer = setInterval(beat, TEST_HEARTBEAT_INTERVAL_MS);
  beat();
  return {
    id,
    served,
    async kill() {
      dead = true;
      clearInterval(timer);
      await conn.close();
    },
    async stop() {
      if (dead) return;
      dead = true;
      clearInterval(timer);
      await mesh.publishCapacity(report('leaving')).catch(() => undefined);
      await stopServing();
      await conn.close();
    },
  };
}

/**
 * A store as one router process sees it: after `kill()` every call fails, like the calls of a
 * process that died (its claims stay behind until they expire; nothing is released or completed).
 * `close()` never closes the shared store.
 */
export function processView(inner: StateStore): { store: StateStore; kill(): void } {
  let dead = false;
  const guard = <T>(f: () => Promise<T>): Promise<T> => (dead ? Promise.reject(new Error('process is dead')) : f());
  return {
    kill: () => {
      dead = true;
    },
    store: {
      claim: (k, o, t) => guard(() => inner.claim(k, o, t)),
      complete: (k, out, t) => guard(() => inner.complete(k, out, t)),
      release: (k, o) => guard(() => inner.release(k, o)),
      outcome: (k) => guard(() => inner.outcome(k)),
      spend: (t, a, l, w) => guard(() => inner.spend(t, a, l, w)),
      hit: (k, l, w) => guard(() => inner.hit(k, l, w)),
      healthy: () => guard(() => inner.healthy()),
      close: async () => undefined,
    },
  };
}

/** A router engine started by {@link startRouter}. */
export interface TestRouter {
  router: Router;
  conn: MeshConnection;
  /** Like kill -9: the connection dies, nothing is acked or answered any more. */
  kill(): Promise<void>;
  /** Drains (up to 1 s) and closes its connection. */
  stop(): Promise<void>;
}

/** How a {@link startRouter} router is built. */
export interface TestRouterOptions {
  /** State store shared with other routers (each router sees it through {@link processView}). @default memoryStateStore() */
  store?: StateStore;
  /** Workload catalog for workload-aware placement. @default none */
  workloads?: WorkloadCatalog;
  /** Ingress consumer settings over `{ maxInFlight: 256, ackWaitMs: 2_000 }`. */
  eventSource?: NatsEventSourceOptions;
  /** Passed on to `connectMesh`. @default {} */
  connection?: ConnectionOverrides;
  /** Where the router's policies come from. @default a policy holder with the shipped policies */
  policies?: PolicySource;
  /** Router options over the quick-retry defaults below. */
  options?: RouterOptions;
}

/** A policy holder with the shipped policies active. */
export function shippedPolicies(): PolicyHolder {
  const holder = createPolicyHolder();
  const loaded = holder.propose(policyFiles(), { source: 'policies' });
  if (!loaded.ok) throw new Error(`shipped policies do not load: ${JSON.stringify(loaded.errors)}`);
  return holder;
}

/**
 * Starts the real router engine over its own NATS connection with the shipped policies, quick
 * retries (dispatch timeout 5 s, backoff 20-200 ms, 8 attempts, nak delay 200 ms, claim TTL 3 s).
 */
export async function startRouter(
  servers: string | string[],
  routerId: string,
  opts: TestRouterOptions = {},
): Promise<TestRouter> {
  const view = processView(opts.store ?? memoryStateStore());
  const conn = await connectMesh({ servers, name: routerId, ...opts.connection });
  const router = createRouter({
    mesh: natsMesh(conn, { routerId }),
    source: natsEventSource(conn, { maxInFlight: 256, ackWaitMs: 2_000, ...opts.eventSource }),
    store: view.store,
    policies: opts.policies ?? shippedPolicies(),
    routerId,
    ...(opts.workloads ? { workloads: opts.workloads } : {}),
    options: {
      dispatchTimeoutMs: 5_000,
      backoffBaseMs: 20,
      backoffMaxMs: 200,
      maxAttempts: 8,
      nakDelayMs: 200,
      claimTtlMs: 3_000,
      ...opts.options,
    },
  });
  await router.start();
  // As `meshroute router` does: after a NATS outage, give agents one loss window to re-announce.
  void (async () => {
    for await (const s of conn.status()) {
      if (s.type === 'reconnected') router.meshReconnected();
      if (s.type === 'closed') break;
    }
  })();
  let stopped = false;
  return {
    router,
    conn,
    async kill() {
      stopped = true;
      view.kill();
      await conn.close();
      await router.stop({ drainTimeoutMs: 0 });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await router.stop({ drainTimeoutMs: 1_000 });
      await conn.close();
    },
  };
}

/** A producer started by {@link startProducer}. */
export interface TestProducer {
  /** Every answer that arrived, by event id (more than one means an event was answered twice). */
  answers: Map<string, RouterAnswer[]>;
  /**
   * Publishes into the ingress with a reply subject in the producer's inbox; retries (up to 50
   * times, 200 ms apart) while the server is away, de-duplicated by Nats-Msg-Id (source+id).
   */
  publish(event: CloudEventJson): Promise<void>;
  close(): Promise<void>;
}

/** Starts a producer on its own NATS connection, collecting every answer sent to its inbox. */
export async function startProducer(
  servers: string | string[],
  opts: { connection?: ConnectionOverrides } = {},
): Promise<TestProducer> {
  const conn = await connectMesh({ servers, name: 'producer', ...opts.connection });
  const inbox = `${meshNames().replyPrefix}.producer-${randomUUID().slice(0, 8)}`;
  const answers = new Map<string, RouterAnswer[]>();
  conn.nc.subscribe(`${inbox}.>`, {
    callback: (_err, msg) => {
      const a = JSON.parse(new TextDecoder().decode(msg.data)) as RouterAnswer;
      const list = answers.get(a.id) ?? [];
      list.push(a);
      answers.set(a.id, list);
    },
  });
  return {
    answers,
    async publish(event: CloudEventJson) {
      // Retry publishes while the server restarts: de-duplicated by Nats-Msg-Id (source+id).
      for (let i = 0; ; i++) {
        try {
          await publishEvent(conn, event, { replyTo: `${inbox}.${event.id}` });
          return;
        } catch (err) {
          if (i >= 50) throw err;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    },
    close: () => conn.close(),
  };
}

/** Makes test events of one source, made by {@link eventFactory}. */
export interface EventFactory {
  /**
   * A JSON CloudEvent `com.example.job` for workload `echo` with a fresh id
   * (`ev-<pid>-<n>`) and data `{ n }`; `attrs` override or add attributes.
   */
  event(attrs?: Record<string, unknown>): CloudEventJson;
  /** How many events were made so far (the last `n`). */
  count(): number;
}

/** A factory of test events with the given CloudEvents `source`. */
export function eventFactory(source: string): EventFactory {
  let seq = 0;
  return {
    event: (attrs = {}) => ({
      specversion: '1.0',
      id: `ev-${process.pid}-${++seq}`,
      source,
      type: 'com.example.job',
      datacontenttype: 'application/json',
      workload: 'echo',
      data: { n: seq },
      ...attrs,
    }),
    count: () => seq,
  };
}
