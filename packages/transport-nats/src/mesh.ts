/**
 * The router's {@link Mesh} over NATS: request/reply dispatch to agents, capacity heartbeats
 * (core NATS) with a KV snapshot, and JetStream publishes of results, decisions and dead letters.
 */

import { createHash } from 'node:crypto';
import {
  type CapacityReport,
  type Clock,
  type DeadLetterRecord,
  type DecisionRecord,
  decodeMessage,
  ErrorCode,
  encodeMessage,
  type Logger,
  type Mesh,
  MeshError,
  type MeshNames,
  meshNames,
  noopLogger,
  systemClock,
  TimeoutError,
  TransportError,
  type WorkItem,
  type WorkResult,
} from '@meshroute/mesh';
import { type Msg, type MsgHdrs, headers as natsHeaders } from '@nats-io/nats-core';
import type { MeshConnection } from './connection.js';
import { mapNatsError } from './errors.js';
import { headersFromMap } from './headers.js';
import { lazyKv } from './kv-util.js';
import { isSubjectToken } from './options.js';
import { createRequestMux } from './request-mux.js';

/** The JetStream de-duplication header. */
const MSG_ID_HEADER = 'Nats-Msg-Id';

/** W3C trace context headers carried from a work item to its NATS request. */
export const TRACE_HEADERS = ['traceparent', 'tracestate'] as const;

/** Options of {@link natsMesh}. */
export interface NatsMeshOptions {
  /** @default meshNames() */
  names?: MeshNames;
  /** This router's id (for logs). */
  routerId: string;
  /** @default systemClock */
  clock?: Clock;
  /** @default noopLogger */
  logger?: Logger;
}

function tenantToken(what: string, tenant: string | undefined): string | undefined {
  if (tenant === undefined || tenant === '') return undefined;
  if (!isSubjectToken(tenant)) {
    throw new MeshError(
      ErrorCode.INVALID_MESSAGE,
      `${what}: tenant ${JSON.stringify(tenant)} cannot be a subject token (no '.', '*', '>' or whitespace)`,
      {
        details: { tenant },
      },
    );
  }
  return tenant;
}

/** The agent id from a capacity subject `<prefix>.capacity.<agentId>`. */
function agentIdOfSubject(subject: string): string {
  const i = subject.lastIndexOf('.');
  return subject.slice(i + 1);
}

/**
 * A {@link Mesh} for a router over a {@link MeshConnection}. Closing it stops its capacity
 * subscriptions; the connection stays open (the caller owns it).
 *
 * - `dispatch`: NATS request to `names.workSubject(agentId)` carrying the validated work item
 *   and its `traceparent`/`tracestate` as headers; no agent listening gives `AGENT_REJECTED`
 *   (retryable), no answer in `timeoutMs` a {@link TimeoutError}, an aborted `signal` its reason.
 * - `onCapacity`: subscribes `names.capacityWildcard`; heartbeats that fail their schema, or
 *   whose `agentId` differs from the subject's, are dropped and logged, never thrown.
 * - `snapshotCapacity`/`saveCapacity`: the agents KV bucket, one key per agent.
 * - `publishResult`/`publishDecision`/`publishDeadLetter`: JetStream publishes (acknowledged by
 *   the stream) on the per-tenant subjects, each with a `Nats-Msg-Id` (results
 *   `<workId>/<attempt>`, decisions their id, dead letters the event's source and id) so that a
 *   retried publish is stored once.
 * @example
 * const mesh = natsMesh(conn, { routerId: 'router-1', logger });
 */
export function natsMesh(conn: MeshConnection, options: NatsMeshOptions): Mesh {
  const names = options.names ?? meshNames();
  const log = (options.logger ?? noopLogger).child({ component: 'nats-mesh', routerId: options.routerId });
  const clock = options.clock ?? systemClock;
  const agentsKv = lazyKv(conn, names.buckets.agents);
  const unsubs = new Set<() => void>();
  const timeoutMs = conn.info.jetstreamTimeoutMs;

  const mux = createRequestMux(conn, clock);
  /**
   * The bytes each dispatched result arrived as (validated on arrival): `publishResult` forwards
   * them to the results stream as they are instead of validating and encoding the object again.
   */
  const resultBytes = new WeakMap<WorkResult, Uint8Array>();

  /**
   * A JetStream publish through the mux: the stream's acknowledgement (`{stream, seq}`) or its
   * error (`{error: {code, err_code, description}}`), a 503 status when no stream listens.
   */
  const jsPublish = async (
    subject: string,
    body: Uint8Array,
    msgID: string | undefined,
    what: string,
  ): Promise<void> => {
    const description = `${what} to ${subject}`;
    let headers: MsgHdrs | undefined;
    if (msgID !== undefined) {
      headers = natsHeaders();
      headers.set(MSG_ID_HEADER, msgID);
    }
    const reply = await mux.request(subject, body, {
      timeoutMs,
      what: description,
      ...(headers ? { headers } : {}),
    });
    if (reply.headers?.code === 503) {
      throw new TransportError(`${description}: no stream listens on ${subject} (no responders)`, {
        details: { subject, reason: 'no-responders' },
      });
    }
    let ack: { stream?: unknown; error?: { code?: number; err_code?: number; description?: string } };
    try {
      ack = reply.json();
    } catch (err) {
      throw new TransportError(`${description}: unreadable acknowledgement`, { cause: err });
    }
    if (ack.error !== undefined) {
      const text = ack.error.description ?? `error ${ack.error.code}`;
      throw new MeshError(
        /permission/i.test(text) ? ErrorCode.PERMISSION_DENIED : ErrorCode.TRANSPORT_ERROR,
        `${description}: ${text}`,
        {
          retryable: !/permission/i.test(text),
          details: { apiCode: ack.error.err_code ?? ack.error.code ?? null },
        },
      );
    }
    if (typeof ack.stream !== 'string' || ack.stream === '') {
      throw new TransportError(`${description}: invalid acknowledgement`);
    }
  };

  return {
    async dispatch(work: WorkItem, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<WorkResult> {
      const body = encodeMessage('meshroute.work/v1', work);
      const subject = names.workSubject(work.agentId);
      let headers: MsgHdrs | undefined;
      for (const h of TRACE_HEADERS) {
        const v = work[h];
        if (v === undefined) continue;
        headers ??= natsHeaders();
        headers.set(h, v);
      }
      const what = `dispatch of work ${work.workId} (attempt ${work.attempt}) to agent ${work.agentId}`;
      let reply: Msg;
      try {
        reply = await mux.request(subject, body, {
          timeoutMs: opts.timeoutMs,
          what,
          onAbort: (signal) => abortError(signal, what),
          ...(headers ? { headers } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
      } catch (err) {
        if (err instanceof TimeoutError) {
          throw new TimeoutError(what, opts.timeoutMs, {
            details: { agentId: work.agentId, ...(err.details ?? {}) },
          });
        }
        throw err;
      }
      if (reply.headers?.hasError) {
        if (reply.headers.code === 503) {
          throw new MeshError(ErrorCode.AGENT_REJECTED, `${what}: no agent is listening on ${subject}`, {
            retryable: true,
            details: { agentId: work.agentId, reason: 'no-responders' },
          });
        }
        throw new MeshError(
          ErrorCode.AGENT_REJECTED,
          `${what}: agent answered with status ${reply.headers.code} ${reply.headers.description}`,
          {
            retryable: true,
            details: { agentId: work.agentId, status: reply.headers.code },
          },
        );
      }
      const result = decodeMessage('meshroute.result/v1', reply.data);
      resultBytes.set(result, reply.data);
      return result;
    },

    onCapacity(handler: (report: CapacityReport) => void): () => void {
      const sub = conn.nc.subscribe(names.capacityWildcard, {
        callback: (err, msg) => {
          if (err) {
            log.error('capacity subscription failed', { error: err.message });
            return;
          }
          let report: CapacityReport;
          try {
            report = decodeMessage('meshroute.capacity/v1', msg.data);
          } catch (e) {
            log.warn('invalid heartbeat dropped', { subject: msg.subject, error: (e as Error).message });
            return;
          }
          const fromSubject = agentIdOfSubject(msg.subject);
          if (report.agentId !== fromSubject) {
            log.warn('heartbeat dropped: agentId does not match its subject', {
              subject: msg.subject,
              agentId: report.agentId,
            });
            return;
          }
          try {
            handler(report);
          } catch (e) {
            log.error('capacity handler threw', { agentId: report.agentId, error: (e as Error).message });
          }
        },
      });
      const unsub = (): void => {
        if (!unsubs.delete(unsub)) return;
        if (!sub.isClosed()) sub.unsubscribe();
      };
      unsubs.add(unsub);
      return unsub;
    },

    async snapshotCapacity(): Promise<CapacityReport[]> {
      const kv = await agentsKv();
      const out: CapacityReport[] = [];
      try {
        const keys: string[] = [];
        for await (const k of await kv.keys()) keys.push(k);
        const entries = await Promise.all(keys.map((k) => kv.get(k)));
        for (const e of entries) {
          if (e === null || e.operation !== 'PUT') continue;
          try {
            out.push(decodeMessage('meshroute.capacity/v1', e.value));
          } catch (err) {
            log.warn('invalid heartbeat in snapshot dropped', { key: e.key, error: (err as Error).message });
          }
        }
      } catch (err) {
        throw mapNatsError(err, `read agents snapshot ${names.buckets.agents}`, timeoutMs);
      }
      return out.sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0));
    },

    async saveCapacity(report: CapacityReport): Promise<void> {
      const body = encodeMessage('meshroute.capacity/v1', report);
      const kv = await agentsKv();
      try {
        await kv.put(report.agentId, body);
      } catch (err) {
        throw mapNatsError(err, `save heartbeat of ${report.agentId}`, timeoutMs);
      }
    },

    async publishResult(result: WorkResult, tenant: string | undefined): Promise<void> {
      const body = resultBytes.get(result) ?? encodeMessage('meshroute.result/v1', result);
      const subject = names.resultsSubject(tenantToken('result', tenant));
      await jsPublish(subject, body, `${result.workId}/${result.attempt}`, `publish result of ${result.workId}`);
    },

    async publishDecision(record: DecisionRecord): Promise<void> {
      const body = encodeMessage('meshroute.decision/v1', record);
      const subject = names.decisionSubject(tenantToken('decision', record.event.tenant), record.event.id);
      await jsPublish(subject, body, record.decisionId, `publish decision ${record.decisionId}`);
    },

    async publishDeadLetter(record: DeadLetterRecord): Promise<void> {
      const body = encodeMessage('meshroute.deadletter/v1', record);
      const subject = names.deadLetterEventSubject(tenantToken('dead letter', record.tenant), record.eventId);
      await jsPublish(subject, body, deadLetterMsgId(record), `publish dead letter of ${record.eventId}`);
    },

    async reply(replyTo: string, body: Uint8Array, headers?: Record<string, string>): Promise<void> {
      try {
        conn.nc.publish(
          replyTo,
          body,
          headers !== undefined && Object.keys(headers).length > 0 ? { headers: headersFromMap(headers) } : undefined,
        );
      } catch (err) {
        throw mapNatsError(err, `reply to ${replyTo}`);
      }
    },

    async close(): Promise<void> {
      for (const u of [...unsubs]) u();
      mux.close();
    },
  };
}

/**
 * The `Nats-Msg-Id` of a dead letter, so that one event dead-lettered again (a redelivery after
 * a lost acknowledgement) is stored once within the stream's duplicate window: its source and id,
 * or, for an event too broken to have them, a digest of what arrived.
 */
function deadLetterMsgId(record: DeadLetterRecord): string {
  if (record.eventId !== '' && record.eventSource !== '') {
    return `deadletter:${record.eventSource}#${record.eventId}`;
  }
  const raw = typeof record.event === 'string' ? record.event : JSON.stringify(record.event ?? null);
  return `deadletter:sha256:${createHash('sha256')
    .update(`${record.tenant ?? ''}\n${record.reason}\n${raw}`)
    .digest('hex')}`;
}

function abortError(signal: AbortSignal, what: string): MeshError {
  const reason: unknown = signal.reason;
  if (reason instanceof MeshError) return reason;
  return new MeshError(ErrorCode.SHUTTING_DOWN, `${what}: aborted`, { cause: reason, retryable: true });
}
