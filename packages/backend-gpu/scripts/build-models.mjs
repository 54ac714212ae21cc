#!/usr/bin/env node
/**
 * Writes the backend's example ONNX models to `build/` (no download: built from code with onnx-proto).
 * `build/classify.onnx` is the `classify` workload that `meshroute up` registers.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { buildClassifyModel } from './onnx-models.mjs';

const out = new URL('../build/', import.meta.url);
mkdirSync(out, { recursive: true });
const classify = buildClassifyModel();
writeFileSync(new URL('classify.onnx', out), classify.bytes);
