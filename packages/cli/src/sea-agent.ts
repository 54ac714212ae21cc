/**
 * Entry point of the edge agent single executable (`dist-sea/meshroute-edge-agent`, built by
 * `npm run build:sea`): `meshroute agent --backend wasm` and nothing else, for devices without npm.
 * Same flags as `meshroute agent`; `--backend` may be left out (only `wasm` is accepted).
 *
 * The build (scripts/build-sea.mjs) bundles this file with esbuild into one CommonJS script and
 * defines `__MESHROUTE_SEA_WASM_WORKER__` as the bundled source of the WebAssembly pool worker, so
 * no file besides the executable is needed. Run unbundled, the backend's own worker file is used.
 */

import { MeshError } from '@meshroute/mesh';
import { Command, CommanderError, Option } from 'commander';
import { pino } from 'pino';
import {
  type AgentFlags,
  addAgentOptions,
  agentProcessOptions,
  runAgentUntilStopped,
  startAgentProcess,
} from './commands/agent.js';
import { meshrouteVersion } from './commands/version.js';
import { pinoLogger } from './context.js';
import { addNatsOptions } from './nats-options.js';

/** Replaced by the SEA build with the bundled wasm worker source (a string literal). */
declare const __MESHROUTE_SEA_WASM_WORKER__: string | undefined;

const workerSource: string | undefined =
  typeof __MESHROUTE_SEA_WASM_WORKER__ === 'string' ? __MESHROUTE_SEA_WASM_WORKER__ : undefined;

/** The agent flags; `--backend` may be left out here (only `wasm` is accepted). */
type EdgeAgentFlags = Omit<AgentFlags, 'backend'> & { backend?: 'wasm' };

/** Parse `argv` (as `process.argv`), run the agent until SIGTERM/SIGINT; resolves to the exit code. */
async function run(argv: string[]): Promise<number> {
  let exitCode = 0;
  const program = addAgentOptions(
    addNatsOptions(new Command('meshroute-edge-agent'))
      .description('meshroute compute agent with the WebAssembly backend (single executable)')
      .version(meshrouteVersion(), '-V, --version')
      .showHelpAfterError()
      .exitOverride()
      .addOption(new Option('--backend <kind>', 'execution backend (only wasm in this executable)').choices(['wasm'])),
  ).action(async (flags: EdgeAgentFlags) => {
    const log = pinoLogger(
      pino({ level: process.env.MESHROUTE_LOG_LEVEL ?? 'info', base: { pid: process.pid } }, pino.destination(2)),
    ).child({ component: 'agent' });
    const proc = await startAgentProcess({
      ...agentProcessOptions(
        { ...flags, backend: 'wasm' },
        workerSource !== undefined ? { wasm: { workerSource } } : undefined,
      ),
      logger: log,
    });
    log.info('agent ready', { id: flags.id, backend: 'wasm', region: flags.region, executable: 'sea' });
    exitCode = await runAgentUntilStopped(proc, log, flags.drainGraceMs);
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
