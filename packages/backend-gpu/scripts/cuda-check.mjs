#!/usr/bin/env node
/**
 * CUDA check: prints the GPU backend's facts (device, GPU model and memory, fallback reason) and runs
 * one batch of the `classify` model, comparing it with the plain-JS reference.
 *
 *   node packages/backend-gpu/scripts/cuda-check.mjs [auto|cuda|cpu]
 *
 * Needs the package built (`npx tsc -b packages/backend-gpu`). For CUDA, onnxruntime-node's CUDA
 * provider libraries must be installed (`npm rebuild onnxruntime-node` with ONNXRUNTIME_NODE_INSTALL=cuda12,
 * which downloads them from outside npm) and a CUDA 12 runtime with cuDNN 9 must be on the library path.
 * Exit code 0 when the batch ran and matched the reference, 1 otherwise, 2 when `cuda` was asked for and not used.
 */
import { buildClassifyModel, classifyReference } from './onnx-models.mjs';

const choice = process.argv[2] ?? 'auto';
const { createGpuBackend } = await import('../dist/index.js');
const { createHash } = await import('node:crypto');

const model = buildClassifyModel();
const digest = `sha256:${createHash('sha256').update(model.bytes).digest('hex')}`;
const workload = {
  schema: 'meshroute.workload/v1',
  name: 'classify',
  version: '1',
  artifacts: { gpu: { digest, name: 'classify.onnx', options: {} } },
  limits: { timeoutMs: 60_000, memoryBytes: 64 * 1024 * 1024, outputBytes: 1024 * 1024 },
  capabilities: [],
};

let gpu;
try {
  gpu = createGpuBackend({ executionProvider: choice, workers: 1 });
  const facts = await gpu.ready();
  console.log(JSON.stringify({ facts }, null, 2));
  const rows = Array.from({ length: 32 }, (_, r) =>
    Array.from({ length: model.features }, (_, f) => Math.sin(r * 7 + f)),
  );
  const t0 = performance.now();
  const outs = await Promise.all(
    rows.map((row) =>
      gpu.run({
        workload,
        artifact: model.bytes,
        input: new TextEncoder().encode(JSON.stringify({ x: [row] })),
        contentType: 'application/json',
        signal: new AbortController().signal,
      }),
    ),
  );
  const wallMs = performance.now() - t0;
  const want = classifyReference(model, rows);
  let maxAbsError = 0;
  outs.forEach((out, i) => {
    out.json.outputs.probs.data.forEach((v, c) => {
      maxAbsError = Math.max(maxAbsError, Math.abs(v - want[i][c]));
    });
  });
  const ok = maxAbsError < 1e-4;
  console.log(JSON.stringify({ requests: rows.length, wallMs: Math.round(wallMs * 100) / 100, maxAbsError, ok }));
  await gpu.close();
  if (choice === 'cuda' && facts.device !== 'cuda') process.exit(2);
  process.exit(ok ? 0 : 1);
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: err?.toJSON?.() ?? String(err) }));
  await gpu?.close();
  process.exit(choice === 'cuda' ? 2 : 1);
}
