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

/** Events published in the batch. */
const EVENTS = 200;
/** How long each job takes on an agent (the agent's work, not a test wait). */
const WORK_MS = 400;
/** Concurrent jobs per agent. */
const SLOTS = 12;
/** Deadline for the whole batch to settle: ack wait (30 s) + claim TTL (60 s) + margin. */
const SETTLE_TIMEOUT_MS = 110_000;

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

/** One run of an event on an agent: which router dispatched it, and when. */
interface AgentRun {
  eventId: string;
  routerId: string;
  agentId: string;
  atMs: number;
  answered: boolean;
}
const runs: AgentRun[] = [];

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
    const r: AgentRun = {
      eventId: work.event.id,
      routerId: work.routerId,
      agentId,
      atMs: Date.now(),
      answered: false,
    };
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

async function healthyWithAgents(httpPort: number, agents: number): Promise<boolean> {
  try {
    const r = (await (await fetch(`http://127.0.0.1:${httpPort}/healthz`)).json()) as { agents?: number };
    return (r.agents ?? 0) >= agents;
  } catch {
    return false;
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

beforeAll(async () => {
  nats = await startNatsServer();
  redis = await startRedisServer();
  const dir = mkdtempSync(join(tmpdir(), 'meshroute-router-kill-'));
  writeFileSync(join(dir, 'echo.wasm'), SPIN_WASM);
  writeFileSync(
    join(dir, 'echo.yaml'),
    'name: echo\nversion: 1.0.0\nartifacts:\n  wasm: { file: echo.wasm }\nlimits: { timeoutMs: 30000, memoryBytes: 16777216, outputBytes: 1024 }\ncapabilities: [stdin, stdout]\n',
  );
  await run(process.execPath, [BIN, 'workload', 'register', join(dir, 'echo.yaml'), '--nats-url', nats.url]);
  conn = await connectMesh({ servers: nats.url, name: 'router-kill-test' });
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map(exited));
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
      lostEvent.catch(() => undefined); // observed by the race below; never unhandled before it
      const jsm = await conn.jetstreamManager();
      conn.nc.subscribe(
        `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${names.streams.ingress}.${names.ingressConsumer}`,
        {
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
        },
      );

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
      await resultsFeed.close();
      await deadFeed.close();

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
