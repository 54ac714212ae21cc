/**
 * Hot reload, as a pure mechanism: validate a proposed bundle, run its tests, refuse a lower (or
 * unchanged) version of any policy, then swap atomically. On any failure the last good bundle
 * stays active and nothing is half applied.
 */
import { loadBundle, type PolicyBundle, runPolicyTests } from './bundle.js';
import type { LoadOptions } from './loader.js';
import type { PolicyError } from './yaml-source.js';

/** Where a proposed bundle came from (for logs and errors). */
export interface ProposeOptions {
  /** e.g. `dir:/etc/meshroute/policies` or `kv:policies rev 12`. */
  source: string;
  /** Current time, epoch ms (exception expiry, tests without `now`). */
  nowMs?: number;
}

/** The result of {@link PolicyHolder.propose}. */
export type ProposeResult = { ok: true; bundle: PolicyBundle; changed: boolean } | { ok: false; errors: PolicyError[] };

/** Holds the active bundle. */
export interface PolicyHolder {
  /** The active bundle (the last good one). */
  current(): PolicyBundle | undefined;
  /** Validate, test, check versions and swap. */
  propose(files: readonly { path: string; content: string }[], options: ProposeOptions): ProposeResult;
}

/**
 * Create a holder, optionally with an initial bundle.
 * @example
 * const holder = createPolicyHolder();
 * const r = holder.propose(files, { source: 'dir:policies' });
 * if (!r.ok) log.warn('policy reload refused', { errors: r.errors });
 */
export function createPolicyHolder(initial?: PolicyBundle, loadOptions: Omit<LoadOptions, 'nowMs'> = {}): PolicyHolder {
  let active = initial;
  return {
    current: () => active,
    propose(files, options) {
      const loaded = loadBundle(files, {
        ...loadOptions,
        ...(options.nowMs === undefined ? {} : { nowMs: options.nowMs }),
      });
      const at = (code: string, message: string, file = options.source, hint?: string): PolicyError => ({
        file,
        line: 1,
        col: 1,
        code,
        message,
        ...(hint ? { hint } : {}),
      });
      if (!loaded.bundle) return { ok: false, errors: loaded.errors };
      const next = loaded.bundle;
      if (active && active.digest === next.digest) return { ok: true, bundle: active, changed: false };
      const errors: PolicyError[] = [];
      if (active) {
        for (const p of next.policies) {
          const prev = active.policies.find((x) => x.name === p.name);
          if (!prev) continue;
          const file = next.loaded.policies.find((x) => x.name === p.name)?.file ?? options.source;
          if (p.version < prev.version) {
            errors.push(
              at(
                'version-lower',
                `policy \`${p.name}\` version ${p.version} is lower than the active version ${prev.version}`,
                file,
                'a reload never downgrades a policy; raise metadata.version',
              ),
            );
          } else if (p.version === prev.version && p.hash !== prev.hash) {
            errors.push(
              at(
                'version-not-increased',
                `policy \`${p.name}\` changed but its version stayed ${p.version}`,
                file,
                'every change must increase metadata.version',
              ),
            );
          }
        }
      }
      const run = runPolicyTests(next, options.nowMs === undefined ? {} : { nowMs: options.nowMs });
      for (const r of run.results) {
        if (!r.passed)
          errors.push({
            file: r.file,
            line: r.line,
            col: 1,
            code: 'test-failed',
            message: `test \`${r.name}\` failed: ${r.failures.join('; ')}`,
          });
      }
      if (errors.length > 0) return { ok: false, errors };
      active = next;
      return { ok: true, bundle: next, changed: true };
    },
  };
}
