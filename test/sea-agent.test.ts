/**
 * The edge agent single executable (`npm run build:sea` → dist-sea/meshroute-edge-agent), run as a
 * child process from a temporary directory with an empty environment (no node, no node_modules
 * reachable) against a real nats-server: it heartbeats, runs the `checksum` WebAssembly workload
 * in its embedded worker, and drains on SIGTERM (in-flight work finishes, `leaving`, exit 0).
 *
 * The build is cached by input hash (the script skips the injection when nothing changed), so
 * this file costs one esbuild bundle (a few seconds) when the executable is up to date.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type CapacityReport, decodeMessage, meshNames, type WorkItem } from '@meshroute/mesh';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import { connectMesh, type MeshConnection, natsMesh, provisionMesh } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const BUILD = join(root, 'scripts/build-sea.mjs');
const CLI = join(root, 'packages/cli/dist/bin.js');
const run = promisify(execFile);

/** A WASI command that spins ~10^9 iterations (about a second): work that is in flight for a while. */
const SPIN_WASM = Buffer.from(
  '0061736d01000000010401600000030201000503010001071302066d656d6f72790200065f737461727400000a1b011901017f0340200041016a21002000418094ebdc03470d000b0b',
  'hex',
);

interface BuildReport {
  executable: string;
  bytes: number;
  rebuilt: boolean;
}

let built: BuildReport;
let exe: string;
let workDir: string;
let nats: TestNatsServer;
let conn: MeshConnection;
const heartbeats: CapacityReport[] = [];
const children: ChildProcess[] = [];
let seq = 0;

async function buildSea(): Promise<BuildReport> {
  const { stdout } = await run(process.execPath, [BUILD], { cwd: root, timeout: 110_000 });
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as BuildReport;
}

function work(agentId: string, workload: string, data: unknown, timeoutMs = 20_000): WorkItem {
  seq++;
  return {
    schema: 'meshroute.work/v1',
    workId: `sea-${seq}`,
    attempt: 1,
    decisionId: `d-${seq}`,
    routerId: 'sea-router',
    agentId,
    workload,
    event: { specversion: '1.0', id: `e-${seq}`, source: '/sea', type: 'sea.job', data },
    dispatchedAtMs: Date.now(),
    timeoutMs,
  };
}

/** Start the executable from `workDir` with an empty environment. */
function startEdgeAgent(args: string[]): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(exe, args, { cwd: workDir, env: {}, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

function heartbeatOf(id: string, pred: (r: CapacityReport) => boolean = () => true, timeoutMs = 30_000) {
  return waitFor(`a heartbeat of ${id}`, () => heartbeats.find((h) => h.agentId === id && pred(h)), { timeoutMs });
}

beforeAll(async () => {
  built = await buildSea();
  expect(existsSync(built.executable)).toBe(true);
  // A directory of its own, away from the repository: nothing to resolve modules from.
  workDir = mkdtempSync(join(tmpdir(), 'meshroute-sea-'));
  exe = join(workDir, 'meshroute-edge-agent');
  copyFileSync(built.executable, exe);
  for (let dir = workDir; ; dir = dirname(dir)) {
    expect(existsSync(join(dir, 'node_modules')), `node_modules above ${workDir}`).toBe(false);
    if (dirname(dir) === dir) break;
  }

  nats = await startNatsServer();
  conn = await connectMesh({ servers: nats.url, name: 'sea-it' });
  await provisionMesh(conn);
  conn.nc.subscribe(meshNames().capacityWildcard, {
    callback: (_err, msg) => {
      heartbeats.push(decodeMessage('meshroute.capacity/v1', msg.data));
    },
  });
  writeFileSync(join(workDir, 'spin.wasm'), SPIN_WASM);
  writeFileSync(
    join(workDir, 'spin.yaml'),
    'name: spin\nversion: 1.0.0\nartifacts:\n  wasm: { file: spin.wasm }\nlimits: { timeoutMs: 30000, memoryBytes: 16777216, outputBytes: 1024 }\ncapabilities: [stdin, stdout]\n',
  );
  const reg = await run(process.execPath, [
    CLI,
    'workload',
    'register',
    join(root, 'deploy/workloads/checksum.yaml'),
    join(workDir, 'spin.yaml'),
    '--nats-url',
    nats.url,
  ]);
  expect(reg.stdout).toContain('registered checksum@1.0.0');
}, 180_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await conn?.close();
  await nats?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe('edge agent single executable', () => {
  it('is one file that runs without Node.js or node_modules: version, and a clear error for other backends', async () => {
    expect(built.bytes).toBeGreaterThan(1_000_000);
    const version = await run(exe, ['--version'], { cwd: workDir, env: {} });
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const gpu = startEdgeAgent(['--backend', 'gpu', '--id', 'x', '--region', 'r', '--jurisdiction', 'DE']);
    expect(await gpu.exited).not.toBe(0);
    expect(gpu.output()).toContain("argument 'gpu' is invalid");
  });

  it('heartbeats, runs the checksum workload, drains on SIGTERM and exits 0 after leaving', async () => {
    const agent = startEdgeAgent([
      '--id',
      'sea-edge-1',
      '--region',
      'eu-west',
      '--jurisdiction',
      'DE',
      '--carbon',
      '80',
      '--slots',
      '1',
      '--label',
      'tier=device',
      '--heartbeat-interval-ms',
      '250',
      '--drain-grace-ms',
      '60000',
      '--nats-url',
      nats.url,
    ]);
    const first = await heartbeatOf('sea-edge-1');
    expect(first).toMatchObject({
      status: 'ready',
      backends: ['wasm'],
      region: 'eu-west',
      jurisdiction: 'DE',
      carbonIntensity: 80,
      slots: 1,
      labels: { tier: 'device' },
    });

    const mesh = natsMesh(conn, { routerId: 'sea-router' });
    const ok = await mesh.dispatch(work('sea-edge-1', 'checksum', '123456789'), { timeoutMs: 20_000 });
    expect(ok).toMatchObject({ ok: true, agentId: 'sea-edge-1', output: 'cbf43926' });

    // Only a heartbeat sent after this dispatch counts: the checksum job above also filled the slot.
    const since = Date.now();
    const inflight = mesh.dispatch(work('sea-edge-1', 'spin', '', 60_000), { timeoutMs: 60_000 });
    await heartbeatOf('sea-edge-1', (h) => h.inFlight === 1 && h.sentAtMs >= since);
    agent.child.kill('SIGTERM');
    const draining = await heartbeatOf('sea-edge-1', (h) => h.status === 'draining');
    expect(await inflight).toMatchObject({ ok: true, agentId: 'sea-edge-1' });
    const leaving = await heartbeatOf('sea-edge-1', (h) => h.status === 'leaving');
    expect(leaving.seq).toBeGreaterThan(draining.seq);
    expect(leaving.inFlight).toBe(0);
    expect(await agent.exited).toBe(0);
    expect(agent.output()).toContain('agent left the mesh');
  });

  it('a second build with the same inputs reuses the executable', async () => {
    const before = statSync(built.executable).mtimeMs;
    const again = await buildSea();
    expect(again.rebuilt).toBe(false);
    expect(statSync(built.executable).mtimeMs).toBe(before);
  });
});
