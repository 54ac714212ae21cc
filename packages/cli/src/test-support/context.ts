/** A {@link CliContext} for tests: stdout and stderr collected as strings, no logging. */
import { Writable } from 'node:stream';
import { noopLogger } from '@meshroute/mesh';
import type { CliContext } from '../context.js';

/** A CLI context writing into strings, read back with `out()` and `err()`. */
export function testContext(env: Record<string, string> = {}): CliContext & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void) =>
    new Writable({
      write(chunk, _enc, cb) {
        append(String(chunk));
        cb();
      },
    });
  return {
    stdout: sink((s) => {
      out += s;
    }),
    stderr: sink((s) => {
      err += s;
    }),
    env,
    exitCode: 0,
    logger: () => noopLogger,
    out: () => out,
    err: () => err,
  };
}
