/**
 * The intent vocabulary: CloudEvents extension attributes that say where, how fast, how green
 * and how cheaply an event's work may run. See `docs/intent.md`.
 */
import { InvalidIntentError } from './errors.js';

/** Names of the intent extension attributes (lowercase a-z0-9, at most 20 characters). */
export const IntentAttribute = {
  residency: 'residency',
  latencyBudgetMs: 'latencybudgetms',
  carbonMax: 'carbonmax',
  costMax: 'costmax',
  workload: 'workload',
  tenant: 'tenant',
  deadline: 'deadline',
  pii: 'pii',
} as const;

/** One of the intent attribute names. */
export type IntentAttributeName = (typeof IntentAttribute)[keyof typeof IntentAttribute];

/** All intent attribute names, in documentation order. */
export const INTENT_ATTRIBUTES: readonly IntentAttributeName[] = Object.values(IntentAttribute);

/** The 27 member states of the European Union (ISO 3166-1 alpha-2). */
export const EU_COUNTRIES: readonly string[] = [
  'AT',
  'BE',
  'BG',
  'HR',
  'CY',
  'CZ',
  'DK',
  'EE',
  'FI',
  'FR',
  'DE',
  'GR',
  'HU',
  'IE',
  'IT',
  'LV',
  'LT',
  'LU',
  'MT',
  'NL',
  'PL',
  'PT',
  'RO',
  'SK',
  'SI',
  'ES',
  'SE',
];

/** The European Economic Area: the EU plus Iceland, Liechtenstein and Norway. */
export const EEA_COUNTRIES: readonly string[] = [...EU_COUNTRIES, 'IS', 'LI', 'NO'];

/** Jurisdiction groups accepted in `residency`, lowercase. */
export const JURISDICTION_GROUPS: Readonly<Record<string, readonly string[]>> = {
  eu: EU_COUNTRIES,
  eea: EEA_COUNTRIES,
};

/**
 * Officially assigned ISO 3166-1 alpha-2 codes. `residency` rejects anything else so that a typo
 * (`UK` instead of `GB`, `EL` instead of `GR`) never silently allows or forbids a country.
 */
export const ISO_3166_ALPHA2: ReadonlySet<string> = new Set(
  (
    'AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ ' +
    'CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR ' +
    'GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP ' +
    'KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT ' +
    'MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW ' +
    'SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG ' +
    'UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW'
  ).split(' '),
);

/** The typed intent carried by an event. Absent attributes are `undefined`. */
export interface Intent {
  /**
   * Jurisdictions the data may be processed in, expanded to uppercase ISO 3166-1 alpha-2 codes
   * (groups such as `eu` expanded). `undefined` means no restriction.
   */
  residency: ReadonlySet<string> | undefined;
  /** The residency value as written (codes and groups, lowercase groups, uppercase countries). */
  residencyTerms: readonly string[] | undefined;
  /** How fast the work must be answered, in milliseconds. */
  latencyBudgetMs: number | undefined;
  /** Maximum grid carbon intensity of the agent, gCO2e/kWh. */
  carbonMax: number | undefined;
  /** Maximum cost per job, in currency units, as a decimal string (kept exact). */
  costMax: string | undefined;
  /** The workload to run. */
  workload: string | undefined;
  /** The tenant the event belongs to. */
  tenant: string | undefined;
  /** The work may wait until this instant (epoch milliseconds) for a better slot. */
  deadlineMs: number | undefined;
  /** Whether the data contains personal information. */
  pii: boolean | undefined;
}

/** Attribute values as they appear on a CloudEvent (strings from headers, or typed JSON values). */
export type AttributeBag = Readonly<Record<string, unknown>>;

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const DECIMAL_RE = /^(0|[1-9][0-9]*)(\.[0-9]+)?$/;
const NAME_RE = /^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$/;
const TENANT_RE = /^[A-Za-z0-9]([A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$/;
/** RFC 3339 date-time, as required by the CloudEvents Timestamp type. */
export const RFC3339_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$/;

function intError(attribute: string, value: unknown, min: number, max: number): number {
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && /^-?(0|[1-9][0-9]*)$/.test(value)) n = Number(value);
  else
    throw new InvalidIntentError(attribute, 'integer', `${attribute} must be an Integer, got ${JSON.stringify(value)}`);
  if (!Number.isInteger(n) || n < INT32_MIN || n > INT32_MAX) {
    throw new InvalidIntentError(
      attribute,
      'integer',
      `${attribute} must be a 32-bit Integer, got ${JSON.stringify(value)}`,
    );
  }
  if (n < min || n > max) {
    throw new InvalidIntentError(attribute, 'range', `${attribute} must be between ${min} and ${max}, got ${n}`);
  }
  return n;
}

function digits(s: string, from: number, count: number): number {
  let n = 0;
  for (let i = from; i < from + count; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/**
 * Parse and validate an RFC 3339 timestamp into epoch milliseconds, checking the calendar
 * (no February 30th). Fractional seconds beyond milliseconds are truncated. Returns `undefined`
 * when invalid (a leap second `:60` included, as `Date` cannot represent it).
 */
export function parseRfc3339(value: string): number | undefined {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), checked by hand: this is on the ingress hot path.
  const len = value.length;
  if (len < 20) return undefined;
  const year = digits(value, 0, 4);
  const month = digits(value, 5, 2);
  const day = digits(value, 8, 2);
  const hour = digits(value, 11, 2);
  const minute = digits(value, 14, 2);
  const second = digits(value, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59) {
    return undefined;
  }
  // RFC 3339 5.7: a leap second (60) is valid where leap seconds occur (checked below).
  if (second < 0 || second > 60) return undefined;
  const t = value.charCodeAt(10) | 0x20;
  if (value[4] !== '-' || value[7] !== '-' || t !== 0x74 || value[13] !== ':' || value[16] !== ':') return undefined;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const dim = month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] as number);
  if (day > dim) return undefined;
  let i = 19;
  let ms = 0;
  if (value[i] === '.') {
    i++;
    const start = i;
    while (i < len) {
      const d = value.charCodeAt(i) - 48;
      if (d < 0 || d > 9) break;
      if (i - start < 3) ms = ms * 10 + d;
      i++;
    }
    const n = i - start;
    if (n === 0) return undefined;
    if (n === 1) ms *= 100;
    else if (n === 2) ms *= 10;
  }
  let offsetMin = 0;
  const z = value.charCodeAt(i) | 0x20;
  if (z === 0x7a) {
    if (i + 1 !== len) return undefined;
  } else {
    const sign = value[i];
    if ((sign !== '+' && sign !== '-') || i + 6 !== len || value[i + 3] !== ':') return undefined;
    const oh = digits(value, i + 1, 2);
    const om = digits(value, i + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59) return undefined;
    offsetMin = (sign === '+' ? 1 : -1) * (oh * 60 + om);
  }
  const days = daysFromCivil(year, month, day);
  if (second === 60) {
    // Leap seconds are inserted at the end of a UTC day at the end of June or December only:
    // 23:59:60 UTC on 30 June or 31 December. It reads as the first second of the next day.
    const before = (((days * 24 + hour) * 60 + minute - offsetMin) * 60 + 59) * 1000;
    const d = new Date(before);
    const endOfHalf =
      (d.getUTCMonth() === 5 && d.getUTCDate() === 30) || (d.getUTCMonth() === 11 && d.getUTCDate() === 31);
    if (!endOfHalf || d.getUTCHours() !== 23 || d.getUTCMinutes() !== 59) return undefined;
    return before + 1000 + ms;
  }
  return (((days * 24 + hour) * 60 + minute - offsetMin) * 60 + second) * 1000 + ms;
}

/**
 * Parse a `residency` value: comma-separated ISO 3166-1 alpha-2 codes and the groups `eu`, `eea`
 * (case-insensitive, spaces around commas allowed).
 * @throws InvalidIntentError naming `residency` for an empty list, an unknown code or group.
 * @example parseResidency('eu,CH') // Set { 'AT', 'BE', ..., 'CH' }
 */
export function parseResidency(value: unknown): { allowed: Set<string>; terms: string[] } {
  if (typeof value !== 'string') {
    throw new InvalidIntentError('residency', 'string', `residency must be a String, got ${JSON.stringify(value)}`);
  }
  const parts = value.split(',').map((p) => p.trim());
  if (value.trim() === '' || parts.some((p) => p === '')) {
    throw new InvalidIntentError(
      'residency',
      'list',
      `residency must be a comma-separated list without empty items, got ${JSON.stringify(value)}`,
    );
  }
  const allowed = new Set<string>();
  const terms: string[] = [];
  for (const part of parts) {
    const group = JURISDICTION_GROUPS[part.toLowerCase()];
    if (group) {
      for (const c of group) allowed.add(c);
      terms.push(part.toLowerCase());
      continue;
    }
    const code = part.toUpperCase();
    if (!/^[A-Z]{2}$/.test(code) || !ISO_3166_ALPHA2.has(code)) {
      throw new InvalidIntentError(
        'residency',
        'iso3166',
        `residency: ${JSON.stringify(part)} is neither an ISO 3166-1 alpha-2 country code nor a group (${Object.keys(JURISDICTION_GROUPS).join(', ')})`,
      );
    }
    allowed.add(code);
    terms.push(code);
  }
  return { allowed, terms };
}

/**
 * Read and validate the intent extension attributes of an event.
 * @param attributes the event's attributes (the CloudEvent object itself will do)
 * @throws InvalidIntentError naming the first invalid attribute and the rule it broke
 */
export function parseIntent(attributes: AttributeBag): Intent {
  return readIntent(attributes);
}

/**
 * Validate the intent extension attributes of an event without building the typed
 * {@link Intent}: the same rules and errors as {@link parseIntent}, cheaper on the ingress hot path.
 * @throws InvalidIntentError naming the first invalid attribute and the rule it broke
 */
export function validateIntent(attributes: AttributeBag): void {
  // Residencies are parsed once per value (cached), so validating is reading.
  readIntent(attributes);
}

/** Set while a {@link SealedJurisdictions} is filled. */
let sealing = false;

/**
 * A set of jurisdictions that cannot be changed once built: parsed residencies are shared between
 * every event that writes the same value, so one consumer must not be able to widen another's.
 */
class SealedJurisdictions extends Set<string> {
  constructor(items: Iterable<string>) {
    sealing = true;
    try {
      super(items);
    } finally {
      sealing = false;
    }
  }
  override add(value: string): this {
    if (!sealing) throw new TypeError('a parsed residency cannot be changed');
    return super.add(value);
  }
  override delete(_value: string): boolean {
    throw new TypeError('a parsed residency cannot be changed');
  }
  override clear(): void {
    throw new TypeError('a parsed residency cannot be changed');
  }
}

/** Parsed residency values (sealed, shared), at most {@link RESIDENCY_CACHE_SIZE}. */
const residencyCache = new Map<string, { allowed: ReadonlySet<string>; terms: readonly string[] }>();
const RESIDENCY_CACHE_SIZE = 1024;

/** {@link parseResidency}, remembered per value: events mostly repeat a few residencies. */
function cachedResidency(value: unknown): { allowed: ReadonlySet<string>; terms: readonly string[] } {
  if (typeof value === 'string') {
    const hit = residencyCache.get(value);
    if (hit !== undefined) return hit;
  }
  const r = parseResidency(value);
  const sealed = { allowed: new SealedJurisdictions(r.allowed), terms: Object.freeze(r.terms) };
  if (residencyCache.size >= RESIDENCY_CACHE_SIZE) residencyCache.clear();
  residencyCache.set(value as string, sealed);
  return sealed;
}

function readIntent(a: AttributeBag): Intent {
  let residency: ReadonlySet<string> | undefined;
  let residencyTerms: readonly string[] | undefined;
  if (a.residency !== undefined) {
    const r = cachedResidency(a.residency);
    residency = r.allowed;
    residencyTerms = r.terms;
  }
  const latencyBudgetMs =
    a.latencybudgetms === undefined ? undefined : intError('latencybudgetms', a.latencybudgetms, 1, INT32_MAX);
  const carbonMax = a.carbonmax === undefined ? undefined : intError('carbonmax', a.carbonmax, 0, INT32_MAX);
  let costMax: string | undefined;
  if (a.costmax !== undefined) {
    if (typeof a.costmax !== 'string' || !DECIMAL_RE.test(a.costmax)) {
      throw new InvalidIntentError(
        'costmax',
        'decimal',
        `costmax must be a non-negative decimal string such as "0.25", got ${JSON.stringify(a.costmax)}`,
      );
    }
    costMax = a.costmax;
  }
  let workload: string | undefined;
  if (a.workload !== undefined) {
    if (typeof a.workload !== 'string' || !NAME_RE.test(a.workload)) {
      throw new InvalidIntentError(
        'workload',
        'name',
        `workload must be a name of lowercase letters, digits, '.', '_' or '-' (1-128 chars), got ${JSON.stringify(a.workload)}`,
      );
    }
    workload = a.workload;
  }
  let tenant: string | undefined;
  if (a.tenant !== undefined) {
    if (typeof a.tenant !== 'string' || !TENANT_RE.test(a.tenant)) {
      throw new InvalidIntentError(
        'tenant',
        'name',
        `tenant must be letters, digits, '_' or '-' (1-64 chars), got ${JSON.stringify(a.tenant)}`,
      );
    }
    tenant = a.tenant;
  }
  let deadlineMs: number | undefined;
  if (a.deadline !== undefined) {
    const raw = a.deadline instanceof Date ? a.deadline.toISOString() : a.deadline;
    const ms = typeof raw === 'string' ? parseRfc3339(raw) : undefined;
    if (ms === undefined) {
      throw new InvalidIntentError(
        'deadline',
        'rfc3339',
        `deadline must be an RFC 3339 Timestamp, got ${JSON.stringify(a.deadline)}`,
      );
    }
    deadlineMs = ms;
  }
  let pii: boolean | undefined;
  if (a.pii !== undefined) {
    if (a.pii === true || a.pii === 'true') pii = true;
    else if (a.pii === false || a.pii === 'false') pii = false;
    else
      throw new InvalidIntentError(
        'pii',
        'boolean',
        `pii must be a Boolean ("true" or "false"), got ${JSON.stringify(a.pii)}`,
      );
  }
  return { residency, residencyTerms, latencyBudgetMs, carbonMax, costMax, workload, tenant, deadlineMs, pii };
}

/** Intent as the producer writes it (used by the client and `meshroute publish`). */
export interface IntentInput {
  /** Allowed jurisdictions: codes and groups, e.g. `['eu']` or `'eu,CH'`. */
  residency?: string | readonly string[];
  /** Latency budget in milliseconds. */
  latencyBudgetMs?: number;
  /** Carbon ceiling, gCO2e/kWh. */
  carbonMax?: number;
  /** Cost ceiling per job, decimal string or number. */
  costMax?: string | number;
  /** Workload name. */
  workload?: string;
  /** Tenant. */
  tenant?: string;
  /** The work may wait until then. */
  deadline?: Date | string;
  /** The data carries personal information. */
  pii?: boolean;
}

/**
 * Turn an {@link IntentInput} into CloudEvents extension attributes, validating every value.
 * @throws InvalidIntentError naming the attribute
 * @example intentToAttributes({ residency: 'eu', latencyBudgetMs: 50 }) // { residency: 'eu', latencybudgetms: 50 }
 */
export function intentToAttributes(input: IntentInput): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  if (input.residency !== undefined) {
    out.residency = typeof input.residency === 'string' ? input.residency : input.residency.join(',');
  }
  if (input.latencyBudgetMs !== undefined) out.latencybudgetms = input.latencyBudgetMs;
  if (input.carbonMax !== undefined) out.carbonmax = input.carbonMax;
  if (input.costMax !== undefined) out.costmax = String(input.costMax);
  if (input.workload !== undefined) out.workload = input.workload;
  if (input.tenant !== undefined) out.tenant = input.tenant;
  if (input.deadline !== undefined) {
    out.deadline = input.deadline instanceof Date ? input.deadline.toISOString() : input.deadline;
  }
  if (input.pii !== undefined) out.pii = input.pii;
  parseIntent(out);
  return out;
}

/** Whether a jurisdiction (ISO 3166-1 alpha-2) is allowed by an intent's residency. */
export function residencyAllows(intent: Pick<Intent, 'residency'>, jurisdiction: string): boolean {
  return intent.residency === undefined || intent.residency.has(jurisdiction.toUpperCase());
}
