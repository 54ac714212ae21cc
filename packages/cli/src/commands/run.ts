/**
 * `meshroute run <wasm|gpu|quantum> <artifact>`: run one job through a backend locally, without
 * a mesh, for workload authors.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import {
  BACKENDS,
  type Backend,
  type BackendOutput,
  ConfigError,
  DEFAULT_WORKLOAD_LIMITS,
  ErrorCode,
  MeshError,
  TimeoutError,
  toMeshError,
  type WorkloadSpec,
} from '@meshroute/mesh';
import { type Command, Option } from 'commander';
import type { CliContext } from '../context.js';
import { type BackendKindOptions, createBackendForKind } from './agent.js';

/** Capabilities granted to a WebAssembly module run locally unless `--capability` says otherwise. */
export const DEFAULT_RUN_WASM_CAPABILITIES: readonly string[] = ['stdin', 'stdout', 'stderr'];

/** Options of {@link runLocal}. */
export interface RunLocalOptions {
  backend: Backend;
  /** Path of the artifact (`.wasm`, `.onnx`, `.qasm`). */
  artifact: string;
  /** Job input: text, or `@path` to read a file. */
  input?: string;
  /** Quantum: shots (merged into the JSON input). */
  shots?: number;
  /** Quantum: simulator seed (merged into the JSON input). */
  seed?: number;
  /** @default DEFAULT_WORKLOAD_LIMITS.timeoutMs */
  timeoutMs?: number;
  /** Capabilities granted. @default {@link DEFAULT_RUN_WASM_CAPABILITIES} for wasm, none otherwise */
  capabilities?: string[];
  /** Backend-specific artifact options (WebAssembly `form`, `entry`, `contentType`, ...). */
  artifactOptions?: Record<string, unknown>;
  backendOptions?: BackendKindOptions;
}

/** What `meshroute run --json` prints. */
export type RunOutcome =
  | { ok: true; output: string }
  | { ok: true; counts: Record<string, number> }
  | { ok: true; outputs: Record<string, unknown> }
  | { ok: false; error: { code: string; message: string } };

async function readInput(input: string | undefined): Promise<Uint8Array> {
  if (input === undefined) return new Uint8Array(0);
  if (input.startsWith('@')) {
    const path = input.slice(1);
    try {
      return await readFile(path);
    } catch (cause) {
      throw new ConfigError('--input', `cannot read ${path}: ${(cause as Error).message}`, { cause });
    }
  }
  return new TextEncoder().encode(input);
}

function quantumInput(bytes: Uint8Array, shots: number | undefined, seed: number | undefined): Uint8Array {
  if (shots === undefined && seed === undefined) return bytes;
  const text = new TextDecoder().decode(bytes).trim();
  let value: Record<string, unknown> = {};
  if (text !== '') {
    try {
      value = JSON.parse(text) as Record<string, unknown>;
    } catch (cause) {
      throw new ConfigError(
        '--input',
        `with --shots or --seed the input must be a JSON object: ${(cause as Error).message}`,
        { cause },
      );
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new ConfigError('--input', 'with --shots or --seed the input must be a JSON object');
    }
  }
  return new TextEncoder().encode(
    JSON.stringify({ ...value, ...(shots !== undefined ? { shots } : {}), ...(seed !== undefined ? { seed } : {}) }),
  );
}

function outcomeOf(kind: Backend, out: BackendOutput): RunOutcome {
  if (kind === 'wasm') {
    const output =
      out.bytes !== undefined
        ? new TextDecoder().decode(out.bytes)
        : out.json !== undefined
          ? JSON.stringify(out.json)
          : '';
    return { ok: true, output };
  }
  const json = (out.json ?? {}) as { counts?: Record<string, number>; outputs?: Record<string, unknown> };
  if (kind === 'quantum') {
    if (typeof json.counts !== 'object' || json.counts === null) {
      throw new MeshError(ErrorCode.WORKLOAD_FAILED, 'the quantum backend returned no counts');
    }
    return { ok: true, counts: json.counts };
  }
  if (typeof json.outputs !== 'object' || json.outputs === null) {
    throw new MeshError(ErrorCode.WORKLOAD_FAILED, 'the GPU backend returned no outputs');
  }
  return { ok: true, outputs: json.outputs };
}

/** Run one job locally. Never throws: failures are `{ ok: false, error }`. */
export async function runLocal(options: RunLocalOptions): Promise<{ outcome: RunOutcome; raw?: BackendOutput }> {
  let backend: ReturnType<typeof createBackendForKind> | undefined;
  try {
    if (!(BACKENDS as readonly string[]).includes(options.backend)) {
      throw new ConfigError('backend', `must be one of ${BACKENDS.join(', ')}, got ${JSON.stringify(options.backend)}`);
    }
    let artifact: Uint8Array;
    try {
      artifact = await readFile(options.artifact);
    } catch (cause) {
      throw new MeshError(
        ErrorCode.ARTIFACT_ERROR,
        `cannot read artifact ${options.artifact}: ${(cause as Error).message}`,
        { cause },
      );
    }
    let input = await readInput(options.input);
    if (options.backend === 'quantum') input = quantumInput(input, options.shots, options.seed);
    const timeoutMs = options.timeoutMs ?? DEFAULT_WORKLOAD_LIMITS.timeoutMs;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0)
      throw new ConfigError('--timeout-ms', `must be a positive integer, got ${timeoutMs}`);
    const name =
      basename(options.artifact)
        .toLowerCase()
        .replace(/\.[^.]*$/, '')
        .replace(/[^a-z0-9._-]+/g, '-')
        .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '') || 'local';
    const workload: WorkloadSpec = {
      schema: 'meshroute.workload/v1',
      name,
      version: 'local',
      artifacts: {
        [options.backend]: {
          digest: `sha256:${createHash('sha256').update(artifact).digest('hex')}`,
          name: basename(options.artifact),
          options: options.artifactOptions ?? {},
        },
      },
      limits: { ...DEFAULT_WORKLOAD_LIMITS, timeoutMs },
      capabilities: options.capabilities ?? (options.backend === 'wasm' ? [...DEFAULT_RUN_WASM_CAPABILITIES] : []),
    };
    backend = createBackendForKind(options.backend, options.backendOptions ?? {});
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new TimeoutError(`${options.backend} job`, timeoutMs)), timeoutMs);
    const aborted = new Promise<never>((_, reject) => {
      ac.signal.addEventListener('abort', () => reject(ac.signal.reason), { once: true });
    });
    let raw: BackendOutput;
    try {
      raw = await Promise.race([
        backend.run({
          workload,
          artifact,
          input,
          contentType: options.backend === 'wasm' ? undefined : 'application/json',
          signal: ac.signal,
        }),
        aborted,
      ]);
    } finally {
      clearTimeout(timer);
    }
    return { outcome: outcomeOf(options.backend, raw), raw };
  } catch (err) {
    const e = toMeshError(err);
    return { outcome: { ok: false, error: { code: e.code, message: e.message } } };
  } finally {
    await backend?.close().catch(() => undefined);
  }
}

function int(flag: string) {
  return (value: string): number => {
    if (!/^-?[0-9]+$/.test(value)) throw new ConfigError(flag, `must be an integer, got ${JSON.stringify(value)}`);
    return Number(value);
  };
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Register `meshroute run`. */
export function register(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .description('run one job through a backend locally, without a mesh (for workload authors)')
    .addArgument(program.createArgument('<backend>', 'wasm, gpu or quantum').choices([...BACKENDS]))
    .argument('<artifact>', 'the .wasm module, .onnx model or OpenQASM program')
    .option('--input <text|@file>', 'job input: text, or @path to read a file')
    .option('--shots <n>', 'quantum: shots', int('--shots'))
    .option('--seed <s>', 'quantum: simulator seed', int('--seed'))
    .option('--timeout-ms <n>', 'time limit of the job', int('--timeout-ms'), DEFAULT_WORKLOAD_LIMITS.timeoutMs)
    .option(
      '--capability <name>',
      `capability granted (repeatable; wasm default ${DEFAULT_RUN_WASM_CAPABILITIES.join(',')})`,
      collect,
    )
    .addOption(new Option('--form <form>', 'wasm: module form').choices(['command', 'reactor']))
    .option('--json', 'print one JSON line: {"ok":true,...} or {"ok":false,"error":{...}}')
    .action(
      async (
        backend: Backend,
        artifact: string,
        flags: {
          input?: string;
          shots?: number;
          seed?: number;
          timeoutMs: number;
          capability?: string[];
          form?: string;
          json?: boolean;
        },
      ) => {
        const { outcome, raw } = await runLocal({
          backend,
          artifact,
          timeoutMs: flags.timeoutMs,
          ...(flags.input !== undefined ? { input: flags.input } : {}),
          ...(flags.shots !== undefined ? { shots: flags.shots } : {}),
          ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
          ...(flags.capability ? { capabilities: flags.capability } : {}),
          ...(flags.form ? { artifactOptions: { form: flags.form } } : {}),
        });
        ctx.exitCode = outcome.ok ? 0 : 1;
        if (flags.json) {
          ctx.stdout.write(`${JSON.stringify(outcome)}\n`);
          return;
        }
        if (!outcome.ok) {
          ctx.stderr.write(`meshroute: ${outcome.error.code}: ${outcome.error.message}\n`);
          return;
        }
        if ('output' in outcome) {
          if (raw?.bytes) ctx.stdout.write(Buffer.from(raw.bytes));
          else ctx.stdout.write(outcome.output);
          if (!outcome.output.endsWith('\n')) ctx.stdout.write('\n');
        } else if ('counts' in outcome) {
          const entries = Object.entries(outcome.counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
          for (const [bits, n] of entries) ctx.stdout.write(`${bits}  ${n}\n`);
        } else {
          ctx.stdout.write(`${JSON.stringify(outcome.outputs, null, 2)}\n`);
        }
      },
    );
}
