/**
 * The reference CEL engine, `@bufbuild/cel`: every policy test also runs through it and any
 * disagreement with the primary engine fails the run.
 */
import { celEnv, isCelError, parse, plan } from '@bufbuild/cel';
import type { CelActivation } from './cel.js';

/** Name of the reference engine. */
export const REFERENCE_ENGINE_NAME = '@bufbuild/cel';

/** The outcome of one evaluation: a value or an error message. */
export type EvalOutcome = { ok: true; value: unknown } | { ok: false; error: string };

/** A reference evaluator: compiles once, evaluates many times. */
export interface ReferenceEngine {
  readonly name: string;
  compile(source: string): (activation: CelActivation) => EvalOutcome;
}

function normalize(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  return v;
}

/** Create the `@bufbuild/cel` reference engine. */
export function createReferenceEngine(): ReferenceEngine {
  const env = celEnv({});
  return {
    name: REFERENCE_ENGINE_NAME,
    compile(source) {
      let planned: (ctx: Record<string, unknown>) => unknown;
      try {
        planned = plan(env, parse(source)) as unknown as (ctx: Record<string, unknown>) => unknown;
      } catch (err) {
        const message = (err as Error).message;
        return () => ({ ok: false, error: `parse: ${message}` });
      }
      return (activation) => {
        try {
          const r = planned(activation as unknown as Record<string, unknown>);
          if (isCelError(r)) return { ok: false, error: r.message };
          return { ok: true, value: normalize(r) };
        } catch (err) {
          return { ok: false, error: (err as Error).message };
        }
      };
    },
  };
}

/** Evaluate with the primary engine, catching errors into an {@link EvalOutcome}. */
export function outcomeOf(fn: () => unknown): EvalOutcome {
  try {
    return { ok: true, value: normalize(fn()) };
  } catch (err) {
    return { ok: false, error: (err as Error).message.split('\n')[0] ?? String(err) };
  }
}

/** Whether two outcomes agree (both errors, or equal values; numbers within 1e-9). */
export function outcomesAgree(a: EvalOutcome, b: EvalOutcome): boolean {
  if (!a.ok || !b.ok) return a.ok === b.ok;
  if (typeof a.value === 'number' && typeof b.value === 'number') {
    return a.value === b.value || Math.abs(a.value - b.value) <= 1e-9 * Math.max(1, Math.abs(a.value));
  }
  return a.value === b.value;
}
