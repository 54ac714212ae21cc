/**
 * `meshroute publish`: send one CloudEvent with an intent through the producer client, over NATS
 * (JetStream ingress) or a router's HTTP ingress; with `--wait`, wait for the outcome.
 */
import { readFileSync } from 'node:fs';
import {
  createClient,
  DEFAULT_INVOKE_TIMEOUT_MS,
  type EventInput,
  type InvokeResult,
  type MeshClient,
} from '@meshroute/client';
import { ConfigError, describeJsonSyntaxError, type IntentInput, toMeshError } from '@meshroute/mesh';
import { connectMesh, DEFAULT_NATS_URL, type MeshConnection } from '@meshroute/transport-nats';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { addNatsOptions, type NatsFlags, natsConnectOptions } from '../nats-options.js';

/** Flags of `meshroute publish`, as commander gives them (credentials and TLS in {@link NatsFlags}). */
export interface PublishFlags extends NatsFlags {
  residency?: string;
  latencyBudgetMs?: string;
  carbonMax?: string;
  costMax?: string;
  workload?: string;
  tenant?: string;
  deadline?: string;
  pii?: boolean;
  type?: string;
  source?: string;
  subject?: string;
  id?: string;
  data?: string;
  dataText?: string;
  natsUrl?: string;
  httpUrl?: string;
  wait?: boolean;
  timeoutMs?: string;
  json?: boolean;
}

/** Default `type` of `meshroute publish` events. */
export const DEFAULT_PUBLISH_TYPE = 'dev.meshroute.cli';
/** Default `source` of `meshroute publish` events. */
export const DEFAULT_PUBLISH_SOURCE = '/meshroute/cli';

function int(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v.trim())) throw new ConfigError(flag, `must be an integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** The event data from `--data JSON|@file` or `--data-text TEXT`. */
export function readData(
  flags: Pick<PublishFlags, 'data' | 'dataText'>,
  readFile: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): { data?: unknown; datacontenttype?: string } {
  if (flags.data !== undefined && flags.dataText !== undefined) {
    throw new ConfigError('--data', 'give --data or --data-text, not both');
  }
  if (flags.dataText !== undefined) return { data: flags.dataText, datacontenttype: 'text/plain; charset=utf-8' };
  if (flags.data === undefined) return {};
  let text = flags.data;
  let where = '--data';
  if (text.startsWith('@')) {
    const path = text.slice(1);
    where = `--data @${path}`;
    try {
      text = readFile(path);
    } catch (cause) {
      throw new ConfigError('--data', `cannot read ${path}: ${(cause as Error).message}`, { cause });
    }
  }
  try {
    return { data: JSON.parse(text) as unknown, datacontenttype: 'application/json' };
  } catch (cause) {
    throw new ConfigError(
      '--data',
      `${where} is not JSON (${describeJsonSyntaxError(text, cause).message}); use --data-text for plain text`,
      { cause },
    );
  }
}

/** The longest wait Node.js timers allow (a longer one fires at once). */
const MAX_TIMEOUT_MS = 2_147_483_647;

function checkHttpUrl(value: string, flag: string): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch (cause) {
    throw new ConfigError(flag, `${JSON.stringify(value)} is not a URL (e.g. http://127.0.0.1:8080)`, { cause });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(flag, `${JSON.stringify(value)}: scheme ${url.protocol} is not one of http:, https:`);
  }
}

/** Turn the flags into the event, the intent and the transport. */
export function resolvePublishFlags(
  flags: PublishFlags,
  env: Readonly<Record<string, string | undefined>> = {},
  readFile?: (path: string) => string,
): {
  event: EventInput;
  intent: IntentInput;
  transport: { kind: 'nats'; servers: string } | { kind: 'http'; url: string };
  wait: boolean;
  timeoutMs: number;
} {
  if (flags.natsUrl !== undefined && flags.httpUrl !== undefined) {
    throw new ConfigError('--nats-url', 'give --nats-url or --http-url, not both');
  }
  const intent: IntentInput = {};
  if (flags.residency !== undefined) intent.residency = flags.residency;
  const budget = int('--latency-budget-ms', flags.latencyBudgetMs);
  if (budget !== undefined) intent.latencyBudgetMs = budget;
  const carbon = int('--carbon-max', flags.carbonMax);
  if (carbon !== undefined) intent.carbonMax = carbon;
  if (flags.costMax !== undefined) intent.costMax = flags.costMax;
  if (flags.workload !== undefined) intent.workload = flags.workload;
  if (flags.tenant !== undefined) intent.tenant = flags.tenant;
  if (flags.deadline !== undefined) intent.deadline = flags.deadline;
  if (flags.pii) intent.pii = true;
  const event: EventInput = {
    type: flags.type ?? DEFAULT_PUBLISH_TYPE,
    source: flags.source ?? DEFAULT_PUBLISH_SOURCE,
    ...(flags.id !== undefined ? { id: flags.id } : {}),
    ...(flags.subject !== undefined ? { subject: flags.subject } : {}),
    ...readData(flags, readFile),
  };
  const wait = flags.wait === true;
  if (wait && intent.workload === undefined) {
    throw new ConfigError('--workload', '--wait needs --workload (the workload to run)');
  }
  const timeoutMs = int('--timeout-ms', flags.timeoutMs) ?? DEFAULT_INVOKE_TIMEOUT_MS;
  if (timeoutMs <= 0) throw new ConfigError('--timeout-ms', `must be positive, got ${timeoutMs}`);
  if (timeoutMs > MAX_TIMEOUT_MS) {
    throw new ConfigError('--timeout-ms', `must be at most ${MAX_TIMEOUT_MS} (about 24.8 days), got ${timeoutMs}`);
  }
  const httpUrl = flags.httpUrl ?? (flags.natsUrl === undefined ? env.MESHROUTE_HTTP_URL : undefined);
  if (httpUrl !== undefined) checkHttpUrl(httpUrl, flags.httpUrl !== undefined ? '--http-url' : 'MESHROUTE_HTTP_URL');
  const transport =
    httpUrl !== undefined
      ? { kind: 'http' as const, url: httpUrl }
      : { kind: 'nats' as const, servers: flags.natsUrl ?? env.MESHROUTE_NATS_URL ?? DEFAULT_NATS_URL };
  return { event, intent, transport, wait, timeoutMs };
}

function renderResult(r: InvokeResult): Record<string, unknown> {
  return {
    ok: true,
    id: r.id,
    agent: r.agent,
    decisionId: r.decisionId,
    attempt: r.attempt,
    ...(r.output !== undefined ? { output: r.output } : {}),
    ...(r.outputBytes !== undefined ? { outputBase64: Buffer.from(r.outputBytes).toString('base64') } : {}),
    ...(r.contentType !== undefined ? { contentType: r.contentType } : {}),
    executionMs: r.executionMs,
    // Answered from the recorded outcome of the same event sent before (it did not run again).
    ...(r.replayed ? { replayed: true } : {}),
  };
}

/**
 * Publish (or with `wait`, invoke) once and write the outcome to `ctx`. Resolves to the exit code.
 */
export async function publishOnce(flags: PublishFlags, ctx: CliContext): Promise<number> {
  const resolved = resolvePublishFlags(flags, ctx.env);
  let conn: MeshConnection | undefined;
  let client: MeshClient;
  const logger = ctx.logger('publish');
  if (resolved.transport.kind === 'nats') {
    conn = await connectMesh({
      ...natsConnectOptions({ ...flags, natsUrl: undefined }),
      servers: resolved.transport.servers,
      name: 'meshroute-publish',
    });
    client = createClient({ nats: conn, logger, invokeTimeoutMs: resolved.timeoutMs });
  } else {
    client = createClient({ url: resolved.transport.url, logger, invokeTimeoutMs: resolved.timeoutMs });
  }
  try {
    if (!resolved.wait) {
      const id = await client.publish(resolved.event, resolved.intent);
      ctx.stdout.write(flags.json ? `${JSON.stringify({ ok: true, id })}\n` : `${id}\n`);
      return 0;
    }
    const { intent, event } = resolved;
    const r = await client.invoke(intent.workload as string, event.data, intent, {
      timeoutMs: resolved.timeoutMs,
      type: event.type,
      ...(event.source !== undefined ? { source: event.source } : {}),
      ...(event.id !== undefined ? { id: event.id } : {}),
      ...(event.subject !== undefined ? { subject: event.subject } : {}),
      ...(event.datacontenttype !== undefined ? { datacontenttype: event.datacontenttype } : {}),
    });
    const out = renderResult(r);
    if (flags.json) ctx.stdout.write(`${JSON.stringify(out)}\n`);
    else {
      const where = r.agent ? ` on ${r.agent.id} (${r.agent.region}, ${r.agent.jurisdiction})` : '';
      const shown =
        r.output !== undefined
          ? typeof r.output === 'string'
            ? r.output
            : JSON.stringify(r.output)
          : ((out.outputBase64 as string | undefined) ?? '');
      ctx.stdout.write(`${r.id} succeeded${where}\n${shown}\n`);
    }
    return 0;
  } catch (err) {
    const e = toMeshError(err);
    if (flags.json) {
      ctx.stdout.write(
        `${JSON.stringify({ ok: false, error: { name: e.name, ...e.toJSON(), ...('reason' in e ? { reason: e.reason } : {}) } })}\n`,
      );
    } else {
      ctx.stderr.write(`meshroute publish: ${e.code}: ${e.message}\n`);
    }
    return e.code === 'TIMEOUT'
      ? 3
      : e.code === 'INVALID_EVENT' || e.code === 'INVALID_INTENT' || e.code === 'CONFIG_ERROR'
        ? 2
        : 1;
  } finally {
    await client.close();
    await conn?.close();
  }
}

/** Register `meshroute publish`. */
export function register(program: Command, ctx: CliContext): void {
  addNatsOptions(program.command('publish'), { url: 'none' })
    .description(
      'publish one CloudEvent with an intent (over NATS, or a router HTTP ingress with --http-url); --wait waits for the outcome',
    )
    .option('--residency <codes>', 'allowed jurisdictions: ISO 3166 codes and groups, e.g. eu,CH')
    .option('--latency-budget-ms <ms>', 'latency budget, milliseconds')
    .option('--carbon-max <g>', 'carbon ceiling, gCO2e/kWh')
    .option('--cost-max <amount>', 'cost ceiling per job, decimal')
    .option('--workload <name>', 'the workload to run')
    .option('--tenant <tenant>', 'tenant')
    .option('--deadline <rfc3339>', 'the work may wait until then (carbon-aware shifting)')
    .option('--pii', 'the data carries personal information')
    .option('--type <type>', 'CloudEvents type', DEFAULT_PUBLISH_TYPE)
    .option('--source <uri-ref>', 'CloudEvents source', DEFAULT_PUBLISH_SOURCE)
    .option('--subject <subject>', 'CloudEvents subject')
    .option('--id <id>', 'CloudEvents id (default: a random UUID)')
    .option('--data <json|@file>', 'JSON data, inline or @file')
    .option('--data-text <text>', 'plain-text data')
    .option('--nats-url <url>', `NATS servers (env MESHROUTE_NATS_URL, default ${DEFAULT_NATS_URL})`)
    .option('--http-url <url>', 'router HTTP ingress base URL (env MESHROUTE_HTTP_URL)')
    .option('--wait', 'wait for the outcome and print it')
    .option('--timeout-ms <ms>', `how long --wait waits (default ${DEFAULT_INVOKE_TIMEOUT_MS})`)
    .option('--json', 'print JSON')
    .action(async (flags: PublishFlags) => {
      try {
        ctx.exitCode = await publishOnce(flags, ctx);
      } catch (err) {
        const e = toMeshError(err);
        if (flags.json) ctx.stdout.write(`${JSON.stringify({ ok: false, error: e.toJSON() })}\n`);
        else ctx.stderr.write(`meshroute publish: ${e.code}: ${e.message}\n`);
        ctx.exitCode = e.code === 'CONFIG_ERROR' || e.code === 'INVALID_EVENT' || e.code === 'INVALID_INTENT' ? 2 : 1;
      }
    });
}
