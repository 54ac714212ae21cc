/**
 * Start a real `nats-server` process from a generated config file: used by `meshroute up` and by
 * the test harness in `@meshroute/testing`. The config lives in a directory of its own (a fresh
 * temporary directory unless one is given); ports given as `0` are picked free once and kept, so
 * {@link NatsServerProcess.restart} comes back on the same ports with the same JetStream store.
 *
 * ## Signals and orphans
 * The server runs in a process group (and session) of its own (`detached`), so a Ctrl-C in a
 * terminal, which signals the whole foreground process group, reaches only the process that
 * started it: `meshroute up` stops its agents and router while the server still runs, and only
 * then stops the server (SIGTERM, SIGKILL after `stopTimeoutMs`).
 *
 * A detached server would outlive a parent that dies without running any handler (SIGKILL, a
 * crash, the OOM killer): it is started through {@link spawnSupervised}, whose watchdog stops it
 * when this process dies, however it dies.
 *
 * {@link killOnExit} kills what is still running when this process exits, and on a terminating
 * signal only when nothing else in the process handles that signal.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, ErrorCode, MeshError } from '@meshroute/mesh';
import { SH_COMMAND_NOT_FOUND, SUPERVISED_BY_WATCHDOG, spawnSupervised } from './supervised.js';

/** How long {@link spawnNatsServer} waits for "Server is ready". */
export const DEFAULT_NATS_START_TIMEOUT_MS = 15_000;
/** How long `stop()` waits after SIGTERM before it sends SIGKILL. */
export const DEFAULT_NATS_STOP_TIMEOUT_MS = 10_000;
/** JetStream memory store limit. */
export const DEFAULT_NATS_MAX_MEM_BYTES = 256 * 1024 * 1024;
/** JetStream file store limit. */
export const DEFAULT_NATS_MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024;
/** Number of server log lines kept for {@link NatsServerProcess.logTail} and error messages. */
export const DEFAULT_NATS_LOG_TAIL_LINES = 200;
/** The host every listener binds to unless told otherwise. */
export const DEFAULT_NATS_HOST = '127.0.0.1';
/**
 * `max_payload` of a spawned server, 8 MiB (NATS's own default is 1 MiB): an event at the
 * router's 1 MiB limit travels with its attributes and meshroute's headers on top, which a
 * 1 MiB `max_payload` refuses. 8 MiB is the most NATS recommends.
 */
export const DEFAULT_NATS_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024;

/** JetStream settings of a spawned server. */
export interface NatsJetStreamOptions {
  /** Store directory. @default `<dir>/jetstream` */
  storeDir?: string;
  /** @default {@link DEFAULT_NATS_MAX_MEM_BYTES} */
  maxMemBytes?: number;
  /** @default {@link DEFAULT_NATS_MAX_FILE_BYTES} */
  maxFileBytes?: number;
  /** JetStream domain (needed when a leaf node and its hub both run JetStream). */
  domain?: string;
}

/** Cluster (route) settings of a spawned server. */
export interface NatsClusterOptions {
  /** Cluster name, the same on every node. */
  name: string;
  /** Route listen port; `0` picks a free one (kept across restarts). @default 0 */
  port?: number;
  /** Route URLs of the other nodes, e.g. `nats-route://127.0.0.1:6223`. */
  routes: string[];
}

/** One leafnode remote: this server connects as a leaf to a hub. */
export interface NatsLeafRemote {
  /** The hub's leafnode URL, e.g. `nats-leaf://127.0.0.1:7422`. */
  url: string;
  /** Local account bound to the remote. */
  account?: string;
  /** Credentials file for the hub. */
  credentials?: string;
}

/** Leafnode settings: listen for leaves (a hub) or connect to hubs (a leaf), or both. */
export interface NatsLeafNodeOptions {
  /** Accept leaf connections on this port; `0` picks a free one. Omit to not listen. */
  listenPort?: number;
  /** Connect to these hubs. */
  remotes?: NatsLeafRemote[];
  /** Seconds between reconnect attempts to a remote. @default 1 */
  reconnectSeconds?: number;
}

/** Options of {@link spawnNatsServer}. */
export interface NatsServerOptions {
  /** Executable. @default 'nats-server' (from PATH) */
  binary?: string;
  /** Directory for the config file, log and default store; created if missing. @default a new temporary directory */
  dir?: string;
  /** Remove `dir` on `stop()`/`kill()` when it was created here. @default true */
  removeDirOnStop?: boolean;
  /** Client listen host. @default {@link DEFAULT_NATS_HOST} */
  host?: string;
  /** Client port; `0` picks a free one (kept across restarts). @default 0 */
  port?: number;
  /** `server_name` (required by JetStream clusters: unique per node). */
  serverName?: string;
  /** Enable JetStream (`true` for the defaults). @default false */
  jetstream?: boolean | NatsJetStreamOptions;
  /** Largest message (headers and payload) the server takes. @default {@link DEFAULT_NATS_MAX_PAYLOAD_BYTES} */
  maxPayloadBytes?: number;
  /** Monitoring HTTP port (`/healthz`, `/jsz`, `/leafz`); `0` picks a free one. Omit for none. */
  httpPort?: number;
  /** Route settings for a cluster node. */
  cluster?: NatsClusterOptions;
  /** Leafnode settings. */
  leafnodes?: NatsLeafNodeOptions;
  /** Raw config text appended as is (`accounts { ... }`, `authorization { ... }`, `tls { ... }`). */
  extraConfig?: string;
  /** Wait this long for the server to be ready. @default {@link DEFAULT_NATS_START_TIMEOUT_MS} */
  startTimeoutMs?: number;
  /** Wait this long after SIGTERM before SIGKILL. @default {@link DEFAULT_NATS_STOP_TIMEOUT_MS} */
  stopTimeoutMs?: number;
  /** Log with `-D` (debug) as well. @default false */
  debug?: boolean;
  /** Log lines kept. @default {@link DEFAULT_NATS_LOG_TAIL_LINES} */
  logTailLines?: number;
}

/** A running (or stopped) `nats-server` process. */
export interface NatsServerProcess {
  /** Client URL, `nats://127.0.0.1:<port>`. */
  readonly url: string;
  /** Client port. */
  readonly port: number;
  /** Route port, when clustered. */
  readonly clusterPort: number | undefined;
  /** Route URL other nodes use, `nats-route://127.0.0.1:<clusterPort>`, when clustered. */
  readonly clusterUrl: string | undefined;
  /** Leafnode listen port, when listening for leaves. */
  readonly leafPort: number | undefined;
  /** Leafnode URL for remotes, `nats-leaf://127.0.0.1:<leafPort>`, when listening. */
  readonly leafUrl: string | undefined;
  /** Monitoring port, when enabled. */
  readonly httpPort: number | undefined;
  /** Monitoring base URL `http://127.0.0.1:<httpPort>`, when enabled. */
  readonly monitorUrl: string | undefined;
  /** The server's directory (config file, default store). */
  readonly dir: string;
  /** The config file passed with `-c`. */
  readonly configFile: string;
  /** JetStream store directory, when JetStream is on. */
  readonly storeDir: string | undefined;
  /** The server name, when set. */
  readonly serverName: string | undefined;
  /** OS process id of the current process (changes on restart); undefined while stopped. */
  readonly pid: number | undefined;
  /** Whether the process is running. */
  running(): boolean;
  /** The last log lines of the server (stderr and stdout), oldest first. */
  logTail(): string;
  /** SIGTERM, wait for exit (SIGKILL after `stopTimeoutMs`), then remove the directory if it is ours. */
  stop(): Promise<void>;
  /** Stop without removing anything: a later {@link restart} keeps the JetStream store. */
  halt(): Promise<void>;
  /**
   * Send a signal (default SIGKILL) and wait for the exit. The directory is kept for a restart.
   * Signals that do not end the server (`SIGSTOP`, `SIGCONT`, `SIGHUP` reload, `SIGUSR1`) return at once.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Stop if running, then start again on the same ports with the same config and store. */
  restart(): Promise<void>;
}

/** The server could not be started, or exited early. `details.logTail` holds the server's log. */
export class NatsServerStartError extends MeshError {
  override readonly name = 'NatsServerStartError';
  constructor(message: string, options: { cause?: unknown; logTail?: string; exitCode?: number | null } = {}) {
    super(ErrorCode.TRANSPORT_ERROR, message, {
      cause: options.cause,
      retryable: false,
      details: {
        ...(options.logTail === undefined ? {} : { logTail: options.logTail }),
        ...(options.exitCode === undefined ? {} : { exitCode: options.exitCode }),
      },
    });
  }
}

/**
 * A TCP port that was free a moment ago on `host` (bind to port 0, read it, close).
 * Another process can still take it; {@link spawnNatsServer} retries on "address already in use".
 */
export async function freePort(host: string = DEFAULT_NATS_HOST): Promise<number> {
  const srv = createServer();
  srv.unref();
  srv.listen(0, host);
  await once(srv, 'listening');
  const addr = srv.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (port === 0) throw new MeshError(ErrorCode.INTERNAL, 'could not read the port of a bound socket');
  return port;
}

interface ResolvedOptions {
  binary: string;
  dir: string;
  ownsDir: boolean;
  removeDirOnStop: boolean;
  host: string;
  port: number;
  autoPort: boolean;
  serverName: string | undefined;
  maxPayloadBytes: number;
  jetstream: Required<Omit<NatsJetStreamOptions, 'domain'>> & { domain: string | undefined };
  jetstreamOn: boolean;
  httpPort: number | undefined;
  cluster: { name: string; port: number; routes: string[] } | undefined;
  leafListenPort: number | undefined;
  leafRemotes: NatsLeafRemote[];
  leafReconnectSeconds: number;
  extraConfig: string;
  startTimeoutMs: number;
  stopTimeoutMs: number;
  debug: boolean;
  logTailLines: number;
}

function checkPort(option: string, value: number | undefined): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < 0 || value > 65_535) {
    throw new ConfigError(option, `must be an integer port in 0..65535, got ${String(value)}`);
  }
}

function resolveOptions(options: NatsServerOptions): ResolvedOptions {
  checkPort('port', options.port);
  checkPort('httpPort', options.httpPort);
  checkPort('cluster.port', options.cluster?.port);
  checkPort('leafnodes.listenPort', options.leafnodes?.listenPort);
  if (options.cluster && !/^[A-Za-z0-9_-]+$/.test(options.cluster.name)) {
    throw new ConfigError(
      'cluster.name',
      `must be letters, digits, _ or -, got ${JSON.stringify(options.cluster.name)}`,
    );
  }
  if (options.serverName !== undefined && !/^[A-Za-z0-9_-]+$/.test(options.serverName)) {
    throw new ConfigError('serverName', `must be letters, digits, _ or -, got ${JSON.stringify(options.serverName)}`);
  }
  const maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_NATS_MAX_PAYLOAD_BYTES;
  if (!Number.isSafeInteger(maxPayloadBytes) || maxPayloadBytes <= 0 || maxPayloadBytes > 64 * 1024 * 1024) {
    throw new ConfigError(
      'maxPayloadBytes',
      `must be an integer in 1..${64 * 1024 * 1024} (64 MiB), got ${maxPayloadBytes}`,
    );
  }
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_NATS_START_TIMEOUT_MS;
  if (!(startTimeoutMs > 0)) throw new ConfigError('startTimeoutMs', 'must be a positive number of milliseconds');
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'meshroute-nats-'));
  const js = typeof options.jetstream === 'object' ? options.jetstream : {};
  return {
    binary: options.binary ?? 'nats-server',
    dir,
    ownsDir,
    removeDirOnStop: options.removeDirOnStop ?? true,
    host: options.host ?? DEFAULT_NATS_HOST,
    port: options.port ?? 0,
    autoPort: (options.port ?? 0) === 0,
    serverName: options.serverName,
    maxPayloadBytes,
    jetstreamOn: options.jetstream !== undefined && options.jetstream !== false,
    jetstream: {
      storeDir: js.storeDir ?? join(dir, 'jetstream'),
      maxMemBytes: js.maxMemBytes ?? DEFAULT_NATS_MAX_MEM_BYTES,
      maxFileBytes: js.maxFileBytes ?? DEFAULT_NATS_MAX_FILE_BYTES,
      domain: js.domain,
    },
    httpPort: options.httpPort,
    cluster: options.cluster
      ? { name: options.cluster.name, port: options.cluster.port ?? 0, routes: [...options.cluster.routes] }
      : undefined,
    leafListenPort: options.leafnodes?.listenPort,
    leafRemotes: options.leafnodes?.remotes ?? [],
    leafReconnectSeconds: options.leafnodes?.reconnectSeconds ?? 1,
    extraConfig: options.extraConfig ?? '',
    startTimeoutMs,
    stopTimeoutMs: options.stopTimeoutMs ?? DEFAULT_NATS_STOP_TIMEOUT_MS,
    debug: options.debug ?? false,
    logTailLines: options.logTailLines ?? DEFAULT_NATS_LOG_TAIL_LINES,
  };
}

const q = (s: string): string => JSON.stringify(s);

/** The config file text for resolved options with concrete ports. */
function renderConfig(o: ResolvedOptions): string {
  const lines: string[] = ['# generated by @meshroute/transport-nats spawnNatsServer', `host: ${q(o.host)}`];
  lines.push(`port: ${o.port}`, `max_payload: ${o.maxPayloadBytes}`);
  if (o.serverName !== undefined) lines.push(`server_name: ${q(o.serverName)}`);
  if (o.httpPort !== undefined) lines.push(`http: ${q(`${o.host}:${o.httpPort}`)}`);
  if (o.jetstreamOn) {
    lines.push('jetstream {', `  store_dir: ${q(o.jetstream.storeDir)}`);
    lines.push(`  max_mem: ${o.jetstream.maxMemBytes}`, `  max_file: ${o.jetstream.maxFileBytes}`);
    if (o.jetstream.domain !== undefined) lines.push(`  domain: ${q(o.jetstream.domain)}`);
    lines.push('}');
  }
  if (o.cluster) {
    lines.push('cluster {', `  name: ${q(o.cluster.name)}`, `  listen: ${q(`${o.host}:${o.cluster.port}`)}`);
    lines.push(`  routes: [${o.cluster.routes.map(q).join(', ')}]`, '}');
  }
  if (o.leafListenPort !== undefined || o.leafRemotes.length > 0) {
    lines.push('leafnodes {');
    if (o.leafListenPort !== undefined) lines.push(`  listen: ${q(`${o.host}:${o.leafListenPort}`)}`);
    lines.push(`  reconnect: ${o.leafReconnectSeconds}`);
    if (o.leafRemotes.length > 0) {
      lines.push('  remotes: [');
      for (const r of o.leafRemotes) {
        const parts = [`url: ${q(r.url)}`];
        if (r.account !== undefined) parts.push(`account: ${q(r.account)}`);
        if (r.credentials !== undefined) parts.push(`credentials: ${q(r.credentials)}`);
        lines.push(`    { ${parts.join(', ')} }`);
      }
      lines.push('  ]');
    }
    lines.push('}');
  }
  if (o.extraConfig !== '') lines.push(o.extraConfig);
  return `${lines.join('\n')}\n`;
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

/** Signals after which {@link killOnExit} kills its children unless the process handles them itself. */
const TERMINATING_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

/** Children still running, killed on process exit (and on an unhandled terminating signal). */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function killAllChildren(): void {
  for (const c of liveChildren) c.kill('SIGKILL');
}

/**
 * Kill `child` with SIGKILL if this process exits while it still runs (used for nats-server here
 * and redis-server in the test harness), so a stopped test run leaves no orphan servers.
 *
 * On SIGTERM, SIGINT or SIGHUP the children are left alone when the process has a handler of its
 * own for that signal (`meshroute up` and `meshroute router` stop their components in order and
 * then the server); they are still killed on the `exit` that follows. When nothing else handles
 * the signal (a test runner stopping a worker), the children are killed and the process dies by
 * the signal, as it would without this hook. The hook is prepended, so it sees every other
 * listener of the signal, `once` listeners included, before they run.
 * @internal
 */
export function killOnExit(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', killAllChildren);
    for (const sig of TERMINATING_SIGNALS) {
      const onSignal = (): void => {
        if (process.listenerCount(sig) > 1) return;
        killAllChildren();
        // With no listener left Node restores the default action: die by the signal.
        process.off(sig, onSignal);
        process.kill(process.pid, sig);
      };
      process.prependListener(sig, onSignal);
    }
  }
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

class LogRing {
  private readonly lines: string[] = [];
  private partial = '';
  constructor(private readonly max: number) {}
  push(chunk: string): string[] {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    for (const l of parts) {
      this.lines.push(l);
      if (this.lines.length > this.max) this.lines.shift();
    }
    return parts;
  }
  text(): string {
    return [...this.lines, ...(this.partial === '' ? [] : [this.partial])].join('\n');
  }
}

async function tcpAccepts(host: string, port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const sock = createConnection({ host, port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

class SpawnedNats implements NatsServerProcess {
  private child: ChildProcess | undefined;
  private exitPromise: Promise<void> = Promise.resolve();
  private readonly log: LogRing;
  private removed = false;

  constructor(
    private readonly o: ResolvedOptions,
    readonly configFile: string,
  ) {
    this.log = new LogRing(o.logTailLines);
  }

  get url(): string {
    return `nats://${this.o.host}:${this.o.port}`;
  }
  get port(): number {
    return this.o.port;
  }
  get clusterPort(): number | undefined {
    return this.o.cluster?.port;
  }
  get clusterUrl(): string | undefined {
    return this.o.cluster ? `nats-route://${this.o.host}:${this.o.cluster.port}` : undefined;
  }
  get leafPort(): number | undefined {
    return this.o.leafListenPort;
  }
  get leafUrl(): string | undefined {
    return this.o.leafListenPort === undefined ? undefined : `nats-leaf://${this.o.host}:${this.o.leafListenPort}`;
  }
  get httpPort(): number | undefined {
    return this.o.httpPort;
  }
  get monitorUrl(): string | undefined {
    return this.o.httpPort === undefined ? undefined : `http://${this.o.host}:${this.o.httpPort}`;
  }
  get dir(): string {
    return this.o.dir;
  }
  get storeDir(): string | undefined {
    return this.o.jetstreamOn ? this.o.jetstream.storeDir : undefined;
  }
  get serverName(): string | undefined {
    return this.o.serverName;
  }
  get pid(): number | undefined {
    return this.running() ? this.child?.pid : undefined;
  }

  running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  logTail(): string {
    return this.log.text();
  }

  /** Start the process and wait until it is ready; rejects with the log tail if it exits first. */
  async start(): Promise<void> {
    if (this.running()) return;
    const args = ['-c', this.configFile];
    if (this.o.debug) args.push('-D');
    const child = spawnSupervised(this.o.binary, args, {
      cwd: this.o.dir,
      stopTimeoutMs: this.o.stopTimeoutMs,
      label: 'meshroute-nats-watchdog',
      // Own process group: a terminal's Ctrl-C reaches the parent only, which stops the server itself.
      detached: true,
    });
    this.child = child;
    let onReady: () => void = () => {};
    const ready = new Promise<void>((resolve) => {
      onReady = resolve;
    });
    const onData = (buf: Buffer) => {
      for (const line of this.log.push(buf.toString('utf8'))) if (line.includes('Server is ready')) onReady();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
      child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    this.exitPromise = exited.then(() => undefined);
    killOnExit(child);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.o.startTimeoutMs);
    });
    try {
      const first = await Promise.race([ready.then(() => 'ready' as const), exited, timedOut]);
      if (first === 'timeout') {
        child.kill('SIGKILL');
        await exited;
        throw new NatsServerStartError(
          `nats-server did not become ready within ${this.o.startTimeoutMs} ms\n--- server log ---\n${this.logTail()}`,
          { logTail: this.logTail() },
        );
      }
      if (first !== 'ready') {
        const notFound = SUPERVISED_BY_WATCHDOG
          ? first.code === SH_COMMAND_NOT_FOUND && /not found/i.test(this.logTail())
          : (first.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
        if (notFound) {
          throw new NatsServerStartError(
            `${this.o.binary} was not found on PATH: run \`bash scripts/setup.sh\` (or \`apt-get install nats-server\`)`,
            { cause: first.error },
          );
        }
        throw new NatsServerStartError(
          `nats-server exited before it was ready (exit code ${String(first.code)}, signal ${String(first.signal)})\n--- server log ---\n${this.logTail()}`,
          { cause: first.error, logTail: this.logTail(), exitCode: first.code },
        );
      }
      // "Server is ready" is logged once every listener is bound; confirm the client port answers.
      if (!(await tcpAccepts(this.o.host, this.o.port))) {
        throw new NatsServerStartError(`nats-server said it was ready but ${this.url} refuses connections`, {
          logTail: this.logTail(),
        });
      }
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || !this.running()) return;
    child.kill(signal);
    // SIGSTOP/SIGCONT, and SIGHUP (config reload) and SIGUSR1 (reopen log) for nats-server, do not end it.
    if (!NON_TERMINATING_SIGNALS.has(signal)) await this.exitPromise;
  }

  async halt(): Promise<void> {
    const child = this.child;
    if (!child || !this.running()) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), this.o.stopTimeoutMs);
    try {
      await this.exitPromise;
    } finally {
      clearTimeout(t);
    }
  }

  async stop(): Promise<void> {
    await this.halt();
    if (this.o.ownsDir && this.o.removeDirOnStop && !this.removed) {
      this.removed = true;
      rmSync(this.o.dir, { recursive: true, force: true });
    }
  }

  async restart(): Promise<void> {
    await this.halt();
    if (this.removed) throw new NatsServerStartError('cannot restart a nats-server after stop() removed its directory');
    await this.start();
  }
}

function isAddressInUse(err: unknown): boolean {
  if (!(err instanceof NatsServerStartError)) return false;
  const tail = String(err.details.logTail ?? '');
  return /address already in use/i.test(tail);
}

/**
 * Start `nats-server` from a generated config file and wait until it accepts clients.
 * @throws NatsServerStartError when the binary is missing, the config is refused, or the server
 *   exits or stays silent before it is ready (the message carries the server's log tail)
 * @example
 * const nats = await spawnNatsServer({ jetstream: true });
 * // ... connect to nats.url ...
 * await nats.stop();
 */
export async function spawnNatsServer(options: NatsServerOptions = {}): Promise<NatsServerProcess> {
  const o = resolveOptions(options);
  mkdirSync(o.dir, { recursive: true });
  const wantHttp = o.httpPort;
  const wantCluster = o.cluster?.port;
  const wantLeaf = o.leafListenPort;
  const maxAttempts = 5;
  for (let attempt = 1; ; attempt++) {
    if (o.autoPort) o.port = await freePort(o.host);
    if (wantHttp === 0) o.httpPort = await freePort(o.host);
    if (o.cluster && wantCluster === 0) o.cluster.port = await freePort(o.host);
    if (wantLeaf === 0) o.leafListenPort = await freePort(o.host);
    const configFile = join(o.dir, 'nats-server.conf');
    writeFileSync(configFile, renderConfig(o));
    const server = new SpawnedNats(o, configFile);
    try {
      await server.start();
      return server;
    } catch (err) {
      const pickedAny = o.autoPort || wantHttp === 0 || wantCluster === 0 || wantLeaf === 0;
      if (attempt < maxAttempts && pickedAny && isAddressInUse(err)) continue;
      if (o.ownsDir && o.removeDirOnStop) rmSync(o.dir, { recursive: true, force: true });
      throw err;
    }
  }
}
