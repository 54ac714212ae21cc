/**
 * Names on the mesh: subjects, JetStream streams, KV buckets and the Object Store bucket.
 * One place so that the router, agents, permissions (`meshroute security init`) and docs agree.
 * See `docs/architecture.md`.
 */

/** Default subject prefix. Every name below can be re-rooted with {@link meshNames}. */
export const DEFAULT_SUBJECT_PREFIX = 'meshroute';

/** The names a mesh uses, derived from one prefix. */
export interface MeshNames {
  /** Prefix of all subjects. */
  prefix: string;
  /** Producers publish CloudEvents here: `<prefix>.ingress.<tenant>`. */
  ingressSubject(tenant?: string): string;
  /** Wildcard for the ingress stream. */
  ingressWildcard: string;
  /**
   * Where an edge that already counted an event against its tenant's rate limit (the router's HTTP
   * ingress) publishes it: `<prefix>.ingress.<tenant>.admitted`, in the same stream. Producers'
   * permissions (`meshroute security init`) do not include it, so the mark cannot be forged.
   */
  admittedIngressSubject(tenant?: string): string;
  /** Work for one agent (request/reply): `<prefix>.work.<agentId>`. */
  workSubject(agentId: string): string;
  /** Capacity heartbeats: `<prefix>.capacity.<agentId>`. */
  capacitySubject(agentId: string): string;
  /** Wildcard for all capacity heartbeats. */
  capacityWildcard: string;
  /** Results: `<prefix>.results.<tenant>`. */
  resultsSubject(tenant?: string): string;
  /** A tenant's decision records are under `<prefix>.decisions.<tenant>.>` (this is the prefix). */
  decisionsSubject(tenant?: string): string;
  /**
   * Where the decision records of one event are published: `<prefix>.decisions.<tenant>.<bucket>`,
   * the bucket being {@link eventBucket} of its id, so that `meshroute decisions --event ID` reads
   * about 1/4096 of the stream (see {@link MeshNames.decisionsByEventFilter}) instead of all of it.
   */
  decisionSubject(tenant: string | undefined, eventId: string): string;
  /** Filter on the decisions stream for the records of event `eventId`, any tenant: `<prefix>.decisions.*.<bucket>`. */
  decisionsByEventFilter(eventId: string): string;
  /** A tenant's dead letters are under `<prefix>.dlq.<tenant>.>` (this is the prefix). */
  deadLetterSubject(tenant?: string): string;
  /** Where the dead letters of one event are published: `<prefix>.dlq.<tenant>.<bucket>` (as {@link MeshNames.decisionSubject}). */
  deadLetterEventSubject(tenant: string | undefined, eventId: string): string;
  /** Filter on the dead-letter stream for event `eventId`, any tenant: `<prefix>.dlq.*.<bucket>`. */
  deadLettersByEventFilter(eventId: string): string;
  /** Router liveness and control: `<prefix>.router.<routerId>`. */
  routerSubject(routerId: string): string;
  /**
   * Outcome questions (core NATS request/reply, answered by a router of the shared queue group):
   * `<prefix>.outcome.<tenant>`, the tenant token as for {@link MeshNames.ingressSubject}. A
   * producer whose re-sent event was de-duplicated by the ingress asks here for its outcome.
   */
  outcomeSubject(tenant?: string): string;
  /** Wildcard the routers serve outcome questions on: `<prefix>.outcome.*`. */
  outcomeWildcard: string;
  /** Inbox prefix for replies to producers: `_INBOX_<prefix>`. */
  replyPrefix: string;
  /** JetStream stream names. */
  streams: { ingress: string; results: string; decisions: string; deadLetters: string };
  /** The durable consumer all routers share on the ingress stream. */
  ingressConsumer: string;
  /** KV buckets. */
  buckets: { agents: string; policies: string; workloads: string };
  /** Object Store bucket for artifacts (by sha256). */
  artifacts: string;
}

/** The tenant segment used when an event carries no `tenant`. */
export const DEFAULT_TENANT_TOKEN = '_';

/** Number of event buckets in the decision and dead-letter subjects. */
export const EVENT_BUCKETS = 4096;

const utf8 = new TextEncoder();

/**
 * The subject token of an event id's bucket: FNV-1a (32-bit) of the id's UTF-8 bytes, its low 12
 * bits as three lowercase hex digits (`000`-`fff`). Bounded (4,096 subjects per tenant, not one per
 * event, which JetStream would have to index) and stable across languages.
 * @example eventBucket('1234-1234-1234') // three hex digits, the same on every router
 */
export function eventBucket(eventId: string): string {
  let h = 0x811c9dc5;
  for (const b of utf8.encode(eventId)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return (h & (EVENT_BUCKETS - 1)).toString(16).padStart(3, '0');
}

function tenantToken(tenant: string | undefined): string {
  return tenant === undefined || tenant === '' ? DEFAULT_TENANT_TOKEN : tenant;
}

/**
 * Derive every mesh name from a prefix.
 * @example meshNames().workSubject('edge-eu-1') // 'meshroute.work.edge-eu-1'
 */
export function meshNames(prefix: string = DEFAULT_SUBJECT_PREFIX): MeshNames {
  const up = prefix.toUpperCase().replace(/[^A-Z0-9_-]/g, '_');
  const low = prefix.toLowerCase().replace(/[^a-z0-9_-]/g, '_');
  return {
    prefix,
    ingressSubject: (tenant) => `${prefix}.ingress.${tenantToken(tenant)}`,
    ingressWildcard: `${prefix}.ingress.>`,
    admittedIngressSubject: (tenant) => `${prefix}.ingress.${tenantToken(tenant)}.admitted`,
    workSubject: (agentId) => `${prefix}.work.${agentId}`,
    capacitySubject: (agentId) => `${prefix}.capacity.${agentId}`,
    capacityWildcard: `${prefix}.capacity.*`,
    resultsSubject: (tenant) => `${prefix}.results.${tenantToken(tenant)}`,
    decisionsSubject: (tenant) => `${prefix}.decisions.${tenantToken(tenant)}`,
    decisionSubject: (tenant, eventId) => `${prefix}.decisions.${tenantToken(tenant)}.${eventBucket(eventId)}`,
    decisionsByEventFilter: (eventId) => `${prefix}.decisions.*.${eventBucket(eventId)}`,
    deadLetterSubject: (tenant) => `${prefix}.dlq.${tenantToken(tenant)}`,
    deadLetterEventSubject: (tenant, eventId) => `${prefix}.dlq.${tenantToken(tenant)}.${eventBucket(eventId)}`,
    deadLettersByEventFilter: (eventId) => `${prefix}.dlq.*.${eventBucket(eventId)}`,
    routerSubject: (routerId) => `${prefix}.router.${routerId}`,
    outcomeSubject: (tenant) => `${prefix}.outcome.${tenantToken(tenant)}`,
    outcomeWildcard: `${prefix}.outcome.*`,
    replyPrefix: `_INBOX_${low}`,
    streams: {
      ingress: `${up}_INGRESS`,
      results: `${up}_RESULTS`,
      decisions: `${up}_DECISIONS`,
      deadLetters: `${up}_DLQ`,
    },
    ingressConsumer: `${low}-routers`,
    buckets: { agents: `${low}-agents`, policies: `${low}-policies`, workloads: `${low}-workloads` },
    artifacts: `${low}-artifacts`,
  };
}
