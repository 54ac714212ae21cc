/**
 * `meshroute decisions [--event ID] [--limit N] [--json]`: read decision records from the
 * decisions stream.
 */
import {
  ConfigError,
  type DeadLetterRecord,
  type DecisionRecord,
  decodeMessage,
  ErrorCode,
  MeshError,
  meshNames,
} from '@meshroute/mesh';
import { connectMesh, type MeshConnection, mapNatsError } from '@meshroute/transport-nats';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { addNatsOptions, type NatsFlags, natsConnectOptions } from '../nats-options.js';

/** Records shown when no `--limit` is given. */
export const DEFAULT_DECISIONS_LIMIT = 20;

/** Options of {@link readDecisions}. */
export interface ReadDecisionsOptions {
  /** Only records of this event id (reads only its subject bucket, about 1/4096 of the stream). */
  eventId?: string;
  /** The newest N records (after filtering). @default 20 */
  limit?: number;
}

/**
 * Read one stream from `startSeq` to its last message as it was when the read began (only the
 * messages on `filterSubject` when given: the server skips the others), decoding each message with
 * `decode` (messages it throws on are skipped) and keeping the last `limit` kept ones.
 */
async function scanStream<T>(
  conn: MeshConnection,
  stream: string,
  decode: (data: Uint8Array) => T,
  keep: (record: T) => boolean,
  options: { limit: number; tail: boolean; filterSubject?: string },
): Promise<T[]> {
  const jsm = await conn.jetstreamManager();
  let info: Awaited<ReturnType<typeof jsm.streams.info>>;
  try {
    info = await jsm.streams.info(stream);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 10059 || /stream not found/i.test(String((err as Error).message))) {
      throw new MeshError(
        ErrorCode.NOT_FOUND,
        `stream ${stream} not found: the mesh is not provisioned on this NATS (start \`meshroute up\` or \`meshroute router\` first, or check --nats-url)`,
        { cause: err },
      );
    }
    throw mapNatsError(err, `read stream ${stream}`);
  }
  const { messages, first_seq: firstSeq, last_seq: lastSeq } = info.state;
  if (messages === 0 || options.limit === 0) return [];
  const startSeq = options.tail ? Math.max(firstSeq, lastSeq - options.limit + 1) : firstSeq;
  const consumer = await conn.js.consumers.get(stream, {
    deliver_policy: 'by_start_sequence' as never,
    opt_start_seq: startSeq,
    ...(options.filterSubject === undefined ? {} : { filter_subjects: options.filterSubject }),
  });
  // With a filter nothing may match: then no message would ever come to end the loop below.
  if (options.filterSubject !== undefined && (await consumer.info(true)).num_pending === 0) return [];
  const out: T[] = [];
  const iter = await consumer.consume();
  try {
    for await (const m of iter) {
      try {
        const record = decode(m.data);
        if (keep(record)) {
          out.push(record);
          if (out.length > options.limit) out.shift();
        }
      } catch {
        // not a record of this stream's schema: skip
      }
      if (m.seq >= lastSeq || m.info.pending === 0) break;
    }
  } finally {
    await iter.close().catch(() => undefined);
  }
  return out;
}

/** Read the newest decision records from the decisions stream, oldest first. */
export async function readDecisions(
  conn: MeshConnection,
  options: ReadDecisionsOptions = {},
): Promise<DecisionRecord[]> {
  const eventId = options.eventId;
  return scanStream(
    conn,
    meshNames().streams.decisions,
    (data) => decodeMessage('meshroute.decision/v1', data),
    (r) => eventId === undefined || r.event.id === eventId,
    {
      limit: options.limit ?? DEFAULT_DECISIONS_LIMIT,
      tail: eventId === undefined,
      ...(eventId === undefined ? {} : { filterSubject: meshNames().decisionsByEventFilter(eventId) }),
    },
  );
}

/** The dead letters of one event id (its subject bucket of the dead-letter stream), oldest first. */
export async function readDeadLetters(conn: MeshConnection, eventId: string): Promise<DeadLetterRecord[]> {
  return scanStream(
    conn,
    meshNames().streams.deadLetters,
    (data) => decodeMessage('meshroute.deadletter/v1', data),
    (r) => r.eventId === eventId,
    { limit: 100, tail: false, filterSubject: meshNames().deadLettersByEventFilter(eventId) },
  );
}

/** Render decision records as text, one block per record. */
export function formatDecisions(records: readonly DecisionRecord[]): string {
  if (records.length === 0) return 'no decisions\n';
  return records
    .map((r) => {
      const lines = [
        `${r.time}  ${r.decisionId}  ${r.outcome}${r.attempt ? `  attempt ${r.attempt}` : ''}${r.routerId ? `  by ${r.routerId}` : ''}`,
        `  event ${r.event.id} (${r.event.type} from ${r.event.source})${r.event.tenant ? ` tenant ${r.event.tenant}` : ''}`,
        `  chosen ${r.chosen ? `${r.chosen.agentId} (${r.chosen.region}/${r.chosen.jurisdiction})` : '-'}  candidates ${r.candidates}  registry rev ${r.registryRevision}  bundle ${r.bundle.digest.slice(0, 19)}`,
      ];
      if (r.topK.length > 0) lines.push(`  top ${r.topK.map((t) => `${t.agentId}=${t.score}`).join(' ')}`);
      for (const x of r.excluded) lines.push(`  excluded ${x.agentId}: ${x.rules.join(', ')}`);
      if (r.deferred)
        lines.push(`  deferred until ${new Date(r.deferred.untilMs).toISOString()}: ${r.deferred.reason}`);
      for (const e of r.errors ?? [])
        lines.push(`  error ${e.rule}${e.agentId ? ` (${e.agentId})` : ''}: ${e.message}`);
      return `${lines.join('\n')}\n`;
    })
    .join('');
}

/** What `meshroute decisions` says when it finds no record (for `--event ID`, or at all). */
export function noDecisionsMessage(eventId: string | undefined, deadLetters: readonly DeadLetterRecord[] = []): string {
  const stream = meshNames().streams.decisions;
  if (eventId === undefined) return `no decision records in the ${stream} stream yet`;
  const id = JSON.stringify(eventId);
  const last = deadLetters[deadLetters.length - 1];
  if (last !== undefined) {
    return `no decision record for event ${id}: it was dead-lettered ${last.reason} before any placement decision (${last.error.message})`;
  }
  return (
    `no decision record for event ${id} in the ${stream} stream: unknown event id ` +
    '(or the event was refused at ingress before routing, or its records aged out of the stream)'
  );
}

/** Parse `--event`: a CloudEvents id is a non-empty string. */
export function eventIdFlag(v: string): string {
  if (v.trim() === '') throw new ConfigError('--event', 'must be a non-empty event id');
  return v;
}

/** Parse `--limit`: a positive safe integer. */
export function limitFlag(v: string): number {
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(n) || n < 1) {
    throw new ConfigError('--limit', `must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return n;
}

interface DecisionsFlags extends NatsFlags {
  natsUrl: string;
  event?: string;
  limit: number;
  json?: boolean;
}

/** Register `meshroute decisions`. */
export function register(program: Command, ctx: CliContext): void {
  addNatsOptions(program.command('decisions'))
    .description('show routing decision records from the decisions stream')
    .option('--event <id>', 'only the decisions for this event id', eventIdFlag)
    .option('--limit <n>', 'the newest N records', limitFlag, DEFAULT_DECISIONS_LIMIT)
    .option('--json', 'print the records as JSON')
    .action(async (flags: DecisionsFlags) => {
      const conn = await connectMesh({
        ...natsConnectOptions(flags),
        name: 'meshroute-decisions',
      });
      try {
        const records = await readDecisions(conn, {
          limit: flags.limit,
          ...(flags.event !== undefined ? { eventId: flags.event } : {}),
        });
        if (flags.json) ctx.stdout.write(`${JSON.stringify(records, null, 2)}\n`);
        else if (records.length > 0) ctx.stdout.write(formatDecisions(records));
        if (records.length === 0) {
          const message = noDecisionsMessage(
            flags.event,
            flags.event !== undefined ? await readDeadLetters(conn, flags.event).catch(() => []) : [],
          );
          // A missing event is an answer the caller asked about: exit 1, and keep stdout valid JSON.
          if (flags.event !== undefined) {
            ctx.stderr.write(`meshroute decisions: ${message}\n`);
            ctx.exitCode = 1;
          } else if (!flags.json) ctx.stdout.write(`${message}\n`);
        }
      } finally {
        await conn.close();
      }
    });
}
