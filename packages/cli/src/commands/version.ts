/** `meshroute version`: the version of meshroute, Node.js and the native engines. */
import { createRequire } from 'node:module';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

const require = createRequire(import.meta.url);

/** The meshroute version (from the cli package). */
export function meshrouteVersion(): string {
  return (require('../../package.json') as { version: string }).version;
}

/** Register `meshroute version`. */
export function register(program: Command, ctx: CliContext): void {
  program.version(meshrouteVersion(), '-V, --version');
  program
    .command('version')
    .description('print the meshroute version (and with --json the versions of Node.js and the engines)')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => {
      const versions = { meshroute: meshrouteVersion(), node: process.versions.node, v8: process.versions.v8 };
      ctx.stdout.write(
        opts.json ? `${JSON.stringify(versions)}\n` : `meshroute ${versions.meshroute} (node ${versions.node})\n`,
      );
    });
}
