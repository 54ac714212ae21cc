/** Shared pieces of the backend-wasm benchmarks. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { InvokeRequest } from '@meshroute/backend-wasm/internal';

const dir = dirname(fileURLToPath(import.meta.url));

/** An example module from `build/` (run `npm run build -w @meshroute/backend-wasm` first). */
export function exampleBytes(name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(dir, '..', 'build', `${name}.wasm`)));
}

/** A copy of `bytes` with a custom section holding `n`: a distinct module for the engine. */
export function uniqueVariant(bytes: Uint8Array, n: number): Uint8Array {
  const name = new TextEncoder().encode('meshroute.bench');
  const payload = new TextEncoder().encode(String(n));
  const content = [name.length, ...name, ...payload];
  if (content.length > 127) throw new Error('custom section too long');
  const out = new Uint8Array(bytes.length + 2 + content.length);
  out.set(bytes, 0);
  out.set([0, content.length, ...content], bytes.length);
  return out;
}

/** An invocation request for a command with a small input. */
export function commandRequest(input: string, memoryLimitPages = 1024): InvokeRequest {
  return {
    form: 'command',
    entry: 'run',
    allocExport: 'alloc',
    input: new TextEncoder().encode(input),
    capabilities: [],
    args: [],
    env: [],
    outputBytes: 1 << 20,
    stderrBytes: 1 << 16,
    importMemory: undefined,
    memoryLimitPages,
  };
}
