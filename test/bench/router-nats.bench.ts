/**
 * The router on a real nats-server, each figure against its baseline in the same run:
 * - `router.hop`: producer → router (core NATS request) → no-op agent → reply, sequential, vs the
 *   producer's direct NATS request to the same agent.
 * - `router.throughput.core`: events/s through the router with core-NATS ingress (512 requests
 *   in flight) vs direct request/reply to the agent at the same concurrency.
 * - `router.throughput.jetstream`: events/s the router drains from a pre-loaded JetStream ingress
 *   stream (at-least-once: each event acked after its result is recorded) vs the direct
 *   request/reply throughput.
 * - `router.hop.process` / `router.throughput.core.process`: the same two with the router in a
 *   process of its own (`support/router-child.ts`), the way it is deployed, against a direct
 *   baseline measured again right before.
 * - `router.hop.floor` / `router.throughput.floor`: the same two through a forwarder that does only
 *   the I/O the router must do per event (`support/floor-forwarder.ts`: decode, dispatch, answer,
 *   result and decision record to their streams), against direct measured again right before:
 *   how close any router can come to the targets here; the gap to `router.*` is the router's own
 *   work. `router.throughput.jetstream.floor`: the same forwarder draining the JetStream ingress.
 * The core-NATS ingress is bench-only glue (an EventSource over a queue subscription, in
 * `support/router-bench-kit.ts`).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { encodeMessage, meshNames } from '@meshroute/mesh';
import { createRouter, memoryStateStore, type Router } from '@meshroute/router';
import { benchLine, percentiles, reportBench, sampleAsync, startNatsServer, stopAllServers } from '@meshroute/testing';
import {
  connectMesh,
  type MeshConnection,
  natsAgentMesh,
  natsEventSource,
  natsMesh,
  provisionMesh,
} from '@meshroute/transport-nats';
import { startFloorForwarder, startJetStreamFloor } from './support/floor-forwarder.js';
import {
  BENCH_INGRESS_SUBJECT,
  noopCapacity as capacity,
  coreNatsSource,
  noopResult as result,
  shippedBundle,
} from './support/router-bench-kit.js';

const root = new URL('../..', import.meta.url).pathname;
const bundle = shippedBundle(root);

const enc = new TextEncoder();
let evSeq = 0;
function eventBytes(extra: Record<string, unknown> = {}): Uint8Array {
  return enc.encode(
    JSON.stringify({
      specversion: '1.0',
      id: `b-${++evSeq}`,
      source: '/bench',
      type: 'bench.job',
      workload: 'noop',
      residency: 'eu',
      data: { n: evSeq },
      ...extra,
    }),
  );
}

/** CPU time of this process (router, agent and producer together) in µs since `since`. */
function cpuUs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return d.user + d.system;
}

/** Events/s and this process's CPU µs per event (less sensitive to a busy machine than wall time). */
async function throughput(
  n: number,
  concurrency: number,
  one: (i: number) => Promise<unknown>,
): Promise<{ rate: number; cpuUsPerEvent: number }> {
  let next = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await one(next++);
    }),
  );
  return { rate: n / ((performance.now() - t0) / 1000), cpuUsPerEvent: Math.round(cpuUs(c0) / n) };
}

const server = await startNatsServer();
const conns: MeshConnection[] = [];
const routers: Router[] = [];
try {
  // Router and agent connections coalesce their writes, as `meshroute router` and `agent` do.
  const connect = async (name: string, coalesceWrites = false) => {
    const c = await connectMesh({ servers: server.url, name, coalesceWrites });
    conns.push(c);
    return c;
  };
  const admin = await connect('bench-admin');
  await provisionMesh(admin, { storage: 'memory', duplicateWindowMs: 60_000 });

  // The no-op agent on its own connection.
  const agentConn = await connect('bench-agent', true);
  const agentMesh = natsAgentMesh(agentConn);
  agentMesh.serveWork('noop-agent', async (w) => result(w));
  let beat = 0;
  const heartbeat = () => {
    beat++;
    void agentMesh.publishCapacity(capacity('noop-agent', 4096, beat));
  };
  heartbeat();
  const beats = setInterval(heartbeat, 1000);

  const routerConn = await connect('bench-router', true);
  const router = createRouter({
    mesh: natsMesh(routerConn, { routerId: 'bench-router' }),
    source: coreNatsSource(routerConn, BENCH_INGRESS_SUBJECT),
    store: memoryStateStore(),
    policies: bundle,
    routerId: 'bench-router',
    options: { maxInFlightItems: 100_000, maxQueued: 100_000 },
  });
  routers.push(router);
  await router.start();
  while (router.agents().length === 0) await new Promise((r) => setTimeout(r, 20));

  const producer = await connect('bench-producer');
  const workBytes = encodeMessage('meshroute.work/v1', {
    schema: 'meshroute.work/v1',
    workId: 'direct',
    attempt: 1,
    decisionId: 'direct',
    routerId: 'producer',
    agentId: 'noop-agent',
    workload: 'noop',
    event: JSON.parse(new TextDecoder().decode(eventBytes())),
    dispatchedAtMs: Date.now(),
    timeoutMs: 5000,
  });
  const iterations = 2_000;
  const n = 20_000;
  const concurrency = 512;
  const toDirect = (timeoutMs: number) => () =>
    producer.nc.request('meshroute.work.noop-agent', workBytes, { timeout: timeoutMs });
  /** Sequential requests through `subject` against direct requests to the agent: one line. */
  const hopLine = async (bench: string, subject: string, extra: Record<string, unknown>) => {
    const ours = percentiles(
      await sampleAsync(() => producer.nc.request(subject, eventBytes(), { timeout: 5000 }), { iterations }),
    );
    const base = percentiles(await sampleAsync(toDirect(5000), { iterations }));
    reportBench(
      benchLine(bench, 'us', ours, base, {
        iterations,
        baselineP99: Math.round(base.p99 * 10) / 10,
        ratioP99: Math.round((ours.p99 / base.p99) * 100) / 100,
        ...extra,
      }),
    );
    return ours;
  };
  /**
   * `concurrency` requests in flight through `subject` against direct request/reply: one line,
   * with this process's CPU per event when it holds the router (`cpu`).
   */
  const throughputLine = async (bench: string, subject: string, cpu: boolean, extra: Record<string, unknown>) => {
    const ours = await throughput(n, concurrency, () =>
      producer.nc.request(subject, eventBytes(), { timeout: 30_000 }),
    );
    const base = await throughput(n, concurrency, toDirect(30_000));
    reportBench({
      bench,
      unit: 'events/s',
      p50: Math.round(ours.rate),
      p99: Math.round(ours.rate),
      baseline: Math.round(base.rate),
      ratio: Math.round((ours.rate / base.rate) * 100) / 100,
      higherIsBetter: true,
      events: n,
      concurrency,
      ...(cpu ? { cpuUsPerEvent: ours.cpuUsPerEvent, baselineCpuUsPerEvent: base.cpuUsPerEvent } : {}),
      ...extra,
    });
    return { ours, base };
  };

  const viaRouter = await hopLine('router.hop', BENCH_INGRESS_SUBJECT, { target: 'ratio and ratioP99 <= 2.3' });
  const { ours, base: direct2 } = await throughputLine('router.throughput.core', BENCH_INGRESS_SUBJECT, true, {
    target: 'ratio >= 0.5',
  });
  const directTput = direct2.rate;

  // The floor: only the router's mandatory I/O, same producer, agent and server.
  {
    const floorConn = await connect('bench-floor', true);
    const floor = await startFloorForwarder(floorConn, {
      subject: 'bench.floor.ingress',
      agentId: 'noop-agent',
      bundle,
      routerId: 'bench-floor',
    });
    const floorWhat = 'floor: mandatory I/O only (decode, dispatch, answer, result and decision to their streams)';
    await hopLine('router.hop.floor', 'bench.floor.ingress', {
      router: floorWhat,
      routerHopP50: Math.round(viaRouter.p50 * 10) / 10,
    });
    await throughputLine('router.throughput.floor', 'bench.floor.ingress', true, {
      router: floorWhat,
      routerRate: Math.round(ours.rate),
      routerCpuUsPerEvent: ours.cpuUsPerEvent,
    });
    await floor.stop();
  }

  // The same two with the router in a process of its own (as deployed). The in-process router
  // leaves the queue group first.
  await router.stop({ drainTimeoutMs: 0 });
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', new URL('./support/router-child.ts', import.meta.url).pathname, server.url],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`router process exited (${code}) before it was ready`)));
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (line === 'ready') resolve();
      });
    });
    await hopLine('router.hop.process', BENCH_INGRESS_SUBJECT, {
      router: 'own process',
      target: 'ratio and ratioP99 <= 2.3',
    });
    await throughputLine('router.throughput.core.process', BENCH_INGRESS_SUBJECT, false, {
      router: 'own process',
      target: 'ratio >= 0.5',
    });
  } finally {
    child.stdin?.end();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        resolve();
      }, 5_000);
      child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  // JetStream at-least-once ingress: pre-load the stream, then let a router drain it.
  const jsN = 20_000;
  /** Publish `jsN` events into the ingress stream on `subject`; the publish rate. */
  const preload = async (subject: string, idPrefix: string): Promise<number> => {
    const t0 = performance.now();
    const pubs: Promise<unknown>[] = [];
    for (let i = 0; i < jsN; i++) {
      pubs.push(producer.js.publish(subject, eventBytes(), { msgID: `${idPrefix}-${i}-${evSeq}` }));
      if (pubs.length >= 1000) await Promise.all(pubs.splice(0));
    }
    await Promise.all(pubs);
    return jsN / ((performance.now() - t0) / 1000);
  };
  /** Events/s and CPU µs per event of a drain that `start`s and calls its callback per event. */
  const drain = async (start: (onOne: () => void) => Promise<unknown>) => {
    let count = 0;
    let all: () => void = () => {};
    const done = new Promise<void>((r) => {
      all = r;
    });
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await start(() => {
      if (++count === jsN) all();
    });
    await done;
    return { rate: jsN / ((performance.now() - t0) / 1000), cpuUsPerEvent: Math.round(cpuUs(c0) / jsN) };
  };
  const jsLine = (bench: string, rate: number, extra: Record<string, unknown>) =>
    reportBench({
      bench,
      unit: 'events/s',
      p50: Math.round(rate),
      p99: Math.round(rate),
      baseline: Math.round(directTput),
      ratio: Math.round((rate / directTput) * 100) / 100,
      higherIsBetter: true,
      events: jsN,
      ...extra,
    });

  const publishRate = await preload('meshroute.ingress._', 'js');
  const jsConn = await connect('bench-js-router', true);
  const jsRouter = createRouter({
    mesh: natsMesh(jsConn, { routerId: 'bench-js-router' }),
    source: natsEventSource(jsConn, { maxInFlight: 2048 }),
    store: memoryStateStore(),
    policies: bundle,
    routerId: 'bench-js-router',
    options: { maxInFlightItems: 100_000, maxQueued: 100_000 },
  });
  routers.push(jsRouter);
  const js = await drain(async (onOne) => {
    void (async () => {
      for await (const s of jsRouter.status()) if (s.type === 'workFinished') onOne();
    })();
    await jsRouter.start();
  });
  jsLine('router.throughput.jetstream', js.rate, {
    publishRate: Math.round(publishRate),
    cpuUsPerEvent: js.cpuUsPerEvent,
    storage: 'memory',
    target: '>= 10000 events/s',
  });
  await jsRouter.stop({ drainTimeoutMs: 0 });

  // The floor with JetStream ingress: the same number of events, drained by the forwarder, from
  // an ingress stream and consumer of its own (the router's consumer may still owe deliveries to
  // the stopped router's pull requests).
  {
    const floorNames = meshNames('benchfloor');
    await provisionMesh(admin, { names: floorNames, storage: 'memory', duplicateWindowMs: 60_000 });
    await preload(floorNames.ingressSubject(), 'jsf');
    const floorJsConn = await connect('bench-js-floor', true);
    let floor: Awaited<ReturnType<typeof startJetStreamFloor>> | undefined;
    const f = await drain(async (onOne) => {
      floor = await startJetStreamFloor(floorJsConn, {
        agentId: 'noop-agent',
        bundle,
        routerId: 'bench-js-floor',
        maxInFlight: 2048,
        ingressNames: floorNames,
        onForwarded: onOne,
      });
    });
    jsLine('router.throughput.jetstream.floor', f.rate, {
      cpuUsPerEvent: f.cpuUsPerEvent,
      storage: 'memory',
      router: 'floor: mandatory I/O only (decode, dispatch, result and decision to their streams, ack)',
      routerRate: Math.round(js.rate),
    });
    await floor?.stop();
  }

  clearInterval(beats);
} finally {
  for (const r of routers) await r.stop({ drainTimeoutMs: 0 }).catch(() => undefined);
  for (const c of conns) await c.close().catch(() => undefined);
  await stopAllServers();
}
