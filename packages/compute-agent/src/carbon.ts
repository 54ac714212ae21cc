/**
 * Carbon intensity sources for the heartbeat: a fixed figure, the country's annual grid average
 * from the `@tgwf/co2` data set, or a live provider speaking the Green Software Foundation
 * Carbon Aware SDK WebAPI format, falling back to the last known value.
 */
import { type CancelTimer, type Clock, ConfigError, type Logger, noopLogger, systemClock } from '@meshroute/mesh';
import { ISO2_TO_ISO3 } from './iso3166.js';

/** A carbon intensity figure and where it came from. */
export interface CarbonReading {
  /** Grid carbon intensity, gCO2e/kWh. */
  intensity: number;
  /** `fixed`, `auto:<dataset>`, `provider` or `provider-stale` (as in `meshroute.capacity/v1`). */
  source: string;
}

/** Where the agent's carbon intensity comes from. {@link CarbonSource.current} never blocks. */
export interface CarbonSource {
  /** The figure to announce now. */
  current(): CarbonReading;
  /** Start refreshing (providers poll). Resolves after the first attempt. Idempotent. */
  start(): Promise<void>;
  /** Stop refreshing. Idempotent. */
  close(): Promise<void>;
}

/** The data set name announced for `auto` (`carbonSource: 'auto:tgwf-co2-average'`). */
export const AUTO_CARBON_DATASET = 'tgwf-co2-average';
/** Default poll interval of a live provider. */
export const DEFAULT_CARBON_POLL_INTERVAL_MS = 300_000;
/** Default timeout of one provider request. */
export const DEFAULT_CARBON_REQUEST_TIMEOUT_MS = 2_000;
/** Largest provider answer read, bytes (a real one is a few hundred bytes). */
export const DEFAULT_CARBON_MAX_RESPONSE_BYTES = 1_048_576;

function checkIntensity(option: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new ConfigError(option, `carbon intensity must be a non-negative number of gCO2e/kWh, got ${value}`);
  }
  return value;
}

/** A fixed carbon intensity (`--carbon 120`). */
export function fixedCarbon(intensity: number): CarbonSource {
  const reading: CarbonReading = { intensity: checkIntensity('carbon', intensity), source: 'fixed' };
  return { current: () => reading, start: async () => {}, close: async () => {} };
}

let averages: Record<string, number> | undefined;

async function loadAverages(): Promise<Record<string, number>> {
  if (!averages) {
    const mod = await import('@tgwf/co2/data');
    averages = mod.averageIntensity.data;
  }
  return averages;
}

/**
 * The annual average grid intensity of a country, from `@tgwf/co2` (keyed by ISO 3166-1 alpha-3).
 * Accepts an alpha-2 or alpha-3 code, any case. Resolves to `undefined` when the data set has no
 * figure for it.
 * @example await countryGridIntensity('DE') // 342.06 (for the 0.19 data)
 */
export async function countryGridIntensity(code: string): Promise<number | undefined> {
  const data = await loadAverages();
  const up = code.toUpperCase();
  const iso3 = up.length === 2 ? ISO2_TO_ISO3.get(up) : up.length === 3 ? up : undefined;
  if (iso3 === undefined) return undefined;
  const v = data[iso3];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/**
 * `--carbon auto`: the grid average of the agent's country. The region is tried first when it is
 * itself an ISO country code (e.g. `FR`), then the jurisdiction.
 * @throws ConfigError when the data set has no figure for either
 */
export async function autoCarbon(location: { region: string; jurisdiction: string }): Promise<CarbonSource> {
  for (const code of [location.region, location.jurisdiction]) {
    if (!/^[A-Za-z]{2,3}$/.test(code)) continue;
    const intensity = await countryGridIntensity(code);
    if (intensity !== undefined) {
      const reading: CarbonReading = { intensity, source: `auto:${AUTO_CARBON_DATASET}` };
      return { current: () => reading, start: async () => {}, close: async () => {} };
    }
  }
  throw new ConfigError(
    'carbon',
    `auto: no grid average in @tgwf/co2 for region ${JSON.stringify(location.region)} or jurisdiction ${JSON.stringify(location.jurisdiction)}; give a number or a provider URL`,
  );
}

/** Options of {@link carbonAwareProvider}. */
export interface CarbonAwareProviderOptions {
  /** Base URL of a Carbon Aware SDK WebAPI (`GET <url>/emissions/bylocation?location=<location>`). */
  url: string;
  /** The provider's location name for the agent (e.g. `westeurope`, `eastus`, `DE`). */
  location: string;
  /** Used until the first good reading, marked `provider-stale`. */
  fallback: CarbonReading;
  /** @default {@link DEFAULT_CARBON_POLL_INTERVAL_MS} */
  pollIntervalMs?: number;
  /** @default {@link DEFAULT_CARBON_REQUEST_TIMEOUT_MS} */
  requestTimeoutMs?: number;
  /** An answer over this many bytes is a failed poll, not read on (keeps the last value). @default {@link DEFAULT_CARBON_MAX_RESPONSE_BYTES} */
  maxResponseBytes?: number;
  /** @default systemClock */
  clock?: Clock;
  /** @default noopLogger */
  logger?: Logger;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
}

/** One element of the WebAPI's `/emissions/bylocation` answer. */
interface EmissionsData {
  location: string;
  time: string;
  rating: number;
  duration?: string;
}

/** The body of `res` as UTF-8 text, refusing (and cancelling) one over `maxBytes`. */
async function readCapped(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel().catch(() => undefined);
    throw new Error(`the answer is ${declared} bytes, over the limit of ${maxBytes}`);
  }
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    total += chunk.byteLength;
    if (total > maxBytes) {
      await res.body.cancel().catch(() => undefined);
      throw new Error(`the answer is over the limit of ${maxBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function latestRating(body: unknown): number {
  if (!Array.isArray(body) || body.length === 0) {
    throw new Error('expected a non-empty JSON array of { location, time, rating, duration }');
  }
  let best: { t: number; rating: number } | undefined;
  for (const [i, item] of body.entries()) {
    const e = item as Partial<EmissionsData> | null;
    if (typeof e !== 'object' || e === null || typeof e.rating !== 'number' || !Number.isFinite(e.rating)) {
      throw new Error(`element ${i}: rating must be a number`);
    }
    if (e.rating < 0) throw new Error(`element ${i}: rating must not be negative`);
    const t = typeof e.time === 'string' ? Date.parse(e.time) : Number.NaN;
    const tt = Number.isNaN(t) ? Number.NEGATIVE_INFINITY : t;
    if (!best || tt >= best.t) best = { t: tt, rating: e.rating };
  }
  return (best as { rating: number }).rating;
}

/**
 * A live carbon intensity from a Carbon Aware SDK WebAPI: polls
 * `GET <url>/emissions/bylocation?location=<location>` (answer
 * `[{ location, time, rating, duration }]`, rating in gCO2e/kWh; the latest `time` wins) every
 * `pollIntervalMs` with a timeout. On failure it keeps the last known value (or `fallback`) and
 * marks it `provider-stale`.
 */
export function carbonAwareProvider(options: CarbonAwareProviderOptions): CarbonSource & {
  /** Ask the provider now (the poll does this every `pollIntervalMs`). Never rejects. */
  refresh(): Promise<void>;
} {
  let base: URL;
  try {
    base = new URL(options.url);
  } catch (cause) {
    throw new ConfigError('carbon', `not a URL: ${JSON.stringify(options.url)}`, { cause });
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new ConfigError('carbon', `provider URL must be http or https, got ${JSON.stringify(options.url)}`);
  }
  const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_CARBON_POLL_INTERVAL_MS;
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_CARBON_REQUEST_TIMEOUT_MS;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? noopLogger;
  const doFetch = options.fetch ?? globalThis.fetch;
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_CARBON_MAX_RESPONSE_BYTES;
  if (!Number.isSafeInteger(maxResponseBytes) || maxResponseBytes < 1) {
    throw new ConfigError('maxResponseBytes', `must be a positive integer, got ${maxResponseBytes}`);
  }
  checkIntensity('carbon fallback', options.fallback.intensity);
  const endpoint = new URL('emissions/bylocation', base.href.endsWith('/') ? base.href : `${base.href}/`);
  endpoint.searchParams.set('location', options.location);

  let reading: CarbonReading = { intensity: options.fallback.intensity, source: 'provider-stale' };
  let started: Promise<void> | undefined;
  let cancel: CancelTimer | undefined;
  let closed = false;
  const inflight = new AbortController();

  async function poll(): Promise<void> {
    const ac = new AbortController();
    const onClose = () => ac.abort();
    inflight.signal.addEventListener('abort', onClose);
    const cancelTimeout = clock.setTimeout(() => ac.abort(), requestTimeoutMs);
    try {
      const res = await doFetch(endpoint, { signal: ac.signal, headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const rating = latestRating(JSON.parse(await readCapped(res, maxResponseBytes)));
      reading = { intensity: rating, source: 'provider' };
    } catch (err) {
      reading = { intensity: reading.intensity, source: 'provider-stale' };
      const reason = ac.signal.aborted && !closed ? `timed out after ${requestTimeoutMs} ms` : (err as Error).message;
      logger.warn('carbon provider failed; keeping the last known value', {
        url: endpoint.href,
        reason,
        intensity: reading.intensity,
      });
    } finally {
      cancelTimeout();
      inflight.signal.removeEventListener('abort', onClose);
    }
  }

  function schedule(): void {
    if (closed) return;
    cancel = clock.setTimeout(() => {
      void poll().then(schedule);
    }, pollIntervalMs);
  }

  return {
    current: () => reading,
    start() {
      started ??= poll().then(schedule);
      return started;
    },
    refresh: poll,
    async close() {
      closed = true;
      cancel?.();
      inflight.abort();
    },
  };
}

/** Options of {@link parseCarbonOption}. */
export interface CarbonOptionContext {
  region: string;
  jurisdiction: string;
  clock?: Clock;
  logger?: Logger;
  /** Provider location; @default the region */
  location?: string;
  pollIntervalMs?: number;
  requestTimeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * Build the carbon source for `--carbon <gCO2e/kWh|auto|URL>`. A provider falls back to the
 * `auto` figure (or 0 when there is none) until its first good reading.
 * @throws ConfigError for anything else
 */
export async function parseCarbonOption(value: string, ctx: CarbonOptionContext): Promise<CarbonSource> {
  const v = value.trim();
  if (/^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(v)) return fixedCarbon(Number(v));
  if (v === 'auto') return autoCarbon(ctx);
  if (/^https?:\/\//i.test(v)) {
    let fallback: CarbonReading = { intensity: 0, source: 'provider-stale' };
    try {
      fallback = (await autoCarbon(ctx)).current();
    } catch {
      // No grid average for this location: 0 until the provider answers.
    }
    return carbonAwareProvider({
      url: v,
      location: ctx.location ?? ctx.region,
      fallback,
      ...(ctx.clock ? { clock: ctx.clock } : {}),
      ...(ctx.logger ? { logger: ctx.logger } : {}),
      ...(ctx.pollIntervalMs !== undefined ? { pollIntervalMs: ctx.pollIntervalMs } : {}),
      ...(ctx.requestTimeoutMs !== undefined ? { requestTimeoutMs: ctx.requestTimeoutMs } : {}),
      ...(ctx.fetch ? { fetch: ctx.fetch } : {}),
    });
  }
  throw new ConfigError(
    'carbon',
    `expected a number of gCO2e/kWh, "auto" or an http(s) provider URL, got ${JSON.stringify(value)}`,
  );
}
