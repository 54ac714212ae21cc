/**
 * Strict HTTP binary decode + validation of a typical event (a dozen headers including intent
 * attributes, a small JSON body) against the cloudevents SDK v10 `HTTP.toEvent` + `validate()`
 * on the same inputs, in the same run. Target: ours p50 <= 3 us.
 */
import { cpus, loadavg } from 'node:os';
import { decodeHttp } from '@meshroute/mesh';
import { benchLine, percentiles, reportBench, sampleSync } from '@meshroute/testing';
import { type CloudEvent, HTTP } from 'cloudevents';

const headers: Record<string, string> = {
  host: 'ingress.example.com',
  'content-type': 'application/json',
  'content-length': '42',
  'ce-specversion': '1.0',
  'ce-id': '6e8bc430-9c3a-11d9-9669-0800200c9a66',
  'ce-source': 'https://producers.example.com/sensors/7',
  'ce-type': 'com.example.sensor.reading',
  'ce-time': '2026-01-31T12:00:00.123Z',
  'ce-subject': 'sensor%207',
  'ce-residency': 'eu',
  'ce-latencybudgetms': '50',
  'ce-carbonmax': '200',
  'ce-workload': 'checksum',
  'ce-tenant': 'acme',
};
const bodyText = '{"sensor":7,"celsius":21.5,"ok":true}';
const body = new TextEncoder().encode(bodyText);

// The SDK takes the body as a string for JSON content; give it the same bytes decoded once.
const sdkBody = Buffer.from(body).toString('utf8');

// Sanity: both accept the input and agree on what matters.
const ours = decodeHttp(headers, body).events[0];
const theirs = HTTP.toEvent({ headers, body: sdkBody }) as CloudEvent<unknown>;
if (!ours || ours.id !== theirs.id || !theirs.validate()) throw new Error('bench inputs are not accepted by both');

const iterations = 20_000;
const batch = 20;
let sink = 0;
const oursSamples = sampleSync(
  () => {
    sink += decodeHttp(headers, body).events.length;
  },
  { iterations, batch },
);
const sdkSamples = sampleSync(
  () => {
    const e = HTTP.toEvent({ headers, body: sdkBody }) as CloudEvent<unknown>;
    if (e.validate()) sink++;
  },
  { iterations: iterations / 4, batch },
);
if (sink === 0) throw new Error('unreachable');

/** CPU time per call (user + system, all threads), less sensitive than wall time to a busy machine. */
function cpuMicrosPerCall(fn: () => void, calls: number): number {
  const c0 = process.cpuUsage();
  for (let i = 0; i < calls; i++) fn();
  const c = process.cpuUsage(c0);
  return Math.round(((c.user + c.system) / calls) * 1000) / 1000;
}
const oursCpuUs = cpuMicrosPerCall(() => {
  sink += decodeHttp(headers, body).events.length;
}, 200_000);
const sdkCpuUs = cpuMicrosPerCall(() => {
  if ((HTTP.toEvent({ headers, body: sdkBody }) as CloudEvent<unknown>).validate()) sink++;
}, 20_000);

const oursP = percentiles(oursSamples);
const sdkP = percentiles(sdkSamples);
reportBench(
  benchLine('mesh.decode.http-binary', 'us', oursP, sdkP, {
    // fastest batch of 20 calls: the cost without other processes competing for the core
    min: Math.round(oursP.min * 1000) / 1000,
    baseline_min: Math.round(sdkP.min * 1000) / 1000,
    target_p50: 3,
    headers: Object.keys(headers).length,
    bodyBytes: body.byteLength,
    baselineName: 'cloudevents@10 HTTP.toEvent + validate()',
    cpu_us_per_call: oursCpuUs,
    baseline_cpu_us_per_call: sdkCpuUs,
    loadavg_1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
    cores: cpus().length,
  }),
);
