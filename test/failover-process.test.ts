/**
 * kill -9 of a real `meshroute agent` process holding in-flight work, behind a real
 * `meshroute router` process, on a real nats-server: every item completes on the other eligible
 * agent, none is lost, each producer gets exactly one answer, and the results stream holds exactly
 * one successful result per event.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createClient, type InvokeResult } from '@meshroute/client';
import { type CapacityReport, decodeMessage, meshNames, type WorkResult } from '@meshroute/mesh';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import { connectMesh, freePort, type MeshConnection } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(root, 'packages/cli/dist/bin.js');
const run = promisify(execFile);

/** A WASI command that spins ~10^9 iterations (about a second). */
const SPIN_WASM = Buffer.from(
  '0061736d01000000010401600000030201000503010001071302066d656d6f72790200065f737461727400000a1b011901017f0340200041016a21002000418094ebdc03470d000b0b',
  'hex',
);

let nats: TestNatsServer;
let conn: MeshConnection;
const children: ChildProcess[] = [];
const heartbeats: CapacityReport[] = [];

function meshroute(args: string[]): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args, '--nats-url', nats.url], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, MESHROUTE_LOG_LEVEL: 'warn' },
  });
  children.push(child);
  return child;
}

function agent(id: string, carbon: number): ChildProcess {
  return meshroute([
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
    String(carbon),
    '--slots',
    '4',
    '--heartbeat-interval-ms',
    '250',
  ]);
}

beforeAll(async () => {
  nats = await startNatsServer();
  const dir = mkdtempSync(join(tmpdir(), 'meshroute-failover-'));
  writeFileSync(join(dir, 'spin.wasm'), SPIN_WASM);
  writeFileSync(
    join(dir, 'spin.yaml'),
    'name: spin\nversion: 1.0.0\nartifacts:\n  wasm: { file: spin.wasm }\nlimits: { timeoutMs: 30000, memoryBytes: 16777216, outputBytes: 1024 }\ncapabilities: [stdin, stdout]\n',
  );
  await run(process.execPath, [BIN, 'workload', 'register', join(dir, 'spin.yaml'), '--nats-url', nats.url]);
  conn = await connectMesh({ servers: nats.url, name: 'failover-test' });
  conn.nc.subscribe(meshNames().capacityWildcard, {
    callback: (_err, msg) => heartbeats.push(decodeMessage('meshroute.capacity/v1', msg.data)),
  });
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await conn?.close();
  await nats?.stop();
});

describe('kill -9 of an agent process with work in flight', () => {
  it('completes every item on the other eligible agent, answered once, one result each', async () => {
    // The victim is far greener, so the policy's low-carbon preference sends the work there.
    const victim = agent('victim-1', 5);
    agent('survivor-1', 400);
    const httpPort = await freePort();
    meshroute([
      'router',
      '--http-port',
      String(httpPort),
      '--policies',
      join(root, 'policies'),
      '--router-id',
      'failover-router',
    ]);
    await waitFor(
      'router ready with both agents',
      async () => {
        try {
          const r = (await (await fetch(`http://127.0.0.1:${httpPort}/healthz`)).json()) as { agents?: number };
          return (r.agents ?? 0) >= 2;
        } catch {
          return false;
        }
      },
      { timeoutMs: 30_000 },
    );

    const client = createClient({ nats: conn, source: '/failover-test' });
    const invocations = Array.from({ length: 4 }, () =>
      client.invoke('spin', '', { residency: 'eu', latencyBudgetMs: 60_000 }, { timeoutMs: 90_000 }),
    );
    // Wait until the victim reports the work in flight, then kill it without a chance to answer.
    await waitFor('victim holding the work', () => heartbeats.some((h) => h.agentId === 'victim-1' && h.inFlight > 0), {
      timeoutMs: 30_000,
    });
    victim.kill('SIGKILL');

    const results: InvokeResult[] = await Promise.all(invocations);
    for (const r of results) expect(r.agent?.id).toBe('survivor-1');
    expect(new Set(results.map((r) => r.id)).size).toBe(4);

    // The results stream: exactly one successful result per event.
    const jsm = await conn.jetstreamManager();
    const ids = new Set(results.map((r) => r.id));
    const perEvent = new Map<string, number>();
    await waitFor(
      'results stream holds every event',
      async () => {
        perEvent.clear();
        const info = await jsm.streams.info(meshNames().streams.results);
        for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
          const m = await jsm.streams.getMessage(meshNames().streams.results, { seq }).catch(() => undefined);
          if (!m) continue;
          const result = decodeMessage('meshroute.result/v1', m.data) as WorkResult;
          if (ids.has(result.eventId) && result.ok)
            perEvent.set(result.eventId, (perEvent.get(result.eventId) ?? 0) + 1);
        }
        return perEvent.size === ids.size;
      },
      { timeoutMs: 20_000 },
    );
    expect([...perEvent.values()]).toEqual([1, 1, 1, 1]);
  });
});
