/**
 * `meshroute up`: the local mesh on one machine. Starts its own `nats-server` with JetStream
 * (unless `--nats-url`/`MESHROUTE_NATS_URL` names one), provisions the streams and buckets,
 * registers the example workloads, starts a router with HTTP ingress and four example agents
 * (WebAssembly in the EU and in the US, a GPU node, a quantum simulator), prints what runs where,
 * and stops everything cleanly on Ctrl-C (SIGINT) or SIGTERM.
 *
 * Shutdown order: the router stops first (HTTP first, then it stops taking ingress, lets the work
 * in flight finish on the agents, still running, hands anything else back to the ingress and drains
 * its connection), then the agents drain and leave, and only then nats-server stops (SIGTERM,
 * SIGKILL after its stop timeout). Stopping the agents first would leave the router open to new
 * events with no agent to run them (dead-lettered for lack of an eligible agent) and hand the work
 * in flight back instead of finishing it. The server runs in a process group of its own, so the
 * terminal's Ctrl-C does not reach it, and `killOnExit` leaves it alone because this command
 * handles the signal. A second Ctrl-C (no handler left) kills what still runs and exits at once.
 */
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { type Backend, ConfigError, type Logger } from '@meshroute/mesh';
import {
  connectMesh,
  type NatsConnectOptions,
  type NatsServerProcess,
  provisionMesh,
  spawnNatsServer,
} from '@meshroute/transport-nats';
import { type Command, Option } from 'commander';
import type { CliContext } from '../context.js';
import { addNatsOptions, type NatsFlags, natsConnectOptions } from '../nats-options.js';
import { type AgentProcess, startAgentProcess } from './agent.js';
import { type RouterProcess, startRouterProcess } from './router.js';
import { registerWorkloadFiles } from './workload.js';

/** Default client port of the local `nats-server` (a free port is used when it is taken). */
export const DEFAULT_UP_NATS_PORT = 4222;
/** Default HTTP ingress port of the local router. */
export const DEFAULT_UP_HTTP_PORT = 8080;
/** Default directory for the local mesh's state (JetStream store, logs). */
export const DEFAULT_UP_DATA_DIR = '.meshroute';

/** One example agent of the local mesh. */
export interface DemoAgent {
  id: string;
  backend: Backend;
  region: string;
  jurisdiction: string;
  slots: number;
  cost: string;
  labels: Record<string, string>;
}

/**
 * The example agents `meshroute up` starts: two WebAssembly edge agents (EU, US), a GPU node and
 * a quantum simulator, with grid carbon intensity from `@tgwf/co2` for their countries (`auto`).
 */
export const DEMO_AGENTS: readonly DemoAgent[] = [
  {
    id: 'edge-eu-1',
    backend: 'wasm',
    region: 'eu-central',
    jurisdiction: 'DE',
    slots: 4,
    cost: '0.0001',
    labels: { site: 'frankfurt', tier: 'edge' },
  },
  {
    id: 'edge-us-1',
    backend: 'wasm',
    region: 'us-east',
    jurisdiction: 'US',
    slots: 4,
    cost: '0.0001',
    labels: { site: 'virginia', tier: 'edge' },
  },
  {
    id: 'gpu-eu-1',
    backend: 'gpu',
    region: 'eu-north',
    jurisdiction: 'SE',
    slots: 2,
    cost: '0.002',
    labels: { site: 'stockholm', tier: 'core' },
  },
  {
    id: 'qsim-eu-1',
    backend: 'quantum',
    region: 'eu-west',
    jurisdiction: 'FR',
    slots: 1,
    cost: '0.01',
    labels: { site: 'paris', tier: 'core' },
  },
];

/** Options of {@link startLocalMesh}, resolved from flags and environment. */
export interface UpOptions {
  /** Use this NATS instead of starting one. */
  natsUrl: string | undefined;
  /**
   * Credentials, TLS and inbox prefix for an external (secured) NATS, used by every component
   * `up` starts (provisioning and workload registration need an admin identity).
   * @default no credentials
   */
  nats?: NatsConnectOptions;
  /** Client port for the local nats-server. */
  natsPort: number;
  /** Router HTTP ingress port. */
  httpPort: number;
  /** State directory (JetStream store under `<dataDir>/nats`). */
  dataDir: string;
  /** Policies directory. */
  policiesDir: string;
  /** Workload files directory (every `*.yaml` is registered). */
  workloadsDir: string;
  /**
   * Refuse to start when `workloadsDir` does not exist (it was named explicitly); otherwise a
   * missing directory only means no workloads are registered. @default false
   */
  requireWorkloadsDir?: boolean;
  /** Shared router state in Redis instead of memory. */
  redisUrl: string | undefined;
  /** Start the example agents. */
  agents: boolean;
}

/** A running local mesh. */
export interface LocalMesh {
  /** Where each component runs, for humans. */
  readonly rows: readonly { component: string; where: string }[];
  /** The NATS URL everything uses. */
  readonly natsUrl: string;
  /** The router's HTTP ingress port. */
  readonly httpPort: number;
  /** Stop agents, router and the local nats-server, in that order. Idempotent. */
  stop(): Promise<void>;
}

function port(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^[0-9]+$/.test(value) || n < 0 || n > 65535) {
      throw new ConfigError(flag, `must be a port number (0-65535), got ${JSON.stringify(value)}`);
    }
    return n;
  };
}

async function portFree(p: number): Promise<boolean> {
  const { createServer } = await import('node:net');
  return new Promise((resolvePort) => {
    const srv = createServer();
    srv.once('error', () => resolvePort(false));
    srv.listen(p, '127.0.0.1', () => srv.close(() => resolvePort(true)));
  });
}

/**
 * `mkdir -p` one level at a time (Node's recursive mkdir never returns on some paths, e.g. under
 * `/proc`, where mkdir keeps failing with ENOENT).
 */
function makeDirectories(path: string): void {
  const missing: string[] = [];
  let p = path;
  while (!existsSync(p)) {
    missing.push(p);
    const parent = dirname(p);
    if (parent === p) break;
    p = parent;
  }
  for (const dir of missing.reverse()) mkdirSync(dir);
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Check the directories of `options` before anything starts: the policies directory must exist,
 * the state directory must be (or become) a writable directory, and an explicitly named workloads
 * directory must exist.
 * @throws ConfigError naming the flag
 */
export function checkUpDirectories(
  options: Pick<UpOptions, 'dataDir' | 'policiesDir' | 'workloadsDir' | 'requireWorkloadsDir'>,
): void {
  const policiesDir = resolve(options.policiesDir);
  if (!isDirectory(policiesDir)) {
    throw new ConfigError(
      '--policies',
      `${policiesDir} is not a directory: run meshroute up from the repository root or pass --policies <dir>`,
    );
  }
  const workloadsDir = resolve(options.workloadsDir);
  if (options.requireWorkloadsDir && !isDirectory(workloadsDir)) {
    throw new ConfigError('--workloads', `${workloadsDir} is not a directory`);
  }
  const natsDir = resolve(options.dataDir, 'nats');
  try {
    makeDirectories(natsDir);
    accessSync(natsDir, constants.W_OK);
  } catch (cause) {
    throw new ConfigError(
      '--data-dir',
      `cannot use ${resolve(options.dataDir)} as the state directory: ${(cause as Error).message}`,
      { cause },
    );
  }
}

/** The lock file in the state directory that holds the pid of the `meshroute up` using it. */
export const UP_LOCK_FILE = 'up.pid';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Take the state directory for this process: two `meshroute up` on one directory would run two
 * nats-servers on one JetStream store. A lock left by a process that is gone is taken over.
 * @returns a function that releases the lock
 * @throws ConfigError (`--data-dir`) when a live process holds it
 */
export function lockDataDir(dataDir: string, pid: number = process.pid): () => void {
  const path = join(resolve(dataDir), UP_LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, 'utf8').trim() === String(pid)) unlinkSync(path);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new ConfigError('--data-dir', `cannot lock ${path}: ${(err as Error).message}`, { cause: err });
      }
    }
    const holder = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    if (Number.isInteger(holder) && holder > 0 && holder !== pid && pidAlive(holder)) {
      throw new ConfigError(
        '--data-dir',
        `${resolve(dataDir)} is in use by another meshroute up (pid ${holder}); stop it or pass another --data-dir`,
      );
    }
    unlinkSync(path);
  }
  throw new ConfigError('--data-dir', `cannot lock ${path}: another process keeps taking it`);
}

/**
 * Start the local mesh. On failure everything already started is stopped again.
 * @throws ConfigError for a bad option; NatsServerStartError when nats-server cannot start
 */
export async function startLocalMesh(options: UpOptions, loggerFor: (component: string) => Logger): Promise<LocalMesh> {
  checkUpDirectories(options);
  // Only a local nats-server uses the state directory.
  const unlock = options.natsUrl === undefined ? lockDataDir(options.dataDir) : () => {};
  const logger = loggerFor('up');
  const rows: { component: string; where: string }[] = [];
  const stops: { component: string; stop: () => Promise<void> }[] = [
    { component: 'state directory lock', stop: async () => unlock() },
  ];
  const stopAll = async () => {
    for (const { component, stop } of stops.splice(0).reverse()) {
      const startedMs = Date.now();
      await stop().then(
        () => logger.debug('stopped', { component, tookMs: Date.now() - startedMs }),
        (err: unknown) => logger.warn('stop failed', { component, error: String(err) }),
      );
    }
  };
  try {
    let natsUrl = options.natsUrl;
    let server: NatsServerProcess | undefined;
    if (natsUrl === undefined) {
      const wanted = (await portFree(options.natsPort)) ? options.natsPort : 0;
      server = await spawnNatsServer({
        dir: resolve(options.dataDir, 'nats'),
        removeDirOnStop: false,
        port: wanted,
        jetstream: true,
        httpPort: 0,
      });
      const s = server;
      stops.push({ component: 'nats-server', stop: () => s.stop() });
      natsUrl = server.url;
      rows.push({
        component: `nats-server (JetStream, pid ${server.pid})`,
        where: `${server.url}  monitor ${server.monitorUrl ?? '-'}  store ${server.storeDir ?? '-'}`,
      });
    } else {
      rows.push({ component: 'nats-server (external)', where: natsUrl });
    }

    const conn = await connectMesh({ ...options.nats, servers: natsUrl, name: 'meshroute-up' });
    try {
      await provisionMesh(conn);
    } finally {
      await conn.close();
    }
    rows.push({ component: 'streams and buckets', where: 'provisioned (meshroute.* subjects, MESHROUTE_* streams)' });

    const workloadsDir = resolve(options.workloadsDir);
    if (existsSync(workloadsDir)) {
      const files = readdirSync(workloadsDir)
        .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
        .map((f) => join(workloadsDir, f));
      const specs = await registerWorkloadFiles(natsUrl, files, options.nats ? { nats: options.nats } : {});
      rows.push({
        component: 'workloads',
        where: specs.map((s) => `${s.name}@${s.version}`).join(', ') || '(none)',
      });
    } else {
      rows.push({ component: 'workloads', where: `none registered (${workloadsDir} not found)` });
    }

    const router: RouterProcess = await startRouterProcess({
      natsUrl,
      ...(options.nats ? { nats: options.nats } : {}),
      httpPort: options.httpPort,
      policiesDir: resolve(options.policiesDir),
      ...(options.redisUrl ? { redisUrl: options.redisUrl } : {}),
      logger: loggerFor('router'),
    });
    const routerStop = { component: 'router', stop: () => router.stop() };
    stops.push(routerStop);
    rows.push({
      component: `router ${router.routerId}`,
      where: `HTTP ingress http://127.0.0.1:${router.httpPort}/events  health /healthz  state ${options.redisUrl ? 'redis' : 'memory'}`,
    });

    if (options.agents) {
      // One stop for all agents, in parallel: each drains and leaves on its own (a sequential stop
      // took about a second per agent).
      const agents: AgentProcess[] = [];
      // Stopped after the router (stops run in reverse): see the module doc.
      stops.splice(stops.indexOf(routerStop), 0, {
        component: 'agents',
        stop: async () => {
          const results = await Promise.allSettled(agents.splice(0).map((a) => a.stop()));
          const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
          if (failed) throw failed.reason;
        },
      });
      for (const a of DEMO_AGENTS) {
        const agent: AgentProcess = await startAgentProcess({
          backend: a.backend,
          id: a.id,
          region: a.region,
          jurisdiction: a.jurisdiction,
          carbon: 'auto',
          slots: a.slots,
          cost: a.cost,
          labels: a.labels,
          natsUrl,
          ...(options.nats ? { nats: options.nats } : {}),
          logger: loggerFor('agent').child({ agentId: a.id }),
        });
        agents.push(agent);
        const { carbon } = agent.agent.status();
        rows.push({
          component: `agent ${a.id} (${a.backend})`,
          where: `${a.region} / ${a.jurisdiction}, ${a.slots} slots, ${carbon.intensity} gCO2e/kWh (${carbon.source})`,
        });
      }
    }
    return {
      rows,
      natsUrl,
      httpPort: router.httpPort,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Register `meshroute up`. */
export function register(program: Command, ctx: CliContext): void {
  addNatsOptions(program.command('up'), {
    url: 'optional',
    urlDescription: 'use this NATS instead of starting nats-server (credentials flags apply to it)',
  })
    .description('start the local mesh: nats-server with JetStream, a router with HTTP ingress, example agents')
    .option(
      '--nats-port <port>',
      'client port of the local nats-server (a free one if taken)',
      port('--nats-port'),
      DEFAULT_UP_NATS_PORT,
    )
    .option('--http-port <port>', 'router HTTP ingress port', port('--http-port'), DEFAULT_UP_HTTP_PORT)
    .option('--data-dir <dir>', 'state directory (JetStream store)', DEFAULT_UP_DATA_DIR)
    .option('--policies <dir>', 'policies directory', 'policies')
    .option('--workloads <dir>', 'workload files to register', join('deploy', 'workloads'))
    .addOption(new Option('--redis-url <url>', 'shared router state in Redis').env('MESHROUTE_REDIS_URL'))
    .option('--no-agents', 'do not start the example agents')
    .action(async (flags: UpFlags, command: Command) => {
      const nats = natsConnectOptions({ ...flags, natsUrl: undefined });
      const mesh = await startLocalMesh(
        {
          natsUrl: flags.natsUrl,
          nats,
          natsPort: flags.natsPort,
          httpPort: flags.httpPort,
          dataDir: flags.dataDir,
          policiesDir: flags.policies,
          workloadsDir: flags.workloads,
          requireWorkloadsDir: command.getOptionValueSource('workloads') !== 'default',
          redisUrl: flags.redisUrl,
          agents: flags.agents,
        },
        (component) => ctx.logger(component),
      );
      const width = Math.max(...mesh.rows.map((r) => r.component.length));
      ctx.stdout.write('\nmeshroute is up:\n');
      for (const r of mesh.rows) ctx.stdout.write(`  ${r.component.padEnd(width)}  ${r.where}\n`);
      ctx.stdout.write(
        `\nTry:\n  npx meshroute publish --nats-url ${mesh.natsUrl} --workload checksum --residency eu --data-text hello --wait\n` +
          `  npx meshroute agents --nats-url ${mesh.natsUrl}\n\nCtrl-C stops everything.\n`,
      );
      await new Promise<void>((resolveSignal) => {
        const onSignal = (signal: NodeJS.Signals) => {
          ctx.stderr.write(`\n${signal}: stopping router, agents and nats-server... (again to kill at once)\n`);
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          resolveSignal();
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });
      await mesh.stop();
      ctx.stderr.write('stopped.\n');
    });
}

interface UpFlags extends NatsFlags {
  natsUrl?: string;
  natsPort: number;
  httpPort: number;
  dataDir: string;
  policies: string;
  workloads: string;
  redisUrl?: string;
  agents: boolean;
}
