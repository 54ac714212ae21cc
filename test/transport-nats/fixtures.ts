/** Valid mesh messages for the tests of this package. */
import type {
  CapacityReport,
  CloudEventJson,
  DeadLetterRecord,
  DecisionRecord,
  WorkItem,
  WorkloadSpec,
  WorkResult,
} from '@meshroute/mesh';
import { sampleDeadLetter as sampleDeadLetterRecord, sampleResult } from '@meshroute/testing';

let counter = 0;
/** A fresh subject prefix, so each test provisions its own streams and buckets. */
export function uniquePrefix(): string {
  counter++;
  return `t${process.pid}x${counter}`;
}

export function sampleEvent(over: Partial<CloudEventJson> = {}): CloudEventJson {
  return {
    specversion: '1.0',
    id: `evt-${++counter}`,
    source: '/sensors/eu/7',
    type: 'com.example.reading',
    datacontenttype: 'application/json',
    time: '2025-01-02T03:04:05.678Z',
    subject: 'room 5 "east" – Ünïcode',
    residency: 'eu',
    latencybudgetms: 50,
    data: { celsius: 21.5, tags: ['a', 'b'] },
    ...over,
  };
}

export function sampleCapacity(agentId: string, over: Partial<CapacityReport> = {}): CapacityReport {
  return {
    schema: 'meshroute.capacity/v1',
    agentId,
    seq: 1,
    instanceId: 'inst-1',
    sentAtMs: 1_700_000_000_000,
    heartbeatIntervalMs: 1_000,
    status: 'ready',
    backends: ['wasm'],
    region: 'eu-west',
    jurisdiction: 'DE',
    carbonIntensity: 120,
    carbonSource: 'fixed',
    latencyP50Ms: 3,
    latencyP99Ms: 9,
    slots: 4,
    freeSlots: 4,
    inFlight: 0,
    queueDepth: 0,
    costPerJob: '0.001',
    labels: { tier: 'edge' },
    versions: { agent: '0.1.0' },
    workloads: [],
    facts: {},
    ...over,
  };
}

export function sampleWork(agentId: string, over: Partial<WorkItem> = {}): WorkItem {
  return {
    schema: 'meshroute.work/v1',
    workId: `work-${++counter}`,
    attempt: 1,
    decisionId: `dec-${counter}`,
    routerId: 'router-1',
    agentId,
    workload: 'checksum',
    event: sampleEvent(),
    dispatchedAtMs: 1_700_000_000_000,
    timeoutMs: 1_000,
    ...over,
  };
}

export function resultFor(work: WorkItem, over: Partial<WorkResult> = {}): WorkResult {
  return sampleResult(work, { output: { sum: 42 }, queueMs: 1, executionMs: 2, ...over });
}

export function sampleDecision(tenant: string | undefined): DecisionRecord {
  return {
    schema: 'meshroute.decision/v1',
    decisionId: `dec-${++counter}`,
    time: '2025-01-02T03:04:05.678Z',
    routerId: 'router-1',
    bundle: { digest: 'sha256:abc', policies: [{ name: 'residency', version: 1, hash: 'h', mode: 'enforce' }] },
    engine: { name: 'meshroute-policy', version: '0.1.0' },
    event: { id: 'e1', type: 't', source: '/s', ...(tenant ? { tenant } : {}), attributes: {} },
    candidates: 1,
    registryRevision: 3,
    excluded: [],
    topK: [{ agentId: 'a1', score: 1 }],
    chosen: { agentId: 'a1', region: 'eu-west', jurisdiction: 'DE' },
    outcome: 'routed',
    shadow: [],
    evaluationUs: 12,
  };
}

export function sampleDeadLetter(tenant: string | undefined): DeadLetterRecord {
  return sampleDeadLetterRecord(tenant ? { tenant } : {});
}

export function sampleWorkload(name: string, version = '1.0.0'): WorkloadSpec {
  return {
    schema: 'meshroute.workload/v1',
    name,
    version,
    artifacts: { wasm: { digest: `sha256:${'a'.repeat(64)}`, name: `${name}.wasm`, options: {} } },
    limits: { timeoutMs: 1_000, memoryBytes: 1_048_576, outputBytes: 65_536 },
    capabilities: ['stdin', 'stdout'],
  };
}

/** A promise with its resolve function, for latches in tests. */
export function latch<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
