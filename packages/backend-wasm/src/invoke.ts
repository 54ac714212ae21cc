/**
 * One invocation of a compiled module: a fresh `WebAssembly.Instance` with a fresh in-memory WASI
 * (`@bjorn3/browser_wasi_shim`), stdin from the input, stdout and stderr captured. Synchronous; runs
 * inside a pool worker (which the main thread terminates on timeout) and in benchmarks.
 *
 * This file does not depend on `@meshroute/mesh`: failures are plain values ({@link GuestFailure});
 * the main thread turns them into {@link WasmError}s.
 */
import {
  ConsoleStdout,
  type Fd,
  File,
  OpenFile,
  PreopenDirectory,
  WASI,
  WASIProcExit,
  wasi,
} from '@bjorn3/browser_wasi_shim';
import { HOST_IMPORTS, WASI_GATED_FUNCTIONS, WASI_MODULE } from './capabilities.js';
import { WASM_PAGE_BYTES } from './wasm-binary.js';

/** Why a guest failed; stable, see the README. */
export type WasmFailureReason =
  | 'invalid-module'
  | 'unsupported-module'
  | 'invalid-options'
  | 'missing-export'
  | 'undeclared-import'
  | 'link-error'
  | 'trap'
  | 'exit-code'
  | 'bad-abi'
  | 'invalid-output'
  | 'memory-limit'
  | 'output-limit'
  | 'timeout'
  | 'aborted'
  | 'worker-crashed'
  | 'shutting-down';

/** A failure as a plain (structured-clone safe) value. */
export interface GuestFailure {
  reason: WasmFailureReason;
  message: string;
  details?: Record<string, unknown>;
}

/** The module's two forms, see the README. */
export type WasmForm = 'command' | 'reactor';

/** Everything one invocation needs besides the compiled module. */
export interface InvokeRequest {
  form: WasmForm;
  /** The reactor's entry export (`(ptr, len) -> i64`); ignored for commands (`_start`). */
  entry: string;
  /** The reactor's allocator export (`(len) -> ptr`). */
  allocExport: string;
  input: Uint8Array;
  /** Granted capabilities. */
  capabilities: readonly string[];
  /** argv (already empty unless `args` is granted). */
  args: readonly string[];
  /** `KEY=VALUE` environment (already empty unless `env` is granted). */
  env: readonly string[];
  /** Output cap: stdout (commands) or the returned bytes (reactors). */
  outputBytes: number;
  /** Bytes of stderr kept (the rest is dropped). */
  stderrBytes: number;
  /** When the module imports `env.memory`: the memory to provide, in pages. */
  importMemory: { initialPages: number; maximumPages: number } | undefined;
  /** The effective maximum of the module's memory, in pages (to tell a memory bomb from a trap). */
  memoryLimitPages: number;
}

/** The outcome of one invocation. */
export type InvokeResult =
  | { ok: true; output: Uint8Array; stderr: Uint8Array; executionMs: number }
  | { ok: false; failure: GuestFailure; stderr: Uint8Array; executionMs: number };

/** Thrown from inside a host call to unwind the guest. */
class GuestAbort extends Error {
  constructor(readonly failure: GuestFailure) {
    super(failure.message);
  }
}

/** @internal A capture buffer for stdout/stderr: aborts the guest (or drops) past `limitBytes`. */
export class Capture {
  private readonly chunks: Uint8Array[] = [];
  size = 0;
  constructor(
    private readonly limitBytes: number,
    private readonly overflow: 'abort' | 'drop',
    private readonly what: string,
  ) {}

  write = (data: Uint8Array): void => {
    if (this.size + data.byteLength > this.limitBytes) {
      if (this.overflow === 'abort') {
        throw new GuestAbort({
          reason: 'output-limit',
          message: `${this.what} exceeded the output limit of ${this.limitBytes} bytes`,
          details: { limitBytes: this.limitBytes },
        });
      }
      data = data.subarray(0, this.limitBytes - this.size);
      if (data.byteLength === 0) return;
    }
    this.chunks.push(data);
    this.size += data.byteLength;
  };

  bytes(): Uint8Array {
    if (this.chunks.length === 1) return this.chunks[0] as Uint8Array;
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.byteLength;
    }
    return out;
  }
}

function enosys(): number {
  return wasi.ERRNO_NOSYS;
}

/** Decode an AssemblyScript string (UTF-16, byte length at ptr - 4) for `env.abort` messages. */
function readAsString(memory: WebAssembly.Memory | undefined, ptr: number): string | undefined {
  if (memory === undefined || ptr <= 4 || ptr >= memory.buffer.byteLength) return undefined;
  const view = new DataView(memory.buffer);
  const len = view.getUint32(ptr - 4, true);
  if (ptr + len > memory.buffer.byteLength || len > 4096) return undefined;
  return new TextDecoder('utf-16le').decode(new Uint8Array(memory.buffer, ptr, len));
}

/** The import descriptors of a module, cached per module object. */
const importCache = new WeakMap<WebAssembly.Module, WebAssembly.ModuleImportDescriptor[]>();

function moduleImports(module: WebAssembly.Module): WebAssembly.ModuleImportDescriptor[] {
  const cached = importCache.get(module);
  if (cached !== undefined) return cached;
  const imports = WebAssembly.Module.imports(module);
  importCache.set(module, imports);
  return imports;
}

/** The host side of one invocation: WASI state, captures and the import object. */
export interface InvocationHost {
  imports: WebAssembly.Imports;
  stdout: Capture;
  stderr: Capture;
  /** Call once the instance exists (gives WASI its memory). */
  bind(instance: WebAssembly.Instance): WebAssembly.Memory | undefined;
  memory(): WebAssembly.Memory | undefined;
}

/**
 * The linked host of one module for one capability set: a WASI shim and an import object bound to
 * it, built once and reused by every invocation in this thread. Invocations in a thread run one at
 * a time, and each one replaces all of the per-invocation state (fds, args, env, memory) before the
 * instance is created, so nothing carries over from one job to the next.
 */
interface Linker {
  shim: WASI;
  imports: WebAssembly.Imports;
  /** The current invocation's memory (imported, or the instance's export once bound). */
  current: { memory: WebAssembly.Memory | undefined };
}

const linkers = new WeakMap<WebAssembly.Module, Map<string, Linker>>();

function createLinker(module: WebAssembly.Module, caps: ReadonlySet<string>): Linker {
  const shim = new WASI([], [], []);
  const current: Linker['current'] = { memory: undefined };
  // The shim reads `inst.exports.memory` on every call.
  shim.inst = {
    exports: {
      get memory(): WebAssembly.Memory {
        if (current.memory === undefined) {
          throw new GuestAbort({
            reason: 'bad-abi',
            message: 'WASI was called before the module memory was available (from the start section?)',
          });
        }
        return current.memory;
      },
    },
  };
  const wasiNs: Record<string, WebAssembly.ImportValue> = {};
  const envNs: Record<string, WebAssembly.ImportValue> = {};
  for (const imp of moduleImports(module)) {
    if (imp.module === WASI_MODULE && imp.kind === 'function') {
      const gate = WASI_GATED_FUNCTIONS[imp.name];
      const fn = gate !== undefined && !caps.has(gate) ? undefined : shim.wasiImport[imp.name];
      wasiNs[imp.name] = (fn as WebAssembly.ImportValue | undefined) ?? enosys;
      continue;
    }
    const id = `${imp.module}.${imp.name}`;
    if (HOST_IMPORTS[id] === undefined) continue; // not provided: instantiation fails with a LinkError
    if (id === 'env.abort') {
      envNs['abort'] = (msg: number, file: number, line: number, col: number) => {
        const text = readAsString(current.memory, msg) ?? 'abort';
        const where = readAsString(current.memory, file);
        throw new GuestAbort({
          reason: 'trap',
          message: `abort: ${text}${where === undefined ? '' : ` at ${where}:${line}:${col}`}`,
        });
      };
    } else if (id === 'env.seed' && caps.has('random')) {
      envNs['seed'] = () => (crypto.getRandomValues(new Uint32Array(1))[0] as number) * 2 ** 20 + Math.random();
    }
    // env.memory is set per invocation.
  }
  const imports: WebAssembly.Imports = {};
  if (Object.keys(wasiNs).length > 0) imports[WASI_MODULE] = wasiNs;
  imports['env'] = envNs;
  return { shim, imports, current };
}

function linkerFor(module: WebAssembly.Module, capabilities: readonly string[]): Linker {
  let byCaps = linkers.get(module);
  if (byCaps === undefined) {
    byCaps = new Map();
    linkers.set(module, byCaps);
  }
  const key = capabilities.length === 0 ? '' : [...capabilities].sort().join(',');
  let linker = byCaps.get(key);
  if (linker === undefined) {
    linker = createLinker(module, new Set(capabilities));
    byCaps.set(key, linker);
  }
  return linker;
}

/**
 * Prepare the host side of one invocation of `module`: fresh fds (stdin from the input, stdout and
 * stderr captured, `/tmp` only with `tmpfs`), args, env and memory, and the import object. Imports
 * the main thread let through (see `refuseImport`) get their function; an import that slipped
 * through anyway fails the link.
 */
export function createInvocationHost(module: WebAssembly.Module, req: InvokeRequest): InvocationHost {
  const linker = linkerFor(module, req.capabilities);
  const stdout = new Capture(req.outputBytes, req.form === 'command' ? 'abort' : 'drop', 'stdout');
  const stderr = new Capture(req.stderrBytes, 'drop', 'stderr');
  const fds: Fd[] = [
    new OpenFile(new File(req.input, { readonly: true })),
    new ConsoleStdout(stdout.write),
    new ConsoleStdout(stderr.write),
  ];
  if (req.capabilities.includes('tmpfs')) fds.push(new PreopenDirectory('/tmp', new Map()));
  const { shim, current, imports } = linker;
  shim.fds = fds;
  shim.args = [...req.args];
  shim.env = [...req.env];
  current.memory =
    req.importMemory === undefined
      ? undefined
      : new WebAssembly.Memory({ initial: req.importMemory.initialPages, maximum: req.importMemory.maximumPages });
  const env = imports['env'] as WebAssembly.ModuleImports;
  if (current.memory !== undefined) env['memory'] = current.memory;
  else delete env['memory'];
  return {
    imports,
    stdout,
    stderr,
    bind(instance) {
      const exported = instance.exports['memory'];
      if (current.memory === undefined && exported instanceof WebAssembly.Memory) current.memory = exported;
      return current.memory;
    },
    memory: () => current.memory,
  };
}

function classify(err: unknown, req: InvokeRequest, memory: WebAssembly.Memory | undefined): GuestFailure {
  if (err instanceof GuestAbort) return err.failure;
  if (err instanceof WebAssembly.LinkError) return { reason: 'link-error', message: err.message };
  const message = err instanceof Error ? err.message : String(err);
  const atLimit = memory !== undefined && memory.buffer.byteLength >= req.memoryLimitPages * WASM_PAGE_BYTES;
  if (atLimit) {
    return {
      reason: 'memory-limit',
      message: `the module trapped after growing its memory to the limit of ${req.memoryLimitPages} pages: ${message}`,
      details: { limitBytes: req.memoryLimitPages * WASM_PAGE_BYTES, trap: message },
    };
  }
  return { reason: 'trap', message: `the module trapped: ${message}`, details: { trap: message } };
}

function fail(
  failure: GuestFailure,
  stderr: Capture,
  t0: number,
): { ok: false; failure: GuestFailure; stderr: Uint8Array; executionMs: number } {
  return { ok: false, failure, stderr: stderr.bytes(), executionMs: performance.now() - t0 };
}

/**
 * Instantiate `module` afresh and run it once. Never throws for a guest failure; the result says
 * what happened.
 */
export function invoke(module: WebAssembly.Module, req: InvokeRequest): InvokeResult {
  const t0 = performance.now();
  const host = createInvocationHost(module, req);
  let instance: WebAssembly.Instance;
  try {
    instance = new WebAssembly.Instance(module, host.imports);
  } catch (err) {
    return fail(classify(err, req, host.memory()), host.stderr, t0);
  }
  const memory = host.bind(instance);
  const exports = instance.exports;
  try {
    if (req.form === 'command') {
      const start = exports['_start'];
      if (typeof start !== 'function') {
        return fail(
          { reason: 'missing-export', message: 'a WASI command must export the function _start' },
          host.stderr,
          t0,
        );
      }
      try {
        start();
      } catch (err) {
        if (!(err instanceof WASIProcExit)) throw err;
        if (err.code !== 0) {
          return fail(
            {
              reason: 'exit-code',
              message: `the command exited with code ${err.code}`,
              details: { exitCode: err.code },
            },
            host.stderr,
            t0,
          );
        }
      }
      return {
        ok: true,
        output: host.stdout.bytes(),
        stderr: host.stderr.bytes(),
        executionMs: performance.now() - t0,
      };
    }
    return runReactor(exports, memory, req, host, t0);
  } catch (err) {
    if (err instanceof WASIProcExit) {
      return fail(
        { reason: 'exit-code', message: `the module exited with code ${err.code}`, details: { exitCode: err.code } },
        host.stderr,
        t0,
      );
    }
    return fail(classify(err, req, memory), host.stderr, t0);
  }
}

function runReactor(
  exports: WebAssembly.Exports,
  memory: WebAssembly.Memory | undefined,
  req: InvokeRequest,
  host: InvocationHost,
  t0: number,
): InvokeResult {
  const init = exports['_initialize'];
  const alloc = exports[req.allocExport];
  const entry = exports[req.entry];
  if (memory === undefined) {
    return fail(
      { reason: 'missing-export', message: 'a reactor must export its memory as "memory" (or import env.memory)' },
      host.stderr,
      t0,
    );
  }
  if (typeof alloc !== 'function' || typeof entry !== 'function') {
    const missing = typeof alloc !== 'function' ? req.allocExport : req.entry;
    return fail(
      { reason: 'missing-export', message: `the reactor does not export the function ${missing}` },
      host.stderr,
      t0,
    );
  }
  if (typeof init === 'function') init();
  const len = req.input.byteLength;
  const ptr = alloc(len);
  if (typeof ptr !== 'number' || ptr < 0 || ptr + len > memory.buffer.byteLength) {
    return fail(
      { reason: 'bad-abi', message: `${req.allocExport}(${len}) returned ${String(ptr)}, not a pointer into memory` },
      host.stderr,
      t0,
    );
  }
  new Uint8Array(memory.buffer, ptr, len).set(req.input);
  const packed = entry(ptr, len);
  if (typeof packed !== 'bigint') {
    return fail(
      {
        reason: 'bad-abi',
        message: `${req.entry}(ptr, len) must return an i64 (ptr << 32 | len), got ${typeof packed}`,
      },
      host.stderr,
      t0,
    );
  }
  const outPtr = Number(BigInt.asUintN(64, packed) >> 32n);
  const outLen = Number(BigInt.asUintN(32, packed));
  if (outLen > req.outputBytes) {
    return fail(
      {
        reason: 'output-limit',
        message: `the reactor returned ${outLen} bytes, over the output limit of ${req.outputBytes} bytes`,
        details: { limitBytes: req.outputBytes, sizeBytes: outLen },
      },
      host.stderr,
      t0,
    );
  }
  const buffer = memory.buffer;
  if (outPtr + outLen > buffer.byteLength) {
    return fail(
      { reason: 'bad-abi', message: `${req.entry} returned bytes ${outPtr}..${outPtr + outLen}, outside memory` },
      host.stderr,
      t0,
    );
  }
  const output = new Uint8Array(buffer.slice(outPtr, outPtr + outLen));
  return { ok: true, output, stderr: host.stderr.bytes(), executionMs: performance.now() - t0 };
}
