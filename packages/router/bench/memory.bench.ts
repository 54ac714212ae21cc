/**
 * Memory per in-flight work item: 10,000 events dispatched to an agent that never answers, in
 * the router engine (real shipped policy bundle, in-memory state store, an in-process mesh), heap
 * growth measured after a forced GC. Baseline: the same events held as parsed CloudEvents only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { systemClock } from '@meshroute/mesh';
import { loadBundle } from '@meshroute/policy';
import { createRouter, memoryStateStore } from '@meshroute/router';
import { reportBench } from '@meshroute/testing';
import { capacity, cloudEvent, delivery, FakeMesh } from '../src/test-support/fakes.js';

const root = new URL('../../..', import.meta.url).pathname;
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
const bundle = loadBundle(files, { nowMs: Date.now() }).bundle;
if (!bundle) throw new Error('shipped policies do not load');
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

const items = 10_000;
const mesh = new FakeMesh(systemClock);
mesh.agents.set('hang', async () => 'hang');
const router = createRouter({
  mesh,
  store: memoryStateStore(),
  policies: bundle,
  options: { maxInFlightItems: 100_000, dispatchTimeoutMs: 3_600_000 },
});
await router.start();
mesh.heartbeat(capacity('hang', { slots: 20_000, freeSlots: 20_000, sentAtMs: Date.now() }));
const deliveries = Array.from({ length: items }, (_, i) =>
  delivery(cloudEvent(`m${i}`, { residency: 'eu' }), `r.${i}`),
);
gc();
const before = process.memoryUsage().heapUsed;
for (const d of deliveries) void router.handleDelivery(d);
while (router.health().inFlightItems < items || mesh.dispatched.length < items)
  await new Promise((r) => setImmediate(r));
gc();
const after = process.memoryUsage().heapUsed;
// Baseline: the events alone, parsed, as any consumer holding them would keep them.
gc();
const b0 = process.memoryUsage().heapUsed;
const held = deliveries.map((d) => JSON.parse(new TextDecoder().decode(d.body)));
gc();
const b1 = process.memoryUsage().heapUsed;
const perItem = (after - before) / items;
const basePerItem = (b1 - b0) / items;
reportBench({
  bench: 'router.memory',
  unit: 'bytes/item',
  p50: Math.round(perItem),
  p99: Math.round(perItem),
  baseline: Math.round(basePerItem),
  ratio: Math.round((perItem / basePerItem) * 100) / 100,
  inFlightItems: items,
  mbPer10k: Math.round(((after - before) / 1024 / 1024) * 10) / 10,
  heldEvents: held.length,
  note: 'router engine heap per dispatched, unanswered work item (XState actor, item state, dispatch record); excludes the NATS client',
});
await router.stop({ drainTimeoutMs: 0 });
process.exit(0);
