/**
 * The typed vocabulary policy expressions see: `event` (CloudEvent attributes and the intent
 * extensions) and `agent` (an {@link AgentView}). Declared in `policies/_schema.yaml`; the
 * built-in {@link DEFAULT_VOCABULARY} is used when a bundle has no schema file.
 */
import { type AttributeBag, type Intent, parseIntent } from '@meshroute/mesh';

/** A field type the vocabulary may declare. */
export type FieldType = 'string' | 'int' | 'double' | 'bool' | 'list<string>' | 'map<string, string>';

/** Every field type a vocabulary may declare. */
export const FIELD_TYPES: readonly FieldType[] = [
  'string',
  'int',
  'double',
  'bool',
  'list<string>',
  'map<string, string>',
];

/** What an agent looks like to the policies (computed by the router from heartbeats). */
export interface AgentView {
  id: string;
  backends: string[];
  region: string;
  jurisdiction: string;
  /** Grid carbon intensity, gCO2e/kWh. */
  carbonIntensity: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** Network RTT + queue wait + observed p50, computed by the router. */
  estimatedLatencyMs: number;
  freeSlots: number;
  inFlight: number;
  queueDepth: number;
  costPerJob: number;
  labels: Record<string, string>;
  status: string;
  workloads: string[];
}

/** The declared vocabulary: field name to type, for `event` and for `agent`. */
export interface Vocabulary {
  event: Readonly<Record<string, FieldType>>;
  agent: Readonly<Record<string, FieldType>>;
  /** Event attributes written in clear in decision records; every other attribute is masked. */
  auditAttributes: readonly string[];
}

/** The vocabulary used when a bundle carries no `_schema.yaml`. Same as the shipped one. */
export const DEFAULT_VOCABULARY: Vocabulary = {
  event: {
    id: 'string',
    source: 'string',
    type: 'string',
    subject: 'string',
    time: 'string',
    datacontenttype: 'string',
    tenant: 'string',
    workload: 'string',
    residency: 'list<string>',
    residencyterms: 'list<string>',
    latencybudgetms: 'int',
    carbonmax: 'int',
    costmax: 'double',
    deadlinems: 'int',
    pii: 'bool',
  },
  agent: {
    id: 'string',
    backends: 'list<string>',
    region: 'string',
    jurisdiction: 'string',
    carbonIntensity: 'double',
    latencyP50Ms: 'double',
    latencyP99Ms: 'double',
    estimatedLatencyMs: 'double',
    freeSlots: 'int',
    inFlight: 'int',
    queueDepth: 'int',
    costPerJob: 'double',
    labels: 'map<string, string>',
    status: 'string',
    workloads: 'list<string>',
  },
  auditAttributes: [
    'specversion',
    'id',
    'source',
    'type',
    'subject',
    'time',
    'datacontenttype',
    'tenant',
    'workload',
    'residency',
    'latencybudgetms',
    'carbonmax',
    'costmax',
    'deadline',
    'pii',
  ],
};

/** A value in CEL's JS representation (ints are bigint). */
export type CelJsValue =
  | string
  | bigint
  | number
  | boolean
  | readonly string[]
  | ReadonlyMap<string, string>
  | Record<string, string>;

function coerce(type: FieldType, value: unknown): CelJsValue | undefined {
  switch (type) {
    case 'string':
      return typeof value === 'string' ? value : undefined;
    case 'int':
      if (typeof value === 'bigint') return value;
      if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
      if (typeof value === 'string' && /^-?(0|[1-9][0-9]*)$/.test(value)) return BigInt(value);
      return undefined;
    case 'double':
      if (typeof value === 'number' && Number.isFinite(value)) return value;
      if (typeof value === 'string' && /^-?(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(value)) return Number(value);
      return undefined;
    case 'bool':
      if (typeof value === 'boolean') return value;
      if (value === 'true') return true;
      if (value === 'false') return false;
      return undefined;
    case 'list<string>':
      return Array.isArray(value) && value.every((v) => typeof v === 'string') ? (value as string[]) : undefined;
    case 'map<string, string>':
      return value !== null && typeof value === 'object' && !Array.isArray(value)
        ? (value as Record<string, string>)
        : undefined;
  }
}

/**
 * The event's attributes with the intent parsed into typed values: `residency` becomes the list
 * of allowed ISO 3166-1 alpha-2 codes (groups expanded), `residencyterms` the terms as written,
 * `deadlinems` the deadline in epoch milliseconds.
 * @throws InvalidIntentError when an intent attribute is invalid
 */
export function eventFacts(event: AttributeBag): { facts: Record<string, unknown>; intent: Intent } {
  const intent = parseIntent(event);
  const facts: Record<string, unknown> = { ...event };
  delete facts.data;
  delete facts.data_base64;
  facts.residency = intent.residency ? [...intent.residency].sort() : undefined;
  facts.residencyterms = intent.residencyTerms ? [...intent.residencyTerms] : undefined;
  facts.latencybudgetms = intent.latencyBudgetMs;
  facts.carbonmax = intent.carbonMax;
  facts.costmax = intent.costMax === undefined ? undefined : Number(intent.costMax);
  facts.deadlinems = intent.deadlineMs;
  facts.pii = intent.pii;
  return { facts, intent };
}

/**
 * Build the CEL activation value of `event` or `agent`: only declared fields, each coerced to
 * its declared type (ints as bigint). A field that is absent (or of the wrong type) is left out,
 * so `has(event.x)` is false and reading it is an evaluation error.
 */
export function activationOf(
  fields: Readonly<Record<string, FieldType>>,
  value: Readonly<Record<string, unknown>>,
): Record<string, CelJsValue> {
  const out: Record<string, CelJsValue> = {};
  for (const name in fields) {
    const v = value[name];
    if (v === undefined || v === null) continue;
    const c = coerce(fields[name] as FieldType, v);
    if (c !== undefined) out[name] = c;
  }
  return out;
}

/** Residency lists (sorted, groups expanded) by attribute value as written; bounded. */
const residencyLists = new Map<string, readonly string[]>();
const MAX_CACHED_RESIDENCIES = 1024;

const INTENT_FIELDS = new Set([
  'residency',
  'residencyterms',
  'latencybudgetms',
  'carbonmax',
  'costmax',
  'deadlinems',
  'pii',
]);

/**
 * The CEL activation of `event` in one step: the same value as
 * `activationOf(fields, eventFacts(event).facts)`, without the intermediate copy. Residency lists
 * are shared between events with the same `residency` attribute (activations are never mutated).
 * @throws InvalidIntentError when an intent attribute is invalid
 */
export function eventActivation(
  fields: Readonly<Record<string, FieldType>>,
  event: AttributeBag,
): { activation: Record<string, CelJsValue>; intent: Intent } {
  const intent = parseIntent(event);
  const out: Record<string, CelJsValue> = {};
  for (const name in fields) {
    let v: unknown;
    if (INTENT_FIELDS.has(name)) {
      switch (name) {
        case 'residency': {
          const r = intent.residency;
          if (r === undefined) continue;
          const raw = event.residency;
          let list = typeof raw === 'string' ? residencyLists.get(raw) : undefined;
          if (list === undefined) {
            list = [...r].sort();
            if (typeof raw === 'string' && residencyLists.size < MAX_CACHED_RESIDENCIES) residencyLists.set(raw, list);
          }
          v = list;
          break;
        }
        case 'residencyterms':
          v = intent.residencyTerms === undefined ? undefined : [...intent.residencyTerms];
          break;
        case 'latencybudgetms':
          v = intent.latencyBudgetMs;
          break;
        case 'carbonmax':
          v = intent.carbonMax;
          break;
        case 'costmax':
          v = intent.costMax === undefined ? undefined : Number(intent.costMax);
          break;
        case 'deadlinems':
          v = intent.deadlineMs;
          break;
        default:
          v = intent.pii;
      }
    } else {
      if (name === 'data' || name === 'data_base64' || !Object.hasOwn(event, name)) continue;
      v = event[name];
    }
    if (v === undefined || v === null) continue;
    const c = coerce(fields[name] as FieldType, v);
    if (c !== undefined) out[name] = c;
  }
  return { activation: out, intent };
}
