/**
 * A real `redis-server` for tests: free port, bound to 127.0.0.1, no persistence, in a temporary
 * directory; ready once it answers PING. `restart()` comes back on the same port (empty: no
 * persistence), which is what the "Redis restarts" failure tests need. It is started under the
 * same watchdog as nats-server (`spawnSupervised`): a test process killed with SIGKILL leaves no
 * redis-server behind.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, MeshError } from '@meshroute/mesh';
import { freePort } from '@meshroute/transport-nats';
import {
  killOnExit,
  SH_COMMAND_NOT_FOUND,
  SUPERVISED_BY_WATCHDOG,
  spawnSupervised,
} from '@meshroute/transport-nats/internal';
import { trackResource } from './cleanup.js';
import { waitFor } from './wait.js';

/** After the test process died: time the watchdog gives redis-server between SIGTERM and SIGKILL, ms. */
const REDIS_WATCHDOG_STOP_TIMEOUT_MS = 2_000;

/** How long {@link startRedisServer} waits for PONG. */
export const DEFAULT_REDIS_START_TIMEOUT_MS = 10_000;

/** Options of {@link startRedisServer}. */
export interface StartRedisServerOptions {
  /** Executable. @default 'redis-server' */
  binary?: string;
  /** Port; `0` picks a free one (kept across restarts). @default 0 */
  port?: number;
  /** Extra `redis-server` arguments, e.g. `['--maxmemory', '10mb']`. */
  args?: string[];
  /** Wait this long for PONG. @default {@link DEFAULT_REDIS_START_TIMEOUT_MS} */
  startTimeoutMs?: number;
}

/** A running (or stopped) test `redis-server`. */
export interface TestRedisServer {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  readonly host: string;
  /** OS pid of the current process; undefined while stopped. */
  readonly pid: number | undefined;
  running(): boolean;
  /** The last lines the server logged. */
  logTail(): string;
  /** SIGTERM, wait for the exit; remove the directory. */
  stop(): Promise<void>;
  /**
   * Send a signal (default SIGKILL) and wait for the exit. A later {@link restart} works.
   * `SIGSTOP` (a server that accepts connections and never answers) and `SIGCONT` return at once.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Stop if running and start again on the same port (empty: no persistence). */
  restart(): Promise<void>;
}

/** redis-server could not be started. */
export class RedisServerStartError extends MeshError {
  override readonly name = 'RedisServerStartError';
  constructor(message: string, options: { cause?: unknown; logTail?: string } = {}) {
    super(ErrorCode.STORE_UNAVAILABLE, message, {
      cause: options.cause,
      details: options.logTail === undefined ? {} : { logTail: options.logTail },
    });
  }
}

/** Signals after which `kill()` does not wait for an exit. */
const NON_TERMINATING_SIGNALS: ReadonlySet<string> = new Set([
  'SIGSTOP',
  'SIGCONT',
  'SIGTSTP',
  'SIGHUP',
  'SIGUSR1',
  'SIGUSR2',
  'SIGWINCH',
]);

async function pong(host: string, port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const sock = tcpConnect({ host, port });
    let buf = '';
    sock.setTimeout(1_000, () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      if (buf.includes('\r\n')) {
        sock.destroy();
        resolve(buf.startsWith('+PONG'));
      }
    });
    sock.once('error', () => resolve(false));
  });
}

/**
 * Start `redis-server --port X --save '' --appendonly no --bind 127.0.0.1 --dir <tmp>`.
 * @throws RedisServerStartError when the binary is missing or the server exits or stays silent
 * @example
 * const redis = await startRedisServer();
 * const client = new Redis(redis.url);
 */
export async function startRedisServer(options: StartRedisServerOptions = {}): Promise<TestRedisServer> {
  const binary = options.binary ?? 'redis-server';
  const host = '127.0.0.1';
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_REDIS_START_TIMEOUT_MS;
  const dir = mkdtempSync(join(tmpdir(), 'meshroute-redis-'));
  const autoPort = (options.port ?? 0) === 0;
  let port = autoPort ? await freePort(host) : (options.port as number);
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const lines: string[] = [];
  let removed = false;

  const running = (): boolean => child !== undefined && child.exitCode === null && child.signalCode === null;
  const logTail = (): string => lines.join('\n');

  const start = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', host, '--save', '', '--appendonly', 'no', '--dir', dir];
    args.push('--protected-mode', 'no', ...(options.args ?? []));
    const c = spawnSupervised(binary, args, {
      cwd: dir,
      stopTimeoutMs: REDIS_WATCHDOG_STOP_TIMEOUT_MS,
      label: 'meshroute-redis-watchdog',
    });
    child = c;
    const onData = (b: Buffer) => {
      for (const l of b.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(l);
      while (lines.length > 200) lines.shift();
    };
    c.stdout?.on('data', onData);
    c.stderr?.on('data', onData);
    let spawnError: Error | undefined;
    exited = new Promise<void>((resolve) => {
      c.once('error', (e) => {
        spawnError = e;
        resolve();
      });
      c.once('exit', () => resolve());
    });
    killOnExit(c);
    try {
      const state = await waitFor(
        'redis-server to answer PING',
        async () => (running() ? ((await pong(host, port)) ? 'ready' : undefined) : 'exited'),
        { timeoutMs: startTimeoutMs, intervalMs: 20 },
      );
      if (state === 'exited') {
        const notFound = SUPERVISED_BY_WATCHDOG
          ? c.exitCode === SH_COMMAND_NOT_FOUND
          : (spawnError as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
        if (notFound) {
          throw new RedisServerStartError(
            `${binary} was not found on PATH: run \`bash scripts/setup.sh\` (or \`apt-get install redis-server\`)`,
            { cause: spawnError },
          );
        }
        throw new RedisServerStartError(
          `redis-server exited before it answered PING\n--- server log ---\n${logTail()}`,
          {
            logTail: logTail(),
          },
        );
      }
    } catch (err) {
      c.kill('SIGKILL');
      await exited;
      throw err;
    }
  };

  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    if (!child || !running()) return;
    child.kill(signal);
    // SIGSTOP/SIGCONT and friends do not end the process: do not wait for an exit.
    if (!NON_TERMINATING_SIGNALS.has(signal)) await exited;
  };

  for (let attempt = 1; ; attempt++) {
    try {
      await start();
      break;
    } catch (err) {
      if (autoPort && attempt < 5 && /already in use/i.test(logTail())) {
        port = await freePort(host);
        continue;
      }
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  const server: TestRedisServer = {
    get url() {
      return `redis://${host}:${port}`;
    },
    get port() {
      return port;
    },
    host,
    get pid() {
      return running() ? child?.pid : undefined;
    },
    running,
    logTail,
    async stop() {
      await halt('SIGTERM');
      if (!removed) {
        removed = true;
        rmSync(dir, { recursive: true, force: true });
      }
    },
    async kill(signal = 'SIGKILL') {
      await halt(signal);
    },
    async restart() {
      await halt('SIGTERM');
      if (removed) throw new RedisServerStartError('cannot restart a redis-server after stop()');
      await start();
    },
  };
  return trackResource(server);
}
