#!/usr/bin/env node
/**
 * `npm run bench`: runs every benchmark (`packages/<pkg>/bench/*.bench.ts`, `test/bench/*.bench.ts`),
 * each in its own process. Benchmark files run through tsx, but the packages they import resolve to
 * the built `dist/` output (what ships; tsx's transform of sources wraps closures and skews timings),
 * so the workspace is built first. Each prints JSON lines
 * `{"bench","unit","p50","p99","baseline","ratio"}`; this script passes them through.
 * Filter by substring: `npm run bench -- quantum`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);
const files = [];
for (const pkg of readdirSync(join(root, 'packages'))) {
  const dir = join(root, 'packages', pkg, 'bench');
  if (existsSync(dir)) for (const f of readdirSync(dir)) if (f.endsWith('.bench.ts')) files.push(join(dir, f));
}
const testBench = join(root, 'test/bench');
if (existsSync(testBench))
  for (const f of readdirSync(testBench)) if (f.endsWith('.bench.ts')) files.push(join(testBench, f));

const build = spawnSync('npx', ['--no-install', 'turbo', 'run', 'build', '--output-logs=errors-only'], {
  cwd: root,
  stdio: ['ignore', 'inherit', 'inherit'],
});
if (build.status !== 0) process.exit(build.status ?? 1);

let failed = 0;
for (const file of files.sort()) {
  const rel = relative(root, file);
  if (filters.length > 0 && !filters.some((f) => rel.includes(f))) continue;
  process.stderr.write(`bench: ${rel}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--expose-gc', file], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) {
    failed++;
    process.stderr.write(`bench: ${rel} failed (exit ${r.status ?? r.signal})\n`);
  }
}
process.exit(failed > 0 ? 1 : 0);
