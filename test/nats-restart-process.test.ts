/**
 * kill -9 of the (single, file-backed JetStream) nats-server under load, restarted ~2 s later on
 * the same port and store directory, behind one real `meshroute router` process and two real
 * `meshroute agent --backend wasm` processes running a short WASI workload (~100 ms a job).
 * A producer publishes a few hundred events at a steady pace across the outage; a publish that
 * fails while the server is away is retried with the same event id (the mesh de-duplicates it by
 * `Nats-Msg-Id`, as a real producer's retries would be).
 *
 * What a user notices: the router and the agents ride out the outage (they reconnect, none exits),
 * the router's `GET /healthz` answers ok with both agents again, every event ends with exactly one
 * successful result on the results stream, nothing is dead-lettered and JetStream never gives an
 * event up (no MAX_DELIVERIES advisory).
 *
 * An event may be dispatched to an agent twice across the outage (at-least-once execution): while
 * the server is away the router hears no heartbeats, drops the agents after the loss window and
 * takes back the work they were running (their replies are lost with the server anyway); that work
 * is handed back to ingress and dispatched again once the mesh is back. A killed server may also
 * forget an ingress ack it had not yet written and redeliver an event that was already answered;
 * the router's idempotency record settles that delivery on the recorded outcome. So the test
 * asserts one successful result per event, at most two dispatches per event (as seen on the work
 * subjects), and a second dispatch only for work first dispatched before the server came back.
 *
 * Timing: the ack wait of the ingress consumer is 30 s (`meshroute router` has no flag for it); an
 * event handed back while the server is away can wait for it, hence the settle deadline.
 */
import { type ChildProcess, execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { createClient } from '@meshroute/client';
import {
  type CapacityReport,
  type DeadLetterRecord,
  decodeMessage,
  meshNames,
  type WorkItem,
  type WorkResult,
} from '@meshroute/mesh';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import { connectMesh, freePort, type MeshConnection } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, killAll, MESHROUTE_BIN, REPO_ROOT, spawnMeshroute, watchGivenUp } from './support/processes.js';

const run = promisify(execFile);

/** Events published. */
const EVENTS = 300;
/** Pause between two publishes: the producer's pace (not a test wait), so publishing spans the outage. */
const PUBLISH_PACE_MS = 8;
/** How long the server stays down before it is started again. */
const OUTAGE_MS = 2_000;
/** Loop iterations of the WASI workload (~1 s per 10^9: about 100 ms a job). */
const SPIN_ITERATIONS = 100_000_000;
/** Router start-up loss window (heartbeat interval 1 s x 3 missed heartbeats) plus a margin. */
const STARTUP_GRACE_MS = 3_500;
/**
 * Deadline for every event to settle once the server is back: settles within ~10 s, but an event
 * handed back to ingress while the server was away may wait for the ingress ack wait (30 s).
 */
const SETTLE_TIMEOUT_MS = 45_000;

/**
 * A WASI command that counts to `iterations` and exits: `_start` loops `i++` until `i == iterations`.
 * The constant is written as a 5-byte (padded) signed LEB128 so the module's section sizes stay fixed.
 */
function spinWasm(iterations: number): Buffer {
  const leb = [0, 1, 2, 3].map((i) => 0x80 | ((iterations >>> (7 * i)) & 0x7f));
  leb.push((iterations >>> 28) & 0x07);
  return Buffer.concat([
    Buffer.from(
      '0061736d01000000010401600000030201000503010001071302066d656d6f72790200065f737461727400000a1b011901017f0340200041016a21002000' +
        '41',
      'hex',
    ),
    Buffer.from(leb),
    Buffer.from('470d000b0b', 'hex'),
  ]);
}

let nats: TestNatsServer;
let conn: MeshConnection;
const children: ChildProcess[] = [];
/** The last lines each process wrote to stderr (printed when the test fails). */
const logs = new Map<string, string[]>();
const heartbeats = new Map<string, CapacityReport>();
/** When each event was dispatched to an agent (work items seen on the agents' work subjects). */
const dispatches = new Map<string, number[]>();

function meshroute(name: string, args: string[]): ChildProcess {
  const lines: string[] = [];
  logs.set(name, lines);
  const child = spawnMeshroute([...args, '--nats-url', nats.url], { logs: lines, maxLogLines: 40, children });
  child.once('exit', (code, signal) => lines.push(`<exited: code ${String(code)}, signal ${String(signal)}>`));
  return child;
}

function agent(id: string): ChildProcess {
  return meshroute(id, [
    'agent',
    '--backend',
    'wasm',
    '--id',
    id,
    '--region',
    'eu-central',
    '--jurisdiction',
    'DE',
    '--carbon',
    '200',
    '--slots',
    '4',
    '--heartbeat-interval-ms',
    '250',
  ]);
}

/** `GET /healthz` of the router: status ok with at least `agents` agents. */
async function healthy(httpPort: number, agents: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
    const h = (await res.json()) as { status?: string; agents?: number };
    return res.status === 200 && h.status === 'ok' && (h.agents ?? 0) >= agents;
  } catch {
    return false;
  }
}

/** Every message of a stream, read from its first sequence with a fresh ordered consumer. */
async function readStream(stream: string): Promise<Uint8Array[]> {
  const jsm = await conn.jetstreamManager();
  const info = await jsm.streams.info(stream);
  const last = info.state.last_seq;
  if (info.state.messages === 0) return [];
  const consumer = await conn.js.consumers.get(stream);
  const out: Uint8Array[] = [];
  const messages = await consumer.consume();
  try {
    for await (const m of messages) {
      out.push(m.data);
      if (m.seq >= last) break;
    }
  } finally {
    await messages.close();
  }
  return out;
}

beforeAll(async () => {
  nats = await startNatsServer();
  const dir = mkdtempSync(join(tmpdir(), 'meshroute-nats-restart-'));
  writeFileSync(join(dir, 'spin.wasm'), spinWasm(SPIN_ITERATIONS));
  writeFileSync(
    join(dir, 'spin.yaml'),
    'name: spin\nversion: 1.0.0\nartifacts:\n  wasm: { file: spin.wasm }\nlimits: { timeoutMs: 30000, memoryBytes: 16777216, outputBytes: 1024 }\ncapabilities: [stdin, stdout]\n',
  );
  await run(process.execPath, [MESHROUTE_BIN, 'workload', 'register', join(dir, 'spin.yaml'), '--nats-url', nats.url]);
  conn = await connectMesh({ servers: nats.url, name: 'nats-restart-test', reconnectTimeWaitMs: 250 });
  const names = meshNames();
  conn.nc.subscribe(names.capacityWildcard, {
    callback: (_err, msg) => {
      const h = decodeMessage('meshroute.capacity/v1', msg.data) as CapacityReport;
      heartbeats.set(h.agentId, h);
    },
  });
  conn.nc.subscribe(names.workSubject('*'), {
    callback: (_err, msg) => {
      try {
        const w = decodeMessage('meshroute.work/v1', msg.data) as WorkItem;
        const at = dispatches.get(w.event.id) ?? [];
        at.push(Date.now());
        dispatches.set(w.event.id, at);
      } catch {
        // not a work item (an agent's control message): not counted
      }
    },
  });
});

afterAll(async () => {
  await killAll(children);
  await conn?.close();
  await nats?.stop();
});

describe('kill -9 and restart of the nats-server under load (router and agents as processes)', () => {
  it('router and agents reconnect; every event ends with exactly one successful result', async () => {
    const httpPort = await freePort();
    const router = meshroute('router', [
      'router',
      '--http-port',
      String(httpPort),
      '--policies',
      join(REPO_ROOT, 'policies'),
      '--router-id',
      'restart-router',
    ]);
    const agents = [agent('agent-1'), agent('agent-2')];
    await waitFor('router healthy with both agents', () => healthy(httpPort, 2), {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    // A router hands work back instead of dead-lettering it for lack of agents during one loss
    // window after it starts (heartbeat interval 1 s x 3 missed heartbeats): the outage here hits
    // a router that has run for longer, as in production.
    await delay(STARTUP_GRACE_MS);

    const names = meshNames();
    const jsm = await conn.jetstreamManager();

    // An ingress message JetStream stops delivering (max deliveries reached) is lost for good.
    const { gaveUp, lostEvent } = await watchGivenUp(conn, names);

    // The producer: a steady pace, each event retried with its own id until the mesh accepts it.
    const client = createClient({ nats: conn, source: '/nats-restart-test', publishTimeoutMs: 2_000 });
    const ids = Array.from({ length: EVENTS }, (_, n) => `nats-restart-${n}-${Date.now().toString(36)}`);
    let published = 0;
    let publishRetries = 0;
    const publishing = (async () => {
      for (const [n, id] of ids.entries()) {
        const deadline = Date.now() + SETTLE_TIMEOUT_MS;
        for (;;) {
          try {
            await client.publish({ id, type: 'com.example.job', data: { n } }, { residency: 'eu', workload: 'spin' });
            break;
          } catch (err) {
            if (Date.now() > deadline) throw err;
            publishRetries++;
            await delay(100);
          }
        }
        published++;
        await delay(PUBLISH_PACE_MS);
      }
    })();
    publishing.catch(() => undefined); // awaited below

    // Under load: a third published, results on the way, and the agents running work.
    let okSoFar = 0;
    await waitFor(
      'a third of the events published and agents running work',
      async () => {
        if (published < EVENTS / 3) return false;
        okSoFar = (await jsm.streams.info(names.streams.results)).state.messages;
        return okSoFar > 0 && [...heartbeats.values()].some((h) => h.inFlight > 0);
      },
      { timeoutMs: 30_000, intervalMs: 20 },
    );
    const publishedBeforeKill = published;
    const killedAtMs = Date.now();
    await nats.kill('SIGKILL');
    expect(nats.running()).toBe(false);
    await delay(OUTAGE_MS); // the outage itself (not a wait for a condition)
    await nats.restart();
    const restartedAtMs = Date.now();

    const settled = new Map<string, number>(); // event id -> successful results
    const settledAtMs = new Map<string, number>(); // event id -> when its result was first seen
    let deadLetters: DeadLetterRecord[] = [];
    try {
      // The processes come back on their own; none exited.
      await Promise.race([
        lostEvent,
        waitFor('router healthy with both agents after the restart', () => healthy(httpPort, 2), {
          timeoutMs: 20_000,
          intervalMs: 200,
        }),
      ]);
      await Promise.race([lostEvent, publishing]);
      await Promise.race([
        lostEvent,
        waitFor(
          'every event has a successful result or a dead letter',
          async () => {
            if (gaveUp.length > 0) return true; // `lostEvent` has failed the race
            settled.clear();
            for (const data of await readStream(names.streams.results)) {
              const r = decodeMessage('meshroute.result/v1', data) as WorkResult;
              if (r.ok) settled.set(r.eventId, (settled.get(r.eventId) ?? 0) + 1);
            }
            for (const id of settled.keys()) if (!settledAtMs.has(id)) settledAtMs.set(id, Date.now());
            deadLetters = (await readStream(names.streams.deadLetters)).map(
              (d) => decodeMessage('meshroute.deadletter/v1', d) as DeadLetterRecord,
            );
            return ids.every((id) => settled.has(id) || deadLetters.some((d) => d.eventId === id));
          },
          { timeoutMs: SETTLE_TIMEOUT_MS, intervalMs: 500 },
        ),
      ]);
    } catch (err) {
      const consumer = await jsm.consumers.info(names.streams.ingress, names.ingressConsumer).catch(() => undefined);
      console.error('nats-server kill -9 + restart: unsettled', {
        secondsSinceRestart: Math.round((Date.now() - restartedAtMs) / 1000),
        published,
        publishRetries,
        missing: ids.filter((id) => !settled.has(id)).length,
        gaveUp,
        deadLetters: deadLetters.length,
        alive: { router: alive(router), agents: agents.map(alive) },
        ingressConsumer: consumer && {
          numPending: consumer.num_pending,
          numAckPending: consumer.num_ack_pending,
          numRedelivered: consumer.num_redelivered,
          ackFloor: consumer.ack_floor,
          delivered: consumer.delivered,
        },
        logs: Object.fromEntries(logs),
        natsLog: nats.logTail().split('\n').slice(-20),
      });
      throw err;
    }

    // Nobody exited across the outage; the router still answers ok with both agents.
    expect({ router: alive(router), agents: agents.map(alive) }).toEqual({ router: true, agents: [true, true] });
    expect(await healthy(httpPort, 2)).toBe(true);
    // Nothing dead-lettered, nothing given up, exactly one successful result per event.
    expect(deadLetters.map((d) => `${d.eventId}: ${d.reason}`)).toEqual([]);
    expect(gaveUp).toEqual([]);
    expect(ids.filter((id) => settled.get(id) !== 1)).toEqual([]);
    // At-least-once execution across the outage, never more than a second dispatch, and a second
    // one only for work first dispatched before the server came back (its outcome was lost).
    const twice = ids.filter((id) => (dispatches.get(id)?.length ?? 0) > 1);
    expect(ids.filter((id) => (dispatches.get(id)?.length ?? 0) > 2)).toEqual([]);
    expect(twice.filter((id) => (dispatches.get(id)?.[0] ?? Number.POSITIVE_INFINITY) >= restartedAtMs)).toEqual([]);
    console.info('nats-server kill -9 + restart', {
      publishedBeforeKill,
      resultsBeforeKill: okSoFar,
      publishRetries,
      dispatchedTwice: twice.length,
      settledSecondsAfterRestart: Math.round((Date.now() - restartedAtMs) / 1000),
      outageMs: restartedAtMs - killedAtMs,
      // The last events to settle: when (ms after the restart) they were dispatched and settled.
      lastToSettle: [...settledAtMs]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 5)
        .map(([id, at]) => ({
          n: ids.indexOf(id),
          dispatchedMs: (dispatches.get(id) ?? []).map((d) => d - restartedAtMs).join(' '),
          settledMs: at - restartedAtMs,
        })),
    });
  }, 150_000);
});
