/**
 * A leaf node (an edge site) linked to a hub through a TCP proxy owned by the harness, so a test
 * can cut the leaf link and bring it back while both servers keep running and keep their clients.
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { ConfigError } from '@meshroute/mesh';
import { type NatsJetStreamOptions, type NatsServerProcess, spawnNatsServer } from '@meshroute/transport-nats';
import { trackResource } from './cleanup.js';
import { getJson, waitFor } from './wait.js';

/** Default time to wait for the leaf link to come up. */
export const DEFAULT_LEAF_LINK_TIMEOUT_MS = 15_000;

/** Options of {@link startLeafNode}. */
export interface StartLeafNodeOptions {
  /** `server_name` of the leaf. @default 'leaf' */
  serverName?: string;
  /** JetStream on the leaf (it then needs its own domain). @default false */
  jetstream?: boolean | NatsJetStreamOptions;
  /** Raw config appended to the leaf's config (`accounts`, `authorization`). */
  extraConfig?: string;
  /** Local account bound to the hub link. */
  account?: string;
  /** Credentials file for the hub link. */
  credentials?: string;
  /** Wait this long for the link. @default {@link DEFAULT_LEAF_LINK_TIMEOUT_MS} */
  linkTimeoutMs?: number;
}

/** A running leaf node. */
export interface TestLeafNode {
  /** The leaf server: edge clients connect to `leaf.server.url`. */
  readonly server: NatsServerProcess;
  /** Client URL of the leaf. */
  readonly url: string;
  /** Whether the link is allowed by the proxy (not whether it is established). */
  linkAllowed(): boolean;
  /** Whether the leaf reports an established link to the hub now. */
  linked(): Promise<boolean>;
  /**
   * Cut the leaf link: the proxy closes the link's TCP connections and refuses new ones. Both
   * servers keep running and keep their clients; the leaf retries every second. Resolves once the
   * leaf reports no link.
   */
  disconnect(): Promise<void>;
  /** Let the link through again; resolves once the leaf reports it is linked. */
  reconnect(): Promise<void>;
  /** Stop the leaf server and the proxy. The hub is not touched. */
  stop(): Promise<void>;
}

interface Leafz {
  leafnodes?: number;
}

class LinkProxy {
  private readonly sockets = new Set<Socket>();
  private allowed = true;
  constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async open(targetHost: string, targetPort: number): Promise<LinkProxy> {
    const server = createServer();
    let proxy: LinkProxy | undefined;
    server.on('connection', (down) => proxy?.accept(down, targetHost, targetPort));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const addr = server.address();
    proxy = new LinkProxy(server, typeof addr === 'object' && addr ? addr.port : 0);
    return proxy;
  }

  private accept(down: Socket, host: string, port: number): void {
    if (!this.allowed) {
      down.destroy();
      return;
    }
    const up = tcpConnect({ host, port });
    for (const s of [down, up]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {
        down.destroy();
        up.destroy();
      });
    }
    down.pipe(up);
    up.pipe(down);
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
  }

  isAllowed(): boolean {
    return this.allowed;
  }
  cut(): void {
    this.allowed = false;
    for (const s of this.sockets) s.destroy();
  }
  allow(): void {
    this.allowed = true;
  }
  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * Start a leaf node linked to `hub` (started with `leafnodes: { listenPort: 0 }`).
 * @example
 * const hub = await startNatsServer({ leafnodes: { listenPort: 0 } });
 * const edge = await startLeafNode(hub);
 * await edge.disconnect(); // ... edge clients still connected to edge.url ...
 * await edge.reconnect();
 */
export async function startLeafNode(hub: NatsServerProcess, options: StartLeafNodeOptions = {}): Promise<TestLeafNode> {
  if (hub.leafPort === undefined) {
    throw new ConfigError(
      'hub',
      'the hub does not listen for leaf nodes: start it with `leafnodes: { listenPort: 0 }`',
    );
  }
  const linkTimeoutMs = options.linkTimeoutMs ?? DEFAULT_LEAF_LINK_TIMEOUT_MS;
  const proxy = await LinkProxy.open('127.0.0.1', hub.leafPort);
  let js = options.jetstream ?? false;
  if (js === true) js = { domain: 'leaf' };
  let server: NatsServerProcess;
  try {
    server = await spawnNatsServer({
      serverName: options.serverName ?? 'leaf',
      httpPort: 0,
      jetstream: js,
      leafnodes: {
        reconnectSeconds: 1,
        remotes: [
          {
            url: `nats-leaf://127.0.0.1:${proxy.port}`,
            ...(options.account === undefined ? {} : { account: options.account }),
            ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
          },
        ],
      },
      ...(options.extraConfig === undefined ? {} : { extraConfig: options.extraConfig }),
    });
  } catch (err) {
    await proxy.close();
    throw err;
  }
  const linkCount = async (): Promise<number> =>
    ((await getJson(`${server.monitorUrl}/leafz`)) as Leafz).leafnodes ?? 0;
  const leaf: TestLeafNode = {
    server,
    url: server.url,
    linkAllowed: () => proxy.isAllowed(),
    linked: async () => (await linkCount()) > 0,
    async disconnect() {
      proxy.cut();
      await waitFor('the leaf link to drop', async () => (await linkCount()) === 0, { timeoutMs: linkTimeoutMs });
    },
    async reconnect() {
      proxy.allow();
      await waitFor('the leaf link to come back', async () => (await linkCount()) > 0, { timeoutMs: linkTimeoutMs });
    },
    async stop() {
      await server.stop();
      await proxy.close();
    },
  };
  trackResource(leaf);
  try {
    await waitFor('the leaf link', async () => (await linkCount()) > 0, { timeoutMs: linkTimeoutMs });
  } catch (err) {
    await leaf.stop();
    throw err;
  }
  return leaf;
}
