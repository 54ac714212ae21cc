import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError } from '@meshroute/mesh';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AUTO_CARBON_DATASET,
  autoCarbon,
  carbonAwareProvider,
  countryGridIntensity,
  fixedCarbon,
  parseCarbonOption,
} from './carbon.js';
import { manualClock } from './test-support/fakes.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

let server: Server | undefined;
async function serve(handler: Handler): Promise<{ url: string; requests: string[]; onRequest(fn: () => void): void }> {
  const requests: string[] = [];
  const waiters: Array<() => void> = [];
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    handler(req, res);
    for (const w of waiters.splice(0)) w();
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    onRequest: (fn) => waiters.push(fn),
  };
}
afterEach(async () => {
  const s = server;
  server = undefined;
  if (!s) return;
  s.closeAllConnections();
  await new Promise((r) => s.close(r));
});

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

describe('carbon: fixed and auto', () => {
  it('announces a fixed figure and refuses a negative one', () => {
    expect(fixedCarbon(87.5).current()).toEqual({ intensity: 87.5, source: 'fixed' });
    expect(() => fixedCarbon(-1)).toThrow(ConfigError);
  });

  it('maps ISO alpha-2 to the alpha-3 keys of the @tgwf/co2 averages', async () => {
    const { averageIntensity } = await import('@tgwf/co2/data');
    expect(await countryGridIntensity('DE')).toBe(averageIntensity.data.DEU);
    expect(await countryGridIntensity('fr')).toBe(averageIntensity.data.FRA);
    expect(await countryGridIntensity('USA')).toBe(averageIntensity.data.USA);
    expect(await countryGridIntensity('ZZ')).toBeUndefined();
    // France's nuclear grid is far cleaner than Poland's coal grid: the data is real.
    expect((await countryGridIntensity('FR')) ?? 0).toBeLessThan((await countryGridIntensity('PL')) ?? 0);
  });

  it('auto: prefers a region that is a country code, else the jurisdiction', async () => {
    const fr = await autoCarbon({ region: 'FR', jurisdiction: 'DE' });
    expect(fr.current()).toEqual({
      intensity: await countryGridIntensity('FR'),
      source: `auto:${AUTO_CARBON_DATASET}`,
    });
    const de = await autoCarbon({ region: 'eu-central', jurisdiction: 'DE' });
    expect(de.current().intensity).toBe(await countryGridIntensity('DE'));
    await expect(autoCarbon({ region: 'moon-1', jurisdiction: 'AQ' })).rejects.toThrow(/no grid average.*AQ/);
  });

  it('parses --carbon values and explains a bad one', async () => {
    const ctx = { region: 'eu-west', jurisdiction: 'DE' };
    expect((await parseCarbonOption('120', ctx)).current()).toEqual({ intensity: 120, source: 'fixed' });
    expect((await parseCarbonOption('auto', ctx)).current().source).toBe(`auto:${AUTO_CARBON_DATASET}`);
    await expect(parseCarbonOption('green', ctx)).rejects.toThrow(
      /expected a number of gCO2e\/kWh, "auto" or an http\(s\) provider URL/,
    );
    await expect(parseCarbonOption('-4', ctx)).rejects.toThrow(ConfigError);
  });
});

describe('carbon: Carbon Aware SDK WebAPI provider', () => {
  it('reads the latest rating for the location', async () => {
    const api = await serve((_req, res) =>
      json(res, 200, [
        { location: 'westeurope', time: '2024-05-01T10:00:00Z', rating: 300.5, duration: '00:05:00' },
        { location: 'westeurope', time: '2024-05-01T10:05:00Z', rating: 210.25, duration: '00:05:00' },
        { location: 'westeurope', time: '2024-05-01T09:55:00Z', rating: 400, duration: '00:05:00' },
      ]),
    );
    const src = carbonAwareProvider({ url: api.url, location: 'westeurope', fallback: { intensity: 1, source: 'x' } });
    expect(src.current()).toEqual({ intensity: 1, source: 'provider-stale' });
    await src.start();
    expect(src.current()).toEqual({ intensity: 210.25, source: 'provider' });
    expect(api.requests).toEqual(['/emissions/bylocation?location=westeurope']);
    await src.close();
  });

  it('keeps the last known value, marked provider-stale, when the provider fails, and recovers', async () => {
    let mode: 'ok' | 'error' | 'garbage' = 'ok';
    let rating = 150;
    const api = await serve((_req, res) => {
      if (mode === 'error') return json(res, 503, { title: 'unavailable' });
      if (mode === 'garbage') return json(res, 200, { rating: 'high' });
      json(res, 200, [{ location: 'eastus', time: new Date().toISOString(), rating, duration: '00:05:00' }]);
    });
    const time = manualClock();
    const src = carbonAwareProvider({
      url: `${api.url}/`,
      location: 'eastus',
      fallback: { intensity: 0, source: 'auto' },
      clock: time.clock,
      pollIntervalMs: 60_000,
    });
    await src.start();
    expect(src.current()).toEqual({ intensity: 150, source: 'provider' });
    expect(time.pendingTimers()).toBe(1); // the next poll

    mode = 'error';
    await src.refresh();
    expect(src.current()).toEqual({ intensity: 150, source: 'provider-stale' });
    mode = 'garbage';
    await src.refresh();
    expect(src.current()).toEqual({ intensity: 150, source: 'provider-stale' });
    mode = 'ok';
    rating = 99;
    const polled = new Promise<void>((resolve) => api.onRequest(resolve));
    time.advance(60_000);
    await polled;
    while (src.current().source !== 'provider') await new Promise((r) => setImmediate(r));
    expect(src.current()).toEqual({ intensity: 99, source: 'provider' });
    await src.close();
    expect(time.pendingTimers()).toBe(0);
  });

  it('refuses an answer over maxResponseBytes, streamed or declared, and keeps the last value', async () => {
    let mode: 'ok' | 'streamed' | 'declared' = 'ok';
    const api = await serve((_req, res) => {
      if (mode === 'streamed') {
        // Chunked, no content-length: 64 KiB pieces until the client gives up (or 4 MiB).
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('[');
        let sent = 0;
        const more = (): void => {
          while (sent < 4 * 1024 * 1024) {
            sent += 65_536;
            if (!res.write(`${'{"rating":1},'.repeat(5041)} `)) return void res.once('drain', more);
          }
          res.end('{"rating":1}]');
        };
        res.on('error', () => {});
        more();
        return;
      }
      if (mode === 'declared') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(10 * 1024 * 1024) });
        res.write('[');
        return;
      }
      json(res, 200, [{ location: 'DE', time: new Date().toISOString(), rating: 120 }]);
    });
    const warnings: string[] = [];
    const logger = {
      debug: () => {},
      info: () => {},
      warn: (_m: string, f?: Record<string, unknown>) => warnings.push(String(f?.reason)),
      error: () => {},
      child: () => logger,
    };
    const src = carbonAwareProvider({
      url: api.url,
      location: 'DE',
      fallback: { intensity: 340, source: 'auto' },
      maxResponseBytes: 256 * 1024,
      logger,
    });
    await src.start();
    expect(src.current()).toEqual({ intensity: 120, source: 'provider' });
    mode = 'streamed';
    await src.refresh();
    expect(src.current()).toEqual({ intensity: 120, source: 'provider-stale' });
    expect(warnings.at(-1)).toBe('the answer is over the limit of 262144 bytes');
    mode = 'declared';
    await src.refresh();
    expect(warnings.at(-1)).toBe('the answer is 10485760 bytes, over the limit of 262144');
    expect(src.current()).toEqual({ intensity: 120, source: 'provider-stale' });
    await src.close();
  });

  it('gives up on a provider that does not answer within the timeout', async () => {
    const api = await serve(() => {
      /* never answers */
    });
    const time = manualClock();
    const src = carbonAwareProvider({
      url: api.url,
      location: 'DE',
      fallback: { intensity: 340, source: 'auto' },
      clock: time.clock,
      requestTimeoutMs: 1_500,
    });
    const first = src.start();
    while (api.requests.length === 0) await new Promise((r) => setImmediate(r));
    time.advance(1_500);
    await first;
    expect(src.current()).toEqual({ intensity: 340, source: 'provider-stale' });
    await src.close();
  });

  it('refuses a URL that is not http(s)', () => {
    expect(() =>
      carbonAwareProvider({ url: 'ftp://x', location: 'a', fallback: { intensity: 0, source: '' } }),
    ).toThrow(/http or https/);
  });
});
