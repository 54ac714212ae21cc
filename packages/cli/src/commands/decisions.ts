/**
 * `meshroute decisions [--event ID] [--limit N] [--json]`: read decision records from the
 * decisions stream.
 */
import { ConfigError, type DecisionRecord, decodeMessage, meshNames } from '@meshroute/mesh';
import { connectMesh, type MeshConnection } from '@meshroute/transport-nats';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { addNatsOptions, type NatsFlags, natsConnectOptions } from '../nats-options.js';

/** Records shown when no `--limit` is given. */
export const DEFAULT_DECISIONS_LIMIT = 20;

/** Options of {@link readDecisions}. */
export interface ReadDecisionsOptions {
  /** Only records of this event id (scans the whole stream). */
  eventId?: string;
  /** The newest N records (after filtering). @default 20 */
  limit?: number;
}

/** Read the newest decision records from the decisions stream, oldest first. */
export async function readDecisions(
  conn: MeshConnection,
  options: ReadDecisionsOptions = {},
): Promise<DecisionRecord[]> {
  const limit = options.limit ?? DEFAULT_DECISIONS_LIMIT;
  const stream = meshNames().streams.decisions;
  const jsm = await conn.jetstreamManager();
  const info = await jsm.streams.info(stream);
  const { messages, first_seq: firstSeq, last_seq: lastSeq } = info.state;
  if (messages === 0 || limit === 0) return [];
  const startSeq = options.eventId === undefined ? Math.max(firstSeq, lastSeq - limit + 1) : firstSeq;
  const consumer = await conn.js.consumers.get(stream, {
    deliver_policy: 'by_start_sequence' as never,
    opt_start_seq: startSeq,
  });
  const out: DecisionRecord[] = [];
  const iter = await consumer.consume();
  for await (const m of iter) {
    try {
      const record = decodeMessage('meshroute.decision/v1', m.data);
      if (options.eventId === undefined || record.event.id === options.eventId) {
        out.push(record);
        if (out.length > limit) out.shift();
      }
    } catch {
      // not a decision record: skip
    }
    if (m.seq >= lastSeq || m.info.pending === 0) break;
  }
  await iter.close().catch(() => undefined);
  return out;
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
    .option('--event <id>', 'only the decisions for this event id')
    .option(
      '--limit <n>',
      'the newest N records',
      (v: string) => {
        if (!/^[0-9]+$/.test(v))
          throw new ConfigError('--limit', `must be a non-negative integer, got ${JSON.stringify(v)}`);
        return Number(v);
      },
      DEFAULT_DECISIONS_LIMIT,
    )
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
        else ctx.stdout.write(formatDecisions(records));
        if (flags.event !== undefined && records.length === 0) ctx.exitCode = 1;
      } finally {
        await conn.close();
      }
    });
}
