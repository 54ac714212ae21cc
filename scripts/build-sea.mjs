#!/usr/bin/env node
/**
 * Build the edge agent as a Node.js single executable application (SEA):
 *   dist-sea/meshroute-edge-agent  (runs like `meshroute agent --backend wasm ...`)
 *
 * Steps:
 *   1. bundle the WebAssembly pool worker (packages/backend-wasm/src/worker.ts) into one CommonJS
 *      string, started by the backend with `new Worker(source, { eval: true })`;
 *   2. bundle packages/cli/src/sea-agent.ts into one CommonJS file (SEA main scripts must be),
 *      from TypeScript sources (the `@meshroute/source` condition; no `tsc` build needed), with
 *      the worker string defined in, and the GPU and quantum backends left out (stubs that refuse);
 *   3. `node --experimental-sea-config` makes the preparation blob;
 *   4. copy this Node.js binary, strip its symbols (when `strip` is on PATH; `.dynsym` stays),
 *      and inject the blob with postject (sentinel fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2).
 *
 * Steps 3-4 are skipped when the inputs (bundle, Node.js binary, this script) hash the same as for
 * the executable already there (dist-sea/meshroute-edge-agent.inputs). Prints one JSON line
 * `{ "executable", "bytes", "bundleBytes", "workerBytes", "rebuilt", "ms" }`.
 *
 * Usage: node scripts/build-sea.mjs [--force]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const outDir = join(root, 'dist-sea');
const exeName = 'meshroute-edge-agent';
const exe = join(outDir, exeName);
const inputsFile = `${exe}.inputs`;
const force = process.argv.includes('--force');
const started = performance.now();

/** Node's SEA fuse (see the Node.js single executable applications docs). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

function fail(message) {
  process.stderr.write(`build-sea: ${message}\n`);
  process.exit(1);
}

/** Run a step; its output is shown only when it fails (postject warns about every ELF note). */
function quiet(label, cmd, args) {
  const r = spawnSync(cmd, args, { cwd: outDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) fail(`${label} failed (exit ${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
}

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 6))
  fail(`Node.js ${process.versions.node} cannot build a SEA (needs >= 20.6)`);
if (!readFileSync(process.execPath).includes(SEA_FUSE)) {
  fail(`${process.execPath} has no SEA fuse; use an official Node.js build`);
}

const common = {
  bundle: true,
  platform: 'node',
  target: `node${major}`,
  format: 'cjs',
  conditions: ['@meshroute/source'],
  minify: true,
  legalComments: 'none',
  write: false,
  logLevel: 'warning',
  absWorkingDir: root,
};

/**
 * `const require = createRequire(import.meta.url)` in a bundled package: let esbuild see the plain
 * `require(...)` calls after it (of `../package.json`) and inline them.
 */
const inlineCreateRequire = {
  name: 'inline-create-require',
  setup(b) {
    b.onLoad({ filter: /[\\/]packages[\\/][^\\/]+[\\/]src[\\/].*\.ts$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      if (!source.includes('createRequire(import.meta.url)')) return undefined;
      return {
        contents: source.replace(/const require = createRequire\(import\.meta\.url\);/g, ''),
        loader: 'ts',
      };
    });
  },
};

/** The GPU and quantum backends are not in the edge executable (no onnxruntime native addon). */
const edgeOnlyBackends = {
  name: 'edge-only-backends',
  setup(b) {
    b.onResolve({ filter: /^@meshroute\/backend-(gpu|quantum)$/ }, (args) => ({
      path: args.path,
      namespace: 'sea-stub',
    }));
    b.onLoad({ filter: /.*/, namespace: 'sea-stub' }, (args) => {
      const kind = args.path.endsWith('gpu') ? 'gpu' : 'quantum';
      const fn = kind === 'gpu' ? 'createGpuBackend' : 'createQuantumBackend';
      return {
        contents: `import { ConfigError } from '@meshroute/mesh';
export function ${fn}() {
  throw new ConfigError('backend', 'the ${kind} backend is not in the edge executable (only wasm); use the meshroute CLI');
}`,
        loader: 'js',
        resolveDir: root,
      };
    });
  },
};

// 1. The worker.
const worker = await build({
  ...common,
  entryPoints: [join(root, 'packages/backend-wasm/src/worker.ts')],
});
const workerSource = worker.outputFiles[0].text;

// 2. The main script.
const main = await build({
  ...common,
  entryPoints: [join(root, 'packages/cli/src/sea-agent.ts')],
  outfile: join(outDir, `${exeName}.cjs`),
  define: {
    __MESHROUTE_SEA_WASM_WORKER__: JSON.stringify(workerSource),
    'import.meta.url': '__meshroute_import_meta_url',
  },
  banner: { js: "var __meshroute_import_meta_url=require('node:url').pathToFileURL(__filename).href;" },
  plugins: [inlineCreateRequire, edgeOnlyBackends],
  metafile: true,
});
const bundle = main.outputFiles[0].contents;
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, `${exeName}.cjs`), bundle);

const node = statSync(process.execPath);
const inputsHash = createHash('sha256')
  .update(bundle)
  .update(`\0${process.execPath}\0${process.version}\0${node.size}\0${node.mtimeMs}\0`)
  .update(readFileSync(fileURLToPath(import.meta.url)))
  .digest('hex');

let rebuilt = false;
const upToDate =
  !force && existsSync(exe) && existsSync(inputsFile) && readFileSync(inputsFile, 'utf8').trim() === inputsHash;
if (!upToDate) {
  rebuilt = true;
  rmSync(inputsFile, { force: true });
  // 3. The preparation blob.
  const blob = join(outDir, 'sea-prep.blob');
  const config = join(outDir, 'sea-config.json');
  writeFileSync(
    config,
    `${JSON.stringify(
      { main: join(outDir, `${exeName}.cjs`), output: blob, disableExperimentalSEAWarning: true, useCodeCache: true },
      null,
      2,
    )}\n`,
  );
  quiet('node --experimental-sea-config', process.execPath, ['--experimental-sea-config', config]);

  // 4. Copy node, strip, inject.
  const tmp = `${exe}.tmp`;
  copyFileSync(process.execPath, tmp);
  chmodSync(tmp, 0o755);
  if (process.platform === 'linux' && spawnSync('strip', ['--version'], { stdio: 'ignore' }).status === 0) {
    const r = spawnSync('strip', ['--strip-all', tmp], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    if (r.status !== 0) fail(`strip failed on ${tmp} (exit ${r.status ?? r.signal}): ${r.stderr}`);
  }
  const postject = createRequire(import.meta.url).resolve('postject/dist/cli.js');
  quiet('postject', process.execPath, [
    postject,
    tmp,
    'NODE_SEA_BLOB',
    blob,
    '--sentinel-fuse',
    SEA_FUSE,
    ...(process.platform === 'darwin' ? ['--macho-segment-name', 'NODE_SEA'] : []),
  ]);
  if (process.platform === 'darwin') execFileSync('codesign', ['--sign', '-', tmp]);
  renameSync(tmp, exe);
  rmSync(blob, { force: true });
  writeFileSync(inputsFile, `${inputsHash}\n`);
}

process.stdout.write(
  `${JSON.stringify({
    executable: exe,
    bytes: statSync(exe).size,
    bundleBytes: bundle.byteLength,
    workerBytes: Buffer.byteLength(workerSource),
    rebuilt,
    ms: Math.round(performance.now() - started),
  })}\n`,
);
