/**
 * What the router answers a producer (NATS reply body, `?wait=1` HTTP body): the outcome of one
 * event, `meshroute.answer/v1` JSON.
 */
import type { ErrorInfo, WorkResult } from '@meshroute/mesh';

/** The outcome of one event as its producer sees it. */
export interface RouterAnswer {
  schema: 'meshroute.answer/v1';
  /** The event id. */
  id: string;
  /** The event source. */
  source: string;
  /** `succeeded`: the workload ran and answered; `failed`: it ran and failed; `dead-lettered`: it did not run. */
  outcome: 'succeeded' | 'failed' | 'dead-lettered';
  /** Where it ran, when it ran. */
  agent: { id: string; region: string; jurisdiction: string } | null;
  /** The decision that placed it (the last one). */
  decisionId: string | null;
  /** The agent's result. */
  result?: WorkResult;
  /** Why it failed or was dead-lettered. */
  error?: ErrorInfo;
  /** The dead-letter reason, when dead-lettered. */
  deadLetterReason?: string;
  /** Whether this answer was served from the recorded outcome of an earlier delivery. */
  replayed?: boolean;
}

const encoder = new TextEncoder();

/** Encode an answer as UTF-8 JSON. */
export function encodeAnswer(answer: RouterAnswer): Uint8Array {
  return encoder.encode(JSON.stringify(answer));
}

/** Header names on a NATS reply. */
export const ANSWER_HEADERS = {
  /** The outcome (`succeeded`, `failed`, `dead-lettered`). */
  outcome: 'Meshroute-Outcome',
  /** The error code, when not succeeded. */
  errorCode: 'Meshroute-Error-Code',
} as const;
