/**
 * What every command gets: its output streams, the environment (read only here, in `cli`),
 * and a place to set the exit code.
 */

import type { LogFields, Logger } from '@meshroute/mesh';
import { type Logger as PinoLogger, pino } from 'pino';
import { traceLogFields } from './telemetry.js';

/** Context handed to every command. */
export interface CliContext {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** The process environment. Only `cli` reads it. */
  env: Readonly<Record<string, string | undefined>>;
  /** Exit code to return when the command completes without throwing. */
  exitCode: number;
  /** Build the logger (pino, JSON to stderr; `MESHROUTE_LOG_LEVEL`, default `info`). */
  logger(name: string): Logger;
}

/**
 * Adapt a pino logger to the {@link Logger} port, with `bindings` on every line.
 * Each key appears once per line: a child's field replaces its parent's of the same name.
 */
export function pinoLogger(p: PinoLogger, bindings: LogFields = {}): Logger {
  // pino appends a child's bindings to its parent's, so `child({ component })` under a logger that
  // already has a `component` would write the key twice in one JSON line. Children are made from `p`
  // with the bindings merged instead: a key appears once, the innermost value wins.
  const wrap = (l: PinoLogger, bound: LogFields): Logger => ({
    debug: (msg: string, fields?: LogFields) => l.debug(fields ?? {}, msg),
    info: (msg: string, fields?: LogFields) => l.info(fields ?? {}, msg),
    warn: (msg: string, fields?: LogFields) => l.warn(fields ?? {}, msg),
    error: (msg: string, fields?: LogFields) => l.error(fields ?? {}, msg),
    child: (fields: LogFields) => {
      const merged = { ...bound, ...fields };
      return wrap(p.child(merged), merged);
    },
  });
  return Object.keys(bindings).length === 0 ? wrap(p, {}) : wrap(p.child(bindings), { ...bindings });
}

/** The real context: process streams and environment. */
export function createContext(): CliContext {
  let root: PinoLogger | undefined;
  const ctx: CliContext = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    exitCode: 0,
    logger(name) {
      root ??= pino(
        { level: ctx.env.MESHROUTE_LOG_LEVEL ?? 'info', base: { pid: process.pid }, mixin: traceLogFields },
        pino.destination(2),
      );
      return pinoLogger(root, { component: name });
    },
  };
  return ctx;
}
