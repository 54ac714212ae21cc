/**
 * A real `meshroute agent` process on a real nats-server: heartbeats on the mesh, work addressed
 * to it (and only it), typed errors that do not take it down, and a SIGTERM drain that finishes
 * in-flight work and announces `leaving`. Workloads are registered with `meshroute workload register`.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type CapacityReport, decodeMessage, ErrorCode, meshNames, type WorkItem } from '@meshroute/mesh';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import { connectMesh, type MeshConnection, natsMesh, provisionMesh } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(root, 'packages/cli/dist/bin.js');
const run = promisify(execFile);

/** A WASI command that spins ~10^9 iterations (about a second): work that is in flight for a while. */
const SPIN_WASM = Buffer.from(
  '0061736d01000000010401600000030201000503010001071302066d656d6f72790200065f737461727400000a1b011901017f0340200041016a21002000418094ebdc03470d000b0b',
  'hex',
);

let nats: TestNatsServer;
let conn: MeshConnection;
const heartbeats: CapacityReport[] = [];
const children: ChildProcess[] = [];
let seq = 0;

function work(agentId: string, workload: string, data: unknown, timeoutMs = 20_000): WorkItem {
  seq++;
  return {
    schema: 'meshroute.work/v1',
    workId: `it-${seq}`,
    attempt: 1,
    decisionId: `d-${seq}`,
    routerId: 'it-router',
    agentId,
    workload,
    event: { specversion: '1.0', id: `e-${seq}`, source: '/it', type: 'it.job', data },
    dispatchedAtMs: Date.now(),
    timeoutMs,
  };
}

function startAgent(
  id: string,
  extra: string[] = [],
): { child: ChildProcess; stderr: () => string; exited: Promise<number | null> } {
  const child = spawn(
    process.execPath,
    [
      BIN,
      'agent',
      '--backend',
      'wasm',
      '--id',
      id,
      '--region',
      'eu-west',
      '--jurisdiction',
      'DE',
      '--carbon',
      '95',
      '--label',
      'tier=edge',
      '--cost',
      '0.001',
      '--heartbeat-interval-ms',
      '250',
      '--nats-url',
      nats.url,
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESHROUTE_LOG_LEVEL: 'info' } },
  );
  children.push(child);
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stderr: () => err, exited };
}

function heartbeatOf(id: string, pred: (r: CapacityReport) => boolean = () => true, timeoutMs = 30_000) {
  return waitFor(`a heartbeat of ${id}`, () => heartbeats.find((h) => h.agentId === id && pred(h)), { timeoutMs });
}

beforeAll(async () => {
  nats = await startNatsServer();
  conn = await connectMesh({ servers: nats.url, name: 'agent-it' });
  await provisionMesh(conn);
  conn.nc.subscribe(meshNames().capacityWildcard, {
    callback: (_err, msg) => {
      heartbeats.push(decodeMessage('meshroute.capacity/v1', msg.data));
    },
  });
  const dir = mkdtempSync(join(tmpdir(), 'meshroute-agent-it-'));
  writeFileSync(join(dir, 'spin.wasm'), SPIN_WASM);
  writeFileSync(join(dir, 'broken.wasm'), Buffer.from('this is not a wasm module'));
  writeFileSync(
    join(dir, 'spin.yaml'),
    'name: spin\nversion: 1.0.0\nartifacts:\n  wasm: { file: spin.wasm }\nlimits: { timeoutMs: 30000, memoryBytes: 16777216, outputBytes: 1024 }\ncapabilities: [stdin, stdout]\n',
  );
  writeFileSync(
    join(dir, 'broken.yaml'),
    'name: broken\nversion: 1.0.0\nartifacts:\n  wasm: { file: broken.wasm }\nlimits: { timeoutMs: 2000, memoryBytes: 16777216, outputBytes: 1024 }\ncapabilities: [stdin, stdout]\n',
  );
  const reg = await run(process.execPath, [
    BIN,
    'workload',
    'register',
    join(root, 'deploy/workloads/checksum.yaml'),
    join(dir, 'spin.yaml'),
    join(dir, 'broken.yaml'),
    '--nats-url',
    nats.url,
  ]);
  expect(reg.stdout).toContain('registered checksum@1.0.0');
  const list = await run(process.execPath, [BIN, 'workload', 'list', '--json', '--nats-url', nats.url]);
  expect((JSON.parse(list.stdout) as { name: string }[]).map((s) => s.name)).toEqual(['broken', 'checksum', 'spin']);
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await conn?.close();
  await nats?.stop();
});

describe('meshroute agent (real process, real nats-server)', () => {
  it('heartbeats its identity and capacity, runs work addressed to it, and survives a bad module', async () => {
    const agent = startAgent('edge-eu-1', ['--slots', '2']);
    const first = await heartbeatOf('edge-eu-1');
    expect(first).toMatchObject({
      status: 'ready',
      backends: ['wasm'],
      region: 'eu-west',
      jurisdiction: 'DE',
      carbonIntensity: 95,
      carbonSource: 'fixed',
      slots: 2,
      freeSlots: 2,
      costPerJob: '0.001',
      labels: { tier: 'edge' },
      heartbeatIntervalMs: 250,
    });
    expect(Object.keys(first.facts).length).toBeGreaterThan(0);
    const later = await heartbeatOf('edge-eu-1', (h) => h.seq >= first.seq + 2);
    expect(later.instanceId).toBe(first.instanceId);

    const mesh = natsMesh(conn, { routerId: 'it-router' });
    const ok = await mesh.dispatch(work('edge-eu-1', 'checksum', '123456789'), { timeoutMs: 20_000 });
    expect(ok).toMatchObject({ ok: true, agentId: 'edge-eu-1', output: 'cbf43926' });

    const bad = await mesh.dispatch(work('edge-eu-1', 'broken', 'x'), { timeoutMs: 20_000 });
    expect(bad.ok).toBe(false);
    expect(bad.error?.code).toBeTypeOf('string');
    expect([ErrorCode.WORKLOAD_FAILED, ErrorCode.ARTIFACT_ERROR]).toContain(bad.error?.code);

    const missing = await mesh.dispatch(work('edge-eu-1', 'no-such-workload', 'x'), { timeoutMs: 20_000 });
    expect(missing.error?.code).toBe(ErrorCode.WORKLOAD_NOT_FOUND);

    // Misaddressed work on its subject is refused, not run.
    const reply = await conn.nc.request(
      meshNames().workSubject('edge-eu-1'),
      new TextEncoder().encode(JSON.stringify(work('edge-us-9', 'checksum', 'abc'))),
      { timeout: 20_000 },
    );
    const refused = decodeMessage('meshroute.result/v1', reply.data);
    expect(refused.error).toMatchObject({ code: ErrorCode.AGENT_REJECTED, retryable: true });

    // Still serving after all that.
    const again = await mesh.dispatch(work('edge-eu-1', 'checksum', 'hello'), { timeoutMs: 20_000 });
    expect(again).toMatchObject({ ok: true, output: '3610a686' });
    expect(agent.child.exitCode).toBeNull();
  });

  it('never receives work addressed to another agent', async () => {
    startAgent('edge-eu-2');
    await heartbeatOf('edge-eu-2');
    const mesh = natsMesh(conn, { routerId: 'it-router' });
    await expect(mesh.dispatch(work('edge-us-1', 'checksum', 'x'), { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: expect.stringMatching(/AGENT_REJECTED|TIMEOUT/),
    });
    const served = await mesh.dispatch(work('edge-eu-2', 'checksum', '123456789'), { timeoutMs: 20_000 });
    expect(served).toMatchObject({ ok: true, agentId: 'edge-eu-2' });
  });

  it('drains on SIGTERM: finishes in-flight work, announces draining then leaving, exits 0', async () => {
    const agent = startAgent('edge-eu-3', ['--slots', '1', '--drain-grace-ms', '60000']);
    await heartbeatOf('edge-eu-3');
    const mesh = natsMesh(conn, { routerId: 'it-router' });
    const inflight = mesh.dispatch(work('edge-eu-3', 'spin', '', 60_000), { timeoutMs: 60_000 });
    await heartbeatOf('edge-eu-3', (h) => h.inFlight === 1);
    agent.child.kill('SIGTERM');
    const draining = await heartbeatOf('edge-eu-3', (h) => h.status === 'draining');
    expect(draining.freeSlots).toBe(0);
    const result = await inflight;
    expect(result).toMatchObject({ ok: true, agentId: 'edge-eu-3' });
    const leaving = await heartbeatOf('edge-eu-3', (h) => h.status === 'leaving');
    expect(leaving.inFlight).toBe(0);
    expect(leaving.seq).toBeGreaterThan(draining.seq);
    expect(await agent.exited).toBe(0);
    expect(agent.stderr()).toContain('agent left the mesh');
  });
});
