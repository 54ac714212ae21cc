/**
 * Agent sets for policy tests and `meshroute policy explain`: a list of {@link AgentView}s (or
 * `{ agents: [...] }`), where omitted fields take documented defaults.
 */
import type { AgentView } from './vocabulary.js';

/** Defaults for agent fields a fixture leaves out. */
export const AGENT_FIXTURE_DEFAULTS: Omit<AgentView, 'id'> = {
  backends: ['wasm'],
  region: 'unknown',
  jurisdiction: 'ZZ',
  carbonIntensity: 0,
  latencyP50Ms: 0,
  latencyP99Ms: 0,
  estimatedLatencyMs: 0,
  freeSlots: 1,
  inFlight: 0,
  queueDepth: 0,
  costPerJob: 0,
  labels: {},
  status: 'ready',
  workloads: [],
};

const NUMBER_FIELDS = [
  'carbonIntensity',
  'latencyP50Ms',
  'latencyP99Ms',
  'estimatedLatencyMs',
  'freeSlots',
  'inFlight',
  'queueDepth',
  'costPerJob',
] as const;
const INT_FIELDS = new Set(['freeSlots', 'inFlight', 'queueDepth']);
const STRING_FIELDS = ['id', 'region', 'jurisdiction', 'status'] as const;
const LIST_FIELDS = ['backends', 'workloads'] as const;
const KNOWN = new Set<string>([...NUMBER_FIELDS, ...STRING_FIELDS, ...LIST_FIELDS, 'labels']);

/**
 * Read an agent set. Returns the agents, or the problems (each naming the agent index and field).
 * `costPerJob` may be a decimal string (as in heartbeats).
 */
export function parseAgentViews(value: unknown): { agents: AgentView[]; errors: string[] } {
  const list =
    value !== null && typeof value === 'object' && !Array.isArray(value) && 'agents' in (value as object)
      ? (value as { agents: unknown }).agents
      : value;
  const errors: string[] = [];
  if (!Array.isArray(list)) return { agents: [], errors: ['agents must be a list (or a mapping with `agents:`)'] };
  const agents: AgentView[] = [];
  const seen = new Set<string>();
  list.forEach((raw, i) => {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      errors.push(`agents[${i}] must be a mapping`);
      return;
    }
    const r = raw as Record<string, unknown>;
    const a: AgentView = {
      ...AGENT_FIXTURE_DEFAULTS,
      id: '',
      labels: {},
      backends: [...AGENT_FIXTURE_DEFAULTS.backends],
      workloads: [],
    };
    for (const k of Object.keys(r)) if (!KNOWN.has(k)) errors.push(`agents[${i}]: unknown field \`${k}\``);
    for (const f of STRING_FIELDS) {
      if (r[f] === undefined) continue;
      if (typeof r[f] !== 'string') errors.push(`agents[${i}].${f} must be a string`);
      else a[f] = r[f] as string;
    }
    if (a.id === '') errors.push(`agents[${i}].id is required`);
    else if (seen.has(a.id)) errors.push(`agents[${i}].id \`${a.id}\` is a duplicate`);
    seen.add(a.id);
    for (const f of NUMBER_FIELDS) {
      let v = r[f];
      if (v === undefined) continue;
      if (f === 'costPerJob' && typeof v === 'string' && /^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(v)) v = Number(v);
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (INT_FIELDS.has(f) && !Number.isInteger(v))) {
        errors.push(`agents[${i}].${f} must be a non-negative ${INT_FIELDS.has(f) ? 'integer' : 'number'}`);
      } else a[f] = v;
    }
    for (const f of LIST_FIELDS) {
      const v = r[f];
      if (v === undefined) continue;
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string'))
        errors.push(`agents[${i}].${f} must be a list of strings`);
      else a[f] = [...(v as string[])];
    }
    if (r.labels !== undefined) {
      const l = r.labels;
      if (
        l === null ||
        typeof l !== 'object' ||
        Array.isArray(l) ||
        !Object.values(l).every((x) => typeof x === 'string')
      ) {
        errors.push(`agents[${i}].labels must be a mapping of strings`);
      } else a.labels = { ...(l as Record<string, string>) };
    }
    agents.push(a);
  });
  return { agents, errors };
}
