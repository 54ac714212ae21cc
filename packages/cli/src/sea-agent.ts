/**
 * Entry point of the edge agent single executable (`dist-sea/meshroute-edge-agent`, built by
 * `npm run build:sea`): `meshroute agent --backend wasm` and nothing else, for devices without npm.
 * Same flags as `meshroute agent`; `--backend` may be left out (only `wasm` is accepted).
 *
 * The build (scripts/build-sea.mjs) bundles this file with esbuild into one CommonJS script and
 * defines `__MESHROUTE_SEA_WASM_WORKER__` as the bundled source of the WebAssembly pool worker, so
 * no file besides the executable is needed. Run unbundled, the backend's own worker file is used.
 */

import {
  DEFAULT_DRAIN_GRACE_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_MAX_QUEUED,
  DEFAULT_SLOTS,
} from '@meshroute/compute-agent';
import { ConfigError, MeshError } from '@meshroute/mesh';
import { Command, CommanderError, Option } from 'commander';
import { pino } from 'pino';
import { startAgentProcess } from './commands/agent.js';
import { meshrouteVersion } from './commands/version.js';
import { pinoLogger } from './context.js';
import { addNatsOptions, type NatsFlags, natsConnectOptions } from './nats-options.js';

/** Replaced by the SEA build with the bundled wasm worker source (a string literal). */
declare const __MESHROUTE_SEA_WASM_WORKER__: string | undefined;

const workerSource: string | undefined =
  typeof __MESHROUTE_SEA_WASM_WORKER__ === 'string' ? __MESHROUTE_SEA_WASM_WORKER__ : undefined;

function nonNegativeInt(flag: string) {
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

interface EdgeAgentFlags extends NatsFlags {
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

/** Parse `argv` (as `process.argv`), run the agent until SIGTERM/SIGINT; resolves to the exit code. */
async function run(argv: string[]): Promise<number> {
  let exitCode = 0;
  const program = addNatsOptions(new Command('meshroute-edge-agent'))
    .description('meshroute compute agent with the WebAssembly backend (single executable)')
    .version(meshrouteVersion(), '-V, --version')
    .showHelpAfterError()
    .exitOverride()
    .addOption(new Option('--backend <kind>', 'execution backend (only wasm in this executable)').choices(['wasm']))
    .requiredOption('--id <id>', 'agent id (letters, digits, _ and -)')
    .requiredOption('--region <region>', 'region name, e.g. eu-west or FR')
    .requiredOption('--jurisdiction <cc>', 'ISO 3166-1 alpha-2 country whose law applies here, e.g. DE')
    .option('--carbon <value>', 'grid carbon intensity: gCO2e/kWh, "auto" or a Carbon Aware SDK URL', 'auto')
    .option('--carbon-location <name>', 'location name for the carbon provider (default: the region)')
    .option('--slots <n>', 'concurrent jobs', nonNegativeInt('--slots'), DEFAULT_SLOTS)
    .option('--label <k=v>', 'label (repeatable)', collectLabel, {})
    .option('--cost <amount>', 'price of one job (decimal)', '0')
    .option(
      '--heartbeat-interval-ms <ms>',
      'heartbeat interval',
      nonNegativeInt('--heartbeat-interval-ms'),
      DEFAULT_HEARTBEAT_INTERVAL_MS,
    )
    .option(
      '--drain-grace-ms <ms>',
      'time in-flight work may take to finish on SIGTERM',
      nonNegativeInt('--drain-grace-ms'),
      DEFAULT_DRAIN_GRACE_MS,
    )
    .option('--max-queued <n>', 'jobs waiting for a slot', nonNegativeInt('--max-queued'), DEFAULT_MAX_QUEUED)
    .option('--artifact-cache-bytes <n>', 'artifact cache bound', nonNegativeInt('--artifact-cache-bytes'))
    .option('--workload <name>', 'only run this workload (repeatable)', (v: string, p: string[]) => [...p, v], [])
    .action(async (flags: EdgeAgentFlags) => {
      const log = pinoLogger(
        pino({ level: process.env.MESHROUTE_LOG_LEVEL ?? 'info', base: { pid: process.pid } }, pino.destination(2)),
      ).child({ component: 'agent' });
      const proc = await startAgentProcess({
        backend: 'wasm',
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
        ...(workerSource !== undefined ? { backendOptions: { wasm: { workerSource } } } : {}),
        logger: log,
      });
      log.info('agent ready', { id: flags.id, backend: 'wasm', region: flags.region, executable: 'sea' });
      const signalled = new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      const outcome = await Promise.race([
        signalled.then((signal) => ({ kind: 'signal' as const, signal })),
        proc.closed().then((error) => ({ kind: 'closed' as const, error })),
      ]);
      if (outcome.kind === 'signal') {
        log.info('draining', { signal: outcome.signal, graceMs: flags.drainGraceMs });
        await proc.stop();
        log.info('agent left the mesh', { status: proc.agent.status() });
      } else {
        log.error('mesh connection closed', { error: outcome.error?.message });
        await proc.agent.stop();
        exitCode = 1;
      }
    });
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (err instanceof MeshError) {
      process.stderr.write(`meshroute-edge-agent: ${err.code}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

run(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`meshroute-edge-agent: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
