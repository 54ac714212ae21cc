/**
 * `meshroute agents`: the live agent table, from the capacity KV snapshot plus a short
 * subscription to heartbeats (`--watch-ms`), as text or `--json`.
 */
import { type CapacityReport, ConfigError } from '@meshroute/mesh';
import { connectMesh, natsMesh } from '@meshroute/transport-nats';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { addNatsOptions, type NatsFlags, natsConnectOptions } from '../nats-options.js';

/** How long `meshroute agents` listens to heartbeats after reading the snapshot, ms. */
export const DEFAULT_AGENTS_WATCH_MS = 1_500;

/** Merge reports by agent: the newest instance and sequence wins. */
export function latestReports(reports: readonly CapacityReport[]): CapacityReport[] {
  const by = new Map<string, CapacityReport>();
  for (const r of reports) {
    const prev = by.get(r.agentId);
    if (!prev || r.sentAtMs > prev.sentAtMs || (r.instanceId === prev.instanceId && r.seq > prev.seq)) {
      by.set(r.agentId, r);
    }
  }
  return [...by.values()].sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0));
}

/** The liveness the router would see: `lost` after 3 missed heartbeats, `silent` after 2. */
export function liveness(report: CapacityReport, nowMs: number): string {
  const silentMs = nowMs - report.sentAtMs;
  if (silentMs > 3 * report.heartbeatIntervalMs) return 'lost';
  if (silentMs > 2 * report.heartbeatIntervalMs) return `${report.status}?`;
  return report.status;
}

/** Render the agent table. */
export function formatAgentsTable(reports: readonly CapacityReport[], nowMs: number): string {
  const header = [
    'AGENT',
    'BACKENDS',
    'REGION',
    'JUR',
    'STATUS',
    'gCO2/kWh',
    'P50ms',
    'P99ms',
    'FREE',
    'INFLIGHT',
    'QUEUE',
    'COST',
    'SEEN',
    'VERSIONS',
  ];
  const rows = reports.map((r) => [
    r.agentId,
    r.backends.join(','),
    r.region,
    r.jurisdiction,
    liveness(r, nowMs),
    String(Math.round(r.carbonIntensity)),
    String(Math.round(r.latencyP50Ms)),
    String(Math.round(r.latencyP99Ms)),
    `${r.freeSlots}/${r.slots}`,
    String(r.inFlight),
    String(r.queueDepth),
    r.costPerJob,
    `${Math.max(0, Math.round((nowMs - r.sentAtMs) / 100) / 10)}s ago`,
    Object.entries(r.versions)
      .map(([k, v]) => `${k}=${v}`)
      .join(' '),
  ]);
  if (rows.length === 0) return 'no agents\n';
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: string[]) =>
    `${cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd()}\n`;
  return line(header) + rows.map(line).join('');
}

interface AgentsFlags extends NatsFlags {
  natsUrl: string;
  json?: boolean;
  watchMs: number;
}

/** Register `meshroute agents`. */
export function register(program: Command, ctx: CliContext): void {
  addNatsOptions(program.command('agents'))
    .description('print the live agent table (capacity snapshot plus a short heartbeat subscription)')
    .option('--json', 'print the capacity reports as JSON')
    .option(
      '--watch-ms <ms>',
      'listen to heartbeats this long',
      (v: string) => {
        if (!/^[0-9]+$/.test(v))
          throw new ConfigError('--watch-ms', `must be a non-negative integer, got ${JSON.stringify(v)}`);
        return Number(v);
      },
      DEFAULT_AGENTS_WATCH_MS,
    )
    .action(async (flags: AgentsFlags) => {
      const conn = await connectMesh({
        ...natsConnectOptions(flags),
        name: 'meshroute-agents',
      });
      try {
        const mesh = natsMesh(conn, { routerId: 'cli-agents' });
        const seen: CapacityReport[] = [];
        const unsubscribe = mesh.onCapacity((r) => seen.push(r));
        seen.push(...(await mesh.snapshotCapacity()));
        if (flags.watchMs > 0) await new Promise((r) => setTimeout(r, flags.watchMs));
        unsubscribe();
        const reports = latestReports(seen);
        if (flags.json) ctx.stdout.write(`${JSON.stringify(reports, null, 2)}\n`);
        else ctx.stdout.write(formatAgentsTable(reports, Date.now()));
      } finally {
        await conn.close();
      }
    });
}
