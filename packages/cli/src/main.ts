/**
 * The composition root: parses flags and environment, builds adapters, wires engines.
 * Each command lives in `commands/<name>.ts` and exports `register(program, context)`.
 */

import { MeshError } from '@meshroute/mesh';
import { Command, CommanderError } from 'commander';
import { register as registerAgent } from './commands/agent.js';
import { register as registerAgents } from './commands/agents.js';
import { register as registerBridge } from './commands/bridge.js';
import { register as registerDecisions } from './commands/decisions.js';
import { register as registerPolicy } from './commands/policy.js';
import { register as registerPublish } from './commands/publish.js';
import { register as registerRouter } from './commands/router.js';
import { register as registerRun } from './commands/run.js';
import { register as registerSecurity } from './commands/security.js';
import { register as registerUp } from './commands/up.js';
import { register as registerVersion } from './commands/version.js';
import { register as registerWorkload } from './commands/workload.js';
import { type CliContext, createContext } from './context.js';
import { startTelemetry } from './telemetry.js';

/** Register every command on `program`. Add new commands here. */
function registerAll(program: Command, ctx: CliContext): void {
  registerUp(program, ctx);
  registerVersion(program, ctx);
  registerRouter(program, ctx);
  registerAgents(program, ctx);
  registerDecisions(program, ctx);
  registerPolicy(program, ctx);
  registerAgent(program, ctx);
  registerRun(program, ctx);
  registerWorkload(program, ctx);
  registerSecurity(program, ctx);
  registerPublish(program, ctx);
  registerBridge(program, ctx);
}

/**
 * Run the CLI with `argv` (as `process.argv`). Resolves to the exit code.
 */
export async function main(argv: readonly string[], ctx: CliContext = createContext()): Promise<number> {
  const program = new Command('meshroute')
    .description('meshroute: an event mesh compute router (per-event placement by residency, latency, carbon and cost)')
    .showHelpAfterError()
    .exitOverride();
  program.configureOutput({
    writeOut: (s) => ctx.stdout.write(s),
    writeErr: (s) => ctx.stderr.write(s),
  });
  registerAll(program, ctx);
  let telemetry: ReturnType<typeof startTelemetry> | undefined;
  try {
    telemetry = startTelemetry({ env: ctx.env, serviceName: `meshroute-${argv[2] ?? 'cli'}` });
    await program.parseAsync(argv as string[]);
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (err instanceof MeshError) {
      ctx.stderr.write(`meshroute: ${err.code}: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    await telemetry?.shutdown();
  }
}
