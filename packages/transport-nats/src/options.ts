/**
 * Connection options of the NATS adapter, resolved once into a filled object
 * ({@link resolveNatsOptions}); nothing else in this package checks for `undefined`.
 */
import { ConfigError, meshNames } from '@meshroute/mesh';

/** Default server when none is given. */
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';
/** Default connection name, as shown by the server's monitoring. */
export const DEFAULT_CONNECTION_NAME = 'meshroute';
/** Reconnect forever by default: a mesh component outlives server restarts. */
export const DEFAULT_MAX_RECONNECT_ATTEMPTS = -1;
/** Wait between reconnect attempts to the same server. */
export const DEFAULT_RECONNECT_TIME_WAIT_MS = 1_000;
/** Time to establish the first connection. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Interval of client pings; two missed pongs mark the connection stale. */
export const DEFAULT_PING_INTERVAL_MS = 30_000;
/** Timeout of JetStream API calls and publish acknowledgements. */
export const DEFAULT_JETSTREAM_TIMEOUT_MS = 5_000;

/** TLS settings. Files are read by the NATS client when connecting. */
export interface NatsTlsOptions {
  /** PEM file of the CA that signed the server certificate. */
  caFile?: string;
  /** PEM file of the client certificate (mutual TLS); needs `keyFile`. */
  certFile?: string;
  /** PEM file of the client private key; needs `certFile`. */
  keyFile?: string;
  /** PEM text of the CA, instead of `caFile`. */
  ca?: string;
  /** PEM text of the client certificate, instead of `certFile`. */
  cert?: string;
  /** PEM text of the client key, instead of `keyFile`. */
  key?: string;
  /**
   * Reject servers whose certificate does not verify.
   * @default true
   */
  rejectUnauthorized?: boolean;
}

/** Options of {@link connectMesh}. At most one authentication method may be given. */
export interface NatsConnectOptions {
  /**
   * Server URL(s), e.g. `nats://nats-1:4222`. Several for a cluster.
   * @default [DEFAULT_NATS_URL]
   */
  servers?: string | readonly string[];
  /**
   * Connection name, shown in the server's connection list.
   * @default DEFAULT_CONNECTION_NAME
   */
  name?: string;
  /** User name (with `pass`). */
  user?: string;
  /** Password (with `user`). */
  pass?: string;
  /** Authentication token. */
  token?: string;
  /** NKey seed (`SU...`) for nkey authentication. */
  nkeySeed?: string;
  /** Path of a `.creds` file (user JWT + nkey seed). Re-read on every (re)connect, so rotated creds are picked up. */
  credsFile?: string;
  /** Content of a `.creds` file, instead of `credsFile`. */
  creds?: string;
  /** TLS settings; when given, the connection must be TLS. */
  tls?: NatsTlsOptions;
  /**
   * Reconnect attempts per server; -1 for ever.
   * @default DEFAULT_MAX_RECONNECT_ATTEMPTS
   */
  maxReconnectAttempts?: number;
  /**
   * Wait between reconnect attempts to one server.
   * @default DEFAULT_RECONNECT_TIME_WAIT_MS
   */
  reconnectTimeWaitMs?: number;
  /**
   * Time allowed to establish the first connection.
   * @default DEFAULT_CONNECT_TIMEOUT_MS
   */
  connectTimeoutMs?: number;
  /**
   * Client ping interval.
   * @default DEFAULT_PING_INTERVAL_MS
   */
  pingIntervalMs?: number;
  /**
   * Timeout of JetStream API calls and publish acknowledgements.
   * @default DEFAULT_JETSTREAM_TIMEOUT_MS
   */
  jetstreamTimeoutMs?: number;
  /**
   * Keep trying the first connection instead of failing at once.
   * @default false
   */
  waitOnFirstConnect?: boolean;
  /**
   * Capture an async stack trace for every request and JetStream publish, so a failure shows
   * where it was made. It costs an Error object per call (about a sixth of the CPU of the router's
   * hot path in a profile), so it is off unless debugging.
   * @default false
   */
  asyncTraces?: boolean;
  /**
   * Prefix of this connection's reply inboxes (so permissions can allow `<prefix>.>`).
   * @default meshNames().replyPrefix (`_INBOX_meshroute`)
   */
  inboxPrefix?: string;
  /**
   * Write what one event-loop turn publishes in at most two socket writes (the first flush at once,
   * the rest at the end of the turn; see `write-coalescing.ts`) instead of one write per microtask
   * burst: far fewer socket writes, less CPU
   * per message under load (a router with JetStream ingress: about a quarter less). For
   * long-running processes that close the connection before they exit: what is published in the
   * turn of a `process.exit()` would not be written. `meshroute router`, `agent` and `up` turn it on.
   * @default false
   */
  coalesceWrites?: boolean;
}

/** The authentication method chosen. Secrets are kept here, so never log this object. */
export type ResolvedNatsAuth =
  | { kind: 'none' }
  | { kind: 'user-pass'; user: string; pass: string }
  | { kind: 'token'; token: string }
  | { kind: 'nkey'; seed: string }
  | { kind: 'creds-file'; path: string }
  | { kind: 'creds'; content: string };

/** {@link NatsConnectOptions} with every field filled. */
export interface ResolvedNatsOptions {
  servers: string[];
  name: string;
  auth: ResolvedNatsAuth;
  tls: NatsTlsOptions | undefined;
  maxReconnectAttempts: number;
  reconnectTimeWaitMs: number;
  connectTimeoutMs: number;
  pingIntervalMs: number;
  jetstreamTimeoutMs: number;
  waitOnFirstConnect: boolean;
  asyncTraces: boolean;
  inboxPrefix: string;
  coalesceWrites: boolean;
}

const SUBJECT_TOKEN = /^[^\s.*>]+$/;

function positiveMs(option: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0)
    throw new ConfigError(option, `must be a positive number of milliseconds, got ${value}`);
  return value;
}

function nonEmpty(option: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0) throw new ConfigError(option, 'must be a non-empty string');
  return value;
}

/**
 * Validate {@link NatsConnectOptions} and fill every default.
 * @throws ConfigError naming the option at fault (bad URL, two authentication methods, `user`
 *   without `pass`, `certFile` without `keyFile`, a malformed nkey seed, ...)
 */
export function resolveNatsOptions(input: NatsConnectOptions = {}): ResolvedNatsOptions {
  const rawServers =
    input.servers === undefined
      ? [DEFAULT_NATS_URL]
      : typeof input.servers === 'string'
        ? [input.servers]
        : [...input.servers];
  const servers = rawServers
    .flatMap((s) => s.split(','))
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (servers.length === 0) throw new ConfigError('servers', 'at least one server URL is required');
  for (const s of servers) {
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `nats://${s}`;
    let url: URL;
    try {
      url = new URL(withScheme);
    } catch (cause) {
      throw new ConfigError('servers', `${JSON.stringify(s)} is not a server URL`, { cause });
    }
    if (!['nats:', 'tls:', 'ws:', 'wss:'].includes(url.protocol)) {
      throw new ConfigError('servers', `${JSON.stringify(s)}: scheme ${url.protocol} is not one of nats:, tls:`);
    }
    if (url.protocol === 'ws:' || url.protocol === 'wss:') {
      throw new ConfigError('servers', `${JSON.stringify(s)}: websocket URLs are not supported by the node transport`);
    }
  }

  const user = nonEmpty('user', input.user);
  const pass = input.pass;
  const token = nonEmpty('token', input.token);
  const nkeySeed = nonEmpty('nkeySeed', input.nkeySeed);
  const credsFile = nonEmpty('credsFile', input.credsFile);
  const creds = nonEmpty('creds', input.creds);
  if ((user === undefined) !== (pass === undefined)) {
    throw new ConfigError(user === undefined ? 'user' : 'pass', 'user and pass must be given together');
  }
  const given = [
    user !== undefined ? 'user/pass' : undefined,
    token !== undefined ? 'token' : undefined,
    nkeySeed !== undefined ? 'nkeySeed' : undefined,
    credsFile !== undefined ? 'credsFile' : undefined,
    creds !== undefined ? 'creds' : undefined,
  ].filter((x): x is string => x !== undefined);
  if (given.length > 1) throw new ConfigError('auth', `give one authentication method, got ${given.join(' and ')}`);
  let auth: ResolvedNatsAuth = { kind: 'none' };
  if (user !== undefined && pass !== undefined) auth = { kind: 'user-pass', user, pass };
  else if (token !== undefined) auth = { kind: 'token', token };
  else if (nkeySeed !== undefined) {
    if (!/^SU[A-Z2-7]{50,}$/.test(nkeySeed.trim())) {
      throw new ConfigError('nkeySeed', 'must be a user nkey seed (starts with "SU", base32)');
    }
    auth = { kind: 'nkey', seed: nkeySeed.trim() };
  } else if (credsFile !== undefined) auth = { kind: 'creds-file', path: credsFile };
  else if (creds !== undefined) {
    if (!creds.includes('BEGIN NATS USER JWT') || !creds.includes('BEGIN USER NKEY SEED')) {
      throw new ConfigError('creds', 'not a NATS .creds document (needs a USER JWT and a USER NKEY SEED block)');
    }
    auth = { kind: 'creds', content: creds };
  }

  let tls: NatsTlsOptions | undefined;
  if (input.tls !== undefined) {
    const t = input.tls;
    const hasCert = t.certFile !== undefined || t.cert !== undefined;
    const hasKey = t.keyFile !== undefined || t.key !== undefined;
    if (hasCert !== hasKey) {
      throw new ConfigError(
        hasCert ? 'tls.keyFile' : 'tls.certFile',
        'a client certificate needs its key and the key its certificate',
      );
    }
    if (t.caFile !== undefined && t.ca !== undefined) throw new ConfigError('tls.ca', 'give caFile or ca, not both');
    if (t.certFile !== undefined && t.cert !== undefined)
      throw new ConfigError('tls.cert', 'give certFile or cert, not both');
    if (t.keyFile !== undefined && t.key !== undefined)
      throw new ConfigError('tls.key', 'give keyFile or key, not both');
    tls = { ...t };
  }

  const maxReconnectAttempts = input.maxReconnectAttempts ?? DEFAULT_MAX_RECONNECT_ATTEMPTS;
  if (!Number.isInteger(maxReconnectAttempts) || maxReconnectAttempts < -1) {
    throw new ConfigError(
      'maxReconnectAttempts',
      `must be an integer >= -1 (-1: for ever), got ${maxReconnectAttempts}`,
    );
  }
  const inboxPrefix = input.inboxPrefix ?? meshNames().replyPrefix;
  if (!inboxPrefix.split('.').every((t) => SUBJECT_TOKEN.test(t))) {
    throw new ConfigError('inboxPrefix', `${JSON.stringify(inboxPrefix)} is not a valid subject prefix`);
  }
  const name = input.name ?? DEFAULT_CONNECTION_NAME;
  if (name.length === 0) throw new ConfigError('name', 'must not be empty');

  return {
    servers,
    name,
    auth,
    tls,
    maxReconnectAttempts,
    reconnectTimeWaitMs: positiveMs('reconnectTimeWaitMs', input.reconnectTimeWaitMs, DEFAULT_RECONNECT_TIME_WAIT_MS),
    connectTimeoutMs: positiveMs('connectTimeoutMs', input.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS),
    pingIntervalMs: positiveMs('pingIntervalMs', input.pingIntervalMs, DEFAULT_PING_INTERVAL_MS),
    jetstreamTimeoutMs: positiveMs('jetstreamTimeoutMs', input.jetstreamTimeoutMs, DEFAULT_JETSTREAM_TIMEOUT_MS),
    waitOnFirstConnect: input.waitOnFirstConnect ?? false,
    asyncTraces: input.asyncTraces ?? false,
    inboxPrefix,
    coalesceWrites: input.coalesceWrites ?? false,
  };
}

/** Whether `token` can be one token of a NATS subject (no dots, wildcards or whitespace). */
export function isSubjectToken(token: string): boolean {
  return SUBJECT_TOKEN.test(token);
}
