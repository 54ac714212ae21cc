/**
 * Shared pieces of the router benchmarks: the shipped policy bundle, a core-NATS ingress for the
 * router (bench-only glue: an EventSource over a queue subscription, replies on the request's
 * inbox), and the no-op agent's messages.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { CapacityReport, EventSource, IngressDelivery, WorkItem, WorkResult } from '@meshroute/mesh';
import { loadBundle, type PolicyBundle } from '@meshroute/policy';
import { type MeshConnection, mapFromHeaders } from '@meshroute/transport-nats';

/** The core-NATS subject the benchmarks' routers take requests on. */
export const BENCH_INGRESS_SUBJECT = 'bench.router.ingress';

/** Load the bundle from the repository's `policies/`. */
export function shippedBundle(root: string): PolicyBundle {
  const files: { path: string; content: string }[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ya?ml|json)$/.test(e.name))
        files.push({ path: relative(join(root, 'policies'), p), content: readFileSync(p, 'utf8') });
    }
  };
  walk(join(root, 'policies'));
  const loaded = loadBundle(files, { nowMs: Date.now() });
  if (!loaded.bundle) throw new Error(`policies: ${JSON.stringify(loaded.errors)}`);
  return loaded.bundle;
}

/** An EventSource over a core NATS queue subscription (requests answered on their inbox). */
export function coreNatsSource(conn: MeshConnection, subject: string): EventSource {
  let sub: ReturnType<MeshConnection['nc']['subscribe']> | undefined;
  return {
    async start(handler) {
      sub = conn.nc.subscribe(subject, {
        queue: 'routers',
        callback: (_err, m) => {
          const delivery: IngressDelivery = {
            headers: m.headers ? mapFromHeaders(m.headers) : new Map(),
            body: m.data,
            replyTo: m.reply,
            redeliveryCount: 0,
            ack: async () => {},
            nak: () => {},
            working: () => {},
            term: () => {},
          };
          void handler(delivery);
        },
      });
    },
    async close() {
      sub?.unsubscribe();
    },
  };
}

/** The no-op agent's answer. */
export function noopResult(w: WorkItem): WorkResult {
  return {
    schema: 'meshroute.result/v1',
    workId: w.workId,
    eventId: w.event.id,
    eventSource: w.event.source,
    agentId: w.agentId,
    attempt: w.attempt,
    ok: true,
    output: { ok: true },
    queueMs: 0,
    executionMs: 0,
    finishedAtMs: Date.now(),
  };
}

/** A heartbeat of the no-op agent. */
export function noopCapacity(agentId: string, slots: number, seq: number): CapacityReport {
  return {
    schema: 'meshroute.capacity/v1',
    agentId,
    seq,
    instanceId: `${agentId}-bench`,
    sentAtMs: Date.now(),
    heartbeatIntervalMs: 1000,
    status: 'ready',
    backends: ['wasm'],
    region: 'eu-central',
    jurisdiction: 'DE',
    carbonIntensity: 300,
    carbonSource: 'fixed',
    latencyP50Ms: 0.1,
    latencyP99Ms: 0.5,
    slots,
    freeSlots: slots,
    inFlight: 0,
    queueDepth: 0,
    costPerJob: '0',
    labels: {},
    versions: {},
    workloads: [],
    facts: {},
  };
}
