/**
 * Probes of other processes, for the tests and tools that check what a server and its watchdog
 * ({@link spawnSupervised}) leave behind: whether a pid runs, which processes mention a path.
 * @internal
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

/**
 * Whether `pid` runs: `kill(pid, 0)`, and on Linux not a zombie nobody reaped yet (an orphan's
 * parent may never reap it).
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (!existsSync('/proc/self/stat')) return true;
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Live processes whose command line mentions `text` (`ps -eo pid=,stat=,args=` lines), zombies left out. */
export function processesMentioning(text: string): string[] {
  const out = execFileSync('ps', ['-eo', 'pid=,stat=,args='], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.includes(text) && !/^\s*\d+\s+Z/.test(l));
}
