/**
 * A router in a process of its own for `router-nats.bench.ts` (the way it is deployed): core-NATS
 * ingress on {@link BENCH_INGRESS_SUBJECT}, the shipped policies, the in-memory store. Prints
 * `ready` once it has heard the no-op agent, then runs until its stdin closes.
 */
import { createRouter, memoryStateStore } from '@meshroute/router';
import { connectMesh, natsMesh } from '@meshroute/transport-nats';
import { BENCH_INGRESS_SUBJECT, coreNatsSource, shippedBundle } from './router-bench-kit.js';

const url = process.argv[2];
if (!url) throw new Error('usage: router-child.ts <nats-url>');
const conn = await connectMesh({ servers: url, name: 'bench-router-process', coalesceWrites: true });
const router = createRouter({
  mesh: natsMesh(conn, { routerId: 'bench-router-process' }),
  source: coreNatsSource(conn, BENCH_INGRESS_SUBJECT),
  store: memoryStateStore(),
  policies: shippedBundle(new URL('../../..', import.meta.url).pathname),
  routerId: 'bench-router-process',
  options: { maxInFlightItems: 100_000, maxQueued: 100_000 },
});
await router.start();
while (router.agents().length === 0) await new Promise((r) => setTimeout(r, 20));
process.stdout.write('ready\n');
process.stdin.resume();
process.stdin.on('end', () => {
  void router
    .stop({ drainTimeoutMs: 0 })
    .then(() => conn.close())
    .then(() => process.exit(0));
});
