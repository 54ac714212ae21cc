/**
 * Capabilities: what a workload may reach outside its own memory. Nothing is granted unless the
 * workload declares it in `capabilities`. The decision for each import of a module is made here,
 * once, and used both by the main thread (to reject a module before it runs) and by the workers
 * (to build the import object).
 *
 * This file does not depend on `@meshroute/mesh`: it also runs inside the pool's workers.
 */
import type { ImportEntry } from './wasm-binary.js';

/** The WASI preview 1 import module name. */
export const WASI_MODULE = 'wasi_snapshot_preview1';

/**
 * Capabilities the wasm backend understands.
 * - `stdin`, `stdout`, `stderr`: implied for every module (the command form's contract: input on
 *   stdin, output on stdout, diagnostics on stderr); declaring them is allowed and changes nothing.
 * - `args`: argv is `[workload name, ...options.args]`; without it argv is empty.
 * - `env`: the environment is `options.env`; without it the environment is empty.
 * - `clock`: `clock_time_get`, `clock_res_get`, `poll_oneoff` (sleep); without it they return ENOSYS.
 * - `random`: `random_get` (and AssemblyScript's `env.seed`); without it `random_get` returns ENOSYS.
 * - `tmpfs`: an empty, in-memory, per-invocation directory preopened as `/tmp`; without it there are
 *   no preopened directories at all, so every `path_*` call fails with EBADF.
 * Sockets (`sock_*`) are never granted: a module importing them is rejected before it runs.
 */
export const WASM_CAPABILITIES = ['stdin', 'stdout', 'stderr', 'args', 'env', 'clock', 'random', 'tmpfs'] as const;

/** A capability the wasm backend understands, see {@link WASM_CAPABILITIES}. */
export type WasmCapability = (typeof WASM_CAPABILITIES)[number];

/** Every function of WASI preview 1 (`wasi_snapshot_preview1`). */
export const WASI_PREVIEW1_FUNCTIONS: ReadonlySet<string> = new Set([
  'args_get',
  'args_sizes_get',
  'environ_get',
  'environ_sizes_get',
  'clock_res_get',
  'clock_time_get',
  'fd_advise',
  'fd_allocate',
  'fd_close',
  'fd_datasync',
  'fd_fdstat_get',
  'fd_fdstat_set_flags',
  'fd_fdstat_set_rights',
  'fd_filestat_get',
  'fd_filestat_set_size',
  'fd_filestat_set_times',
  'fd_pread',
  'fd_prestat_get',
  'fd_prestat_dir_name',
  'fd_pwrite',
  'fd_read',
  'fd_readdir',
  'fd_renumber',
  'fd_seek',
  'fd_sync',
  'fd_tell',
  'fd_write',
  'path_create_directory',
  'path_filestat_get',
  'path_filestat_set_times',
  'path_link',
  'path_open',
  'path_readlink',
  'path_remove_directory',
  'path_rename',
  'path_symlink',
  'path_unlink_file',
  'poll_oneoff',
  'proc_exit',
  'proc_raise',
  'sched_yield',
  'random_get',
  'sock_accept',
  'sock_recv',
  'sock_send',
  'sock_shutdown',
]);

/** WASI functions that answer ENOSYS unless their capability is declared. */
export const WASI_GATED_FUNCTIONS: Readonly<Record<string, WasmCapability>> = {
  clock_res_get: 'clock',
  clock_time_get: 'clock',
  poll_oneoff: 'clock',
  random_get: 'random',
};

/** Non-WASI imports a module may have, and what grants them. `true`: always allowed. */
export const HOST_IMPORTS: Readonly<Record<string, { kind: string; capability: WasmCapability | true }>> = {
  /** Linear memory provided by the host, capped at the workload's memory limit. */
  'env.memory': { kind: 'memory', capability: true },
  /** AssemblyScript's `abort(message, file, line, column)`: traps with the message. */
  'env.abort': { kind: 'function', capability: true },
  /** AssemblyScript's seed for `Math.random`. */
  'env.seed': { kind: 'function', capability: 'random' },
};

/** Why an import cannot be linked. */
export interface ImportRefusal {
  /** `module.name` of the import. */
  import: string;
  /** The capability that would grant it, when one would. */
  capability: string | undefined;
  message: string;
}

/**
 * The first import of `imports` the declared `capabilities` do not allow, or `undefined` when the
 * module may be linked.
 */
export function refuseImport(
  imports: readonly ImportEntry[],
  capabilities: ReadonlySet<string>,
): ImportRefusal | undefined {
  for (const imp of imports) {
    const id = `${imp.module}.${imp.name}`;
    if (imp.module === WASI_MODULE) {
      if (imp.kind !== 'function') {
        return {
          import: id,
          capability: undefined,
          message: `import ${id} is a ${imp.kind}, WASI imports are functions`,
        };
      }
      if (!WASI_PREVIEW1_FUNCTIONS.has(imp.name)) {
        return { import: id, capability: undefined, message: `import ${id} is not a WASI preview 1 function` };
      }
      if (imp.name.startsWith('sock_')) {
        return {
          import: id,
          capability: 'net',
          message: `import ${id} needs network sockets, which the wasm backend never grants`,
        };
      }
      continue;
    }
    const host = HOST_IMPORTS[id];
    if (host === undefined) {
      return {
        import: id,
        capability: undefined,
        message: `import ${id} (${imp.kind}) is not provided: only WASI preview 1 and ${Object.keys(HOST_IMPORTS).join(', ')} are`,
      };
    }
    if (host.kind !== imp.kind) {
      return { import: id, capability: undefined, message: `import ${id} must be a ${host.kind}, not a ${imp.kind}` };
    }
    if (host.capability !== true && !capabilities.has(host.capability)) {
      return {
        import: id,
        capability: host.capability,
        message: `import ${id} needs the capability "${host.capability}", which the workload does not declare`,
      };
    }
  }
  return undefined;
}
