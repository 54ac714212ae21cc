/**
 * `meshroute router`: the router process. Wires NATS (mesh, JetStream ingress consumer, policy
 * KV), the state store (memory, or Redis with `--redis-url`), the policy directory with hot
 * reload, and the HTTP ingress. {@link startRouterProcess} is the programmatic starter used by
 * `meshroute up` and the integration tests.
 */
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { resolve } from 'node:path';
import {
  ConfigError,
  type Logger,
  MeshError,
  meshNames,
  noopLogger,
  type StateStore,
  toMeshError,
} from '@meshroute/mesh';
import { createPolicyHolder, type PolicyHolder } from '@meshroute/policy';
import {
  createRouter,
  DUPLICATE_PUBLISH,
  encodeAnswer,
  type HttpIngress,
  type HttpIngressAuth,
  type IngressPublisher,
  memoryStateStore,
  parseTenantMap,
  type Router,
  type RouterAnswer,
  type RouterEvent,
  type RouterOptions,
  resolveHttpIngressAuth,
  resolveRouterOptions,
  startHttpIngress,
  type TenantBudget,
  type TenantRateLimit,
  watchWorkloadCatalog,
} from '@meshroute/router';
import { redisStateStore } from '@meshroute/store-redis';
import {
  connectMesh,
  DEFAULT_NATS_URL,
  type MeshConnection,
  type NatsConnectOptions,
  natsEventSource,
  natsMesh,
  natsPolicyStore,
  natsWorkloadRegistry,
  provisionMesh,
  publishEvent,
  serveOutcomeQueries,
} from '@meshroute/transport-nats';
import { type Command, Option } from 'commander';
import { parse as parseYaml } from 'yaml';
import type { CliContext } from '../context.js';
import { addNatsOptions, type NatsFlags, natsConnectOptions } from '../nats-options.js';
import { formatPolicyError, readPolicyDir } from './policy.js';

/** Default HTTP ingress port of `meshroute router`. */
export const DEFAULT_ROUTER_HTTP_PORT = 8080;
/** Ingress deliveries a router works on at once. */
export const DEFAULT_ROUTER_MAX_IN_FLIGHT = 1024;
/** Debounce of policy directory changes, ms. */
export const DEFAULT_POLICY_RELOAD_DEBOUNCE_MS = 200;

/** Options of {@link startRouterProcess}. */
export interface RouterProcessOptions {
  /** NATS server(s). @default DEFAULT_NATS_URL */
  natsUrl?: string | string[];
  /**
   * Connection options (credentials, TLS, inbox prefix; see `natsConnectOptions`). `natsUrl`,
   * when given, wins over `nats.servers`. @default no credentials
   */
  nats?: NatsConnectOptions;
  /** HTTP ingress port (0: a free port). @default 8080 */
  httpPort?: number;
  /** HTTP ingress host. @default '0.0.0.0' */
  httpHost?: string;
  /** Authentication of `POST /events` (bearer tokens or mTLS); none when absent. See {@link httpAuthFromFiles}. */
  httpAuth?: HttpIngressAuth;
  /** Policy bundle directory, hot reloaded. Without it, only bundles pushed to the policy KV are used. */
  policiesDir?: string;
  /** Shared state in Redis; in memory when absent. */
  redisUrl?: string;
  /** Router id. @default a random id */
  routerId?: string;
  /** Ingress deliveries worked on at once. @default 1024 */
  maxInFlight?: number;
  /** Ingress ack wait, ms (redelivery after a router crash). */
  ackWaitMs?: number;
  /** Engine options. */
  routerOptions?: RouterOptions;
  /** Skip stream/bucket provisioning (already done). @default false */
  skipProvision?: boolean;
  /** JetStream replicas of the streams and buckets it provisions (3 on a 3-node cluster). @default 1 */
  replicas?: number;
  /**
   * Check events against the workload registry (NATS KV): unregistered workloads are refused
   * (HTTP 422, dead letter `WORKLOAD_NOT_FOUND`) and agents that cannot run a workload are never
   * chosen for it. @default true
   */
  checkWorkloads?: boolean;
  logger?: Logger;
}

/** A running router process. */
export interface RouterProcess {
  readonly routerId: string;
  /** The HTTP ingress port actually bound. */
  readonly httpPort: number;
  readonly router: Router;
  readonly policies: PolicyHolder;
  /** Stop HTTP, hand unfinished work back, close the store and the connection. Idempotent. */
  stop(): Promise<void>;
}

/** Publishes HTTP events into the JetStream ingress; waits for answers on a per-router inbox. */
function natsIngressPublisher(
  conn: MeshConnection,
  routerId: string,
  logger: Logger,
): IngressPublisher & {
  close(): void;
} {
  const names = meshNames();
  const prefix = `${names.replyPrefix}.${routerId}`;
  const waiting = new Map<string, (a: RouterAnswer) => void>();
  let n = 0;
  const sub = conn.nc.subscribe(`${prefix}.>`, {
    callback: (err, msg) => {
      if (err) return;
      const w = waiting.get(msg.subject);
      if (!w) return;
      try {
        w(JSON.parse(new TextDecoder().decode(msg.data)) as RouterAnswer);
      } catch (e) {
        logger.warn('unreadable answer dropped', { error: (e as Error).message });
      }
    },
  });
  return {
    async publish(event: RouterEvent, options: { waitMs: number | undefined }) {
      const tenant = typeof event.tenant === 'string' ? event.tenant : undefined;
      if (options.waitMs === undefined) {
        // Admitted: the HTTP ingress counted it against its tenant's rate limit already.
        const ack = await publishEvent(conn, event, { admitted: true, ...(tenant ? { tenant } : {}) });
        return ack.duplicate ? DUPLICATE_PUBLISH : undefined;
      }
      const replyTo = `${prefix}.${++n}`;
      let timer: NodeJS.Timeout | undefined;
      const answer = new Promise<RouterAnswer | undefined>((resolveAnswer) => {
        timer = setTimeout(() => {
          waiting.delete(replyTo);
          resolveAnswer(undefined);
        }, options.waitMs);
        waiting.set(replyTo, (a) => {
          clearTimeout(timer);
          waiting.delete(replyTo);
          resolveAnswer(a);
        });
      });
      try {
        const ack = await publishEvent(conn, event, { replyTo, admitted: true, ...(tenant ? { tenant } : {}) });
        if (ack.duplicate) {
          // De-duplicated: no answer comes to this inbox; the router answers from the first one.
          clearTimeout(timer);
          waiting.delete(replyTo);
          return DUPLICATE_PUBLISH;
        }
      } catch (err) {
        clearTimeout(timer);
        waiting.delete(replyTo);
        throw err;
      }
      return answer;
    },
    close() {
      if (!sub.isClosed()) sub.unsubscribe();
    },
  };
}

/**
 * Start a router process: connect, provision, load policies, consume ingress, serve HTTP.
 * @throws ConfigError when the policy directory does not load (errors with file:line:col)
 */
export async function startRouterProcess(options: RouterProcessOptions = {}): Promise<RouterProcess> {
  const logger = options.logger ?? noopLogger;
  // Refuse bad authentication options before connecting anywhere.
  resolveHttpIngressAuth(options.httpAuth);
  const routerId = options.routerId ?? `router-${Math.random().toString(36).slice(2, 10)}`;
  const holder = createPolicyHolder();
  const policiesDir = options.policiesDir ? resolve(options.policiesDir) : undefined;
  const loadDir = (): boolean => {
    if (!policiesDir) return false;
    let files: { path: string; content: string }[];
    try {
      files = readPolicyDir(policiesDir);
    } catch (err) {
      logger.error('cannot read the policy directory', { dir: policiesDir, error: toMeshError(err).message });
      return false;
    }
    const r = holder.propose(files, { source: policiesDir });
    if (r.ok) {
      if (r.changed) logger.info('policy bundle active', { digest: r.bundle.digest, source: policiesDir });
      return true;
    }
    logger.error('policy bundle refused; keeping the last good bundle', {
      errors: r.errors.map((e) => formatPolicyError(e, policiesDir).trim()),
    });
    return false;
  };
  if (policiesDir && !loadDir()) {
    const files = readPolicyDir(policiesDir);
    const r = holder.propose(files, { source: policiesDir });
    const detail = r.ok ? '' : r.errors.map((e) => formatPolicyError(e, policiesDir)).join('');
    throw new ConfigError('--policies', `the policy bundle in ${policiesDir} does not load:\n${detail}`);
  }

  const conn = await connectMesh({
    ...options.nats,
    servers: options.natsUrl ?? options.nats?.servers ?? DEFAULT_NATS_URL,
    name: routerId,

    // A long-running process that closes its connection before it exits: coalesce its writes.
    coalesceWrites: options.nats?.coalesceWrites ?? true,
  });
  const cleanups: (() => Promise<void> | void)[] = [];
  try {
    if (!options.skipProvision) {
      await provisionMesh(conn, options.replicas !== undefined ? { replicas: options.replicas } : {});
    }
    let store: StateStore;
    if (options.redisUrl) {
      const redis = redisStateStore(options.redisUrl, { logger: logger.child({ component: 'store-redis' }) });
      store = redis;
    } else {
      store = memoryStateStore();
    }
    cleanups.push(() => store.close());
    const mesh = natsMesh(conn, { routerId, logger: logger.child({ component: 'nats-mesh' }) });
    const source = natsEventSource(conn, {
      maxInFlight: options.maxInFlight ?? DEFAULT_ROUTER_MAX_IN_FLIGHT,
      ...(options.ackWaitMs !== undefined ? { ackWaitMs: options.ackWaitMs } : {}),
      logger: logger.child({ component: 'ingress' }),
    });
    const publisher = natsIngressPublisher(conn, routerId, logger);
    cleanups.push(() => publisher.close());
    const workloads =
      options.checkWorkloads === false
        ? undefined
        : await watchWorkloadCatalog(natsWorkloadRegistry(conn, { logger }), { logger });
    if (workloads) cleanups.push(() => workloads.close());
    const router = createRouter({
      mesh,
      source,
      store,
      policies: holder,
      logger,
      routerId,
      ingressPublisher: publisher,
      ...(workloads ? { workloads } : {}),
      options: {
        ...options.routerOptions,
        ...(options.httpPort !== undefined ? { httpPort: options.httpPort } : {}),
        ...(options.httpHost !== undefined ? { httpHost: options.httpHost } : {}),
      },
    });

    // Hot reload: the directory (fs.watch, debounced) and bundles pushed to the policy KV.
    let watcher: FSWatcher | undefined;
    if (policiesDir) {
      let timer: NodeJS.Timeout | undefined;
      try {
        watcher = watch(policiesDir, { recursive: true }, () => {
          if (timer) clearTimeout(timer);
          timer = setTimeout(loadDir, DEFAULT_POLICY_RELOAD_DEBOUNCE_MS);
          timer.unref();
        });
        cleanups.push(() => {
          if (timer) clearTimeout(timer);
          watcher?.close();
        });
      } catch (err) {
        logger.warn('policy directory not watched', { error: toMeshError(err).message });
      }
    }
    const policyStore = natsPolicyStore(conn, { logger });
    try {
      const stopWatch = await policyStore.watch((pushed) => {
        const r = holder.propose(pushed.files, { source: `kv revision ${pushed.revision}` });
        if (r.ok) logger.info('policy bundle from KV active', { digest: r.bundle.digest, revision: pushed.revision });
        else logger.error('policy bundle from KV refused', { revision: pushed.revision, errors: r.errors.length });
      });
      cleanups.push(stopWatch);
    } catch (err) {
      logger.warn('policy KV not watched', { error: toMeshError(err).message });
    }

    await router.start();
    // A producer whose re-sent event the ingress de-duplicated asks for the first one's outcome.
    const stopOutcomeQueries = serveOutcomeQueries(
      conn,
      async (q) => {
        const a = await router.outcome({ source: q.source, id: q.id, tenant: q.tenant }, { waitMs: q.waitMs });
        return a ? encodeAnswer(a) : undefined;
      },
      { logger },
    );
    cleanups.push(stopOutcomeQueries);
    // During and after a NATS outage the registry hears no heartbeats: work that finds no agent
    // waits while disconnected, and agents get one loss window after the reconnect to announce
    // themselves before work is dead-lettered for lack of agents.
    void (async () => {
      for await (const s of conn.status()) {
        if (s.type === 'disconnected') router.meshDisconnected();
        if (s.type === 'reconnected') router.meshReconnected();
        if (s.type === 'closed') break;
      }
    })();
    void (async () => {
      for await (const s of router.status()) {
        if (s.type === 'storeDegraded') logger.warn('router degraded: state store unavailable', { error: s.error });
        else if (s.type === 'storeRecovered') logger.info('router recovered: state store available');
        else if (s.type === 'agentJoined') logger.info('agent joined', { agentId: s.agentId });
        // Lost and departed agents are logged by the engine itself (warn and info).
      }
    })();
    let http: HttpIngress;
    try {
      http = await startHttpIngress(router, { logger, ...(options.httpAuth ? { auth: options.httpAuth } : {}) });
    } catch (err) {
      await router.stop({ drainTimeoutMs: 0 });
      if (err instanceof ConfigError) throw err;
      throw new ConfigError('--http-port', `cannot listen: ${toMeshError(err).message}`, { cause: err });
    }
    logger.info('router listening', { routerId, httpPort: http.port, policyDigest: holder.current()?.digest });
    let stopping: Promise<void> | undefined;
    return {
      routerId: router.routerId,
      httpPort: http.port,
      router,
      policies: holder,
      stop() {
        stopping ??= (async () => {
          await http.close();
          await router.stop();
          for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
          await conn.drain().catch(() => conn.close());
        })();
        return stopping;
      },
    };
  } catch (err) {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
    await conn.close();
    throw err;
  }
}

function port(flag: string) {
  return (value: string): number => {
    if (!/^[0-9]+$/.test(value) || Number(value) > 65535) {
      throw new ConfigError(flag, `must be a port number (0-65535), got ${JSON.stringify(value)}`);
    }
    return Number(value);
  };
}

/** Files naming the HTTP ingress authentication (`meshroute router --http-tokens|--http-tls-*`). */
export interface HttpAuthFiles {
  /** `token=tenant` lines or a JSON object. */
  tokens?: string;
  /** Server certificate (PEM); with `key` and `ca`, enables mutual TLS. */
  tlsCert?: string;
  /** Server key (PEM). */
  tlsKey?: string;
  /** CA of the client certificates (PEM). */
  tlsCa?: string;
  /** `identity=tenant` lines or a JSON object (client certificate CN or SAN → tenant); default: CN is the tenant. */
  tlsTenants?: string;
}

function readFlagFile(flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(flag, `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Build the HTTP ingress authentication from flag files; `undefined` when none is given.
 * @throws ConfigError naming the flag at fault (unreadable file, bad line, incomplete TLS set, both kinds)
 * @example httpAuthFromFiles({ tokens: '/etc/meshroute/tokens' })
 */
export function httpAuthFromFiles(files: HttpAuthFiles): HttpIngressAuth | undefined {
  const tls = [files.tlsCert, files.tlsKey, files.tlsCa];
  const anyTls = tls.some((f) => f !== undefined) || files.tlsTenants !== undefined;
  if (files.tokens !== undefined && anyTls) {
    throw new ConfigError('--http-tokens', 'choose bearer tokens or mutual TLS (--http-tls-*), not both');
  }
  if (files.tokens !== undefined) {
    return { tokens: parseTenantMap(readFlagFile('--http-tokens', files.tokens), `--http-tokens ${files.tokens}`) };
  }
  if (!anyTls) return undefined;
  const names = ['--http-tls-cert', '--http-tls-key', '--http-tls-ca'];
  tls.forEach((f, i) => {
    if (f === undefined)
      throw new ConfigError(names[i] as string, 'mutual TLS needs --http-tls-cert, --http-tls-key and --http-tls-ca');
  });
  return {
    mtls: {
      cert: readFlagFile('--http-tls-cert', files.tlsCert as string),
      key: readFlagFile('--http-tls-key', files.tlsKey as string),
      ca: readFlagFile('--http-tls-ca', files.tlsCa as string),
      ...(files.tlsTenants !== undefined
        ? {
            tenants: parseTenantMap(
              readFlagFile('--http-tls-tenants', files.tlsTenants),
              `--http-tls-tenants ${files.tlsTenants}`,
            ),
          }
        : {}),
    },
  };
}

/**
 * Read a per-tenant settings file (YAML or JSON mapping `tenant: { limit, windowMs }`) for
 * `flag`, validated as the router option `option` (errors name the flag, the file and the field).
 */
function tenantSettingsFromFile<T>(flag: string, file: string, option: 'tenantBudgets' | 'tenantRateLimits'): T {
  let value: unknown;
  try {
    value = parseYaml(readFlagFile(flag, file));
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(flag, `${file}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(flag, `${file}: expected a mapping of tenant: { limit, windowMs }`);
  }
  // Validate now, naming the file (the router validates again when it starts).
  try {
    resolveRouterOptions({ [option]: value });
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(flag, `${file}: ${err.message}`);
    throw err;
  }
  return value as T;
}

/**
 * Read tenant cost budgets (`meshroute router --tenant-budgets`): `tenant: { limit, windowMs }`,
 * `limit` in the unit of the agents' `costPerJob`.
 * @throws ConfigError naming the flag (unreadable file, not a mapping, invalid budget)
 * @example tenantBudgetsFromFile('budgets.yaml') // { acme: { limit: 50, windowMs: 86400000 } }
 */
export function tenantBudgetsFromFile(file: string): Record<string, TenantBudget> {
  return tenantSettingsFromFile('--tenant-budgets', file, 'tenantBudgets');
}

/**
 * Read tenant rate limits (`meshroute router --tenant-rate-limits`): `tenant: { limit, windowMs }`,
 * `limit` events per window, enforced at the HTTP ingress.
 * @throws ConfigError naming the flag (unreadable file, not a mapping, invalid limit)
 * @example tenantRateLimitsFromFile('limits.yaml') // { acme: { limit: 100, windowMs: 1000 } }
 */
export function tenantRateLimitsFromFile(file: string): Record<string, TenantRateLimit> {
  return tenantSettingsFromFile('--tenant-rate-limits', file, 'tenantRateLimits');
}

interface RouterFlags extends NatsFlags {
  tenantBudgets?: string;
  tenantRateLimits?: string;
  httpTokens?: string;
  httpTlsCert?: string;
  httpTlsKey?: string;
  httpTlsCa?: string;
  httpTlsTenants?: string;
  natsUrl: string;
  httpPort: number;
  policies?: string;
  redisUrl?: string;
  routerId?: string;
  replicas?: number;
  maxEventBytes?: number;
  heartbeatIntervalMs?: number;
  missedHeartbeats?: number;
  maxQueued?: number;
  maxAttempts?: number;
  dispatchTimeoutMs?: number;
  httpWaitMs?: number;
  httpMaxWaitMs?: number;
}

/** A flag taking a positive integer (a count, milliseconds or bytes). */
function positiveIntFlag(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^[0-9]+$/.test(value.trim()) || !Number.isSafeInteger(n) || n <= 0)
      throw new ConfigError(flag, `must be a positive integer, got ${JSON.stringify(value)}`);
    return n;
  };
}

/** The engine options set by `meshroute router` flags (only those given). */
export function routerOptionsFromFlags(flags: {
  maxEventBytes?: number | undefined;
  heartbeatIntervalMs?: number | undefined;
  missedHeartbeats?: number | undefined;
  maxQueued?: number | undefined;
  maxAttempts?: number | undefined;
  dispatchTimeoutMs?: number | undefined;
  httpWaitMs?: number | undefined;
  httpMaxWaitMs?: number | undefined;
}): RouterOptions {
  return {
    ...(flags.maxEventBytes !== undefined ? { maxEventBytes: flags.maxEventBytes } : {}),
    ...(flags.heartbeatIntervalMs !== undefined ? { heartbeatIntervalMs: flags.heartbeatIntervalMs } : {}),
    ...(flags.missedHeartbeats !== undefined
      ? {
          missedHeartbeatsBeforeLost: flags.missedHeartbeats,
          // Degraded comes first: at the default (2) or with the agent's loss, whichever is sooner.
          missedHeartbeatsBeforeDegraded: Math.min(2, flags.missedHeartbeats),
        }
      : {}),
    ...(flags.maxQueued !== undefined ? { maxQueued: flags.maxQueued } : {}),
    ...(flags.maxAttempts !== undefined ? { maxAttempts: flags.maxAttempts } : {}),
    ...(flags.dispatchTimeoutMs !== undefined ? { dispatchTimeoutMs: flags.dispatchTimeoutMs } : {}),
    ...(flags.httpWaitMs !== undefined ? { httpWaitMs: flags.httpWaitMs } : {}),
    ...(flags.httpMaxWaitMs !== undefined ? { httpMaxWaitMs: flags.httpMaxWaitMs } : {}),
  };
}

function replicasFlag(value: string): number {
  if (!/^[1-5]$/.test(value))
    throw new ConfigError('--replicas', `must be an integer from 1 to 5, got ${JSON.stringify(value)}`);
  return Number(value);
}

/** Register `meshroute router`. */
export function register(program: Command, ctx: CliContext): void {
  addNatsOptions(program.command('router'))
    .description('run a router: consume ingress, place work by policy over the live agents, serve HTTP ingress')
    .option('--http-port <port>', 'HTTP ingress port', port('--http-port'), DEFAULT_ROUTER_HTTP_PORT)
    .option('--policies <dir>', 'policy bundle directory (hot reloaded)')
    .addOption(new Option('--redis-url <url>', 'shared router state in Redis').env('MESHROUTE_REDIS_URL'))
    .option('--router-id <id>', 'router id (decision records, claims)')
    .addOption(
      new Option(
        '--replicas <n>',
        'JetStream replicas of the streams and buckets it provisions (3 on a 3-node cluster)',
      )
        .argParser(replicasFlag)
        .env('MESHROUTE_JETSTREAM_REPLICAS'),
    )
    .addOption(
      new Option(
        '--max-event-bytes <bytes>',
        'largest event accepted: HTTP body (binary mode) or whole JSON (structured); over it: 413 (default: 1048576)',
      )
        .argParser(positiveIntFlag('--max-event-bytes'))
        .env('MESHROUTE_MAX_EVENT_BYTES'),
    )
    .addOption(
      new Option('--heartbeat-interval-ms <ms>', "agents' expected heartbeat interval (default: 1000)").argParser(
        positiveIntFlag('--heartbeat-interval-ms'),
      ),
    )
    .addOption(
      new Option(
        '--missed-heartbeats <n>',
        'missed heartbeats before an agent is lost and its work fails over (default: 3)',
      ).argParser(positiveIntFlag('--missed-heartbeats')),
    )
    .addOption(
      new Option(
        '--max-queued <n>',
        'work items waiting for a busy eligible agent at most; beyond: backpressure, HTTP 429 (default: 10000)',
      ).argParser(positiveIntFlag('--max-queued')),
    )
    .addOption(
      new Option(
        '--max-attempts <n>',
        'dispatch attempts per event, retries and failovers included, before RETRIES_EXHAUSTED (default: 5)',
      ).argParser(positiveIntFlag('--max-attempts')),
    )
    .addOption(
      new Option('--dispatch-timeout-ms <ms>', "an agent's answer to one dispatch, at most (default: 10000)").argParser(
        positiveIntFlag('--dispatch-timeout-ms'),
      ),
    )
    .addOption(
      new Option(
        '--http-wait-ms <ms>',
        'how long POST /events?wait=1 waits for an event without a latency budget (default: 30000)',
      ).argParser(positiveIntFlag('--http-wait-ms')),
    )
    .addOption(
      new Option(
        '--http-max-wait-ms <ms>',
        'longest POST /events?wait=1, whatever the latency budget; then 504, the event still running (default: 300000)',
      ).argParser(positiveIntFlag('--http-max-wait-ms')),
    )
    .addOption(
      new Option(
        '--tenant-budgets <file>',
        'cost budgets per tenant (YAML/JSON: tenant: { limit, windowMs }); work over budget is dead-lettered BUDGET_EXCEEDED',
      ).env('MESHROUTE_TENANT_BUDGETS'),
    )
    .addOption(
      new Option(
        '--tenant-rate-limits <file>',
        'HTTP ingress event rate limits per tenant (YAML/JSON: tenant: { limit, windowMs }); over the limit: 429',
      ).env('MESHROUTE_TENANT_RATE_LIMITS'),
    )
    .addOption(
      new Option('--http-tokens <file>', 'HTTP bearer tokens: token=tenant lines or a JSON object').env(
        'MESHROUTE_HTTP_TOKENS',
      ),
    )
    .addOption(
      new Option('--http-tls-cert <file>', 'HTTPS server certificate (PEM); mutual TLS with --http-tls-key/-ca').env(
        'MESHROUTE_HTTP_TLS_CERT',
      ),
    )
    .addOption(new Option('--http-tls-key <file>', 'HTTPS server private key (PEM)').env('MESHROUTE_HTTP_TLS_KEY'))
    .addOption(
      new Option('--http-tls-ca <file>', 'CA of the client certificates (PEM); a client certificate is required').env(
        'MESHROUTE_HTTP_TLS_CA',
      ),
    )
    .addOption(
      new Option(
        '--http-tls-tenants <file>',
        'client certificate CN or SAN -> tenant (identity=tenant lines or JSON); default: the CN is the tenant',
      ).env('MESHROUTE_HTTP_TLS_TENANTS'),
    )
    .action(async (flags: RouterFlags) => {
      const log = ctx.logger('router');
      const httpAuth = httpAuthFromFiles({
        ...(flags.httpTokens !== undefined ? { tokens: flags.httpTokens } : {}),
        ...(flags.httpTlsCert !== undefined ? { tlsCert: flags.httpTlsCert } : {}),
        ...(flags.httpTlsKey !== undefined ? { tlsKey: flags.httpTlsKey } : {}),
        ...(flags.httpTlsCa !== undefined ? { tlsCa: flags.httpTlsCa } : {}),
        ...(flags.httpTlsTenants !== undefined ? { tlsTenants: flags.httpTlsTenants } : {}),
      });
      const tenantBudgets = flags.tenantBudgets !== undefined ? tenantBudgetsFromFile(flags.tenantBudgets) : undefined;
      const tenantRateLimits =
        flags.tenantRateLimits !== undefined ? tenantRateLimitsFromFile(flags.tenantRateLimits) : undefined;
      const proc = await startRouterProcess({
        nats: natsConnectOptions(flags),
        httpPort: flags.httpPort,
        routerOptions: {
          ...routerOptionsFromFlags(flags),
          ...(tenantBudgets ? { tenantBudgets } : {}),
          ...(tenantRateLimits ? { tenantRateLimits } : {}),
        },
        ...(httpAuth ? { httpAuth } : {}),
        ...(flags.policies ? { policiesDir: flags.policies } : {}),
        ...(flags.redisUrl ? { redisUrl: flags.redisUrl } : {}),
        ...(flags.routerId ? { routerId: flags.routerId } : {}),
        ...(flags.replicas !== undefined ? { replicas: flags.replicas } : {}),
        logger: log,
      });
      const scheme = httpAuth && 'mtls' in httpAuth ? 'https' : 'http';
      ctx.stdout.write(`router ${proc.routerId} listening on ${scheme}://0.0.0.0:${proc.httpPort}/events\n`);
      const signal = await new Promise<NodeJS.Signals>((resolveSignal) => {
        process.once('SIGTERM', () => resolveSignal('SIGTERM'));
        process.once('SIGINT', () => resolveSignal('SIGINT'));
      });
      log.info('stopping', { signal });
      await proc.stop().catch((err: unknown) => {
        if (err instanceof MeshError) log.error('stop failed', { error: err.message });
      });
    });
}
