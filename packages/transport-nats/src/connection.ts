/**
 * The mesh's NATS connection: {@link connectMesh} resolves options once, picks the
 * authentication method, and reports lifecycle changes as typed {@link MeshStatusEvent}s.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, type MeshError } from '@meshroute/mesh';
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  type Authenticator,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
  type Status,
} from '@nats-io/nats-core';
import { connect, type NodeConnectionOptions } from '@nats-io/transport-node';
import { mapNatsError } from './errors.js';
import { type NatsConnectOptions, type ResolvedNatsOptions, resolveNatsOptions } from './options.js';
import { coalesceWrites, flushPending } from './write-coalescing.js';

/** A lifecycle change of the connection, mapped from the NATS client's `status()`. */
export type MeshStatusEvent =
  /** First event of every {@link MeshConnection.status} iteration: the server connected to. */
  | { type: 'connected'; server: string }
  /** The connection to `server` was lost; the client reconnects unless closed. */
  | { type: 'disconnected'; server: string }
  /** A reconnect attempt is starting. */
  | { type: 'reconnecting' }
  /** Connected again (maybe to another server of the cluster). Subscriptions were restored. */
  | { type: 'reconnected'; server: string }
  /** An asynchronous error from the server (permission violation, auth expiry, ...). */
  | { type: 'error'; error: MeshError }
  /** The server entered lame-duck mode: it will shut down soon; the client moves on. */
  | { type: 'ldm'; server: string }
  /** The cluster's server list changed. */
  | { type: 'cluster-update'; added: string[]; deleted: string[] }
  /** Pings went unanswered; the client will reconnect. */
  | { type: 'stale-connection' }
  /** A subscription fell behind and messages were dropped. */
  | { type: 'slow-consumer'; subject: string; pending: number }
  /** The connection is closed for good. Last event. */
  | { type: 'closed' };

/** The non-secret part of the resolved options, safe to log. */
export interface MeshConnectionInfo {
  servers: readonly string[];
  name: string;
  /** Which authentication method is in use (never the secret). */
  auth: ResolvedNatsOptions['auth']['kind'];
  tls: boolean;
  jetstreamTimeoutMs: number;
  inboxPrefix: string;
}

/** A NATS connection for the mesh adapters of this package. */
export interface MeshConnection {
  /** The underlying NATS connection (for what this package does not wrap). */
  readonly nc: NatsConnection;
  /** JetStream client (publish, consumers), with the configured API timeout. */
  readonly js: JetStreamClient;
  /** What this connection was opened with (no secrets). */
  readonly info: MeshConnectionInfo;
  /** The JetStream manager (streams, consumers administration); created once. */
  jetstreamManager(): Promise<JetStreamManager>;
  /** The server currently connected to. */
  server(): string;
  /**
   * Typed lifecycle events, starting with `connected`. Each call gives an independent
   * iterator; it ends after `closed`.
   * @example for await (const s of conn.status()) if (s.type === 'reconnected') log.info('back', s);
   */
  status(): AsyncIterable<MeshStatusEvent>;
  /** Resolves when the connection closed: `undefined`, or the error that closed it. */
  closed(): Promise<MeshError | undefined>;
  /** Drain subscriptions (in-flight handlers finish), then close. */
  drain(): Promise<void>;
  /** Close now. Idempotent. */
  close(): Promise<void>;
}

/**
 * Map one NATS client status to a {@link MeshStatusEvent}, or `undefined` for statuses that
 * are not reported (client pings, forced reconnect requests).
 */
export function mapNatsStatus(s: Status): MeshStatusEvent | undefined {
  switch (s.type) {
    case 'disconnect':
      return { type: 'disconnected', server: s.server };
    case 'reconnecting':
      return { type: 'reconnecting' };
    case 'reconnect':
      return { type: 'reconnected', server: s.server };
    case 'error':
      return { type: 'error', error: mapNatsError(s.error, 'nats server error') };
    case 'ldm':
      return { type: 'ldm', server: s.server };
    case 'update':
      return { type: 'cluster-update', added: s.added ?? [], deleted: s.deleted ?? [] };
    case 'staleConnection':
      return { type: 'stale-connection' };
    case 'slowConsumer':
      return { type: 'slow-consumer', subject: s.sub.getSubject(), pending: s.pending };
    case 'close':
      return { type: 'closed' };
    default:
      return undefined;
  }
}

/** Build the NATS client options from resolved options. */
export function natsClientOptions(opts: ResolvedNatsOptions): NodeConnectionOptions {
  const out: NodeConnectionOptions = {
    servers: opts.servers,
    name: opts.name,
    maxReconnectAttempts: opts.maxReconnectAttempts,
    reconnectTimeWait: opts.reconnectTimeWaitMs,
    timeout: opts.connectTimeoutMs,
    pingInterval: opts.pingIntervalMs,
    waitOnFirstConnect: opts.waitOnFirstConnect,
    inboxPrefix: opts.inboxPrefix,
    noAsyncTraces: !opts.asyncTraces,
  };
  const enc = new TextEncoder();
  let authenticator: Authenticator | undefined;
  switch (opts.auth.kind) {
    case 'user-pass':
      out.user = opts.auth.user;
      out.pass = opts.auth.pass;
      break;
    case 'token':
      out.token = opts.auth.token;
      break;
    case 'nkey':
      authenticator = nkeyAuthenticator(enc.encode(opts.auth.seed));
      break;
    case 'creds-file': {
      const path = opts.auth.path;
      authenticator = credsAuthenticator(() => {
        try {
          return readFileSync(path);
        } catch (cause) {
          throw new ConfigError('credsFile', `cannot read ${path}: ${(cause as Error).message}`, { cause });
        }
      });
      break;
    }
    case 'creds':
      authenticator = credsAuthenticator(enc.encode(opts.auth.content));
      break;
    case 'none':
      break;
  }
  if (authenticator !== undefined) out.authenticator = authenticator;
  if (opts.tls !== undefined) out.tls = { ...opts.tls };
  return out;
}

/**
 * Connect to the mesh's NATS servers.
 * @throws ConfigError for invalid options; MeshError `PERMISSION_DENIED` when the server refuses
 *   the credentials; TransportError (retryable) when no server can be reached
 * @example
 * const conn = await connectMesh({ servers: 'nats://127.0.0.1:4222', name: 'router-1' });
 * await provisionMesh(conn);
 */
export async function connectMesh(options: NatsConnectOptions = {}): Promise<MeshConnection> {
  const opts = resolveNatsOptions(options);
  // Fail fast on an unreadable creds file, with the option named.
  if (opts.auth.kind === 'creds-file') {
    try {
      readFileSync(opts.auth.path);
    } catch (cause) {
      throw new ConfigError('credsFile', `cannot read ${opts.auth.path}: ${(cause as Error).message}`, { cause });
    }
  }
  let nc: NatsConnection;
  try {
    nc = await connect(natsClientOptions(opts));
  } catch (err) {
    throw mapNatsError(err, `connect to ${opts.servers.join(',')}`, opts.connectTimeoutMs);
  }
  if (opts.coalesceWrites) coalesceWrites(nc);
  return wrapConnection(nc, opts);
}

/**
 * Adapt an already open NATS connection (opened by the caller) for the adapters of this package.
 * @param nc - an open connection; closing the returned object closes it
 * @param options - the options it was opened with, for {@link MeshConnection.info} and the
 *   JetStream timeout
 */
export function wrapConnection(
  nc: NatsConnection,
  options: NatsConnectOptions | ResolvedNatsOptions = {},
): MeshConnection {
  const opts: ResolvedNatsOptions = 'auth' in options ? options : resolveNatsOptions(options);
  const js = jetstream(nc, { timeout: opts.jetstreamTimeoutMs });
  let jsm: Promise<JetStreamManager> | undefined;
  const info: MeshConnectionInfo = {
    servers: opts.servers,
    name: opts.name,
    auth: opts.auth.kind,
    tls: opts.tls !== undefined,
    jetstreamTimeoutMs: opts.jetstreamTimeoutMs,
    inboxPrefix: opts.inboxPrefix,
  };
  const closedP: Promise<MeshError | undefined> = nc
    .closed()
    .then((err) => (err ? mapNatsError(err, 'connection') : undefined));
  return {
    nc,
    js,
    info,
    jetstreamManager() {
      if (jsm === undefined) {
        jsm = jetstreamManager(nc, { timeout: opts.jetstreamTimeoutMs }).catch((err: unknown) => {
          jsm = undefined;
          throw mapNatsError(err, 'jetstream manager', opts.jetstreamTimeoutMs);
        });
      }
      return jsm;
    },
    server() {
      return nc.getServer();
    },
    status() {
      return {
        async *[Symbol.asyncIterator]() {
          if (nc.isClosed()) {
            yield { type: 'closed' } as MeshStatusEvent;
            return;
          }
          const iter = nc.status();
          yield { type: 'connected', server: nc.getServer() } as MeshStatusEvent;
          for await (const s of iter) {
            const e = mapNatsStatus(s);
            if (e === undefined) continue;
            yield e;
            if (e.type === 'closed') return;
          }
        },
      };
    },
    closed() {
      return closedP;
    },
    async drain() {
      if (nc.isClosed() || nc.isDraining()) return closedP.then(() => undefined);
      try {
        await nc.drain();
      } catch (err) {
        throw mapNatsError(err, 'drain');
      }
    },
    async close() {
      if (nc.isClosed()) return;
      // What is still in the outbound buffer (coalesced or not) goes out before the socket closes.
      flushPending(nc);
      await nc.close();
    },
  };
}
