#!/usr/bin/env node
/**
 * Builds the example workloads into `build/*.wasm`:
 * - AssemblyScript (`assembly/*.ts`) with `asc` (stub runtime, optimized for size);
 * - hand-written WAT (`wat/*.wat`) with the `wabt` package.
 * Commands export `_start` (`--exportStart`); reactors run their top level in the start section.
 * Usage: `node scripts/build-examples.mjs` (from the package directory or anywhere).
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';
import wabtInit from 'wabt';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root); // asc resolves sources and `--use abort=` paths from the working directory
const out = join(root, 'build');
// Build into a private directory, then rename each file into build/: a concurrent reader (parallel
// test files building on first use) sees a file either complete or not at all.
const tmp = join(out, `.tmp-${process.pid}`);
mkdirSync(tmp, { recursive: true });

/** name → form. Reactors export `alloc` and an entry; commands export `_start`. */
const EXAMPLES = { checksum: 'command', 'json-minify': 'command', tokenize: 'reactor' };

const common = ['--runtime', 'stub', '-Osize', '--noAssert'];
for (const [name, form] of Object.entries(EXAMPLES)) {
  const args = [join('assembly', `${name}.ts`), '--outFile', join(tmp, `${name}.wasm`), ...common];
  // Commands report aborts on stderr and exit 134; reactors trap (no `env.abort` import at all).
  if (form === 'command') args.push('--exportStart', '_start', '--use', 'abort=assembly/lib/wasi/abortToStderr');
  else args.push('--use', 'abort=');
  const { error, stderr } = await asc.main(args, { stdout: process.stdout, stderr: process.stderr });
  if (error) {
    process.stderr.write(String(stderr));
    throw new Error(`asc failed for ${name}: ${error.message}`);
  }
}

const wabt = await wabtInit();
for (const file of readdirSync(join(root, 'wat')).filter((f) => f.endsWith('.wat'))) {
  const mod = wabt.parseWat(file, readFileSync(join(root, 'wat', file), 'utf8'));
  try {
    const { buffer } = mod.toBinary({});
    writeFileSync(join(tmp, file.replace(/\.wat$/, '.wasm')), buffer);
  } finally {
    mod.destroy();
  }
}
for (const file of readdirSync(tmp)) renameSync(join(tmp, file), join(out, file));
rmSync(tmp, { recursive: true, force: true });
