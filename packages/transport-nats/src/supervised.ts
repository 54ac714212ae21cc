/**
 * Spawn a server process that cannot outlive this one, however this one dies (a SIGKILL, a crash,
 * the OOM killer): used for nats-server here and for redis-server in the test harness. Neither
 * server has a parent-death option, so on POSIX systems the command is started through a small
 * `/bin/sh` wrapper that forks a watchdog and then `exec`s the server (the child's pid *is* the
 * server's pid; its signals and exit status are the server's own). The watchdog blocks reading a
 * lifeline, an extra stdio pipe (fd 3) whose other end only this process holds (the server gets
 * fd 3 closed). The kernel closes that end when this process dies, and the watchdog then sends
 * the server SIGTERM, and SIGKILL after `stopTimeoutMs`. When the server exits first, this process
 * writes a line on the lifeline and the watchdog leaves quietly. A pipe was chosen over polling
 * the parent pid (`kill -0 $PPID`): no polling, no parent-pid reuse race, no dependence on which
 * thread spawned the server (unlike Linux `PR_SET_PDEATHSIG` through `setpriv`, which fires when
 * the spawning *thread* exits and exists on Linux only). On Windows the command is spawned
 * directly.
 * @internal
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Socket } from 'node:net';

/** Whether commands are started through the watchdog wrapper (every POSIX system). */
export const SUPERVISED_BY_WATCHDOG = process.platform !== 'win32';

/**
 * Exit status of the wrapper when the command is not found (`sh` prints "not found" on stderr);
 * without the wrapper a missing command is a spawn `ENOENT` error instead.
 */
export const SH_COMMAND_NOT_FOUND = 127;

/**
 * The `/bin/sh` wrapper: `$1` is the stop timeout in tenths of a second, the rest is the server's
 * command line. It forks the watchdog (which reads the lifeline on fd 3; stdio to /dev/null so it
 * never holds the server's log pipes open), then replaces itself with the server, fd 3 closed.
 * A line on the lifeline means "the server is gone, stand down"; end of file without one means
 * the parent died: SIGTERM, then SIGKILL once the timeout has passed.
 */
const WATCHDOG_SCRIPT = [
  'pid=$$',
  't=$1',
  'shift',
  '(',
  '  if read -r _ <&3; then exit 0; fi',
  '  kill -TERM "$pid" 2>/dev/null || exit 0',
  '  n=0',
  '  while kill -0 "$pid" 2>/dev/null; do',
  '    if [ "$n" -ge "$t" ]; then kill -KILL "$pid" 2>/dev/null; exit 0; fi',
  '    sleep 0.1',
  '    n=$((n+1))',
  '  done',
  ') </dev/null >/dev/null 2>&1 &',
  'exec "$@" 3<&-',
].join('\n');

/** Options of {@link spawnSupervised}. */
export interface SupervisedSpawnOptions {
  /** Working directory of the server. */
  cwd: string;
  /** After this process dies: time between the watchdog's SIGTERM and its SIGKILL, ms. */
  stopTimeoutMs: number;
  /** The watchdog's `$0` (what `ps` shows for it). */
  label: string;
  /** A process group of its own (a terminal's Ctrl-C then reaches only this process). @default false */
  detached?: boolean;
}

/**
 * Spawn `command args` with stdout and stderr piped, supervised by a watchdog that stops it if
 * this process dies first (see the module comment).
 * @example
 * const child = spawnSupervised('redis-server', ['--port', '6390'], { cwd, stopTimeoutMs: 5000, label: 'meshroute-redis-watchdog' });
 */
export function spawnSupervised(
  command: string,
  args: readonly string[],
  options: SupervisedSpawnOptions,
): ChildProcess {
  const detached = options.detached ?? false;
  if (!SUPERVISED_BY_WATCHDOG) {
    return spawn(command, [...args], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached });
  }
  const child = spawn(
    '/bin/sh',
    [
      '-c',
      WATCHDOG_SCRIPT,
      options.label,
      String(Math.max(1, Math.ceil(options.stopTimeoutMs / 100))),
      command,
      ...args,
    ],
    { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe', 'pipe'], detached },
  );
  const lifeline = child.stdio[3] as Socket | null | undefined;
  if (lifeline) {
    // Never what keeps this process alive; a watchdog that is already gone is no error.
    lifeline.unref();
    lifeline.on('error', () => {});
    child.once('exit', () => lifeline.end('exited\n'));
  }
  return child;
}
