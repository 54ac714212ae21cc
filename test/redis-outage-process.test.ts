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
import type { ChildProcess } from 'node:child_process';
import { createClient } from '@meshroute/client';
import { meshNames } from '@meshroute/mesh';
import {
  startNatsServer,
  startRedisServer,
  type TestNatsServer,
  type TestRedisServer,
  waitFor,
} from '@meshroute/testing';
import { connectMesh, freePort, type MeshConnection } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AgentRun,
  followOutcomes,
  killAll,
  registerEchoWorkload,
  spawnRedisRouter,
  startTimedAgent,
  watchGivenUp,
} from './support/processes.js';

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

let nats: TestNatsServer;
let redis: TestRedisServer;
let conn: MeshConnection;
const children: ChildProcess[] = [];
/** The last lines each router process wrote to stderr (printed when the test fails). */
const routerLogs = new Map<string, string[]>();
const agentStops: (() => Promise<void>)[] = [];
/** Set once the test is tearing down: a router exit is expected from then on. */
let tearingDown = false;

const runs: AgentRun[] = [];

/** What `GET /healthz` answered (the fields this test reads). */
interface Health {
  httpStatus: number;
  status?: string;
  store?: string;
  agents?: number;
}

function router(routerId: string, httpPort: number): ChildProcess {
  const logs: string[] = [];
  routerLogs.set(routerId, logs);
  return spawnRedisRouter({ natsUrl: nats.url, redisUrl: redis.url, httpPort, routerId }, { logs, children });
}

async function startAgent(agentId: string): Promise<void> {
  agentStops.push(await startTimedAgent(nats.url, agentId, { workMs: WORK_MS, slots: SLOTS, runs }));
}

async function health(httpPort: number): Promise<Health | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
    return { httpStatus: res.status, ...((await res.json()) as Omit<Health, 'httpStatus'>) };
  } catch {
    return undefined;
  }
}

beforeAll(async () => {
  nats = await startNatsServer();
  redis = await startRedisServer();
  await registerEchoWorkload(nats.url);
  conn = await connectMesh({ servers: nats.url, name: 'redis-outage-test' });
});

afterAll(async () => {
  tearingDown = true;
  await killAll(children);
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
    const { okResults, deadLetters, close: closeFeeds } = await followOutcomes(conn, names);
    // An ingress message JetStream stops delivering (max deliveries reached) is lost for good.
    const { gaveUp, lostEvent } = await watchGivenUp(conn, names);
    const jsm = await conn.jetstreamManager();

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
    await closeFeeds();

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
