import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processAlive, processesMentioning } from './process-probe.js';
import { freePort, type NatsServerProcess, NatsServerStartError, spawnNatsServer } from './server-process.js';

describe('spawnNatsServer', () => {
  const started: NatsServerProcess[] = [];
  afterAll(async () => {
    for (const s of started) await s.stop();
  });

  it('starts JetStream from a config file, keeps the file store across restart() on the same port', async () => {
    const s = await spawnNatsServer({ jetstream: true, serverName: 'solo', httpPort: 0 });
    started.push(s);
    expect(s.url).toBe(`nats://127.0.0.1:${s.port}`);
    expect(s.pid).toBeTypeOf('number');
    const conf = readFileSync(s.configFile, 'utf8');
    expect(conf).toContain('jetstream {');
    expect(conf).toContain(`port: ${s.port}`);
    expect(conf).toContain('server_name: "solo"');

    const health = await fetch(`${s.monitorUrl}/healthz`);
    expect(health.status).toBe(200);

    let nc = await connect({ servers: s.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'KEEP', subjects: ['keep.>'] });
    const js = jetstream(nc);
    for (let i = 0; i < 5; i++) await js.publish('keep.x', `m${i}`);
    await nc.close();

    const { port, storeDir } = s;
    const oldPid = s.pid;
    await s.restart();
    expect(s.port).toBe(port);
    expect(s.storeDir).toBe(storeDir);
    expect(s.pid).not.toBe(oldPid);

    nc = await connect({ servers: s.url });
    const info = await (await jetstreamManager(nc)).streams.info('KEEP');
    expect(info.state.messages).toBe(5);
    await nc.close();
  });

  it('kill() sends a signal and keeps the directory; stop() removes its own temporary directory', async () => {
    const s = await spawnNatsServer({ jetstream: true });
    started.push(s);
    await s.kill('SIGKILL');
    expect(s.running()).toBe(false);
    expect(s.pid).toBeUndefined();
    expect(existsSync(s.dir)).toBe(true);
    await s.restart();
    expect(s.running()).toBe(true);
    await s.stop();
    expect(existsSync(s.dir)).toBe(false);
    await expect(s.restart()).rejects.toBeInstanceOf(NatsServerStartError);
  });

  it('surfaces the server log tail when the config is refused', async () => {
    const err = await spawnNatsServer({ extraConfig: 'authorization { users = [ oops' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsServerStartError);
    expect((err as Error).message).toMatch(/exited before it was ready/);
    expect((err as Error).message).toMatch(/[Pp]arse error/);
  });

  it('says how to install nats-server when the binary is missing', async () => {
    const err = await spawnNatsServer({ binary: 'nats-server-not-installed' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsServerStartError);
    expect((err as Error).message).toContain('bash scripts/setup.sh');
  });

  it('rejects invalid options by name', async () => {
    await expect(spawnNatsServer({ port: 70_000 })).rejects.toThrow(/port: must be an integer port/);
    await expect(spawnNatsServer({ cluster: { name: 'bad name', routes: [] } })).rejects.toThrow(/cluster.name/);
  });

  it('uses a given port, and a clash on it is reported with the log', async () => {
    const port = await freePort();
    const a = await spawnNatsServer({ port });
    started.push(a);
    expect(a.port).toBe(port);
    const err = await spawnNatsServer({ port }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsServerStartError);
    expect(String((err as NatsServerStartError).details.logTail)).toMatch(/address already in use/i);
  });
});

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A parent process (Node running this package's source through tsx) that starts a nats-server and
 * prints `ready <pid> <port> <dir>`. Mode `handler`: it handles SIGINT itself (prints `SIGINT`)
 * and stops the server when a line arrives on stdin (prints `stopped`, exits 0). Mode `plain`:
 * no handler of its own.
 */
const PARENT_SCRIPT = `
import { spawnNatsServer } from ${JSON.stringify(fileURLToPath(new URL('./server-process.ts', import.meta.url)))};
const mode = process.argv[2];
const s = await spawnNatsServer({ stopTimeoutMs: 3000 });
if (mode === 'handler') {
  process.on('SIGINT', () => process.stdout.write('SIGINT\\n'));
  process.stdin.once('data', async () => {
    await s.stop();
    process.stdout.write('stopped\\n');
    process.exit(0);
  });
}
process.stdout.write(\`ready \${s.pid} \${s.port} \${s.dir}\\n\`);
`;

interface Parent {
  child: ChildProcess;
  pid: number;
  serverPid: number;
  serverPort: number;
  serverDir: string;
  line(pattern: RegExp): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

describe('spawnNatsServer: signals and orphans', () => {
  let scriptDir: string;
  const parents: ChildProcess[] = [];
  const serverPids: number[] = [];
  beforeAll(() => {
    scriptDir = mkdtempSync(join(tmpdir(), 'meshroute-nats-parent-'));
    writeFileSync(join(scriptDir, 'parent.mts'), PARENT_SCRIPT);
  });
  afterAll(() => {
    for (const p of parents) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const pid of serverPids) if (processAlive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(scriptDir, { recursive: true, force: true });
  });

  async function startParent(mode: 'handler' | 'plain'): Promise<Parent> {
    const root = fileURLToPath(new URL('../../..', import.meta.url));
    // Its own process group, like a shell job: a signal to -pid reaches all of the group.
    const child = spawn(
      process.execPath,
      ['--conditions=@meshroute/source', '--import', 'tsx', join(scriptDir, 'parent.mts'), mode],
      { cwd: root, stdio: ['pipe', 'pipe', 'pipe'], detached: true },
    );
    parents.push(child);
    let out = '';
    let err = '';
    const waiters: (() => void)[] = [];
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      for (const w of waiters.splice(0)) w();
    });
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => {
        for (const w of waiters.splice(0)) w();
        resolve({ code, signal });
      }),
    );
    const line = async (pattern: RegExp): Promise<void> => {
      while (!out.split('\n').some((l) => pattern.test(l))) {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`parent exited before printing ${pattern}; stdout: ${out}; stderr: ${err}`);
        }
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    };
    await line(/^ready \d+ \d+ /);
    const m = /^ready (\d+) (\d+) (.+)$/m.exec(out);
    if (!m || child.pid === undefined) throw new Error(`unexpected parent output: ${out}`);
    serverPids.push(Number(m[1]));
    return {
      child,
      pid: child.pid,
      serverPid: Number(m[1]),
      serverPort: Number(m[2]),
      serverDir: m[3] as string,
      line,
      exited,
    };
  }

  it("a Ctrl-C to the parent's process group leaves the server running until the parent stops it", async () => {
    const p = await startParent('handler');
    expect(processAlive(p.serverPid)).toBe(true);
    process.kill(-p.pid, 'SIGINT');
    await p.line(/^SIGINT$/);
    // The server neither got the terminal's SIGINT nor was killed by killOnExit: it still serves.
    expect(processAlive(p.serverPid)).toBe(true);
    const nc = await connect({ servers: `nats://127.0.0.1:${p.serverPort}` });
    await nc.flush();
    await nc.close();

    p.child.stdin?.write('stop\n');
    await p.line(/^stopped$/);
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(processAlive(p.serverPid)).toBe(false);
    // The watchdog stood down with the server: nothing mentions its directory any more.
    await until('the watchdog to leave', () => processesMentioning(p.serverDir).length === 0, 5_000);
  });

  it('a parent without a handler of its own dies by the signal and takes the server with it', async () => {
    const p = await startParent('plain');
    process.kill(-p.pid, 'SIGINT');
    expect(await p.exited).toEqual({ code: null, signal: 'SIGINT' });
    await until(`nats-server ${p.serverPid} to go`, () => !processAlive(p.serverPid), 5_000);
  });

  it('a SIGKILLed parent leaves no server behind: the watchdog stops it within seconds', async () => {
    const p = await startParent('plain');
    expect(processAlive(p.serverPid)).toBe(true);
    process.kill(p.pid, 'SIGKILL');
    await p.exited;
    await until(`nats-server ${p.serverPid} to go`, () => !processAlive(p.serverPid), 5_000);
    await until('the watchdog to leave', () => processesMentioning(p.serverDir).length === 0, 5_000);
  });
});
