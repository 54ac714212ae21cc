/**
 * kill -9 of the shared redis-server under two real `meshroute router` processes, then Redis back
 * on the same port. Both routers share the JetStream ingress durable consumer on one real
 * nats-server and their idempotency claims in one real redis-server (`--redis-url`, the
 * documented scale-out setup). Agents run in this process on their own NATS connections (real
 * heartbeats, request/reply work that takes a while, so work is in flight when Redis dies).
 * Events are published with `@meshroute/client` all along: before the kill, during the outage,
 * and after Redis is back.
 *
 * The Redis that comes back is a fresh, empty one (the test server keeps no data: no RDB, no
 * AOF): claims and recorded outcomes from before the outage are gone, which is what a Redis
 * without persistence (or a failover to an empty replica) looks like to the routers.
 *
 * What a user notices:
 * - both router processes stay up;
 * - `GET /healthz` of each router answers 200 with `status: 'degraded'`, `store: 'degraded'` while
 *   Redis is down, and `status: 'ok'`, `store: 'ok'` again once it is back;
 * - routing goes on during the outage: events published while Redis is down get their results
 *   before Redis comes back;
 * - every event ends with a successful result on the results stream; none is lost (no
 *   MAX_DELIVERIES advisory) or dead-lettered;
 * - without Redis the routers skip idempotency claims (by design), so an event handled during the
 *   outage may run twice: at most two results for those, exactly one for every other event.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createClient } from '@meshroute/client';
import { type CapacityReport, type DeadLetterRecord, decodeMessage, meshNames, type WorkResult } from '@meshroute/mesh';
import {
  startNatsServer,
  startRedisServer,
  type TestNatsServer,
  type TestRedisServer,
  waitFor,
} from '@meshroute/testing';
import { connectMesh, freePort, type MeshConnection, natsAgentMesh } from '@meshroute/transport-nats';
import { killOnExit } from '@meshroute/transport-nats/internal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(root, 'packages/cli/dist/bin.js');
const run = promisify(execFile);

/** How long each job takes on an agent (the agent's work, not a test wait). */
const WORK_MS = 300;
/** Concurrent jobs per agent. */
const SLOTS = 12;
/** Pause between two publishes (the producer's pace: ~40 events/s, below the agents' ~80/s). */
const PUBLISH_INTERVAL_MS = 20;
/** Successful results before Redis is killed (routing is under way). */
const RESULTS_BEFORE_KILL = 40;
/** Events published while Redis is down (a few seconds at the producer's pace). */
const OUTAGE_EVENTS = 150;
/** Events published once both routers report `ok` again. */
const AFTER_EVENTS = 60;
/** Deadline for a condition that needs no redelivery (JetStream's ack wait is 30 s). */
const CONDITION_TIMEOUT_MS = 20_000;

/** A WASI command that spins (registered as the `echo` artifact; the in-process agents never run it). */
const SPIN_WASM = Buffer.from(
  '0061736d01000000010401600000030201000503010001071302066d656d6f72790200065f737461727400000a1b011901017f0340200041016a21002000418094ebdc03470d000b0b',
  'hex',
);

let nats: TestNatsServer;
let redis: TestRedisServer;
let conn: MeshConnection;
const children: ChildProcess[] = [];
/** The last lines each router process wrote to stderr (printed when the test fails). */
const routerLogs = new Map<string, string[]>();
const agentStops: (() => Promise<void>)[] = [];
/** Set once the test is tearing down: a router exit is expected from then on. */
let tearingDown = false;

/** One run of an event on an agent: which router dispatched it, and when it started. */
interface AgentRun {
  eventId: string;
  routerId: string;
  atMs: number;
  answered: boolean;
}
const runs: AgentRun[] = [];

/** What `GET /healthz` answered (the fields this test reads). */
interface Health {
  httpStatus: number;
  status?: string;
  store?: string;
  agents?: number;
}

function router(routerId: string, httpPort: number): ChildProcess {
  const child = spawn(
    process.execPath,
    [
      BIN,
      'router',
      '--nats-url',
      nats.url,
      '--redis-url',
      redis.url,
      '--http-port',
      String(httpPort),
      '--policies',
      join(root, 'policies'),
      '--router-id',
      routerId,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, MESHROUTE_LOG_LEVEL: 'warn' } },
  );
  killOnExit(child);
  children.push(child);
  const lines: string[] = [];
  routerLogs.set(routerId, lines);
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    lines.push(...chunk.split('\n').filter((l) => l.length > 0));
    if (lines.length > 50) lines.splice(0, lines.length - 50);
  });
  return child;
}

/** An agent on its own NATS connection that heartbeats and answers each job after {@link WORK_MS}. */
async function startAgent(agentId: string): Promise<void> {
  const agentConn = await connectMesh({ servers: nats.url, name: agentId });
  const mesh = natsAgentMesh(agentConn);
  const instanceId = randomUUID();
  let inFlight = 0;
  let seq = 0;
  const stopServing = mesh.serveWork(agentId, async (work): Promise<WorkResult> => {
    const r: AgentRun = { eventId: work.event.id, routerId: work.routerId, atMs: Date.now(), answered: false };
    runs.push(r);
    inFlight++;
    const started = Date.now();
    await new Promise((resolve) => setTimeout(resolve, WORK_MS));
    inFlight--;
    r.answered = true;
    return {
      schema: 'meshroute.result/v1',
      workId: work.workId,
      eventId: work.event.id,
      eventSource: work.event.source,
      agentId,
      attempt: work.attempt,
      ok: true,
      output: { agent: agentId, echo: work.event.data ?? null },
      queueMs: 0,
      executionMs: Date.now() - started,
      finishedAtMs: Date.now(),
    };
  });
  const report = (): CapacityReport => ({
    schema: 'meshroute.capacity/v1',
    agentId,
    seq: ++seq,
    instanceId,
    sentAtMs: Date.now(),
    heartbeatIntervalMs: 250,
    status: 'ready',
    backends: ['wasm'],
    region: 'eu-central',
    jurisdiction: 'DE',
    carbonIntensity: 200,
    carbonSource: 'fixed',
    latencyP50Ms: WORK_MS,
    latencyP99Ms: WORK_MS * 2,
    slots: SLOTS,
    freeSlots: Math.max(0, SLOTS - inFlight),
    inFlight,
    queueDepth: 0,
    costPerJob: '0',
    labels: {},
    versions: { agent: 'test' },
    workloads: [],
    facts: {},
  });
  const beat = () => void mesh.publishCapacity(report()).catch(() => undefined);
  const timer = setInterval(beat, 250);
  beat();
  agentStops.push(async () => {
    clearInterval(timer);
    await stopServing().catch(() => undefined);
    await agentConn.close().catch(() => undefined);
  });
}

async function health(httpPort: number): Promise<Health | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
    return { httpStatus: res.status, ...((await res.json()) as Omit<Health, 'httpStatus'>) };
  } catch {
    return undefined;
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

beforeAll(async () => {
  nats = await startNatsServer();
  redis = await startRedisServer();
  const dir = mkdtempSync(join(tmpdir(), 'meshroute-redis-outage-'));
  writeFileSync(join(dir, 'echo.wasm'), SPIN_WASM);
  writeFileSync(
    join(dir, 'echo.yaml'),
    'name: echo\nversion: 1.0.0\nartifacts:\n  wasm: { file: echo.wasm }\nlimits: { timeoutMs: 30000, memoryBytes: 16777216, outputBytes: 1024 }\ncapabilities: [stdin, stdout]\n',
  );
  await run(process.execPath, [BIN, 'workload', 'register', join(dir, 'echo.yaml'), '--nats-url', nats.url]);
  conn = await connectMesh({ servers: nats.url, name: 'redis-outage-test' });
});

afterAll(async () => {
  tearingDown = true;
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map(exited));
  for (const stop of agentStops) await stop();
  await conn?.close();
  await redis?.stop();
  await nats?.stop();
});

describe('kill -9 of the shared redis-server under two router processes, then Redis back on the same port', () => {
  it('routers stay up and report degraded, routing goes on without Redis, every event gets a result', async () => {
    const portA = await freePort();
    const portB = await freePort();
    const routerA = router('router-a', portA);
    const routerB = router('router-b', portB);
    const ports = { 'router-a': portA, 'router-b': portB };

    // A router process that exits on its own fails the test at once (with its last log lines).
    let died!: (err: Error) => void;
    const routerDied = new Promise<never>((_resolve, reject) => {
      died = reject;
    });
    routerDied.catch(() => undefined); // observed by the races below
    for (const [id, child] of [
      ['router-a', routerA],
      ['router-b', routerB],
    ] as const) {
      child.once('exit', (code, signal) => {
        if (!tearingDown) died(new Error(`${id} exited (code ${code}, signal ${signal}) while the test ran`));
      });
    }

    await startAgent('agent-1');
    await startAgent('agent-2');
    await Promise.race([
      routerDied,
      waitFor(
        'both routers ok with both agents',
        async () => {
          const hs = await Promise.all([health(portA), health(portB)]);
          return hs.every((h) => h?.status === 'ok' && (h.agents ?? 0) >= 2);
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      ),
    ]);

    // The record a user reads: the results and dead-letter streams, followed as they grow.
    const names = meshNames();
    const okResults = new Map<string, number>();
    const deadLetters: DeadLetterRecord[] = [];
    const follow = async (stream: string, onMessage: (data: Uint8Array) => void) => {
      const consumer = await conn.js.consumers.get(stream);
      const messages = await consumer.consume();
      void (async () => {
        for await (const m of messages) onMessage(m.data);
      })();
      return messages;
    };
    const resultsFeed = await follow(names.streams.results, (data) => {
      const r = decodeMessage('meshroute.result/v1', data) as WorkResult;
      if (r.ok) okResults.set(r.eventId, (okResults.get(r.eventId) ?? 0) + 1);
    });
    const deadFeed = await follow(names.streams.deadLetters, (data) => {
      deadLetters.push(decodeMessage('meshroute.deadletter/v1', data) as DeadLetterRecord);
    });

    // An ingress message JetStream stops delivering (max deliveries reached) is lost for good:
    // no router will see it again. Note which event it carries and fail at once.
    const gaveUp: { eventId: string; deliveries: number }[] = [];
    let lost!: (err: Error) => void;
    const lostEvent = new Promise<never>((_resolve, reject) => {
      lost = reject;
    });
    lostEvent.catch(() => undefined); // observed by the races below
    const jsm = await conn.jetstreamManager();
    conn.nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${names.streams.ingress}.${names.ingressConsumer}`, {
      callback: (_err, msg) => {
        const advisory = JSON.parse(new TextDecoder().decode(msg.data)) as {
          stream_seq: number;
          deliveries: number;
        };
        void jsm.streams
          .getMessage(names.streams.ingress, { seq: advisory.stream_seq })
          .then((m) => m?.header.get('ce-id') || `<stream seq ${advisory.stream_seq}>`)
          .catch(() => `<stream seq ${advisory.stream_seq}>`)
          .then((eventId) => {
            gaveUp.push({ eventId, deliveries: advisory.deliveries });
            lost(
              new Error(
                `JetStream stopped delivering event ${eventId} after ${advisory.deliveries} deliveries (max_deliver): it will never be routed`,
              ),
            );
          });
      },
    });

    // Every wait below also fails at once when a router dies or an event is given up.
    const guarded = <T>(p: Promise<T>): Promise<T> => Promise.race([p, routerDied, lostEvent]);

    // The producer: one event every PUBLISH_INTERVAL_MS, until paused or stopped. Each publish
    // notes when it started and when JetStream took it.
    const client = createClient({ nats: conn, source: '/redis-outage-test' });
    const published: { id: string; startedAtMs: number; ackedAtMs: number }[] = [];
    let mode = 'run' as 'run' | 'pause' | 'stop'; // (not narrowed: setMode changes it)
    let wake: (() => void) | undefined;
    let idle: (() => void) | undefined;
    const publisher = (async () => {
      for (let n = 0; mode !== 'stop'; ) {
        if (mode === 'pause') {
          idle?.();
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          continue;
        }
        const startedAtMs = Date.now();
        const id = await client.publish(
          { type: 'com.example.job', data: { n: n++ } },
          { residency: 'eu', workload: 'echo' },
        );
        published.push({ id, startedAtMs, ackedAtMs: Date.now() });
        await new Promise((resolve) => setTimeout(resolve, PUBLISH_INTERVAL_MS));
      }
      idle?.();
    })();
    publisher.catch(() => undefined); // awaited below
    const setMode = async (next: 'run' | 'pause' | 'stop'): Promise<void> => {
      const stopped = next === 'run' ? Promise.resolve() : new Promise<void>((resolve) => (idle = resolve));
      mode = next;
      wake?.();
      wake = undefined;
      await guarded(Promise.race([stopped, publisher]));
    };

    let killedAtMs = 0;
    let restartedAtMs = 0;
    let bothOkAtMs = 0;
    const snapshot = async (where: string) => {
      const consumer = await jsm.consumers.info(names.streams.ingress, names.ingressConsumer).catch(() => undefined);
      console.error(`redis outage: ${where}`, {
        published: published.length,
        withResult: published.filter((p) => okResults.has(p.id)).length,
        killedAtMs,
        restartedAtMs,
        bothOkAtMs,
        nowMs: Date.now(),
        redisRunning: redis.running(),
        health: { a: await health(portA), b: await health(portB) },
        gaveUp,
        deadLetters: deadLetters.length,
        ingressConsumer: consumer && {
          numPending: consumer.num_pending,
          numAckPending: consumer.num_ack_pending,
          numRedelivered: consumer.num_redelivered,
        },
        routerLogs: Object.fromEntries(routerLogs),
      });
    };
    const step = async <T>(where: string, p: Promise<T>): Promise<T> => {
      try {
        return await guarded(p);
      } catch (err) {
        await snapshot(where);
        throw err;
      }
    };

    // Under load: results are coming in, and agents are running dispatched work.
    await step(
      'before the kill',
      waitFor(
        'results flowing and work in flight',
        () => okResults.size >= RESULTS_BEFORE_KILL && runs.filter((r) => !r.answered).length >= 3,
        { timeoutMs: CONDITION_TIMEOUT_MS, intervalMs: 10 },
      ),
    );
    const inFlightAtKill = runs.filter((r) => !r.answered).length;
    killedAtMs = Date.now();
    await redis.kill('SIGKILL');
    expect(redis.running()).toBe(false);

    // Both routers notice (each on its own failed claims) and say so on /healthz, still serving.
    const degraded = await step(
      'waiting for both routers to report degraded',
      waitFor(
        'both routers report degraded on /healthz',
        async () => {
          const hs = await Promise.all([health(portA), health(portB)]);
          return hs.every((h) => h?.status === 'degraded') ? hs : undefined;
        },
        { timeoutMs: CONDITION_TIMEOUT_MS, intervalMs: 100 },
      ),
    );
    const degradedAfterMs = Date.now() - killedAtMs;
    for (const h of degraded) expect(h).toMatchObject({ httpStatus: 200, status: 'degraded', store: 'degraded' });

    // Keep publishing for a few seconds without Redis, then pause the producer.
    const inOutage = (p: { startedAtMs: number }) => p.startedAtMs >= killedAtMs;
    await step(
      'publishing during the outage',
      waitFor('events published during the outage', () => published.filter(inOutage).length >= OUTAGE_EVENTS, {
        timeoutMs: CONDITION_TIMEOUT_MS,
        intervalMs: 20,
      }),
    );
    await setMode('pause');
    const outageIds = published.filter(inOutage).map((p) => p.id);

    // Routing goes on: the events published during the outage get their results while Redis is
    // still down.
    await step(
      'waiting for the outage events’ results with Redis down',
      waitFor(
        'every event published during the outage has a result',
        () => outageIds.every((id) => okResults.has(id)),
        {
          timeoutMs: CONDITION_TIMEOUT_MS,
          intervalMs: 50,
        },
      ),
    );
    expect(redis.running()).toBe(false);
    const outageMs = Date.now() - killedAtMs;
    for (const child of [routerA, routerB]) expect([child.exitCode, child.signalCode]).toEqual([null, null]);

    // Redis back on the same port (fresh and empty); both routers report ok again.
    const port = redis.port;
    restartedAtMs = Date.now();
    await redis.restart();
    expect(redis.port).toBe(port);
    const recovered = await step(
      'waiting for both routers to report ok',
      waitFor(
        'both routers report ok on /healthz',
        async () => {
          const hs = await Promise.all([health(portA), health(portB)]);
          return hs.every((h) => h?.status === 'ok') ? hs : undefined;
        },
        { timeoutMs: CONDITION_TIMEOUT_MS, intervalMs: 100 },
      ),
    );
    bothOkAtMs = Date.now();
    for (const h of recovered) expect(h).toMatchObject({ httpStatus: 200, status: 'ok', store: 'ok' });

    // More events with Redis back (claims again), then every event settles.
    await setMode('run');
    await step(
      'publishing after recovery',
      waitFor(
        'events published after recovery',
        () => published.filter((p) => p.startedAtMs >= bothOkAtMs).length >= AFTER_EVENTS,
        { timeoutMs: CONDITION_TIMEOUT_MS, intervalMs: 20 },
      ),
    );
    await setMode('stop');
    await publisher;
    const ids = published.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    await step(
      'settling',
      waitFor(
        'every event has a successful result or a dead letter',
        () => ids.every((id) => okResults.has(id) || deadLetters.some((d) => d.eventId === id)),
        { timeoutMs: CONDITION_TIMEOUT_MS, intervalMs: 100 },
      ),
    );
    await resultsFeed.close();
    await deadFeed.close();

    for (const [id, port] of Object.entries(ports)) {
      expect({ id, health: (await health(port))?.status }).toEqual({ id, health: 'ok' });
    }
    for (const child of [routerA, routerB]) expect([child.exitCode, child.signalCode]).toEqual([null, null]);

    // Nothing lost, nothing dead-lettered, every event with a successful result.
    expect(gaveUp).toEqual([]);
    expect(deadLetters.map((d) => `${d.eventId}: ${d.reason}`)).toEqual([]);
    expect(ids.filter((id) => !okResults.has(id))).toEqual([]);

    // Without Redis an event delivered twice may run twice: at most two results for an event an
    // agent ran between the kill and both routers reporting ok, exactly one for every other.
    const inWindow = new Set(runs.filter((r) => r.atMs >= killedAtMs && r.atMs <= bothOkAtMs).map((r) => r.eventId));
    expect(ids.filter((id) => (okResults.get(id) ?? 0) > 2)).toEqual([]);
    expect(ids.filter((id) => !inWindow.has(id) && okResults.get(id) !== 1)).toEqual([]);

    const runsPerEvent = new Map<string, number>();
    for (const r of runs) runsPerEvent.set(r.eventId, (runsPerEvent.get(r.eventId) ?? 0) + 1);
    console.info('redis outage', {
      events: ids.length,
      publishedBeforeKill: published.filter((p) => p.startedAtMs < killedAtMs).length,
      publishedDuringOutage: outageIds.length,
      publishedAfterRecovery: published.filter((p) => p.startedAtMs >= bothOkAtMs).length,
      inFlightAtKill,
      degradedAfterMs,
      outageMs,
      okAfterRestartMs: bothOkAtMs - restartedAtMs,
      eventsRunInWindow: inWindow.size,
      eventsWithTwoResults: ids.filter((id) => okResults.get(id) === 2).length,
      eventsRunTwice: [...runsPerEvent.values()].filter((n) => n > 1).length,
      runsInWindowByRouter: {
        a: runs.filter((r) => r.routerId === 'router-a' && r.atMs >= killedAtMs && r.atMs <= bothOkAtMs).length,
        b: runs.filter((r) => r.routerId === 'router-b' && r.atMs >= killedAtMs && r.atMs <= bothOkAtMs).length,
      },
    });
  }, 90_000);

  it('an idle router (no event arriving) reports degraded while Redis is down and ok once it is back', async () => {
    const port = await freePort();
    const idleRouter = router('router-idle', port);
    let died!: (err: Error) => void;
    const routerDied = new Promise<never>((_resolve, reject) => {
      died = reject;
    });
    routerDied.catch(() => undefined); // observed by the races below
    idleRouter.once('exit', (code, signal) => {
      if (!tearingDown) died(new Error(`router-idle exited (code ${code}, signal ${signal}) while the test ran`));
    });
    const healthIs = (status: string) =>
      Promise.race([
        routerDied,
        waitFor(`router-idle reports ${status} on /healthz`, async () => (await health(port))?.status === status, {
          timeoutMs: CONDITION_TIMEOUT_MS,
          intervalMs: 100,
        }),
      ]).catch(async (err: unknown) => {
        console.error('redis outage (idle router)', {
          health: await health(port),
          redisRunning: redis.running(),
          log: routerLogs.get('router-idle'),
        });
        throw err;
      });

    if (!redis.running()) await redis.restart();
    await healthIs('ok');
    await redis.kill('SIGKILL');
    await healthIs('degraded');
    expect(await health(port)).toMatchObject({ httpStatus: 200, status: 'degraded', store: 'degraded' });
    await redis.restart();
    await healthIs('ok');
    expect(await health(port)).toMatchObject({ httpStatus: 200, status: 'ok', store: 'ok' });
    expect([idleRouter.exitCode, idleRouter.signalCode]).toEqual([null, null]);
  }, 60_000);
});
