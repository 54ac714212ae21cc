/**
 * `meshroute agents`: the live agent table, from the capacity KV snapshot plus a short
 * subscription to heartbeats (`--watch-ms`), as text or `--json`.
 */
import { type CapacityReport, ConfigError } from '@meshroute/mesh';
import {
  type AgentState,
  DEFAULT_MISSED_HEARTBEATS_BEFORE_DEGRADED,
  DEFAULT_MISSED_HEARTBEATS_BEFORE_LOST,
} from '@meshroute/router';
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

/**
 * Silence thresholds of {@link agentState}, in heartbeat intervals of the agent (as the router
 * counts them).
 */
export interface LivenessThresholds {
  /** Missed heartbeats before an agent is lost. @default {@link DEFAULT_MISSED_HEARTBEATS_BEFORE_LOST} (3) */
  missedHeartbeatsBeforeLost: number;
  /** Missed heartbeats before a ready agent counts as degraded. @default min(2, missedHeartbeatsBeforeLost) */
  missedHeartbeatsBeforeDegraded: number;
}

/** The router's defaults: lost after 3 missed heartbeats, degraded after 2. */
export const DEFAULT_LIVENESS_THRESHOLDS: LivenessThresholds = {
  missedHeartbeatsBeforeLost: DEFAULT_MISSED_HEARTBEATS_BEFORE_LOST,
  missedHeartbeatsBeforeDegraded: DEFAULT_MISSED_HEARTBEATS_BEFORE_DEGRADED,
};

/** Thresholds for `--missed-heartbeats N`: lost after N, degraded after min(2, N), as the router does. */
export function livenessThresholds(missedHeartbeatsBeforeLost: number): LivenessThresholds {
  return {
    missedHeartbeatsBeforeLost,
    missedHeartbeatsBeforeDegraded: Math.min(DEFAULT_MISSED_HEARTBEATS_BEFORE_DEGRADED, missedHeartbeatsBeforeLost),
  };
}

/**
 * The lifecycle state the router's agent machine gives this agent at `nowMs`: `lost` once it
 * announced `leaving` or stayed silent for `missedHeartbeatsBeforeLost` of its heartbeat
 * intervals; `draining` or `degraded` as announced; a `ready` agent silent for
 * `missedHeartbeatsBeforeDegraded` intervals is `degraded`; otherwise `ready`.
 */
export function agentState(
  report: CapacityReport,
  nowMs: number,
  thresholds: LivenessThresholds = DEFAULT_LIVENESS_THRESHOLDS,
): AgentState {
  const silentMs = nowMs - report.sentAtMs;
  if (report.status === 'leaving') return 'lost';
  if (silentMs > thresholds.missedHeartbeatsBeforeLost * report.heartbeatIntervalMs) return 'lost';
  if (report.status === 'draining' || report.status === 'degraded') return report.status;
  if (silentMs > thresholds.missedHeartbeatsBeforeDegraded * report.heartbeatIntervalMs) return 'degraded';
  return 'ready';
}

/** Why an agent is in its state, when that is not plain `ready` (empty otherwise). */
export function stateNote(report: CapacityReport, nowMs: number, state: AgentState): string {
  if (report.status === 'leaving') return 'left the mesh';
  const silentS = Math.max(0, Math.round((nowMs - report.sentAtMs) / 100) / 10);
  if (state === 'lost' || (state === 'degraded' && report.status === 'ready')) return `no heartbeat for ${silentS}s`;
  if (state === 'draining') return 'finishing its work, takes no new work';
  if (state === 'degraded') return 'announced degraded';
  return '';
}

/** One row of `meshroute agents --json`: the agent's newest heartbeat plus the state derived from it. */
export type AgentRow = CapacityReport & {
  /** Lifecycle state as the router sees it ({@link agentState}). */
  state: AgentState;
  /** Milliseconds since the heartbeat was sent. */
  silentMs: number;
};

/** The `--json` rows: each report with its {@link agentState} and silence. */
export function agentRows(
  reports: readonly CapacityReport[],
  nowMs: number,
  thresholds: LivenessThresholds = DEFAULT_LIVENESS_THRESHOLDS,
): AgentRow[] {
  return reports.map((r) => ({
    ...r,
    state: agentState(r, nowMs, thresholds),
    silentMs: Math.max(0, Math.round(nowMs - r.sentAtMs)),
  }));
}

const mapText = (m: Readonly<Record<string, string>>): string =>
  Object.entries(m)
    .map(([k, v]) => `${k}=${v}`)
    .join(',') || '-';

/** Render the agent table: every registry field, one agent a line, with its lifecycle state. */
export function formatAgentsTable(
  reports: readonly CapacityReport[],
  nowMs: number,
  thresholds: LivenessThresholds = DEFAULT_LIVENESS_THRESHOLDS,
): string {
  if (reports.length === 0) return 'no agents (no heartbeat in the capacity snapshot or heard while listening)\n';
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
    'LABELS',
    'VERSIONS',
    'NOTE',
  ];
  const rows = reports.map((r) => {
    const state = agentState(r, nowMs, thresholds);
    return [
      r.agentId,
      r.backends.join(','),
      r.region,
      r.jurisdiction,
      state,
      String(Math.round(r.carbonIntensity)),
      String(Math.round(r.latencyP50Ms)),
      String(Math.round(r.latencyP99Ms)),
      `${r.freeSlots}/${r.slots}`,
      String(r.inFlight),
      String(r.queueDepth),
      r.costPerJob,
      `${Math.max(0, Math.round((nowMs - r.sentAtMs) / 100) / 10)}s ago`,
      mapText(r.labels),
      mapText(r.versions),
      stateNote(r, nowMs, state),
    ];
  });
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
  missedHeartbeats: number;
}

/** The longest timer Node.js keeps (a longer one fires at once). */
const MAX_TIMER_MS = 2_147_483_647;

function intFlag(flag: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^[0-9]+$/.test(v) || n < min || n > max) {
      throw new ConfigError(flag, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
    }
    return n;
  };
}

/** Register `meshroute agents`. */
export function register(program: Command, ctx: CliContext): void {
  addNatsOptions(program.command('agents'))
    .description('print the live agent table (capacity snapshot plus a short heartbeat subscription)')
    .option('--json', 'print the agents as JSON (each newest heartbeat plus its lifecycle state and silentMs)')
    .option(
      '--watch-ms <ms>',
      'listen to heartbeats this long',
      intFlag('--watch-ms', 0, MAX_TIMER_MS),
      DEFAULT_AGENTS_WATCH_MS,
    )
    .option(
      '--missed-heartbeats <n>',
      "missed heartbeats before an agent shows as lost (the router's missedHeartbeatsBeforeLost)",
      intFlag('--missed-heartbeats', 1, 1_000_000),
      DEFAULT_MISSED_HEARTBEATS_BEFORE_LOST,
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
        const thresholds = livenessThresholds(flags.missedHeartbeats);
        const now = Date.now();
        if (flags.json) ctx.stdout.write(`${JSON.stringify(agentRows(reports, now, thresholds), null, 2)}\n`);
        else ctx.stdout.write(formatAgentsTable(reports, now, thresholds));
      } finally {
        await conn.close();
      }
    });
}
