/**
 * Shared pieces of the tests that run real `meshroute` processes and kill things under load:
 * spawning the built CLI with its stderr kept for failure reports, an in-process agent that takes
 * a fixed time per job and records who dispatched what, the `echo` workload registration, following
 * the results and dead-letter streams, and failing fast when JetStream gives an event up.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  type CapacityReport,
  type DeadLetterRecord,
  decodeMessage,
  type MeshNames,
  meshNames,
  type WorkResult,
} from '@meshroute/mesh';
import { connectMesh, type MeshConnection, natsAgentMesh } from '@meshroute/transport-nats';
import { killOnExit } from '@meshroute/transport-nats/internal';

/** The repository root. */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The built CLI (`npx tsc -b packages/cli`). */
export const MESHROUTE_BIN = join(REPO_ROOT, 'packages/cli/dist/bin.js');

const run = promisify(execFile);

/** A WASI command that spins ~10^9 iterations (about a second). */
export const SPIN_WASM = Buffer.from(
  '0061736d01000000010401600000030201000503010001071302066d656d6f72790200065f737461727400000a1b011901017f0340200041016a21002000418094ebdc03470d000b0b',
  'hex',
);

/** Options of {@link spawnMeshroute}. */
export interface SpawnMeshrouteOptions {
  /** Keeps the last `maxLogLines` stderr lines of the process here (for failure reports). */
  logs?: string[];
  /** @default 50 */
  maxLogLines?: number;
  /** Every spawned process is pushed here (for the cleanup in `afterAll`). */
  children?: ChildProcess[];
}

/**
 * Start `node packages/cli/dist/bin.js <args>` at log level `warn`, killed with the test process
 * if it is left behind.
 */
export function spawnMeshroute(args: string[], options: SpawnMeshrouteOptions = {}): ChildProcess {
  const child = spawn(process.execPath, [MESHROUTE_BIN, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MESHROUTE_LOG_LEVEL: 'warn' },
  });
  killOnExit(child);
  options.children?.push(child);
  const lines = options.logs;
  const max = options.maxLogLines ?? 50;
  if (lines) {
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      lines.push(...chunk.split('\n').filter((l) => l.length > 0));
      if (lines.length > max) lines.splice(0, lines.length - max);
    });
  }
  return child;
}

/**
 * Start `meshroute router` (see {@link spawnMeshroute}) with the shipped policies, its HTTP ingress
 * on `httpPort`, on NATS and a Redis state store shared with the other routers.
 */
export function spawnRedisRouter(
  mesh: { natsUrl: string; redisUrl: string; httpPort: number; routerId: string },
  options: SpawnMeshrouteOptions = {},
): ChildProcess {
  return spawnMeshroute(
    [
      'router',
      '--nats-url',
      mesh.natsUrl,
      '--redis-url',
      mesh.redisUrl,
      '--http-port',
      String(mesh.httpPort),
      '--policies',
      join(REPO_ROOT, 'policies'),
      '--router-id',
      mesh.routerId,
    ],
    options,
  );
}

/** Whether a child process is still running. */
export function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Resolves once `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (!alive(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** SIGKILL every child still running and wait for all of them. */
export async function killAll(children: readonly ChildProcess[]): Promise<void> {
  for (const c of children) if (alive(c)) c.kill('SIGKILL');
  await Promise.all(children.map(exited));
}

/**
 * Register the `echo` workload (artifact: {@link SPIN_WASM}) with `meshroute workload register`,
 * so that routers checking the registry accept events naming it.
 */
export async function registerEchoWorkload(natsUrl: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshroute-echo-'));
  writeFileSync(join(dir, 'echo.wasm'), SPIN_WASM);
  writeFileSync(
    join(dir, 'echo.yaml'),
    'name: echo\nversion: 1.0.0\nartifacts:\n  wasm: { file: echo.wasm }\nlimits: { timeoutMs: 30000, memoryBytes: 16777216, outputBytes: 1024 }\ncapabilities: [stdin, stdout]\n',
  );
  await run(process.execPath, [MESHROUTE_BIN, 'workload', 'register', join(dir, 'echo.yaml'), '--nats-url', natsUrl]);
}

/** One run of an event on a {@link startTimedAgent} agent: which router dispatched it, and when. */
export interface AgentRun {
  eventId: string;
  routerId: string;
  agentId: string;
  atMs: number;
  answered: boolean;
}

/** Options of {@link startTimedAgent}. */
export interface TimedAgentOptions {
  /** How long each job takes (the agent's work, not a test wait). */
  workMs: number;
  /** Concurrent jobs announced in the heartbeats. */
  slots: number;
  /** Every job is pushed here when it starts; `answered` is set when it ends. */
  runs: AgentRun[];
}

/**
 * An in-process agent in DE on its own NATS connection: heartbeats every 250 ms and answers each
 * job after `workMs`. Resolves with a function that stops it.
 */
export async function startTimedAgent(
  natsUrl: string,
  agentId: string,
  options: TimedAgentOptions,
): Promise<() => Promise<void>> {
  const { workMs, slots, runs } = options;
  const agentConn = await connectMesh({ servers: natsUrl, name: agentId });
  const mesh = natsAgentMesh(agentConn);
  const instanceId = randomUUID();
  let inFlight = 0;
  let seq = 0;
  const stopServing = mesh.serveWork(agentId, async (work): Promise<WorkResult> => {
    const r: AgentRun = { eventId: work.event.id, routerId: work.routerId, agentId, atMs: Date.now(), answered: false };
    runs.push(r);
    inFlight++;
    const started = Date.now();
    await new Promise((resolve) => setTimeout(resolve, workMs));
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
    latencyP50Ms: workMs,
    latencyP99Ms: workMs * 2,
    slots,
    freeSlots: Math.max(0, slots - inFlight),
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
  return async () => {
    clearInterval(timer);
    await stopServing().catch(() => undefined);
    await agentConn.close().catch(() => undefined);
  };
}

/** The outcome record a user reads, followed as it grows. */
export interface OutcomeFeeds {
  /** Successful results per event id. */
  okResults: Map<string, number>;
  deadLetters: DeadLetterRecord[];
  /** Stop following. */
  close(): Promise<void>;
}

/** Follow the results and dead-letter streams from their start. */
export async function followOutcomes(conn: MeshConnection, names: MeshNames = meshNames()): Promise<OutcomeFeeds> {
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
  const results = await follow(names.streams.results, (data) => {
    const r = decodeMessage('meshroute.result/v1', data);
    if (r.ok) okResults.set(r.eventId, (okResults.get(r.eventId) ?? 0) + 1);
  });
  const dead = await follow(names.streams.deadLetters, (data) => {
    deadLetters.push(decodeMessage('meshroute.deadletter/v1', data));
  });
  return {
    okResults,
    deadLetters,
    async close() {
      await results.close();
      await dead.close();
    },
  };
}

/** Events JetStream gave up on, and a promise that rejects at the first one. */
export interface GivenUpWatch {
  gaveUp: { eventId: string; deliveries: number }[];
  /** Rejects (naming the event) when the ingress consumer stops delivering a message; race waits against it. */
  lostEvent: Promise<never>;
}

/**
 * Watch the ingress consumer's MAX_DELIVERIES advisory: a message JetStream stops delivering is
 * lost for good (no router will see it again), so a test can fail at once, naming the event.
 */
export async function watchGivenUp(conn: MeshConnection, names: MeshNames = meshNames()): Promise<GivenUpWatch> {
  const gaveUp: GivenUpWatch['gaveUp'] = [];
  let lost!: (err: Error) => void;
  const lostEvent = new Promise<never>((_resolve, reject) => {
    lost = reject;
  });
  lostEvent.catch(() => undefined); // observed by the caller's races; never unhandled before them
  const jsm = await conn.jetstreamManager();
  conn.nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${names.streams.ingress}.${names.ingressConsumer}`, {
    callback: (_err, msg) => {
      const advisory = JSON.parse(new TextDecoder().decode(msg.data)) as { stream_seq: number; deliveries: number };
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
  return { gaveUp, lostEvent };
}
