/**
 * Router throughput with tracing on (100% sampling: a span per event, per decision and per
 * dispatch, batched to a real OTLP/HTTP exporter posting to a local sink) against tracing off, in
 * the same run, alternating blocks. Each block pushes events through the router engine (real
 * policy bundle, in-memory mesh whose agents answer at once) with 64 in flight.
 * Target: tracing costs at most 15% of throughput (per-event cost ratio <= 1/0.85 = 1.176).
 */

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type CapacityReport,
  type CloudEventJson,
  encodeNatsBinary,
  type IngressDelivery,
  type Mesh,
  type WorkItem,
  type WorkResult,
} from '@meshroute/mesh';
import { loadBundle } from '@meshroute/policy';
import { createRouter, memoryStateStore } from '@meshroute/router';
import { benchLine, percentiles, reportBench, sampleCapacityReport } from '@meshroute/testing';
import { startTelemetry } from '../src/telemetry.js';

const EVENTS_PER_BLOCK = 3_000;
const IN_FLIGHT = 64;
const ROUNDS = 8;

const policy = (name: string) => ({
  path: name,
  content: readFileSync(new URL(`../../../policies/${name}`, import.meta.url), 'utf8'),
});
const { bundle, errors } = loadBundle([
  policy('eu-residency.yaml'),
  policy('carbon.yaml'),
  policy('fixtures/agents.yaml'),
]);
if (!bundle) throw new Error(`policy bundle: ${JSON.stringify(errors)}`);

// The OTLP sink: accepts and drops (the exporter still serialises and posts every batch).
let exportedBatches = 0;
const sink = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    exportedBatches++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
});
await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
const sinkUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;

function instantMesh(): Mesh & { beat(r: CapacityReport): void } {
  let onCap: ((r: CapacityReport) => void) | undefined;
  const answer = (w: WorkItem): WorkResult => ({
    schema: 'meshroute.result/v1',
    workId: w.workId,
    eventId: w.event.id,
    eventSource: w.event.source,
    agentId: w.agentId,
    attempt: w.attempt,
    ok: true,
    output: { ok: true },
    queueMs: 0,
    executionMs: 1,
    finishedAtMs: Date.now(),
  });
  return {
    dispatch: async (w) => answer(w),
    onCapacity(h) {
      onCap = h;
      return () => {
        onCap = undefined;
      };
    },
    snapshotCapacity: async () => [],
    saveCapacity: async () => {},
    publishResult: async () => {},
    publishDecision: async () => {},
    publishDeadLetter: async () => {},
    reply: async () => {},
    close: async () => {},
    beat: (r) => onCap?.(r),
  };
}

let seq = 0;
function delivery(): IngressDelivery {
  seq++;
  const event: CloudEventJson = {
    specversion: '1.0',
    id: `bench-${seq}`,
    source: '/bench',
    type: 'bench.job',
    time: new Date().toISOString(),
    workload: 'noop',
    residency: 'eu',
    traceparent: `00-${seq.toString(16).padStart(32, '0')}-${'1'.padStart(16, '0')}-01`,
    datacontenttype: 'application/json',
    data: { n: seq },
  };
  const parts = encodeNatsBinary(event);
  return {
    headers: parts.headers,
    body: parts.body,
    replyTo: undefined,
    redeliveryCount: 0,
    ack: async () => {},
    nak: () => {},
    working: () => {},
    term: () => {},
  };
}

/** One block: µs per event at IN_FLIGHT concurrency. */
async function block(tracing: boolean, serviceName = 'meshroute-router'): Promise<number> {
  const telemetry = tracing
    ? startTelemetry({
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl, OTEL_METRICS_EXPORTER: 'none', OTEL_TRACES_SAMPLER: 'always_on' },
        serviceName,
      })
    : undefined;
  const mesh = instantMesh();
  const router = createRouter({
    mesh,
    store: memoryStateStore(),
    policies: bundle as NonNullable<typeof bundle>,
    routerId: 'bench',
    options: { maxInFlightItems: 10_000 },
  });
  await router.start();
  const now = Date.now();
  for (const [id, j, c] of [
    ['de-1', 'DE', 200],
    ['fr-1', 'FR', 60],
    ['nl-1', 'NL', 300],
    ['us-1', 'US', 20],
  ] as const) {
    mesh.beat(
      sampleCapacityReport({
        agentId: id,
        jurisdiction: j,
        carbonIntensity: c,
        slots: 10_000,
        freeSlots: 10_000,
        sentAtMs: now,
      }),
    );
  }
  const deliveries = Array.from({ length: EVENTS_PER_BLOCK }, delivery);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < deliveries.length) await router.handleDelivery(deliveries[next++] as IngressDelivery);
    }),
  );
  const us = ((performance.now() - t0) * 1000) / EVENTS_PER_BLOCK;
  await router.stop();
  await telemetry?.shutdown(); // flushes the last batch (outside the timed part)
  return us;
}

await block(false);
await block(true);
/** Alternating blocks: tracing off, then on (as `serviceName` sets it up). */
async function compare(serviceName: string): Promise<{ on: number[]; off: number[] }> {
  const off: number[] = [];
  const on: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    off.push(await block(false));
    on.push(await block(true, serviceName));
  }
  return { on, off };
}
for (const [name, serviceName] of [
  ['router tracing overhead (100% sampling, OTLP/HTTP batch export)', 'meshroute-router'],
  ['router tracing overhead with the async context manager (log correlation)', 'meshroute-agent'],
] as const) {
  const { on, off } = await compare(serviceName);
  const ours = percentiles(on);
  const base = percentiles(off);
  reportBench(
    benchLine(name, 'us/event', ours, base, {
      eventsPerBlock: EVENTS_PER_BLOCK,
      inFlight: IN_FLIGHT,
      rounds: ROUNDS,
      throughputOnPerS: Math.round(1e6 / ours.p50),
      throughputOffPerS: Math.round(1e6 / base.p50),
      throughputCostPercent: Math.round((1 - base.p50 / ours.p50) * 1000) / 10,
      target: 'throughput cost <= 15% (ratio <= 1.176)',
    }),
  );
}
process.stderr.write(`otlp batches exported: ${exportedBatches}\n`);
sink.close();
