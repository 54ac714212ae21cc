/**
 * The agent's {@link AgentMesh} over NATS: serve the work addressed to one agent id
 * (request/reply, queue group) and publish capacity heartbeats.
 */

import {
  type AgentMesh,
  type CapacityReport,
  type Clock,
  decodeMessage,
  ErrorCode,
  type ErrorInfo,
  encodeMessage,
  type Logger,
  MeshError,
  type MeshNames,
  meshNames,
  noopLogger,
  systemClock,
  toMeshError,
  type WorkItem,
  type WorkResult,
} from '@meshroute/mesh';
import type { Msg, Subscription } from '@nats-io/nats-core';
import type { MeshConnection } from './connection.js';
import { mapNatsError } from './errors.js';

/** Queue group of work subscriptions by default. */
export const DEFAULT_AGENT_QUEUE_GROUP = 'meshroute-agents';

/** Options of {@link natsAgentMesh}. */
export interface NatsAgentMeshOptions {
  /** @default meshNames() */
  names?: MeshNames;
  /**
   * Queue group of the work subscription. Several processes serving one agent id in the same
   * group share its work (each item runs once); `false` subscribes without a group, so every
   * such process would run every item (first answer wins): only for a single process per id.
   * @default DEFAULT_AGENT_QUEUE_GROUP
   */
  queueGroup?: string | false;
  /** @default systemClock */
  clock?: Clock;
  /** @default noopLogger */
  logger?: Logger;
}

const utf8 = new TextDecoder();

/** A failed result for a request that never reached the handler (invalid, misaddressed). */
function errorResult(raw: unknown, agentId: string, error: ErrorInfo, nowMs: number): WorkResult {
  const o = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const ev = (typeof o.event === 'object' && o.event !== null ? o.event : {}) as Record<string, unknown>;
  const str = (v: unknown, fallback: string): string => (typeof v === 'string' && v.length > 0 ? v : fallback);
  const attempt = typeof o.attempt === 'number' && Number.isInteger(o.attempt) && o.attempt > 0 ? o.attempt : 1;
  return {
    schema: 'meshroute.result/v1',
    workId: str(o.workId, 'unknown'),
    eventId: str(ev.id, 'unknown'),
    eventSource: str(ev.source, 'unknown'),
    agentId,
    attempt,
    ok: false,
    error,
    queueMs: 0,
    executionMs: 0,
    finishedAtMs: nowMs,
  };
}

/**
 * An {@link AgentMesh} for an agent over a {@link MeshConnection}. Closing it stops every
 * work subscription (waiting for running handlers); the connection stays open.
 *
 * `serveWork` validates each request: a message that is not a valid `meshroute.work/v1`, or
 * that is addressed to another agent, is answered with a failed result (`INVALID_MESSAGE`,
 * `AGENT_REJECTED`) and never reaches the handler; a handler that throws is answered with a
 * failed result carrying its error. The subscription never dies of a bad message.
 * @example
 * const agentMesh = natsAgentMesh(conn, { logger });
 * const stop = agentMesh.serveWork('edge-eu-1', (work) => engine.run(work));
 */
export function natsAgentMesh(conn: MeshConnection, options: NatsAgentMeshOptions = {}): AgentMesh {
  const names = options.names ?? meshNames();
  const clock = options.clock ?? systemClock;
  const log = (options.logger ?? noopLogger).child({ component: 'nats-agent-mesh' });
  const queue = options.queueGroup === undefined ? DEFAULT_AGENT_QUEUE_GROUP : options.queueGroup;
  const stops = new Set<() => Promise<void>>();

  const respond = (msg: Msg, result: WorkResult): void => {
    if (!msg.reply) return;
    try {
      msg.respond(encodeMessage('meshroute.result/v1', result));
    } catch (err) {
      log.error('could not answer work request', { workId: result.workId, error: (err as Error).message });
    }
  };

  return {
    serveWork(agentId: string, handler: (work: WorkItem) => Promise<WorkResult>): () => Promise<void> {
      const subject = names.workSubject(agentId);
      const running = new Set<Promise<void>>();
      const onMessage = (msg: Msg): void => {
        if (!msg.reply) {
          log.warn('work message without reply subject dropped', { subject });
          return;
        }
        let work: WorkItem;
        try {
          work = decodeMessage('meshroute.work/v1', msg.data);
        } catch (err) {
          let raw: unknown;
          try {
            raw = JSON.parse(utf8.decode(msg.data));
          } catch {
            raw = undefined;
          }
          log.warn('invalid work item rejected', { agentId, error: (err as Error).message });
          respond(msg, errorResult(raw, agentId, toMeshError(err).toJSON(), clock.now()));
          return;
        }
        if (work.agentId !== agentId) {
          respond(
            msg,
            errorResult(
              work,
              agentId,
              new MeshError(
                ErrorCode.AGENT_REJECTED,
                `work ${work.workId} is addressed to agent ${work.agentId}, not ${agentId}`,
                {
                  retryable: true,
                },
              ).toJSON(),
              clock.now(),
            ),
          );
          return;
        }
        const p = (async () => {
          let result: WorkResult;
          try {
            result = await handler(work);
          } catch (err) {
            log.error('work handler threw', { workId: work.workId, error: (err as Error).message });
            result = errorResult(work, agentId, toMeshError(err).toJSON(), clock.now());
          }
          try {
            msg.respond(encodeMessage('meshroute.result/v1', result));
          } catch (err) {
            // The handler's result failed its schema: answer with that failure instead.
            log.error('work handler returned an invalid result', {
              workId: work.workId,
              error: (err as Error).message,
            });
            respond(msg, errorResult(work, agentId, toMeshError(err).toJSON(), clock.now()));
          }
        })();
        running.add(p);
        void p.finally(() => running.delete(p));
      };
      let sub: Subscription;
      try {
        sub = conn.nc.subscribe(subject, {
          ...(queue === false ? {} : { queue }),
          callback: (err, msg) => {
            if (err) {
              log.error('work subscription failed', {
                subject,
                error: mapNatsError(err, `subscribe ${subject}`).message,
              });
              return;
            }
            onMessage(msg);
          },
        });
      } catch (err) {
        throw mapNatsError(err, `subscribe ${subject}`);
      }
      log.info('serving work', { agentId, subject, queue: queue === false ? undefined : queue });
      let stopped: Promise<void> | undefined;
      const stop = (): Promise<void> => {
        if (stopped === undefined) {
          stopped = (async () => {
            stops.delete(stop);
            if (!sub.isClosed() && !conn.nc.isClosed()) {
              try {
                await sub.drain();
              } catch (err) {
                log.warn('drain of work subscription failed', { subject, error: (err as Error).message });
              }
            }
            await Promise.allSettled([...running]);
          })();
        }
        return stopped;
      };
      stops.add(stop);
      return stop;
    },

    async publishCapacity(report: CapacityReport): Promise<void> {
      const body = encodeMessage('meshroute.capacity/v1', report);
      try {
        conn.nc.publish(names.capacitySubject(report.agentId), body);
      } catch (err) {
        throw mapNatsError(err, `publish heartbeat of ${report.agentId}`);
      }
    },

    async close(): Promise<void> {
      await Promise.all([...stops].map((s) => s()));
    },
  };
}
