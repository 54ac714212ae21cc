/**
 * CloudEvents HTTP ingress on `node:http`: `POST /events` (binary, structured and batch modes),
 * `GET /healthz`, `GET /readyz`. Bad input is always a 4xx with an RFC 9457 problem body naming
 * the attribute and the rule; never a 5xx.
 *
 * Optional authentication of `POST /events` (issue 7): bearer tokens, each mapping to a tenant,
 * or mutual TLS (HTTPS with a required client certificate whose CN or a SAN maps to a tenant). An
 * authenticated producer can only send events of its own tenant: an event without `tenant` gets
 * it, an event naming another tenant is refused with 403. Health endpoints stay open to probes
 * (over TLS when mTLS is on).
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  type CloudEventJson,
  ConfigError,
  decodeHttp,
  type ErrorInfo,
  InvalidEventError,
  InvalidIntentError,
  type Logger,
  MeshError,
  noopLogger,
  PayloadTooLargeError,
  parseIntent,
  toMeshError,
  UnsupportedFormatError,
} from '@meshroute/mesh';
import type { RouterAnswer } from './answer.js';
import type { RouterEvent } from './policy-port.js';
import type { Router } from './router.js';

/** Options of {@link startHttpIngress}. Defaults come from the router's resolved options. */
export interface HttpIngressOptions {
  /** Port (0: a free one). @default router.options.httpPort */
  port?: number;
  /** Host. @default router.options.httpHost */
  host?: string;
  /** Largest body. @default router.options.maxEventBytes */
  maxEventBytes?: number;
  /** `?wait=1` limit for events without a latency budget. @default router.options.httpWaitMs */
  waitMs?: number;
  /** @default noopLogger */
  logger?: Logger;
  /** Authentication of `POST /events`; none when absent. See {@link HttpIngressAuth}. */
  auth?: HttpIngressAuth;
}

/** Bearer-token authentication: `Authorization: Bearer <token>`, each token authenticating one tenant. */
export interface HttpTokenAuth {
  /** Token → tenant. */
  tokens: Record<string, string>;
}

/** Mutual TLS: the ingress serves HTTPS and requires a client certificate signed by `ca`. */
export interface HttpMtlsAuth {
  mtls: {
    /** Server certificate (PEM). */
    cert: string | Uint8Array;
    /** Server private key (PEM). */
    key: string | Uint8Array;
    /** CA certificate(s) that sign client certificates (PEM). */
    ca: string | Uint8Array;
    /**
     * Client identity (certificate CN, or a SAN value such as a DNS name, URI or e-mail) → tenant.
     * Without it, the certificate's CN is the tenant.
     */
    tenants?: Record<string, string>;
  };
}

/** Authentication of the HTTP ingress: bearer tokens or mutual TLS. */
export type HttpIngressAuth = HttpTokenAuth | HttpMtlsAuth;

/** {@link HttpIngressAuth} validated once (token digests, tenant names checked). */
export type ResolvedHttpIngressAuth =
  | { kind: 'tokens'; tenantByTokenDigest: Map<string, string> }
  | {
      kind: 'mtls';
      /** PEM. */
      cert: string;
      /** PEM. */
      key: string;
      /** PEM. */
      ca: string;
      tenants: Map<string, string> | undefined;
    };

const tokenDigest = (token: string): string => createHash('sha256').update(token).digest('hex');

function checkTenant(option: string, tenant: unknown): string {
  try {
    if (typeof tenant !== 'string') throw new Error(`must be a string, got ${JSON.stringify(tenant)}`);
    parseIntent({ tenant });
    return tenant;
  } catch (err) {
    throw new ConfigError(option, `is not a valid tenant: ${(err as Error).message}`);
  }
}

/**
 * Validate authentication options once.
 * @throws ConfigError naming the option at fault (empty token list, invalid tenant, missing PEM)
 * @example resolveHttpIngressAuth({ tokens: { s3cr3t: 'acme' } }).kind // 'tokens'
 */
export function resolveHttpIngressAuth(auth: HttpIngressAuth | undefined): ResolvedHttpIngressAuth | undefined {
  if (auth === undefined) return undefined;
  const hasTokens = 'tokens' in auth && auth.tokens !== undefined;
  const hasMtls = 'mtls' in auth && auth.mtls !== undefined;
  if (hasTokens && hasMtls) throw new ConfigError('auth', 'choose bearer tokens or mTLS, not both');
  if (hasTokens) {
    const entries = Object.entries((auth as HttpTokenAuth).tokens);
    if (entries.length === 0) throw new ConfigError('auth.tokens', 'must list at least one token');
    const tenantByTokenDigest = new Map<string, string>();
    entries.forEach(([token, tenant], i) => {
      if (token.length < 8 || /\s/.test(token)) {
        throw new ConfigError(`auth.tokens[${i}]`, 'a token must be at least 8 characters without whitespace');
      }
      tenantByTokenDigest.set(tokenDigest(token), checkTenant(`auth.tokens[${i}] (tenant)`, tenant));
    });
    return { kind: 'tokens', tenantByTokenDigest };
  }
  if (hasMtls) {
    const m = (auth as HttpMtlsAuth).mtls;
    for (const k of ['cert', 'key', 'ca'] as const) {
      const v = m[k];
      if (v === undefined || v.length === 0) throw new ConfigError(`auth.mtls.${k}`, 'is required (PEM)');
    }
    let tenants: Map<string, string> | undefined;
    if (m.tenants !== undefined) {
      tenants = new Map();
      for (const [identity, tenant] of Object.entries(m.tenants)) {
        tenants.set(identity, checkTenant(`auth.mtls.tenants[${JSON.stringify(identity)}]`, tenant));
      }
    }
    const pem = (v: string | Uint8Array): string => (typeof v === 'string' ? v : Buffer.from(v).toString('utf8'));
    return { kind: 'mtls', cert: pem(m.cert), key: pem(m.key), ca: pem(m.ca), tenants };
  }
  throw new ConfigError('auth', 'must be { tokens: { <token>: <tenant> } } or { mtls: { cert, key, ca } }');
}

/**
 * Read a `key → tenant` file: a JSON object, or `key=tenant` lines (blank lines and `#` comments
 * ignored). Used for token files (`--http-tokens`) and certificate identity maps.
 * @throws ConfigError naming `source` and the line at fault
 * @example parseTenantMap('s3cr3t-token=acme\n', '--http-tokens') // { 's3cr3t-token': 'acme' }
 */
export function parseTenantMap(text: string, source: string): Record<string, string> {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch (err) {
      throw new ConfigError(source, `is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(source, 'must be a JSON object of <key>: <tenant>');
    }
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
      if (typeof v !== 'string')
        throw new ConfigError(source, `the value of ${JSON.stringify(k)} must be a tenant string`);
      out[k] = v;
    }
    return out;
  }
  const out: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const eq = line.lastIndexOf('=');
    if (eq <= 0 || eq === line.length - 1) {
      throw new ConfigError(source, `line ${i + 1}: expected <key>=<tenant>`);
    }
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  });
  return out;
}

/** A running HTTP ingress. */
export interface HttpIngress {
  /** The port it listens on. */
  readonly port: number;
  /** `http://host:port`. */
  readonly url: string;
  /** Stop accepting and close open connections. */
  close(): Promise<void>;
}

/** An RFC 9457 problem body. */
export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  attribute?: string;
  rule?: string;
  index?: number;
  [extra: string]: unknown;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function problem(status: number, code: string, detail: string, extra: Record<string, unknown> = {}): ProblemBody {
  return {
    type: `https://meshroute.dev/problems/${code.toLowerCase().replace(/_/g, '-')}`,
    title: TITLES[status] ?? 'Error',
    status,
    detail,
    code,
    ...extra,
  };
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  const isProblem = typeof body === 'object' && body !== null && 'type' in body && 'status' in body;
  res.writeHead(status, {
    'content-type': isProblem ? 'application/problem+json' : 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** The HTTP status for a terminal error code. */
function statusForCode(code: string): number {
  switch (code) {
    case 'INVALID_EVENT':
    case 'INVALID_INTENT':
      return 400;
    case 'NO_ELIGIBLE_AGENT':
    case 'DEADLINE_PASSED':
    case 'WORKLOAD_FAILED':
    case 'WORKLOAD_NOT_FOUND':
    case 'LIMIT_EXCEEDED':
      return 422;
    case 'BUDGET_EXCEEDED':
    case 'BACKPRESSURE':
      return 429;
    case 'TIMEOUT':
      return 504;
    case 'POLICY_ERROR':
    case 'INTERNAL':
      return 500;
    case 'SHUTTING_DOWN':
    case 'STORE_UNAVAILABLE':
    case 'TRANSPORT_ERROR':
      return 503;
    default:
      return 502;
  }
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        reject(new BodyTooLarge(String(size)));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!failed) resolve(new Uint8Array(Buffer.concat(chunks)));
    });
    req.on('error', (err) => {
      if (!failed) reject(err);
    });
  });
}

function decodeError(err: unknown): { status: number; body: ProblemBody } {
  if (err instanceof PayloadTooLargeError) {
    return { status: 413, body: problem(413, err.code, err.message) };
  }
  if (err instanceof UnsupportedFormatError) {
    return { status: 415, body: problem(415, err.code, err.message, { contentType: err.details.contentType }) };
  }
  if (err instanceof InvalidEventError) {
    const extra: Record<string, unknown> = { attribute: err.attribute, rule: err.rule };
    if (err.index !== undefined) extra.index = err.index;
    return { status: 400, body: problem(400, err.code, err.message, extra) };
  }
  if (err instanceof InvalidIntentError) {
    const extra: Record<string, unknown> = { attribute: err.attribute, rule: err.rule };
    if (typeof err.details.index === 'number') extra.index = err.details.index;
    return { status: 400, body: problem(400, err.code, err.message, extra) };
  }
  const e = toMeshError(err);
  return { status: 400, body: problem(400, e.code, e.message) };
}

function answerBody(answer: RouterAnswer): { status: number; body: unknown } {
  if (answer.outcome === 'succeeded') {
    return {
      status: 200,
      body: {
        id: answer.id,
        outcome: answer.outcome,
        agent: answer.agent,
        decisionId: answer.decisionId,
        result: answer.result,
        ...(answer.replayed ? { replayed: true } : {}),
      },
    };
  }
  const error: ErrorInfo = answer.error ?? { code: 'INTERNAL', message: 'no error recorded', retryable: false };
  const status = statusForCode(error.code);
  return {
    status,
    body: problem(status, error.code, error.message, {
      id: answer.id,
      outcome: answer.outcome,
      agent: answer.agent,
      decisionId: answer.decisionId,
      ...(answer.deadLetterReason ? { reason: answer.deadLetterReason } : {}),
      ...(answer.result ? { result: answer.result } : {}),
      ...(error.details ? { details: error.details } : {}),
    }),
  };
}

function waitBudgetMs(event: CloudEventJson, fallbackMs: number): number {
  const raw = event.latencybudgetms;
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number(raw) : Number.NaN;
  return Number.isInteger(n) && n > 0 ? n : fallbackMs;
}

/**
 * Serve the router's HTTP ingress.
 * @example
 * const http = await startHttpIngress(router, { port: 0 });
 * await fetch(`${http.url}/events?wait=1`, { method: 'POST', headers, body });
 */
export async function startHttpIngress(router: Router, options: HttpIngressOptions = {}): Promise<HttpIngress> {
  const port = options.port ?? router.options.httpPort;
  const host = options.host ?? router.options.httpHost;
  const maxEventBytes = options.maxEventBytes ?? router.options.maxEventBytes;
  const defaultWaitMs = options.waitMs ?? router.options.httpWaitMs;
  const logger = (options.logger ?? noopLogger).child({ component: 'http-ingress' });
  const retryAfterS = String(Math.max(1, Math.ceil(router.options.nakDelayMs / 1000)));
  const auth = resolveHttpIngressAuth(options.auth);

  /** The tenant the request is authenticated as (`undefined`: no authentication configured), or a refusal sent. */
  const authenticate = (req: IncomingMessage, res: ServerResponse): { tenant: string | undefined } | undefined => {
    if (auth === undefined) return { tenant: undefined };
    if (auth.kind === 'tokens') {
      const header = req.headers.authorization ?? '';
      const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
      const tenant = m?.[1] !== undefined ? auth.tenantByTokenDigest.get(tokenDigest(m[1])) : undefined;
      if (tenant !== undefined) return { tenant };
      req.resume();
      const missing = header === '';
      send(
        res,
        401,
        problem(
          401,
          'PERMISSION_DENIED',
          missing
            ? 'authentication required: send Authorization: Bearer <token>'
            : m
              ? 'the bearer token is not known'
              : 'the Authorization header is not a bearer token',
          { rule: 'bearer-token' },
        ),
        {
          'www-authenticate': missing ? 'Bearer realm="meshroute"' : 'Bearer realm="meshroute", error="invalid_token"',
        },
      );
      return undefined;
    }
    const socket = req.socket as TLSSocket;
    const cert = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
    if (!socket.authorized || !cert || Object.keys(cert).length === 0) {
      req.resume();
      send(
        res,
        401,
        problem(401, 'PERMISSION_DENIED', 'a client certificate signed by the configured CA is required', {
          rule: 'client-certificate',
        }),
      );
      return undefined;
    }
    const cn = typeof cert.subject?.CN === 'string' ? cert.subject.CN : undefined;
    const sans = (cert.subjectaltname ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x !== '')
      .map((x) => x.slice(x.indexOf(':') + 1));
    let tenant: string | undefined;
    if (auth.tenants) {
      for (const id of [...(cn !== undefined ? [cn] : []), ...sans]) {
        tenant = auth.tenants.get(id);
        if (tenant !== undefined) break;
      }
    } else if (cn !== undefined) {
      try {
        tenant = parseIntent({ tenant: cn }).tenant;
      } catch {
        tenant = undefined;
      }
    }
    if (tenant === undefined) {
      req.resume();
      send(
        res,
        403,
        problem(403, 'PERMISSION_DENIED', `the client certificate (CN=${cn ?? '(none)'}) maps to no tenant`, {
          rule: 'client-certificate',
        }),
      );
      return undefined;
    }
    return { tenant };
  };

  const postEvents = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const principal = authenticate(req, res);
    if (principal === undefined) return;
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxEventBytes) {
      send(
        res,
        413,
        problem(413, 'PAYLOAD_TOO_LARGE', `body is ${declared} bytes, over the limit of ${maxEventBytes} bytes`),
        { connection: 'close' },
      );
      req.resume();
      return;
    }
    let body: Uint8Array;
    try {
      body = await readBody(req, maxEventBytes);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        send(res, 413, problem(413, 'PAYLOAD_TOO_LARGE', `body is over the limit of ${maxEventBytes} bytes`), {
          connection: 'close',
        });
        req.resume();
        return;
      }
      throw err;
    }
    const contentType = String(req.headers['content-type'] ?? '').toLowerCase();
    const hasCeHeaders = Object.keys(req.headers).some((h) => h.toLowerCase().startsWith('ce-'));
    if (!hasCeHeaders && !contentType.startsWith('application/cloudevents')) {
      // Neither binary mode (no ce- headers) nor a CloudEvents format: not an event we can read.
      send(
        res,
        415,
        problem(
          415,
          'UNSUPPORTED_FORMAT',
          `unsupported event format: content-type ${JSON.stringify(contentType || '(none)')} without ce- headers; use binary mode (ce-* headers), application/cloudevents+json or application/cloudevents-batch+json`,
          { contentType },
        ),
      );
      return;
    }
    let decoded: { mode: string; events: CloudEventJson[] };
    try {
      decoded = decodeHttp(req.headers, body, { maxEventBytes });
      decoded.events.forEach((ev, index) => {
        if (ev.workload === undefined) {
          throw new InvalidIntentError('workload', 'required', 'the workload attribute is required', {
            details: decoded.events.length > 1 || decoded.mode === 'batch' ? { index } : {},
          });
        }
      });
    } catch (err) {
      const { status, body: p } = decodeError(err);
      send(res, status, p);
      return;
    }
    // An authenticated producer sends events of its own tenant only.
    if (principal.tenant !== undefined) {
      const tenant = principal.tenant;
      const batch = decoded.events.length > 1 || decoded.mode === 'batch';
      const foreign = decoded.events.findIndex((ev) => ev.tenant !== undefined && ev.tenant !== tenant);
      if (foreign >= 0) {
        const ev = decoded.events[foreign] as CloudEventJson;
        send(
          res,
          403,
          problem(
            403,
            'PERMISSION_DENIED',
            `the event's tenant ${JSON.stringify(ev.tenant)} is not the authenticated tenant ${JSON.stringify(tenant)}`,
            { attribute: 'tenant', rule: 'authenticated-tenant', id: ev.id, ...(batch ? { index: foreign } : {}) },
          ),
        );
        return;
      }
      for (const ev of decoded.events) if (ev.tenant === undefined) ev.tenant = tenant;
    }
    // An unregistered workload is refused at once (the router would dead-letter it unrun).
    const unknown = decoded.events.findIndex(
      (ev) => typeof ev.workload === 'string' && !router.knowsWorkload(ev.workload),
    );
    if (unknown >= 0) {
      const ev = decoded.events[unknown] as CloudEventJson;
      const batch = decoded.events.length > 1 || decoded.mode === 'batch';
      send(
        res,
        422,
        problem(422, 'WORKLOAD_NOT_FOUND', `workload ${JSON.stringify(ev.workload)} is not registered`, {
          attribute: 'workload',
          rule: 'registered',
          id: ev.id,
          ...(batch ? { index: unknown } : {}),
        }),
      );
      return;
    }
    if (!router.ready()) {
      send(res, 503, problem(503, 'SHUTTING_DOWN', 'the router is not ready (starting, stopping or no policy)'), {
        'retry-after': retryAfterS,
      });
      return;
    }
    if (router.overloaded()) {
      send(res, 429, problem(429, 'BACKPRESSURE', 'the router is over capacity; retry later'), {
        'retry-after': retryAfterS,
      });
      return;
    }
    const wait = ['1', 'true', 'yes'].includes((url.searchParams.get('wait') ?? '').toLowerCase());
    const events = decoded.events as RouterEvent[];
    try {
      if (!wait) {
        await Promise.all(events.map((ev) => router.submit(ev)));
        if (decoded.mode === 'batch') send(res, 202, { ids: events.map((e) => e.id) });
        else send(res, 202, { id: events[0]?.id });
        return;
      }
      const answers = await Promise.all(
        events.map((ev) => router.submit(ev, { waitMs: waitBudgetMs(ev, defaultWaitMs) })),
      );
      const rendered = answers.map((a, i) => {
        const ev = events[i] as RouterEvent;
        if (a) return answerBody(a);
        const ms = waitBudgetMs(ev, defaultWaitMs);
        return {
          status: 504,
          body: problem(504, 'TIMEOUT', `no outcome within ${ms} ms (the event is accepted and still running)`, {
            id: ev.id,
          }),
        };
      });
      if (decoded.mode === 'batch') {
        send(res, 200, { results: rendered.map((r) => ({ status: r.status, ...(r.body as object) })) });
      } else {
        const r = rendered[0] as { status: number; body: unknown };
        send(res, r.status, r.body);
      }
    } catch (err) {
      const e = toMeshError(err);
      const status = e.code === 'SHUTTING_DOWN' || e.retryable ? 503 : statusForCode(e.code);
      send(res, status, problem(status, e.code, e.message), status === 503 ? { 'retry-after': retryAfterS } : {});
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    if (path === '/events') {
      if (req.method !== 'POST') {
        req.resume();
        send(res, 405, problem(405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed on /events; use POST`), {
          allow: 'POST',
        });
        return;
      }
      await postEvents(req, res, url);
      return;
    }
    if (path === '/healthz' || path === '/readyz') {
      req.resume();
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, problem(405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${path}; use GET`), {
          allow: 'GET, HEAD',
        });
        return;
      }
      const health = router.health();
      if (path === '/healthz') {
        send(res, health.status === 'stopped' ? 503 : 200, health);
      } else {
        const ready = router.ready();
        send(res, ready ? 200 : 503, { ready, policyDigest: health.policyDigest, agents: health.agents });
      }
      return;
    }
    req.resume();
    send(res, 404, problem(404, 'NOT_FOUND', `no route for ${path}`));
  };

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
      const e = err instanceof MeshError ? err : toMeshError(err);
      logger.error('http ingress failure', { error: e.message });
      if (!res.headersSent) send(res, 400, problem(400, 'INVALID_EVENT', `could not read the request: ${e.message}`));
      else res.destroy();
    });
  };
  const server: Server =
    auth?.kind === 'mtls'
      ? createHttpsServer(
          { cert: auth.cert, key: auth.key, ca: auth.ca, requestCert: true, rejectUnauthorized: true },
          listener,
        )
      : createServer(listener);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actual = (server.address() as AddressInfo).port;
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return {
    port: actual,
    url: `${auth?.kind === 'mtls' ? 'https' : 'http'}://${shownHost}:${actual}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
