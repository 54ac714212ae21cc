/**
 * The live agent registry: one {@link agentMachine} actor per agent, fed by capacity heartbeats
 * (and the KV snapshot at start), with local slot accounting so that the router never dispatches
 * more work to an agent than it has free slots between two heartbeats.
 */
import type { CapacityReport, Clock } from '@meshroute/mesh';
import { type Actor, createActor } from 'xstate';
import { type AgentState, agentMachine, agentStateOf } from './agent-machine.js';
import type { AgentView } from './policy-port.js';
import { toXStateClock } from './xstate-clock.js';

/** Options of {@link AgentRegistry}. */
export interface AgentRegistryOptions {
  clock: Clock;
  heartbeatIntervalMs: number;
  missedHeartbeatsBeforeDegraded: number;
  missedHeartbeatsBeforeLost: number;
  initialRttMs: number;
  rttEwmaAlpha: number;
  carbonMemoryMs: number;
}

/** A registry change, as the router and `status()` see it. */
export type RegistryChange =
  | { type: 'agentJoined'; agentId: string }
  | { type: 'agentState'; agentId: string; state: AgentState }
  | { type: 'agentLost'; agentId: string; reason: string }
  | { type: 'capacity'; agentId: string };

/** One agent's entry in the registry. */
export interface AgentEntry {
  readonly agentId: string;
  report: CapacityReport;
  state: AgentState;
  /** Work this router has dispatched to the agent and not seen answered. */
  localInFlight: number;
  /** Slots busy with other routers' work, as of the last heartbeat. */
  othersBusy: number;
  /** Smoothed network round trip, ms. */
  rttMs: number;
  /** Observed intensities, one sample per minute, newest last. */
  carbonSamples: { atMs: number; intensity: number }[];
  actor: Actor<typeof agentMachine>;
}

const CARBON_SAMPLE_SPACING_MS = 60_000;

/** The live agent registry. */
export class AgentRegistry {
  readonly #opts: AgentRegistryOptions;
  readonly #agents = new Map<string, AgentEntry>();
  readonly #listeners = new Set<(change: RegistryChange) => void>();
  #revision = 0;
  /**
   * The views handed out by {@link views}, and where each agent sits in them. Rebuilt when an agent
   * joins, leaves or changes state; otherwise only the views of agents that changed (heartbeat,
   * reservation, round trip) are rebuilt, into a copy of the array, so that an unchanged registry
   * hands out the very same array (the policy engine caches per array and revision).
   */
  #views: AgentView[] | undefined;
  readonly #viewIndex = new Map<string, number>();
  readonly #dirty = new Set<AgentEntry>();

  constructor(options: AgentRegistryOptions) {
    this.#opts = options;
  }

  /** Incremented on every change of membership, state or capacity. */
  get revision(): number {
    return this.#revision;
  }

  /** Listen to changes. Returns a function that stops listening. */
  onChange(listener: (change: RegistryChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(change: RegistryChange): void {
    this.#revision++;
    if (change.type === 'capacity') {
      const e = this.#agents.get(change.agentId);
      if (e) this.#dirty.add(e);
    } else {
      this.#views = undefined;
    }
    for (const l of this.#listeners) l(change);
  }

  /**
   * Apply a heartbeat. Stale reports (same instance, lower or equal `seq`) are ignored; so is a
   * snapshot report older than the loss window.
   * @returns whether the report was applied
   */
  apply(report: CapacityReport, options: { fromSnapshot?: boolean } = {}): boolean {
    const lostAfterMs = this.#opts.heartbeatIntervalMs * this.#opts.missedHeartbeatsBeforeLost;
    if (options.fromSnapshot && this.#opts.clock.now() - report.sentAtMs > lostAfterMs) return false;
    const existing = this.#agents.get(report.agentId);
    if (existing) {
      if (existing.report.instanceId === report.instanceId && report.seq <= existing.report.seq) return false;
      existing.report = report;
      existing.othersBusy = Math.max(0, report.slots - report.freeSlots - existing.localInFlight);
      this.#sampleCarbon(existing);
      existing.actor.send({ type: 'HEARTBEAT', status: report.status });
      this.#emit({ type: 'capacity', agentId: report.agentId });
      return true;
    }
    if (report.status === 'leaving') return false;
    const interval = report.heartbeatIntervalMs || this.#opts.heartbeatIntervalMs;
    const actor = createActor(agentMachine, {
      clock: toXStateClock(this.#opts.clock),
      input: {
        agentId: report.agentId,
        degradedAfterMs: interval * this.#opts.missedHeartbeatsBeforeDegraded,
        lostAfterMs: interval * this.#opts.missedHeartbeatsBeforeLost,
      },
    });
    const entry: AgentEntry = {
      agentId: report.agentId,
      report,
      state: 'joining',
      localInFlight: 0,
      othersBusy: Math.max(0, report.slots - report.freeSlots),
      rttMs: this.#opts.initialRttMs,
      carbonSamples: [],
      actor,
    };
    this.#sampleCarbon(entry);
    this.#agents.set(report.agentId, entry);
    actor.subscribe((snap) => {
      const state = agentStateOf(snap.value);
      if (state === entry.state) return;
      entry.state = state;
      if (state === 'lost') {
        this.#agents.delete(entry.agentId);
        actor.stop();
        this.#emit({ type: 'agentLost', agentId: entry.agentId, reason: snap.context.lostReason ?? 'lost' });
      } else {
        this.#emit({ type: 'agentState', agentId: entry.agentId, state });
      }
    });
    actor.start();
    this.#emit({ type: 'agentJoined', agentId: report.agentId });
    actor.send({ type: 'HEARTBEAT', status: report.status });
    return true;
  }

  #sampleCarbon(entry: AgentEntry): void {
    const now = this.#opts.clock.now();
    const s = entry.carbonSamples;
    const last = s[s.length - 1];
    const intensity = entry.report.carbonIntensity;
    if (last && now - last.atMs < CARBON_SAMPLE_SPACING_MS) {
      if (intensity < last.intensity) last.intensity = intensity;
    } else {
      s.push({ atMs: now, intensity });
    }
    const cutoff = now - this.#opts.carbonMemoryMs;
    while (s.length > 1 && (s[0] as { atMs: number }).atMs < cutoff) s.shift();
  }

  /** Mark an agent lost now (for instance when it says it is leaving). */
  remove(agentId: string, reason: string): void {
    this.#agents.get(agentId)?.actor.send({ type: 'LEAVE', reason });
  }

  /** An agent's entry, if it is alive. */
  get(agentId: string): AgentEntry | undefined {
    return this.#agents.get(agentId);
  }

  /** Every live agent. */
  entries(): IterableIterator<AgentEntry> {
    return this.#agents.values();
  }

  /** Number of live agents. */
  get size(): number {
    return this.#agents.size;
  }

  /** Free slots as this router estimates them now. */
  freeSlots(entry: AgentEntry): number {
    return Math.max(0, entry.report.slots - entry.othersBusy - entry.localInFlight);
  }

  /** Whether new work may go to this agent. */
  routable(entry: AgentEntry): boolean {
    return entry.state === 'ready' || entry.state === 'degraded';
  }

  /** Reserve a slot on an agent for a dispatch. */
  reserve(agentId: string): void {
    const e = this.#agents.get(agentId);
    if (!e) return;
    e.localInFlight++;
    this.#dirty.add(e);
  }

  /** Release a slot reserved with {@link reserve}. Returns whether the agent is still known. */
  release(agentId: string): boolean {
    const e = this.#agents.get(agentId);
    if (!e) return false;
    if (e.localInFlight > 0) e.localInFlight--;
    this.#dirty.add(e);
    return true;
  }

  /** Record a round-trip sample (total dispatch time minus the agent's queue and execution time). */
  observeRtt(agentId: string, rttMs: number): void {
    const e = this.#agents.get(agentId);
    if (!e || !Number.isFinite(rttMs) || rttMs < 0) return;
    const a = this.#opts.rttEwmaAlpha;
    e.rttMs = e.rttMs * (1 - a) + rttMs * a;
    this.#dirty.add(e);
  }

  /** The lowest intensity this agent was seen at within the carbon memory. */
  lowestObservedCarbon(entry: AgentEntry): number {
    let min = entry.report.carbonIntensity;
    for (const s of entry.carbonSamples) if (s.intensity < min) min = s.intensity;
    return min;
  }

  /** The policy view of an agent. */
  view(entry: AgentEntry): AgentView {
    const r = entry.report;
    const free = this.freeSlots(entry);
    const p50 = r.latencyP50Ms;
    const queueWaitMs = free > 0 ? 0 : Math.ceil((r.queueDepth + 1) / Math.max(1, r.slots)) * p50;
    return {
      id: r.agentId,
      backends: [...r.backends],
      region: r.region,
      jurisdiction: r.jurisdiction,
      carbonIntensity: r.carbonIntensity,
      latencyP50Ms: p50,
      latencyP99Ms: r.latencyP99Ms,
      estimatedLatencyMs: entry.rttMs + queueWaitMs + p50,
      freeSlots: free,
      inFlight: Math.max(r.inFlight, entry.localInFlight),
      queueDepth: r.queueDepth,
      costPerJob: Number(r.costPerJob),
      labels: r.labels,
      status: entry.state,
      workloads: r.workloads,
    };
  }

  /**
   * Views of every routable agent (ready or degraded). The array and its views are shared until
   * the registry changes: read them, never modify them.
   */
  views(): readonly AgentView[] {
    let views = this.#views;
    if (views === undefined) {
      views = [];
      this.#viewIndex.clear();
      for (const e of this.#agents.values()) {
        if (!this.routable(e)) continue;
        this.#viewIndex.set(e.agentId, views.length);
        views.push(this.view(e));
      }
      this.#dirty.clear();
      this.#views = views;
      return views;
    }
    if (this.#dirty.size > 0) {
      views = views.slice();
      for (const e of this.#dirty) {
        const i = this.#viewIndex.get(e.agentId);
        if (i !== undefined && this.#agents.get(e.agentId) === e) views[i] = this.view(e);
      }
      this.#dirty.clear();
      this.#views = views;
    }
    return views;
  }

  /** Stop every agent actor. */
  stop(): void {
    for (const e of this.#agents.values()) e.actor.stop();
    this.#agents.clear();
    this.#views = undefined;
    this.#dirty.clear();
  }
}
