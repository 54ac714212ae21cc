/**
 * Test support for the router's unit tests: an in-process {@link Mesh} with scriptable agents,
 * capacity report builders and a small policy bundle that follows the `@meshroute/policy`
 * contract (residency, carbon ceiling, workload; ranked by carbon then latency).
 */
import {
  type CapacityReport,
  type Clock,
  type DeadLetterRecord,
  type DecisionRecord,
  type IngressDelivery,
  type Mesh,
  MeshError,
  parseIntent,
  residencyAllows,
  TimeoutError,
  type WorkItem,
  type WorkResult,
} from '@meshroute/mesh';
import type { AgentView, PlacementPolicy, PolicyDecision, RouterEvent } from '../policy-port.js';

/** A scriptable agent behaviour: return a result, throw, or never answer (`'hang'`). */
export type FakeAgentHandler = (work: WorkItem) => Promise<WorkResult | 'hang'>;

/** Build a successful result for a work item. */
export function okResult(work: WorkItem, output: unknown = { ok: true }): WorkResult {
  return {
    schema: 'meshroute.result/v1',
    workId: work.workId,
    eventId: work.event.id,
    eventSource: work.event.source,
    agentId: work.agentId,
    attempt: work.attempt,
    ok: true,
    output,
    queueMs: 0,
    executionMs: 1,
    finishedAtMs: work.dispatchedAtMs,
  };
}

/** An in-process mesh recording everything the router publishes. */
export class FakeMesh implements Mesh {
  readonly agents = new Map<string, FakeAgentHandler>();
  readonly dispatched: WorkItem[] = [];
  readonly results: WorkResult[] = [];
  readonly decisions: DecisionRecord[] = [];
  readonly deadLetters: DeadLetterRecord[] = [];
  readonly replies: { replyTo: string; body: unknown; headers: Record<string, string> | undefined }[] = [];
  snapshot: CapacityReport[] = [];
  readonly #capacity = new Set<(r: CapacityReport) => void>();
  readonly #clock: Clock;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  async dispatch(work: WorkItem, options: { timeoutMs: number; signal?: AbortSignal }): Promise<WorkResult> {
    this.dispatched.push(work);
    const handler = this.agents.get(work.agentId);
    if (!handler) {
      throw new MeshError('AGENT_REJECTED', `no agent ${work.agentId}`, { retryable: true });
    }
    return new Promise<WorkResult>((resolve, reject) => {
      const cancel = this.#clock.setTimeout(
        () => reject(new TimeoutError(`dispatch to ${work.agentId}`, options.timeoutMs)),
        options.timeoutMs,
      );
      options.signal?.addEventListener('abort', () => {
        cancel();
        reject(new MeshError('AGENT_LOST', 'aborted', { retryable: true }));
      });
      handler(work).then(
        (r) => {
          if (r === 'hang') return;
          cancel();
          resolve(r);
        },
        (err: unknown) => {
          cancel();
          reject(err);
        },
      );
    });
  }

  onCapacity(handler: (report: CapacityReport) => void): () => void {
    this.#capacity.add(handler);
    return () => this.#capacity.delete(handler);
  }

  /** Deliver a heartbeat to the router. */
  heartbeat(report: CapacityReport): void {
    for (const h of this.#capacity) h(report);
  }

  async snapshotCapacity(): Promise<CapacityReport[]> {
    return this.snapshot;
  }
  async saveCapacity(report: CapacityReport): Promise<void> {
    this.snapshot.push(report);
  }
  async publishResult(result: WorkResult): Promise<void> {
    this.results.push(result);
  }
  async publishDecision(record: DecisionRecord): Promise<void> {
    this.decisions.push(record);
  }
  async publishDeadLetter(record: DeadLetterRecord): Promise<void> {
    this.deadLetters.push(record);
  }
  async reply(replyTo: string, body: Uint8Array, headers?: Record<string, string>): Promise<void> {
    this.replies.push({ replyTo, body: JSON.parse(new TextDecoder().decode(body)), headers });
  }
  async close(): Promise<void> {}
}

let seq = 0;

/** A capacity report with sensible defaults. */
export function capacity(agentId: string, overrides: Partial<CapacityReport> = {}): CapacityReport {
  return {
    schema: 'meshroute.capacity/v1',
    agentId,
    seq: ++seq,
    instanceId: `${agentId}-1`,
    sentAtMs: 0,
    heartbeatIntervalMs: 1000,
    status: 'ready',
    backends: ['wasm'],
    region: 'eu-west',
    jurisdiction: 'DE',
    carbonIntensity: 300,
    carbonSource: 'fixed',
    latencyP50Ms: 5,
    latencyP99Ms: 10,
    slots: 2,
    freeSlots: 2,
    inFlight: 0,
    queueDepth: 0,
    costPerJob: '0.001',
    labels: {},
    versions: {},
    workloads: [],
    facts: {},
    ...overrides,
  };
}

/** A CloudEvent with intent attributes. */
export function cloudEvent(id: string, attributes: Record<string, unknown> = {}): RouterEvent {
  return {
    specversion: '1.0',
    id,
    source: '/test',
    type: 'com.example.job',
    datacontenttype: 'application/json',
    workload: 'echo',
    data: { n: 1 },
    ...attributes,
  };
}

/** An in-memory ingress delivery (structured mode) that records what the router did with it. */
export interface RecordingDelivery extends IngressDelivery {
  acked: number;
  naks: (number | undefined)[];
  terms: string[];
}

/** Wrap an event into a structured-mode delivery. */
export function delivery(event: RouterEvent | string, replyTo?: string): RecordingDelivery {
  const body = new TextEncoder().encode(typeof event === 'string' ? event : JSON.stringify(event));
  const d: RecordingDelivery = {
    headers: new Map([['content-type', 'application/cloudevents+json']]),
    body,
    replyTo,
    redeliveryCount: 0,
    acked: 0,
    naks: [],
    terms: [],
    async ack() {
      d.acked++;
    },
    nak(delayMs) {
      d.naks.push(delayMs);
    },
    working() {},
    term(reason) {
      d.terms.push(reason);
    },
  };
  return d;
}

/**
 * A small policy bundle satisfying the policy contract: excludes agents outside the residency,
 * above the carbon ceiling or without the workload; ranks by carbon intensity (lower first), then
 * estimated latency, ties by agent id.
 */
export function testPolicy(rank: 'carbon' | 'latency' = 'carbon'): PlacementPolicy & { calls: number } {
  const p = {
    digest: `sha256:test-${rank}`,
    calls: 0,
    decide(
      event: RouterEvent,
      agents: readonly AgentView[],
      options: { decisionId?: string; nowMs?: number; registryRevision?: number } = {},
    ): PolicyDecision {
      p.calls++;
      const intent = parseIntent(event);
      const excluded: { agentId: string; rules: string[] }[] = [];
      const eligible: AgentView[] = [];
      for (const a of agents) {
        const rules: string[] = [];
        if (!residencyAllows(intent, a.jurisdiction)) rules.push('residency');
        if (intent.carbonMax !== undefined && a.carbonIntensity > intent.carbonMax) rules.push('carbon');
        if (intent.workload && a.workloads.length > 0 && !a.workloads.includes(intent.workload)) rules.push('workload');
        if (rules.length > 0) excluded.push({ agentId: a.id, rules });
        else eligible.push(a);
      }
      eligible.sort((x, y) =>
        rank === 'carbon'
          ? x.carbonIntensity - y.carbonIntensity ||
            x.estimatedLatencyMs - y.estimatedLatencyMs ||
            (x.id < y.id ? -1 : 1)
          : x.estimatedLatencyMs - y.estimatedLatencyMs || (x.id < y.id ? -1 : 1),
      );
      const ranking = eligible.map((a, i) => ({ agentId: a.id, score: 1000 - i }));
      const chosen = eligible[0];
      const record: DecisionRecord = {
        schema: 'meshroute.decision/v1',
        decisionId: options.decisionId ?? 'd',
        time: new Date(options.nowMs ?? 0).toISOString(),
        bundle: { digest: p.digest, policies: [] },
        engine: { name: 'test', version: '0' },
        event: { id: event.id, type: event.type, source: event.source, attributes: {} },
        candidates: agents.length,
        registryRevision: options.registryRevision ?? 0,
        excluded,
        topK: ranking.slice(0, 3),
        chosen: chosen ? { agentId: chosen.id, region: chosen.region, jurisdiction: chosen.jurisdiction } : null,
        outcome: chosen ? 'routed' : 'no-eligible-agent',
        shadow: [],
        evaluationUs: 1,
      };
      return { outcome: chosen ? 'routed' : 'no-eligible-agent', chosen, ranking, excluded, record };
    },
  };
  return p;
}
