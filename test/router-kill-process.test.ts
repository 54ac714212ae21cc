/**
 * kill -9 of one of two real `meshroute router` processes under load. Both routers share the
 * JetStream ingress durable consumer on one real nats-server (file-backed JetStream) and their
 * idempotency claims in one real redis-server (`--redis-url`, the documented scale-out setup).
 * Agents run in this process on their own NATS connections (real heartbeats, request/reply work
 * that takes a while, so the killed router holds dispatched work when it dies).
 *
 * What a user notices: every published event ends with exactly one successful result on the
 * results stream (none lost, none answered twice), nothing is dead-lettered, and an event is run a
 * second time on an agent only when the killed router had dispatched it (at-least-once after a
 * crash: the killed router never recorded that run).
 *
 * Timing: `meshroute router` has no flag for the ingress ack wait or the claim TTL, so the killed
 * router's unacked events come back after the default ack wait (30 s), and events it had claimed
 * can only be run by the survivor once its claim expires (default claim TTL 60 s).
 */

import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
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
  exited,
  followOutcomes,
  killAll,
  registerEchoWorkload,
  spawnRedisRouter,
  startTimedAgent,
  watchGivenUp,
} from './support/processes.js';

const run = promisify(execFile);

/** Events published in the batch. */
const EVENTS = 200;
/** How long each job takes on an agent (the agent's work, not a test wait). */
const WORK_MS = 400;
/** Concurrent jobs per agent. */
const SLOTS = 12;
/** Deadline for the whole batch to settle: ack wait (30 s) + claim TTL (60 s) + margin. */
const SETTLE_TIMEOUT_MS = 110_000;

let nats: TestNatsServer;
let redis: TestRedisServer;
let conn: MeshConnection;
const children: ChildProcess[] = [];
/** The last lines each router process wrote to stderr (printed when the test fails). */
const routerLogs = new Map<string, string[]>();
const agentStops: (() => Promise<void>)[] = [];
const runs: AgentRun[] = [];

function router(routerId: string, httpPort: number): ChildProcess {
  const logs: string[] = [];
  routerLogs.set(routerId, logs);
  return spawnRedisRouter({ natsUrl: nats.url, redisUrl: redis.url, httpPort, routerId }, { logs, children });
}

async function startAgent(agentId: string): Promise<void> {
  agentStops.push(await startTimedAgent(nats.url, agentId, { workMs: WORK_MS, slots: SLOTS, runs }));
}

async function healthyWithAgents(httpPort: number, agents: number): Promise<boolean> {
  try {
    const r = (await (await fetch(`http://127.0.0.1:${httpPort}/healthz`)).json()) as { agents?: number };
    return (r.agents ?? 0) >= agents;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  nats = await startNatsServer();
  redis = await startRedisServer();
  await registerEchoWorkload(nats.url);
  conn = await connectMesh({ servers: nats.url, name: 'router-kill-test' });
});

afterAll(async () => {
  await killAll(children);
  for (const stop of agentStops) await stop();
  await conn?.close();
  await redis?.stop();
  await nats?.stop();
});

describe('kill -9 of one of two router processes under load (shared ingress consumer, claims in Redis)', () => {
  it(
    'every event ends with exactly one successful result; only the killed router’s dispatches run again',
    async () => {
      const portA = await freePort();
      const portB = await freePort();
      const victim = router('router-a', portA);
      router('router-b', portB);
      await startAgent('agent-1');
      await startAgent('agent-2');
      await waitFor(
        'both routers ready with both agents',
        async () => (await healthyWithAgents(portA, 2)) && (await healthyWithAgents(portB, 2)),
        { timeoutMs: 30_000, intervalMs: 200 },
      );

      // The record a user reads: the results and dead-letter streams, followed as they grow.
      const names = meshNames();
      const { okResults, deadLetters, close: closeFeeds } = await followOutcomes(conn, names);
      // An ingress message JetStream stops delivering (max deliveries reached) is lost for good.
      const { gaveUp, lostEvent } = await watchGivenUp(conn, names);
      const jsm = await conn.jetstreamManager();

      const client = createClient({ nats: conn, source: '/router-kill-test' });
      const ids: string[] = [];
      const publishing = (async () => {
        for (let n = 0; n < EVENTS; n++) {
          ids.push(
            await client.publish({ type: 'com.example.job', data: { n } }, { residency: 'eu', workload: 'echo' }),
          );
        }
      })();

      // Under load: results are coming in, and the victim has dispatched work that its agents are
      // still running.
      await waitFor(
        'results flowing and router-a holding dispatched work',
        () => okResults.size >= 40 && runs.filter((r) => r.routerId === 'router-a' && !r.answered).length >= 3,
        { timeoutMs: 30_000, intervalMs: 10 },
      );
      const killedAtMs = Date.now();
      const resultsBeforeKill = okResults.size;
      victim.kill('SIGKILL');
      await exited(victim);
      expect(victim.signalCode).toBe('SIGKILL');
      const dispatchedByVictim = new Set(runs.filter((r) => r.routerId === 'router-a').map((r) => r.eventId));
      await publishing;
      expect(new Set(ids).size).toBe(EVENTS);

      try {
        await Promise.race([
          lostEvent,
          waitFor(
            'every event has a successful result or a dead letter',
            // (also ends the polling once an event is lost: `lostEvent` has failed the race then)
            () =>
              gaveUp.length > 0 || ids.every((id) => okResults.has(id) || deadLetters.some((d) => d.eventId === id)),
            { timeoutMs: SETTLE_TIMEOUT_MS, intervalMs: 250 },
          ),
        ]);
      } catch (err) {
        const missing = ids.filter((id) => !okResults.has(id));
        const consumer = await jsm.consumers.info(names.streams.ingress, names.ingressConsumer).catch(() => undefined);
        // Idempotency claims still held in Redis, by owner (the killed router's block the survivor).
        const claimOwners: Record<string, number> = {};
        try {
          const keys = (await run('redis-cli', ['-u', redis.url, '--scan', '--pattern', '*idem:*:claim'])).stdout
            .split('\n')
            .filter((k) => k.length > 0);
          if (keys.length > 0) {
            for (const owner of (await run('redis-cli', ['-u', redis.url, 'MGET', ...keys])).stdout.split('\n')) {
              if (owner.length > 0) claimOwners[owner] = (claimOwners[owner] ?? 0) + 1;
            }
          }
        } catch (e) {
          claimOwners[`<redis-cli failed: ${(e as Error).message}>`] = 0;
        }
        console.error('router kill -9: unsettled events', {
          secondsSinceKill: Math.round((Date.now() - killedAtMs) / 1000),
          missing: missing.length,
          missingRunForVictimOnAnAgent: missing.filter((id) => dispatchedByVictim.has(id)).length,
          claimOwners,
          gaveUp,
          deadLetters: deadLetters.length,
          ingressConsumer: consumer && {
            numPending: consumer.num_pending,
            numAckPending: consumer.num_ack_pending,
            numRedelivered: consumer.num_redelivered,
            ackWaitMs: (consumer.config.ack_wait ?? 0) / 1e6,
            maxDeliver: consumer.config.max_deliver,
          },
          routerLogs: Object.fromEntries(routerLogs),
        });
        throw err;
      }
      await closeFeeds();

      // Nothing dead-lettered, none lost, none with two successful results.
      expect(deadLetters.map((d) => `${d.eventId}: ${d.reason}`)).toEqual([]);
      expect(ids.filter((id) => !okResults.has(id))).toEqual([]);
      expect(ids.filter((id) => okResults.get(id) !== 1)).toEqual([]);

      // A second run on an agent only for work the killed router had dispatched (its outcome was
      // never recorded); the survivor's own claims keep it from running anything twice.
      const runsPerEvent = new Map<string, number>();
      for (const r of runs) runsPerEvent.set(r.eventId, (runsPerEvent.get(r.eventId) ?? 0) + 1);
      const rerun = [...runsPerEvent].filter(([, n]) => n > 1).map(([id]) => id);
      expect(rerun.filter((id) => !dispatchedByVictim.has(id))).toEqual([]);
      expect(Math.max(...runsPerEvent.values())).toBeLessThanOrEqual(2);
      console.info('router kill -9', {
        settledSecondsAfterKill: Math.round((Date.now() - killedAtMs) / 1000),
        resultsBeforeKill,
        dispatchedByVictim: dispatchedByVictim.size,
        runTwice: rerun.length,
        runsByRouter: {
          a: runs.filter((r) => r.routerId === 'router-a').length,
          b: runs.filter((r) => r.routerId === 'router-b').length,
        },
      });
    },
    SETTLE_TIMEOUT_MS + 40_000,
  );
});
