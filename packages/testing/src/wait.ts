/** Polling with a deadline, for the few readiness checks that have no event to wait on. */
import { setTimeout as delay } from 'node:timers/promises';
import { TimeoutError } from '@meshroute/mesh';

/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long. @default 15_000 */
  timeoutMs?: number;
  /** Pause between checks. @default 50 */
  intervalMs?: number;
}

/**
 * Call `check` until it returns a value other than `undefined`/`false`, or the deadline passes.
 * A `check` that throws counts as "not yet"; the last error is the `cause` of the timeout.
 * @throws TimeoutError naming `what`
 * @example await waitFor('meta leader', async () => (await jsz()).meta_cluster?.leader);
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitForOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const intervalMs = options.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) throw new TimeoutError(`waiting for ${what}`, timeoutMs, { cause: lastError });
    await delay(intervalMs);
  }
}

/** GET a JSON document (a nats-server monitoring endpoint). */
export async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return await res.json();
}
