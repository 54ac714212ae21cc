#!/usr/bin/env node
/**
 * The whole test suite, as `npm test` runs it (and CI, unchanged):
 *   1. checks the prerequisites and says what is missing (run `bash scripts/setup.sh`);
 *   2. builds every package (turbo, cached) and lints (biome, dependency rules);
 *   3. runs every Vitest project: unit tests beside the code, and `test/` (multi-process,
 *      real nats-server and redis-server started by @meshroute/testing);
 *   4. prints the runner's summary, then a last plain line `N passed, M failed[, K skipped]`.
 * Extra arguments go to Vitest (e.g. `npm test -- --project @meshroute/mesh`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const args = process.argv.slice(2);

function fail(message) {
  console.error(`\ntest: ${message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}

function which(bin) {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' }).status === 0;
}

const missing = ['nats-server', 'redis-server'].filter((b) => !which(b));
if (!existsSync(join(root, 'node_modules/.bin/vitest'))) missing.push('node_modules (npm packages)');
if (missing.length > 0) fail(`missing: ${missing.join(', ')}. Run 'bash scripts/setup.sh' first.`);

function run(label, cmd, cmdArgs) {
  console.log(`\n> ${label}`);
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) fail(`${label} failed (exit ${r.status ?? r.signal})`);
}

run('build', 'npx', ['--no-install', 'turbo', 'run', 'build', '--output-logs=errors-only']);
run('lint', 'npm', ['run', '--silent', 'lint']);

const resultsDir = join(root, '.meshroute/test-results');
mkdirSync(resultsDir, { recursive: true });
const jsonFile = join(resultsDir, 'vitest.json');
console.log('\n> vitest run');
const r = spawnSync(
  'npx',
  ['--no-install', 'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${jsonFile}`, ...args],
  { cwd: root, stdio: 'inherit' },
);

let passed = 0;
let failed = 0;
let skipped = 0;
if (existsSync(jsonFile)) {
  const report = JSON.parse(readFileSync(jsonFile, 'utf8'));
  passed = report.numPassedTests ?? 0;
  failed = (report.numFailedTests ?? 0) + (report.numRuntimeErrorTests ?? 0);
  skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  // Files that failed to load count as failures even when no test inside them ran.
  for (const file of report.testResults ?? []) {
    if (file.status === 'failed' && (file.assertionResults ?? []).length === 0) failed += 1;
  }
} else {
  failed += 1;
}
if (r.status !== 0 && failed === 0) failed = 1;
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
