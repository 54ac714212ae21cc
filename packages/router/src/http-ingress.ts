/**
 * CloudEvents HTTP ingress on `node:http`: `POST /events` (binary, structured and batch modes),
 * `GET /healthz`, `GET /readyz`. Bad input is always a 4xx with an RFC 9457 problem body naming
 * the attribute and the rule; never a 5xx.
 *
 * A request is accepted or refused whole: a batch with one invalid event, a repeated `ce-` or
 * `Content-Type` header, or a repeated member name in an event's JSON is a 400; a batch that would
 * not fit the router now (its in-flight bound, or its wait queue while work waits there) is a 429
 * with `Retry-After` and nothing of it is accepted; a batch larger than the in-flight bound is a
 * 413 (`rule: 'batch-size'`), as no retry could fit it. `?wait=1` on a batch waits for every event
 * (each up to its own latency budget, else `waitMs`) and answers 200 with
 * `{ results: [{ status, ...answer or problem }] }` in batch order; an empty batch answers at once.
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
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import {
  type CloudEventJson,
  ConfigError,
  DEFAULT_MAX_JSON_DEPTH,
  decodeHttp,
  type ErrorInfo,
  InvalidEventError,
  InvalidIntentError,
  isJsonContentType,
  jsonDeeperThan,
  type Logger,
  MeshError,
  noopLogger,
  PayloadTooLargeError,
  parseIntent,
  toMeshError,
  UnsupportedFormatError,
  validateEvent,
} from '@meshroute/mesh';
import { duplicateMemberError, repeatedMembers } from '@meshroute/mesh/internal';
import type { RouterAnswer } from './answer.js';
import type { RouterEvent } from './policy-port.js';
import type { Router } from './router.js';

/** Options of {@link startHttpIngress}. Defaults come from the router's resolved options. */
export interface HttpIngressOptions {
  /** Port (0: a free one). @default router.options.httpPort */
  port?: number;
  /** Host. @default router.options.httpHost */
  host?: string;
  /**
   * Largest event, bytes: a larger body is refused with 413 before it is read; in binary mode the
   * `ce-` attribute headers count too (the event must fit one NATS message on the way to the
   * ingress stream). @default router.options.maxEventBytes
   */
  maxEventBytes?: number;
  /** `?wait=1` limit for events without a latency budget. @default router.options.httpWaitMs */
  waitMs?: number;
  /** Longest `?wait=1`, whatever the latency budget. @default router.options.httpMaxWaitMs */
  maxWaitMs?: number;
  /** @default noopLogger */
  logger?: Logger;
  /** Authentication of `POST /events`; none when absent. See {@link HttpIngressAuth}. */
  auth?: HttpIngressAuth;
  /**
   * Time to receive a whole request (headers and body); a slower request gets 408 and its
   * connection is closed. Waiting for an outcome (`?wait=1`) does not count.
   * @default DEFAULT_HTTP_REQUEST_TIMEOUT_MS (30 s)
   */
  requestTimeoutMs?: number;
  /**
   * Time to receive the request headers; capped by `requestTimeoutMs`.
   * @default DEFAULT_HTTP_HEADERS_TIMEOUT_MS (10 s)
   */
  headersTimeoutMs?: number;
  /**
   * Deepest JSON nesting accepted in event data (arrays and objects); deeper data is a 400
   * (rule `max-depth`) instead of a stack overflow further down the mesh.
   * @default DEFAULT_HTTP_MAX_JSON_DEPTH (128)
   */
  maxJsonDepth?: number;
}

/** Default {@link HttpIngressOptions.requestTimeoutMs}: 30 s. */
export const DEFAULT_HTTP_REQUEST_TIMEOUT_MS = 30_000;
/** Default {@link HttpIngressOptions.headersTimeoutMs}: 10 s. */
export const DEFAULT_HTTP_HEADERS_TIMEOUT_MS = 10_000;
/** Default {@link HttpIngressOptions.maxJsonDepth}: 128 levels. */
export const DEFAULT_HTTP_MAX_JSON_DEPTH = DEFAULT_MAX_JSON_DEPTH;
/** Bytes of an over-limit body read and dropped after the 413, before the connection is cut. */
const MAX_DISCARD_BYTES = 256 * 1024;
/** At most this many per-event errors in a batch problem. */
const MAX_BATCH_ERRORS = 100;

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
  /** For batches: every invalid event (at most 100), ordered by index. */
  errors?: BatchEventProblem[];
  [extra: string]: unknown;
}

/** One invalid event of a batch, in {@link ProblemBody.errors}. */
export interface BatchEventProblem {
  index: number;
  /** The event's id, when it has a string one. */
  id?: string;
  code: string;
  attribute: string;
  rule: string;
  detail: string;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  431: 'Request Header Fields Too Large',
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
    case 'PAYLOAD_TOO_LARGE':
      return 413;
    case 'BUDGET_EXCEEDED':
    case 'BACKPRESSURE':
      return 429;
    case 'TIMEOUT':
      return 504;
    case 'POLICY_ERROR':
    case 'INTERNAL':
      return 500;
    case 'SHUTTING_DOWN':
    case 'DELIVERIES_EXHAUSTED':
    case 'STORE_UNAVAILABLE':
    case 'TRANSPORT_ERROR':
      return 503;
    default:
      return 502;
  }
}

class BodyTooLarge extends Error {}
/** The client went away (or the request timed out) before the body was read: nothing to answer. */
class ClientGone extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    req.on('data', (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > limit) {
        fail(new BodyTooLarge(String(size)));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (settled) return;
      settled = true;
      resolve(new Uint8Array(Buffer.concat(chunks)));
    });
    req.on('error', () => fail(new ClientGone('the request was aborted')));
    req.on('close', () => fail(new ClientGone('the connection closed before the body ended')));
  });
}

/**
 * After a 413 sent before the body was read: drop what the client still sends, up to
 * {@link MAX_DISCARD_BYTES}, then cut the connection (the response carries `Connection: close`).
 */
function discardRest(req: IncomingMessage): void {
  if (req.complete) return;
  let dropped = 0;
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > MAX_DISCARD_BYTES) req.socket.destroy();
  });
  req.on('error', () => {});
  req.resume();
}

/**
 * A media type split into its lowercase essence and its charset parameter (lowercase, unquoted).
 * Parameters follow RFC 9110 §5.6.6: a quoted value may hold `;` and `\`-escapes, so
 * `x="a;charset=latin1"` is one parameter `x`, not a charset.
 */
function parseMediaType(value: string): { essence: string; charset: string | undefined } {
  const semi = value.indexOf(';');
  const essence = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  let charset: string | undefined;
  let i = semi < 0 ? value.length : semi + 1;
  while (i < value.length) {
    // One parameter: name "=" ( token / quoted-string ), up to the next unquoted ";".
    let end = i;
    while (end < value.length && value[end] !== ';' && value[end] !== '=') end++;
    const name = value.slice(i, end).trim().toLowerCase();
    let paramValue = '';
    if (value[end] === '=') {
      let j = end + 1;
      while (j < value.length && (value[j] === ' ' || value[j] === '\t')) j++;
      if (value[j] === '"') {
        j++;
        while (j < value.length && value[j] !== '"') {
          if (value[j] === '\\' && j + 1 < value.length) j++;
          paramValue += value[j];
          j++;
        }
        j++;
        while (j < value.length && value[j] !== ';') j++;
      } else {
        const start = j;
        while (j < value.length && value[j] !== ';') j++;
        paramValue = value.slice(start, j).trim();
      }
      end = j;
    }
    if (name === 'charset') charset = paramValue.toLowerCase();
    i = end + 1;
  }
  return { essence, charset };
}

/** A header's value, percent-decoded when it can be (for a look ahead of the decoder, never an error). */
function headerText(value: string | string[] | undefined): string {
  const v = Array.isArray(value) ? (value[0] ?? '') : (value ?? '');
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

/** Charsets JSON may be read in: UTF-8 and its ASCII subset (RFC 8259 §8.1). */
const JSON_CHARSETS: ReadonlySet<string> = new Set(['utf-8', 'utf8', 'us-ascii']);

/** The CloudEvents content mode a content type selects (as `decodeHttp` decides it). */
function contentMode(essence: string): 'structured' | 'batch' | 'other-format' | 'binary' {
  if (essence === 'application/cloudevents+json' || essence === 'application/cloudevents') return 'structured';
  if (essence === 'application/cloudevents-batch+json') return 'batch';
  if (essence.startsWith('application/cloudevents')) return 'other-format';
  return 'binary';
}

/** The problem entry of one invalid batch member. */
function batchEventProblem(index: number, item: unknown, err: unknown): BatchEventProblem {
  const id = typeof item === 'object' && item !== null && typeof (item as { id?: unknown }).id === 'string';
  const base = { index, ...(id ? { id: (item as { id: string }).id } : {}) };
  if (err instanceof InvalidEventError || err instanceof InvalidIntentError) {
    return { ...base, code: err.code, attribute: err.attribute, rule: err.rule, detail: err.message };
  }
  const e = toMeshError(err);
  return {
    ...base,
    code: e.code,
    attribute: 'event',
    rule: e.code === 'PAYLOAD_TOO_LARGE' ? 'size' : 'invalid',
    detail: e.message,
  };
}

/**
 * Every problem of a batch body whose decoding failed on one member: each member validated on
 * its own (a repeated member name first, as the decoder does), so that the producer learns all of
 * them at once. Empty when the body is no JSON array.
 */
function batchProblems(body: Uint8Array, maxEventBytes: number): BatchEventProblem[] {
  let items: unknown;
  try {
    items = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch {
    return [];
  }
  if (!Array.isArray(items)) return [];
  const repeated = new Map(repeatedMembers(body, 2, MAX_BATCH_ERRORS).map((r) => [r.index, r.name]));
  const out: BatchEventProblem[] = [];
  for (let index = 0; index < items.length && out.length < MAX_BATCH_ERRORS; index++) {
    const item: unknown = items[index];
    try {
      const name = repeated.get(index);
      if (name !== undefined) throw duplicateMemberError(name);
      const ev = validateEvent(item, { maxEventBytes });
      if (ev.workload === undefined) throw workloadRequired();
    } catch (err) {
      out.push(batchEventProblem(index, item, err));
    }
  }
  return out;
}

const workloadRequired = (): InvalidIntentError =>
  new InvalidIntentError('workload', 'required', 'workload: the required attribute is missing');

/** Problems of decoded events the decoder does not check: a missing workload, a repeated id in a batch. */
function acceptanceProblems(events: readonly CloudEventJson[], batch: boolean): BatchEventProblem[] {
  const out: BatchEventProblem[] = [];
  const seen = new Map<string, number>();
  events.forEach((ev, index) => {
    if (out.length >= MAX_BATCH_ERRORS) return;
    if (ev.workload === undefined) {
      out.push(batchEventProblem(index, ev, workloadRequired()));
      return;
    }
    if (!batch) return;
    // CloudEvents identity is source + id.
    const key = `${ev.source}\n${ev.id}`;
    const first = seen.get(key);
    if (first === undefined) seen.set(key, index);
    else {
      out.push(
        batchEventProblem(
          index,
          ev,
          new InvalidEventError(
            'id',
            'unique-in-batch',
            `batch[${index}]: id ${JSON.stringify(ev.id)} from source ${JSON.stringify(ev.source)} repeats batch[${first}]`,
          ),
        ),
      );
    }
  });
  return out;
}

/** The raw HTTP/1.1 response for a request Node's parser refused (no ServerResponse exists). */
function rawProblemResponse(status: number, body: ProblemBody): string {
  const text = JSON.stringify(body);
  return `HTTP/1.1 ${status} ${TITLES[status] ?? 'Error'}\r\ncontent-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`;
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
    // Where a body that is not JSON breaks (json-syntax, json): line and column.
    if (typeof err.details.line === 'number') extra.line = err.details.line;
    if (typeof err.details.column === 'number') extra.column = err.details.column;
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

const WAIT_YES: ReadonlySet<string> = new Set(['', '1', 'true', 'yes']);
const WAIT_NO: ReadonlySet<string> = new Set(['0', 'false', 'no']);

/** `?wait=` values: a boolean, or the detail of a problem. */
function parseWait(values: readonly string[]): boolean | string {
  let wait: boolean | undefined;
  for (const raw of values) {
    const v = raw.trim().toLowerCase();
    const w = WAIT_YES.has(v) ? true : WAIT_NO.has(v) ? false : undefined;
    if (w === undefined) {
      return `query parameter wait=${JSON.stringify(raw)} is not a boolean; use wait=1 (or true, yes) or wait=0 (or false, no)`;
    }
    if (wait !== undefined && wait !== w) return 'query parameter wait is given twice with different values';
    wait = w;
  }
  return wait ?? false;
}

function positiveIntOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new ConfigError(name, `must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/** How long `?wait=1` waits for `event`: its latency budget, else `fallbackMs`; at most `maxMs`. */
function waitBudgetMs(event: CloudEventJson, fallbackMs: number, maxMs: number): number {
  const raw = event.latencybudgetms;
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number(raw) : Number.NaN;
  return Math.min(Number.isInteger(n) && n > 0 ? n : fallbackMs, maxMs);
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
  const maxWaitMs = positiveIntOption('maxWaitMs', options.maxWaitMs, router.options.httpMaxWaitMs);
  const logger = (options.logger ?? noopLogger).child({ component: 'http-ingress' });
  const retryAfterS = String(Math.max(1, Math.ceil(router.options.nakDelayMs / 1000)));
  const auth = resolveHttpIngressAuth(options.auth);
  const requestTimeoutMs = positiveIntOption(
    'requestTimeoutMs',
    options.requestTimeoutMs,
    DEFAULT_HTTP_REQUEST_TIMEOUT_MS,
  );
  const headersTimeoutMs = Math.min(
    positiveIntOption('headersTimeoutMs', options.headersTimeoutMs, DEFAULT_HTTP_HEADERS_TIMEOUT_MS),
    requestTimeoutMs,
  );
  const expectsContinue = new WeakSet<IncomingMessage>();
  const maxJsonDepth = positiveIntOption('maxJsonDepth', options.maxJsonDepth, DEFAULT_HTTP_MAX_JSON_DEPTH);

  /**
   * Whether `n` more events fit the router, checked for the request as a whole: `undefined` when
   * they do; else 429 (over capacity now: the in-flight bound, or the wait queue while work waits
   * in it) or 413 (a batch larger than the router's in-flight bound, which no retry can fit).
   * A single event keeps the router's own `overloaded()` rule; a batch must fit whole.
   */
  const roomFor = (n: number): { status: number; body: ProblemBody } | undefined => {
    if (router.overloaded()) {
      return { status: 429, body: problem(429, 'BACKPRESSURE', 'the router is over capacity; retry later') };
    }
    if (n <= 1) return undefined;
    const { maxInFlightItems, maxQueued } = router.options;
    if (n > maxInFlightItems) {
      return {
        status: 413,
        body: problem(
          413,
          'PAYLOAD_TOO_LARGE',
          `a batch of ${n} events is over the router's limit of ${maxInFlightItems} events in flight; split it into smaller batches`,
          { attribute: 'batch', rule: 'batch-size', events: n, limit: maxInFlightItems },
        ),
      };
    }
    const { inFlightItems, queued } = router.health();
    if (inFlightItems + n > maxInFlightItems || (queued > 0 && queued + n > maxQueued)) {
      return {
        status: 429,
        body: problem(
          429,
          'BACKPRESSURE',
          `the router cannot take a batch of ${n} events now (${inFlightItems} of ${maxInFlightItems} work items in flight, ${queued} of ${maxQueued} waiting); nothing of it was accepted, retry later`,
          { events: n, inFlightItems, maxInFlightItems, queued, maxQueued },
        ),
      };
    }
    return undefined;
  };

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
    const wait = parseWait(url.searchParams.getAll('wait'));
    if (typeof wait === 'string') {
      discardRest(req);
      send(res, 400, problem(400, 'INVALID_MESSAGE', wait, { attribute: 'wait', rule: 'boolean' }), {
        connection: 'close',
      });
      return;
    }
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxEventBytes) {
      send(
        res,
        413,
        problem(413, 'PAYLOAD_TOO_LARGE', `body is ${declared} bytes, over the limit of ${maxEventBytes} bytes`),
        { connection: 'close' },
      );
      discardRest(req);
      return;
    }
    const encoding = (req.headers['content-encoding'] ?? '').trim().toLowerCase();
    if (encoding !== '' && encoding !== 'identity') {
      discardRest(req);
      send(
        res,
        415,
        problem(
          415,
          'UNSUPPORTED_FORMAT',
          `content-encoding ${JSON.stringify(encoding)} is not supported; send the body uncompressed`,
          {
            rule: 'content-encoding',
          },
        ),
        { connection: 'close' },
      );
      return;
    }
    // `Expect: 100-continue`: the client sends the body only once every check above has passed.
    if (expectsContinue.has(req)) res.writeContinue();
    let body: Uint8Array;
    try {
      body = await readBody(req, maxEventBytes);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        send(res, 413, problem(413, 'PAYLOAD_TOO_LARGE', `body is over the limit of ${maxEventBytes} bytes`), {
          connection: 'close',
        });
        discardRest(req);
        return;
      }
      if (err instanceof ClientGone) return;
      throw err;
    }
    // Node keeps the first of repeated Content-Type headers and joins repeated ce- headers with
    // ", "; the decoder reads every value (`headersDistinct`) and refuses a repeat by name.
    const contentTypes = req.headersDistinct['content-type'] ?? [];
    if (contentTypes.length > 1) {
      send(
        res,
        400,
        problem(400, 'INVALID_EVENT', 'header content-type appears more than once', {
          attribute: 'datacontenttype',
          rule: 'duplicate-header',
        }),
      );
      return;
    }
    const rawContentType = contentTypes[0] ?? '';
    const media = parseMediaType(rawContentType);
    const contentType = rawContentType.toLowerCase();
    const hasCeHeaders = Object.keys(req.headers).some((h) => h.toLowerCase().startsWith('ce-'));
    const mode = contentMode(media.essence);
    if (!hasCeHeaders && mode === 'binary') {
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
    // Binary mode without Content-Type: the data's type may come from ce-datacontenttype.
    const dataMedia =
      mode === 'binary' && media.essence === '' ? parseMediaType(headerText(req.headers['ce-datacontenttype'])) : media;
    // JSON is read as UTF-8 (RFC 8259 §8.1): an event format or JSON data in another charset is refused.
    const readsJson =
      mode === 'structured' ||
      mode === 'batch' ||
      (mode === 'binary' && dataMedia.essence !== '' && isJsonContentType(dataMedia.essence));
    if (readsJson && dataMedia.charset !== undefined && !JSON_CHARSETS.has(dataMedia.charset)) {
      send(
        res,
        415,
        problem(
          415,
          'UNSUPPORTED_FORMAT',
          `charset ${JSON.stringify(dataMedia.charset)} is not supported for JSON; send UTF-8 (charset=utf-8 or none)`,
          { contentType, rule: 'charset' },
        ),
      );
      return;
    }
    if (readsJson && body.byteLength > 0) {
      const allowance = mode === 'batch' ? 2 : mode === 'structured' ? 1 : 0;
      if (jsonDeeperThan(body, maxJsonDepth + allowance)) {
        send(
          res,
          400,
          problem(
            400,
            'INVALID_EVENT',
            `data: JSON nested deeper than ${maxJsonDepth} levels (arrays and objects) is refused`,
            { attribute: 'data', rule: 'max-depth' },
          ),
        );
        return;
      }
    }
    let decoded: { mode: string; events: CloudEventJson[] };
    try {
      decoded = decodeHttp(req.headersDistinct, body, { maxEventBytes });
    } catch (err) {
      const { status, body: p } = decodeError(err);
      if (mode === 'batch' && status === 400 && typeof p.index === 'number') {
        const errors = batchProblems(body, maxEventBytes);
        if (errors.length > 0) p.errors = errors;
        // The id of the event at fault, as the checks after decoding name it.
        const id = errors.find((e) => e.index === p.index)?.id;
        if (id !== undefined && p.id === undefined) p.id = id;
      }
      send(res, status, p);
      return;
    }
    const isBatch = decoded.mode === 'batch';
    const problems = acceptanceProblems(decoded.events, isBatch);
    const first = problems[0];
    if (first !== undefined) {
      send(
        res,
        400,
        problem(400, first.code, first.detail, {
          attribute: first.attribute,
          rule: first.rule,
          ...(isBatch
            ? { index: first.index, ...(first.id !== undefined ? { id: first.id } : {}), errors: problems }
            : {}),
        }),
      );
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
    const events = decoded.events as RouterEvent[];
    const room = roomFor(events.length);
    if (room !== undefined) {
      send(res, room.status, room.body, room.status === 429 ? { 'retry-after': retryAfterS } : {});
      return;
    }
    // Tenant rate limits: every event counts; a request over its tenant's limit is refused whole.
    const perTenant = new Map<string, number>();
    for (const ev of events) {
      if (typeof ev.tenant === 'string') perTenant.set(ev.tenant, (perTenant.get(ev.tenant) ?? 0) + 1);
    }
    for (const [tenant, count] of perTenant) {
      const admission = await router.admit(tenant, count);
      if (!admission.allowed) {
        send(
          res,
          429,
          problem(
            429,
            'BUDGET_EXCEEDED',
            `tenant ${JSON.stringify(tenant)} is over its rate limit of ${admission.limit} events per ${admission.windowMs} ms`,
            {
              attribute: 'tenant',
              rule: 'rate-limit',
              tenant,
              limit: admission.limit,
              windowMs: admission.windowMs,
              retryAfterMs: admission.retryAfterMs,
            },
          ),
          { 'retry-after': String(Math.max(1, Math.ceil(admission.retryAfterMs / 1000))) },
        );
        return;
      }
    }
    // The rate-limit check may have waited on the store, while other requests took room.
    const stillRoom = perTenant.size > 0 ? roomFor(events.length) : undefined;
    if (stillRoom !== undefined) {
      send(res, stillRoom.status, stillRoom.body, stillRoom.status === 429 ? { 'retry-after': retryAfterS } : {});
      return;
    }
    try {
      if (!wait) {
        await Promise.all(events.map((ev) => router.submit(ev)));
        if (decoded.mode === 'batch') send(res, 202, { ids: events.map((e) => e.id) });
        else send(res, 202, { id: events[0]?.id });
        return;
      }
      const answers = await Promise.all(
        events.map((ev) => router.submit(ev, { waitMs: waitBudgetMs(ev, defaultWaitMs, maxWaitMs) })),
      );
      const rendered = answers.map((a, i) => {
        const ev = events[i] as RouterEvent;
        if (a) return answerBody(a);
        const ms = waitBudgetMs(ev, defaultWaitMs, maxWaitMs);
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
      // Name the attribute and rule of an invalid event found after decoding (a re-sent id, ...).
      const named =
        typeof e.details?.attribute === 'string' && typeof e.details.rule === 'string'
          ? { attribute: e.details.attribute, rule: e.details.rule }
          : {};
      send(
        res,
        status,
        problem(status, e.code, e.message, named),
        status === 503 ? { 'retry-after': retryAfterS } : {},
      );
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      req.resume();
      send(
        res,
        400,
        problem(400, 'INVALID_MESSAGE', `the request target ${JSON.stringify(req.url)} is not a valid URL`, {
          rule: 'request-target',
        }),
        { connection: 'close' },
      );
      return;
    }
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
      // Every kind of bad input is answered above; what lands here is a fault of ours.
      const e = err instanceof MeshError ? err : toMeshError(err);
      logger.error('http ingress failure', { error: e.message, method: req.method, url: req.url });
      if (!res.headersSent && !res.destroyed) {
        send(res, 500, problem(500, 'INTERNAL', `the request could not be handled: ${e.message}`));
      } else res.destroy();
    });
  };
  const serverOptions = {
    requestTimeout: requestTimeoutMs,
    headersTimeout: headersTimeoutMs,
    // How often Node checks those timeouts (its default, 30 s, would let a short timeout run long).
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(headersTimeoutMs / 4))),
  };
  const server: Server =
    auth?.kind === 'mtls'
      ? createHttpsServer(
          {
            ...serverOptions,
            cert: auth.cert,
            key: auth.key,
            ca: auth.ca,
            requestCert: true,
            rejectUnauthorized: true,
          },
          listener,
        )
      : createServer(serverOptions, listener);
  // Node drops every header after the 2000th (its default maxHeadersCount) without a word: an
  // intent attribute (`ce-residency`) behind 2000 other headers would vanish. The header block
  // stays bounded by Node's maxHeaderSize (16 KiB, else 431), so no count limit is needed.
  server.maxHeadersCount = 0;
  // Answer `Expect: 100-continue` only after the checks that need no body (an over-limit
  // Content-Length gets its 413 before the client sends anything). The connection closes after
  // such a request, so that a client that never sends the body cannot leave it half-read.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    expectsContinue.add(req);
    res.shouldKeepAlive = false;
    listener(req, res);
  });
  // Requests Node's parser refuses (framing, oversized headers, timeouts) get a problem body too.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const pending = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || pending?.headersSent) {
      socket.destroy();
      return;
    }
    let status: number;
    let body: ProblemBody;
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      status = 408;
      body = problem(
        408,
        'TIMEOUT',
        `the request was not received in time (headers within ${headersTimeoutMs} ms, all within ${requestTimeoutMs} ms)`,
        { rule: 'request-timeout' },
      );
    } else if (err.code === 'HPE_HEADER_OVERFLOW') {
      status = 431;
      body = problem(431, 'PAYLOAD_TOO_LARGE', 'the request headers are over the server limit', {
        rule: 'header-size',
      });
    } else {
      status = 400;
      const reason = (err as { reason?: unknown }).reason;
      body = problem(
        400,
        'INVALID_MESSAGE',
        `malformed HTTP request: ${typeof reason === 'string' ? reason : err.message}`,
        { rule: 'http-syntax' },
      );
    }
    logger.debug('http client error', { code: err.code, status });
    socket.end(rawProblemResponse(status, body));
    socket.once('finish', () => socket.destroy());
  });
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
