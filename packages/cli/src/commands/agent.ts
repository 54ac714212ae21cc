/**
 * `meshroute agent`: a compute agent process. Connects to the mesh, announces itself and
 * heartbeats capacity, runs the work addressed to it on one backend, drains on SIGTERM/SIGINT.
 */

import { createGpuBackend, type GpuBackendOptions } from '@meshroute/backend-gpu';
import { createQuantumBackend, type QuantumBackendOptions } from '@meshroute/backend-quantum';
import { createWasmBackend, type WasmBackendOptions } from '@meshroute/backend-wasm';
import {
  type ComputeAgent,
  createComputeAgent,
  DEFAULT_DRAIN_GRACE_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_MAX_QUEUED,
  DEFAULT_SLOTS,
  parseCarbonOption,
} from '@meshroute/compute-agent';
import { BACKENDS, type Backend, type ComputeBackend, ConfigError, type Logger, noopLogger } from '@meshroute/mesh';
import {
  connectMesh,
  DEFAULT_NATS_URL,
  type NatsConnectOptions,
  natsAgentMesh,
  natsArtifactStore,
  natsWorkloadRegistry,
} from '@meshroute/transport-nats';
import { type Command, Option } from 'commander';
import type { CliContext } from '../context.js';
import { addNatsOptions, type NatsFlags, natsConnectOptions } from '../nats-options.js';

/** Tuning of each backend (`meshroute up` and tests may set them). */
export interface BackendKindOptions {
  wasm?: Omit<WasmBackendOptions, 'logger'>;
  gpu?: Omit<GpuBackendOptions, 'logger'>;
  quantum?: Omit<QuantumBackendOptions, 'logger'>;
}

/** Create the backend of `kind` (used by `meshroute agent` and `meshroute run`). */
export function createBackendForKind(
  kind: Backend,
  options: BackendKindOptions & { logger?: Logger } = {},
): ComputeBackend {
  const logger = (options.logger ?? noopLogger).child({ backend: kind });
  switch (kind) {
    case 'wasm':
      return createWasmBackend({ ...options.wasm, logger });
    case 'gpu':
      return createGpuBackend({ ...options.gpu, logger });
    case 'quantum':
      return createQuantumBackend({ ...options.quantum, logger });
    default:
      throw new ConfigError('backend', `must be one of ${BACKENDS.join(', ')}, got ${JSON.stringify(kind)}`);
  }
}

/** Options of {@link startAgentProcess} (what `meshroute agent` flags become). */
export interface AgentProcessOptions {
  backend: Backend;
  id: string;
  region: string;
  jurisdiction: string;
  /** `<gCO2e/kWh>`, `auto` or a Carbon Aware SDK WebAPI URL. @default 'auto' */
  carbon?: string;
  /** Location name for the carbon provider. @default the region */
  carbonLocation?: string;
  slots?: number;
  labels?: Record<string, string>;
  /** Price of one job, decimal string. @default '0' */
  cost?: string;
  heartbeatIntervalMs?: number;
  drainGraceMs?: number;
  maxQueued?: number;
  artifactCacheBytes?: number;
  /** Only these workloads (empty: any). */
  workloads?: string[];
  /** NATS servers. @default DEFAULT_NATS_URL */
  natsUrl?: string | string[];
  /**
   * Connection options (credentials, TLS, inbox prefix; see `natsConnectOptions`). `natsUrl`,
   * when given, wins over `nats.servers`. @default no credentials
   */
  nats?: NatsConnectOptions;
  /** Backend tuning (workers, execution provider, ...). */
  backendOptions?: BackendKindOptions;
  logger?: Logger;
}

/** A running agent process (for `meshroute up`). */
export interface AgentProcess {
  agent: ComputeAgent;
  /** Drain (up to the grace period), publish `leaving`, close the backend and the connection. */
  stop(): Promise<void>;
  /** Resolves when the NATS connection closed for good (with the error, if any). */
  closed(): Promise<Error | undefined>;
}

/**
 * Serve until SIGTERM/SIGINT (then drain within the grace period and leave the mesh: exit code 0)
 * or until the mesh connection closes for good (stop at once: exit code 1). Shared by
 * `meshroute agent` and the edge agent executable.
 */
export async function runAgentUntilStopped(
  proc: AgentProcess,
  log: Logger,
  drainGraceMs: number | undefined,
): Promise<number> {
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const outcome = await Promise.race([
    signalled.then((signal) => ({ kind: 'signal' as const, signal })),
    proc.closed().then((error) => ({ kind: 'closed' as const, error })),
  ]);
  if (outcome.kind === 'signal') {
    log.info('draining', { signal: outcome.signal, graceMs: drainGraceMs });
    await proc.stop();
    log.info('agent left the mesh', { status: proc.agent.status() });
    return 0;
  }
  log.error('mesh connection closed', { error: outcome.error?.message });
  await proc.agent.stop();
  return 1;
}

/** Start a compute agent connected to the mesh. */
export async function startAgentProcess(options: AgentProcessOptions): Promise<AgentProcess> {
  const logger = options.logger ?? noopLogger;
  if (!(BACKENDS as readonly string[]).includes(options.backend)) {
    throw new ConfigError('backend', `must be one of ${BACKENDS.join(', ')}, got ${JSON.stringify(options.backend)}`);
  }
  const carbon = await parseCarbonOption(options.carbon ?? 'auto', {
    region: options.region,
    jurisdiction: options.jurisdiction,
    logger: logger.child({ component: 'carbon' }),
    ...(options.carbonLocation ? { location: options.carbonLocation } : {}),
  });
  const conn = await connectMesh({
    ...options.nats,
    servers: options.natsUrl ?? options.nats?.servers ?? DEFAULT_NATS_URL,
    name: `agent-${options.id}`,

    // A long-running process that closes its connection before it exits: coalesce its writes.
    coalesceWrites: options.nats?.coalesceWrites ?? true,
  });
  let backend: ComputeBackend | undefined;
  try {
    backend = createBackendForKind(options.backend, { ...options.backendOptions, logger });
    const agent = createComputeAgent({
      mesh: natsAgentMesh(conn, { logger: logger.child({ component: 'agent-mesh' }) }),
      backend,
      workloads: natsWorkloadRegistry(conn, { logger }),
      artifacts: natsArtifactStore(conn),
      identity: {
        id: options.id,
        region: options.region,
        jurisdiction: options.jurisdiction,
        labels: options.labels ?? {},
        costPerJob: options.cost ?? '0',
      },
      carbon,
      logger,
      ...(options.slots !== undefined ? { slots: options.slots } : {}),
      ...(options.heartbeatIntervalMs !== undefined ? { heartbeatIntervalMs: options.heartbeatIntervalMs } : {}),
      ...(options.drainGraceMs !== undefined ? { drainGraceMs: options.drainGraceMs } : {}),
      ...(options.maxQueued !== undefined ? { maxQueued: options.maxQueued } : {}),
      ...(options.artifactCacheBytes !== undefined ? { artifactCacheBytes: options.artifactCacheBytes } : {}),
      ...(options.workloads?.length ? { acceptWorkloads: options.workloads } : {}),
    });
    await agent.start();
    const b = backend;
    let stopping: Promise<void> | undefined;
    return {
      agent,
      stop() {
        stopping ??= (async () => {
          await agent.drain();
          await b.close().catch((err: unknown) => logger.warn('backend close failed', { error: String(err) }));
          await conn.drain().catch(() => conn.close());
        })();
        return stopping;
      },
      closed: () => conn.closed(),
    };
  } catch (err) {
    await backend?.close().catch(() => undefined);
    await carbon.close();
    await conn.close();
    throw err;
  }
}

function positiveInt(flag: string) {
  return (value: string): number => {
    if (!/^[0-9]+$/.test(value))
      throw new ConfigError(flag, `must be a non-negative integer, got ${JSON.stringify(value)}`);
    return Number(value);
  };
}

function collectLabel(value: string, previous: Record<string, string>): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new ConfigError('--label', `expected key=value, got ${JSON.stringify(value)}`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Parsed flags of {@link addAgentOptions} (plus `--backend` and the NATS flags). */
export interface AgentFlags extends NatsFlags {
  backend: Backend;
  id: string;
  region: string;
  jurisdiction: string;
  carbon: string;
  carbonLocation?: string;
  slots: number;
  label: Record<string, string>;
  cost: string;
  heartbeatIntervalMs: number;
  drainGraceMs: number;
  maxQueued: number;
  artifactCacheBytes?: number;
  workload: string[];
  natsUrl: string;
}

/**
 * Adds the agent flags (`--id`, `--region`, `--jurisdiction`, `--carbon`, `--carbon-location`,
 * `--slots`, `--label`, `--cost`, `--heartbeat-interval-ms`, `--drain-grace-ms`, `--max-queued`,
 * `--artifact-cache-bytes`, `--workload`) to `command` and returns it. `--backend` and the NATS
 * flags are the caller's (`meshroute agent` and the edge agent executable accept different
 * backends). Parsed, they become {@link AgentFlags}; {@link agentProcessOptions} turns them into
 * {@link AgentProcessOptions}.
 */
export function addAgentOptions(command: Command): Command {
  return command
    .requiredOption('--id <id>', 'agent id (letters, digits, _ and -)')
    .requiredOption('--region <region>', 'region name, e.g. eu-west or FR')
    .requiredOption('--jurisdiction <cc>', 'ISO 3166-1 alpha-2 country whose law applies here, e.g. DE')
    .option(
      '--carbon <value>',
      'grid carbon intensity: gCO2e/kWh, "auto" (country average) or a Carbon Aware SDK URL',
      'auto',
    )
    .option('--carbon-location <name>', 'location name for the carbon provider (default: the region)')
    .option('--slots <n>', 'concurrent jobs', positiveInt('--slots'), DEFAULT_SLOTS)
    .option('--label <k=v>', 'label (repeatable)', collectLabel, {})
    .option('--cost <amount>', 'price of one job (decimal)', '0')
    .option(
      '--heartbeat-interval-ms <ms>',
      'heartbeat interval',
      positiveInt('--heartbeat-interval-ms'),
      DEFAULT_HEARTBEAT_INTERVAL_MS,
    )
    .option(
      '--drain-grace-ms <ms>',
      'time in-flight work may take to finish on SIGTERM',
      positiveInt('--drain-grace-ms'),
      DEFAULT_DRAIN_GRACE_MS,
    )
    .option(
      '--max-queued <n>',
      'jobs waiting for a slot before work is refused',
      positiveInt('--max-queued'),
      DEFAULT_MAX_QUEUED,
    )
    .option('--artifact-cache-bytes <n>', 'artifact cache bound', positiveInt('--artifact-cache-bytes'))
    .option('--workload <name>', 'only run this workload (repeatable)', collect, []);
}

/**
 * The {@link AgentProcessOptions} that parsed agent flags stand for (NATS connection options
 * included); `backendOptions` tunes the backend (e.g. the edge executable's bundled wasm worker).
 * The caller adds its `logger`.
 */
export function agentProcessOptions(flags: AgentFlags, backendOptions?: BackendKindOptions): AgentProcessOptions {
  return {
    backend: flags.backend,
    id: flags.id,
    region: flags.region,
    jurisdiction: flags.jurisdiction,
    carbon: flags.carbon,
    ...(flags.carbonLocation ? { carbonLocation: flags.carbonLocation } : {}),
    slots: flags.slots,
    labels: flags.label,
    cost: flags.cost,
    heartbeatIntervalMs: flags.heartbeatIntervalMs,
    drainGraceMs: flags.drainGraceMs,
    maxQueued: flags.maxQueued,
    ...(flags.artifactCacheBytes !== undefined ? { artifactCacheBytes: flags.artifactCacheBytes } : {}),
    workloads: flags.workload,
    nats: natsConnectOptions(flags),
    ...(backendOptions !== undefined ? { backendOptions } : {}),
  };
}

/** Register `meshroute agent`. */
export function register(program: Command, ctx: CliContext): void {
  addAgentOptions(
    addNatsOptions(program.command('agent'))
      .description('run a compute agent: take work addressed to it, run it on a backend, heartbeat capacity')
      .addOption(new Option('--backend <kind>', 'execution backend').choices([...BACKENDS]).makeOptionMandatory()),
  ).action(async (flags: AgentFlags) => {
    const log = ctx.logger('agent');
    const proc = await startAgentProcess({ ...agentProcessOptions(flags), logger: log });
    log.info('agent ready', {
      id: flags.id,
      backend: flags.backend,
      region: flags.region,
      jurisdiction: flags.jurisdiction,
    });
    ctx.exitCode = await runAgentUntilStopped(proc, log, flags.drainGraceMs);
  });
}
