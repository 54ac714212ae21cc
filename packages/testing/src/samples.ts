/**
 * Valid sample messages for tests: each builder returns a message that passes its schema, with
 * overrides merged on top.
 */
import type { CapacityReport, DeadLetterRecord, DecisionRecord, WorkItem, WorkResult } from '@meshroute/mesh';

/** A valid `meshroute.capacity/v1` heartbeat. */
export function sampleCapacityReport(overrides: Partial<CapacityReport> = {}): CapacityReport {
  return {
    schema: 'meshroute.capacity/v1',
    agentId: 'edge-eu-1',
    seq: 1,
    instanceId: 'instance-1',
    sentAtMs: 1_700_000_000_000,
    heartbeatIntervalMs: 1_000,
    status: 'ready',
    backends: ['wasm'],
    region: 'eu-west',
    jurisdiction: 'DE',
    carbonIntensity: 120,
    carbonSource: 'fixed',
    latencyP50Ms: 2,
    latencyP99Ms: 9,
    slots: 4,
    freeSlots: 4,
    inFlight: 0,
    queueDepth: 0,
    costPerJob: '0.0001',
    labels: {},
    versions: { agent: '0.1.0' },
    workloads: [],
    facts: {},
    ...overrides,
  };
}

/** A valid `meshroute.work/v1` item. */
export function sampleWorkItem(overrides: Partial<WorkItem> = {}): WorkItem {
  return {
    schema: 'meshroute.work/v1',
    workId: 'work-1',
    attempt: 1,
    decisionId: 'decision-1',
    routerId: 'router-1',
    agentId: 'edge-eu-1',
    workload: 'checksum',
    event: { specversion: '1.0', id: 'evt-1', source: '/tests', type: 'com.example.test', data: { n: 1 } },
    dispatchedAtMs: 1_700_000_000_000,
    timeoutMs: 5_000,
    ...overrides,
  };
}

/** A valid successful `meshroute.result/v1` answering `work`. */
export function sampleResult(work: WorkItem, overrides: Partial<WorkResult> = {}): WorkResult {
  return {
    schema: 'meshroute.result/v1',
    workId: work.workId,
    eventId: work.event.id,
    eventSource: work.event.source,
    agentId: work.agentId,
    attempt: work.attempt,
    ok: true,
    output: { echoed: work.event.data ?? null },
    contentType: 'application/json',
    queueMs: 0,
    executionMs: 1,
    finishedAtMs: 1_700_000_000_010,
    ...overrides,
  };
}

/** A valid `meshroute.decision/v1` record. */
export function sampleDecisionRecord(overrides: Partial<DecisionRecord> = {}): DecisionRecord {
  return {
    schema: 'meshroute.decision/v1',
    decisionId: 'decision-1',
    time: '2025-01-01T00:00:00.000Z',
    routerId: 'router-1',
    bundle: { digest: 'sha256:0', policies: [{ name: 'residency', version: 1, hash: 'h', mode: 'enforce' }] },
    engine: { name: 'meshroute-policy', version: '0.1.0' },
    event: { id: 'evt-1', type: 'com.example.test', source: '/tests', attributes: {} },
    candidates: 1,
    registryRevision: 1,
    excluded: [],
    topK: [{ agentId: 'edge-eu-1', score: 1 }],
    chosen: { agentId: 'edge-eu-1', region: 'eu-west', jurisdiction: 'DE' },
    outcome: 'routed',
    shadow: [],
    evaluationUs: 12,
    ...overrides,
  };
}

/** A valid `meshroute.deadletter/v1` record. */
export function sampleDeadLetter(overrides: Partial<DeadLetterRecord> = {}): DeadLetterRecord {
  return {
    schema: 'meshroute.deadletter/v1',
    eventId: 'evt-1',
    eventSource: '/tests',
    reason: 'NO_ELIGIBLE_AGENT',
    error: { code: 'NO_ELIGIBLE_AGENT', message: 'no eligible agent for event evt-1', retryable: false },
    attempts: 0,
    decisionIds: ['decision-1'],
    timeMs: 1_700_000_000_000,
    ...overrides,
  };
}
