/**
 * A real `meshroute up` process (the built CLI, `packages/cli/dist/bin.js`: build it with
 * `npx tsc -b packages/cli`) stopped the way a terminal stops it: SIGINT to its whole process
 * group. The agents drain and leave, the router stops while the mesh is still there, then the
 * nats-server stops, and nothing is left running.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processAlive, processesMentioning } from '@meshroute/transport-nats/internal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UP_LOCK_FILE } from './up.js';

const root = fileURLToPath(new URL('../../../..', import.meta.url));
const BIN = join(root, 'packages/cli/dist/bin.js');
/** How long `meshroute up` may take to stop after Ctrl-C (it takes well under a second). */
const STOP_BOUND_MS = 10_000;

interface LogLine {
  msg?: string;
  level?: number;
  agentId?: string;
  reason?: string;
  inFlight?: number;
}

function logLines(text: string): LogLine[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

describe('meshroute up, stopped with Ctrl-C', () => {
  let dataDir: string;
  let child: ChildProcess | undefined;
  let natsPid: number | undefined;

  beforeAll(() => {
    if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npx tsc -b packages/cli\` first`);
    dataDir = mkdtempSync(join(tmpdir(), 'meshroute-up-process-'));
  });
  afterAll(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (natsPid !== undefined && processAlive(natsPid)) process.kill(natsPid, 'SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers an event, then stops agents, router and nats-server in order and leaves nothing running', async () => {
    // Its own process group, as a shell job: the terminal's SIGINT goes to every process in it.
    const up = spawn(process.execPath, [BIN, 'up', '--http-port', '0', '--nats-port', '0', '--data-dir', dataDir], {
      cwd: root,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MESHROUTE_LOG_LEVEL: 'info' },
    });
    child = up;
    let out = '';
    let err = '';
    const wake: (() => void)[] = [];
    up.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      for (const w of wake.splice(0)) w();
    });
    up.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      up.once('exit', (code, signal) => {
        for (const w of wake.splice(0)) w();
        resolve({ code, signal });
      }),
    );
    while (!out.includes('Ctrl-C stops everything.')) {
      if (up.exitCode !== null || up.signalCode !== null) throw new Error(`meshroute up exited early:\n${out}\n${err}`);
      await new Promise<void>((resolve) => wake.push(resolve));
    }
    const ingress = /HTTP ingress (http:\/\/127\.0\.0\.1:\d+)\/events/.exec(out)?.[1];
    natsPid = Number(/nats-server \(JetStream, pid (\d+)\)/.exec(out)?.[1]);
    expect(ingress).toBeDefined();
    expect(processAlive(natsPid)).toBe(true);
    expect(readFileSync(join(dataDir, UP_LOCK_FILE), 'utf8').trim()).toBe(String(up.pid));

    const res = await fetch(`${ingress}/events?wait=1`, {
      method: 'POST',
      headers: {
        'content-type': 'text/plain',
        'ce-specversion': '1.0',
        'ce-id': 'up-process-1',
        'ce-source': '/up-process-test',
        'ce-type': 'com.example.checksum',
        'ce-workload': 'checksum',
        'ce-residency': 'eu',
      },
      body: 'hello',
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: 'up-process-1', outcome: 'succeeded' });

    const beforeStop = err.length;
    process.kill(-(up.pid as number), 'SIGINT');
    let bound: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      exited,
      new Promise<'still running'>((resolve) => {
        bound = setTimeout(() => resolve('still running'), STOP_BOUND_MS);
      }),
    ]);
    clearTimeout(bound);
    expect(result, `stderr:\n${err}`).toEqual({ code: 0, signal: null });

    // nats-server (and its watchdog) went with it; the state directory is unlocked.
    expect(processAlive(natsPid)).toBe(false);
    expect(processesMentioning(dataDir)).toEqual([]);
    expect(existsSync(join(dataDir, UP_LOCK_FILE))).toBe(false);

    const shutdown = err.slice(beforeStop);
    expect(shutdown).toContain('SIGINT: stopping router, agents and nats-server...');
    expect(shutdown).toContain('stopped.');
    const lines = logLines(shutdown);
    // The mesh stayed up until the router had stopped: no disconnect, nothing at error level.
    expect(lines.filter((l) => /mesh disconnected/.test(l.msg ?? ''))).toEqual([]);
    expect(lines.filter((l) => (l.level ?? 0) >= 50)).toEqual([]);
    // Every agent drained and left, after the router had stopped: the router saw none of them
    // leave (it stops first, so that no event arrives with no agent to run it).
    expect(lines.filter((l) => l.msg === 'agent stopped').map((l) => l.agentId)).toHaveLength(4);
    expect(lines.filter((l) => l.msg === 'agent lost' || l.msg === 'agent left')).toEqual([]);
  });
});
