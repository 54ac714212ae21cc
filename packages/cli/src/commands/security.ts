/**
 * `meshroute security init`: NATS users and per-subject permissions for a mesh.
 *
 * The output is a static nats-server configuration (works with nats-server 2.9+, no operator or
 * resolver needed): one nkey user per identity inside `authorization { users = [...] }`, each with
 * `permissions { publish, subscribe, allow_responses }` derived from {@link meshNames}. Only the
 * public keys go into the server configuration; every identity gets its seed file (mode 0600).
 * Include `auth.conf` (and `tls.conf`) from the server configuration; JetStream stays enabled for
 * the global account these users live in.
 *
 * Roles:
 * - `producer`: publish CloudEvents to `<prefix>.ingress.<tenant>` and ask for the outcome of a
 *   re-sent event on `<prefix>.outcome.<tenant>`, for its own tenants only, and receive on its own
 *   inbox (`_INBOX_<prefix>.producer.<name>.>`): JetStream acks and outcomes.
 * - `agent`: receive only its own work (`<prefix>.work.<id>`), answer it (`allow_responses`),
 *   publish only its own capacity (`<prefix>.capacity.<id>`), read the workloads KV bucket and
 *   the artifacts Object Store.
 * - `router`: dispatch work, read capacity, publish results, decisions and dead letters, reply to
 *   producers, answer their outcome questions (`<prefix>.outcome.*`), and the JetStream API
 *   (routers provision and consume the mesh).
 * - `operator`: read the decisions, results and dead-letter streams and the agents bucket.
 * - `admin`: everything (provisioning, `meshroute workload register`, policy pushes).
 */

import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, type MeshNames, meshNames } from '@meshroute/mesh';
import { createUser, type KeyPair } from '@nats-io/nkeys';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

/** The roles `meshroute security init` knows. */
export const SECURITY_ROLES = ['router', 'agent', 'producer', 'operator', 'admin'] as const;

/** One role of {@link SECURITY_ROLES}. */
export type SecurityRole = (typeof SECURITY_ROLES)[number];

/** An identity to generate. */
export interface SecurityIdentitySpec {
  role: SecurityRole;
  /** User name: an agent's id, a router's id, a producer's name (letters, digits, `_` and `-`). */
  name: string;
  /** Tenants a producer may publish for (required and non-empty for producers, ignored otherwise). */
  tenants?: readonly string[];
}

/** Subject permissions of one NATS user. */
export interface SubjectPermissions {
  /** Subjects the user may publish to. */
  publish: string[];
  /** Subjects the user may subscribe to. */
  subscribe: string[];
  /** Whether the user may answer requests it received (one reply each). */
  allowResponses: boolean;
}

/** A generated identity: what the server needs (public key, permissions) and what the client needs (seed, inbox prefix). */
export interface GeneratedIdentity {
  role: SecurityRole;
  name: string;
  /** The nkey public key (`U...`), in the server configuration. */
  publicKey: string;
  /** The nkey seed (`SU...`): the secret, only in the identity's seed file. */
  seed: string;
  /**
   * Inbox prefix the identity must connect with (`inboxPrefix` of `connectMesh`): replies can
   * only reach it there.
   */
  inboxPrefix: string;
  /** Producer tenants (empty for other roles). */
  tenants: string[];
  permissions: SubjectPermissions;
}

/** Options of {@link generateSecurity}. */
export interface GenerateSecurityOptions {
  /** Subject prefix of the mesh. @default 'meshroute' */
  prefix?: string;
  identities: readonly SecurityIdentitySpec[];
  /** Key pair factory (tests may pin keys). @default createUser from `@nats-io/nkeys` */
  createKeyPair?: () => KeyPair;
}

/** What {@link generateSecurity} returns. */
export interface GeneratedSecurity {
  identities: GeneratedIdentity[];
  /** nats-server config text: `authorization { users = [...] }`. */
  authConfig: string;
}

const NAME = /^[A-Za-z0-9_-]+$/;

/** The JetStream API subjects needed to read one stream (info, direct/message get, consumers, acks). */
export function jetStreamReadSubjects(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.*`,
    `$JS.API.CONSUMER.DELETE.${stream}.*`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.*`,
    `$JS.ACK.${stream}.>`,
    `$JS.FC.${stream}.>`,
  ];
}

/** The inbox prefix of an identity: `<names.replyPrefix>.<role>.<name>`. */
export function identityInboxPrefix(names: MeshNames, role: SecurityRole, name: string): string {
  return `${names.replyPrefix}.${role}.${name}`;
}

/**
 * The subject permissions of one identity. Pure.
 * @throws ConfigError for a bad name, or a producer without tenants
 * @example rolePermissions(meshNames(), { role: 'agent', name: 'edge-1' }).subscribe
 * // ['meshroute.work.edge-1', '_INBOX_meshroute.agent.edge-1.>']
 */
export function rolePermissions(names: MeshNames, spec: SecurityIdentitySpec): SubjectPermissions {
  const { role, name } = spec;
  if (!NAME.test(name)) {
    throw new ConfigError(`--${role}`, `name ${JSON.stringify(name)} must be letters, digits, _ or -`);
  }
  const p = names.prefix;
  const inbox = `${identityInboxPrefix(names, role, name)}.>`;
  const kvStream = (bucket: string) => `KV_${bucket}`;
  const objStream = (bucket: string) => `OBJ_${bucket}`;
  switch (role) {
    case 'producer': {
      const tenants = spec.tenants ?? [];
      if (tenants.length === 0) {
        throw new ConfigError('--producer', `producer ${name} needs at least one tenant (name=tenant[,tenant])`);
      }
      for (const t of tenants) {
        if (!NAME.test(t)) {
          throw new ConfigError('--producer', `tenant ${JSON.stringify(t)} of ${name} must be letters, digits, _ or -`);
        }
      }
      return {
        publish: tenants.flatMap((t) => [names.ingressSubject(t), names.outcomeSubject(t)]),
        subscribe: [inbox],
        allowResponses: false,
      };
    }
    case 'agent':
      return {
        publish: [
          names.capacitySubject(name),
          '$JS.API.INFO',
          ...jetStreamReadSubjects(kvStream(names.buckets.workloads)),
          ...jetStreamReadSubjects(objStream(names.artifacts)),
        ],
        subscribe: [names.workSubject(name), inbox],
        allowResponses: true,
      };
    case 'router':
      return {
        publish: [
          `${p}.work.*`,
          `${p}.ingress.>`,
          `${p}.results.>`,
          `${p}.decisions.>`,
          `${p}.dlq.>`,
          `${p}.router.>`,
          `${names.replyPrefix}.>`,
          '$JS.API.>',
          '$JS.ACK.>',
          '$JS.FC.>',
          `$KV.${names.buckets.agents}.>`,
          `$KV.${names.buckets.policies}.>`,
          `$KV.${names.buckets.workloads}.>`,
          `$O.${names.artifacts}.>`,
        ],
        subscribe: [names.capacityWildcard, `${p}.router.>`, names.outcomeWildcard, `${names.replyPrefix}.>`],
        allowResponses: true,
      };
    case 'operator':
      return {
        publish: [
          '$JS.API.INFO',
          '$JS.API.STREAM.NAMES',
          '$JS.API.STREAM.LIST',
          ...jetStreamReadSubjects(names.streams.decisions),
          ...jetStreamReadSubjects(names.streams.results),
          ...jetStreamReadSubjects(names.streams.deadLetters),
          ...jetStreamReadSubjects(kvStream(names.buckets.agents)),
        ],
        subscribe: [inbox, names.capacityWildcard],
        allowResponses: false,
      };
    case 'admin':
      return { publish: ['>'], subscribe: ['>'], allowResponses: true };
    default:
      throw new ConfigError('role', `must be one of ${SECURITY_ROLES.join(', ')}, got ${JSON.stringify(role)}`);
  }
}

const q = (s: string): string => JSON.stringify(s);

/** Render the `authorization { users = [...] }` block of the server configuration. */
export function renderAuthConfig(identities: readonly GeneratedIdentity[]): string {
  const lines = [
    '# generated by `meshroute security init`: nkey users with per-subject permissions',
    '# include this file from nats-server.conf: `include ./auth.conf`',
    'authorization {',
    '  users = [',
  ];
  for (const id of identities) {
    const perms = id.permissions;
    lines.push(`    # ${id.role} ${id.name}${id.tenants.length > 0 ? ` (tenants: ${id.tenants.join(', ')})` : ''}`);
    lines.push('    {', `      nkey: ${q(id.publicKey)}`, '      permissions {');
    lines.push(`        publish { allow: [${perms.publish.map(q).join(', ')}] }`);
    lines.push(`        subscribe { allow: [${perms.subscribe.map(q).join(', ')}] }`);
    if (perms.allowResponses) lines.push('        allow_responses: true');
    lines.push('      }', '    }');
  }
  lines.push('  ]', '}');
  return `${lines.join('\n')}\n`;
}

/**
 * Generate nkey users and permissions for `identities`. Pure apart from key generation.
 * @throws ConfigError for a duplicate identity, a bad name or tenant, a producer without tenants
 */
export function generateSecurity(options: GenerateSecurityOptions): GeneratedSecurity {
  const names = meshNames(options.prefix);
  const makeKey = options.createKeyPair ?? createUser;
  const seen = new Set<string>();
  const dec = new TextDecoder();
  const identities = options.identities.map((spec): GeneratedIdentity => {
    const key = `${spec.role}/${spec.name}`;
    if (seen.has(key)) throw new ConfigError(`--${spec.role}`, `${spec.name} is given twice`);
    seen.add(key);
    const permissions = rolePermissions(names, spec);
    const kp = makeKey();
    return {
      role: spec.role,
      name: spec.name,
      publicKey: kp.getPublicKey(),
      seed: dec.decode(kp.getSeed()),
      inboxPrefix: identityInboxPrefix(names, spec.role, spec.name),
      tenants: spec.role === 'producer' ? [...(spec.tenants ?? [])] : [],
      permissions,
    };
  });
  return { identities, authConfig: renderAuthConfig(identities) };
}

/** TLS settings for the server (`tls.conf`). */
export interface ServerTlsFiles {
  certFile: string;
  keyFile: string;
  /** CA of client certificates; with `verify`, clients must present one (mutual TLS). */
  caFile?: string;
  verify?: boolean;
}

/** Render the server's `tls { ... }` block. */
export function renderTlsConfig(tls: ServerTlsFiles): string {
  const lines = ['# generated by `meshroute security init`', 'tls {'];
  lines.push(`  cert_file: ${q(tls.certFile)}`, `  key_file: ${q(tls.keyFile)}`);
  if (tls.caFile !== undefined) lines.push(`  ca_file: ${q(tls.caFile)}`);
  if (tls.verify) lines.push('  verify: true');
  lines.push('  timeout: 2', '}');
  return `${lines.join('\n')}\n`;
}

/** The manifest (`identities.json`) written next to the seeds: no secrets, only file names. */
export interface IdentityManifestEntry {
  role: SecurityRole;
  name: string;
  publicKey: string;
  /** Seed file, relative to the output directory. */
  seedFile: string;
  inboxPrefix: string;
  tenants: string[];
  permissions: SubjectPermissions;
}

/** File name of an identity's seed. */
export function seedFileName(role: SecurityRole, name: string): string {
  return `${role}-${name}.nk`;
}

/**
 * Write the output of {@link generateSecurity} to `dir`: `auth.conf`, `tls.conf` (when `tls` is
 * given), one `<role>-<name>.nk` seed per identity (mode 0600) and `identities.json`.
 * @throws ConfigError when `dir` already holds an `auth.conf` and `force` is not set
 */
export function writeSecurity(
  dir: string,
  generated: GeneratedSecurity,
  options: { tls?: ServerTlsFiles; force?: boolean } = {},
): IdentityManifestEntry[] {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!options.force && existsSync(join(dir, 'auth.conf'))) {
    throw new ConfigError('--out', `${dir} already holds an auth.conf (use --force to replace every key)`);
  }
  writeFileSync(join(dir, 'auth.conf'), generated.authConfig, { mode: 0o600 });
  if (options.tls !== undefined) writeFileSync(join(dir, 'tls.conf'), renderTlsConfig(options.tls));
  const manifest = generated.identities.map((id): IdentityManifestEntry => {
    const seedFile = seedFileName(id.role, id.name);
    const path = join(dir, seedFile);
    writeFileSync(path, `${id.seed}\n`, { mode: 0o600 });
    chmodSync(path, 0o600);
    return {
      role: id.role,
      name: id.name,
      publicKey: id.publicKey,
      seedFile,
      inboxPrefix: id.inboxPrefix,
      tenants: id.tenants,
      permissions: id.permissions,
    };
  });
  writeFileSync(join(dir, 'identities.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Parse `name=tenant[,tenant...]`. */
export function parseProducerFlag(value: string): SecurityIdentitySpec {
  const eq = value.indexOf('=');
  if (eq <= 0 || eq === value.length - 1) {
    throw new ConfigError('--producer', `expected name=tenant[,tenant], got ${JSON.stringify(value)}`);
  }
  const tenants = value
    .slice(eq + 1)
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  return { role: 'producer', name: value.slice(0, eq), tenants };
}

interface InitFlags {
  out: string;
  prefix: string;
  router: string[];
  agent: string[];
  producer: string[];
  operator: string[];
  admin: string[];
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsVerify?: boolean;
  force?: boolean;
  json?: boolean;
}

/** Register `meshroute security init`. */
export function register(program: Command, ctx: CliContext): void {
  const security = program.command('security').description('mesh security: NATS users and permissions');
  security
    .command('init')
    .description(
      'generate nkey users with per-subject permissions (auth.conf for nats-server), one seed file per identity',
    )
    .requiredOption('--out <dir>', 'output directory (auth.conf, tls.conf, <role>-<name>.nk, identities.json)')
    .option('--prefix <prefix>', 'subject prefix of the mesh', 'meshroute')
    .option('--router <id>', 'a router (repeatable)', collect, [])
    .option('--agent <id>', 'an agent (repeatable)', collect, [])
    .option('--producer <name=tenant,...>', 'a producer and the tenants it may publish for (repeatable)', collect, [])
    .option('--operator <name>', 'an operator: reads decisions, results, dead letters (repeatable)', collect, [])
    .option('--admin <name>', 'an administrator with every permission (repeatable)', collect, [])
    .option('--tls-cert <file>', 'server certificate (writes tls.conf)')
    .option('--tls-key <file>', 'server private key')
    .option('--tls-ca <file>', 'CA of client certificates')
    .option('--tls-verify', 'require client certificates (mutual TLS)')
    .option('--force', 'replace an existing auth.conf and its keys')
    .option('--json', 'print the manifest as JSON')
    .action((flags: InitFlags) => {
      const specs: SecurityIdentitySpec[] = [
        ...flags.admin.map((name) => ({ role: 'admin' as const, name })),
        ...flags.router.map((name) => ({ role: 'router' as const, name })),
        ...flags.operator.map((name) => ({ role: 'operator' as const, name })),
        ...flags.agent.map((name) => ({ role: 'agent' as const, name })),
        ...flags.producer.map(parseProducerFlag),
      ];
      if (specs.length === 0) {
        throw new ConfigError(
          '--out',
          'no identities: give at least one --router, --agent, --producer, --operator or --admin',
        );
      }
      let tls: ServerTlsFiles | undefined;
      if (flags.tlsCert !== undefined || flags.tlsKey !== undefined) {
        if (flags.tlsCert === undefined || flags.tlsKey === undefined) {
          throw new ConfigError('--tls-cert', '--tls-cert and --tls-key go together');
        }
        tls = {
          certFile: resolve(flags.tlsCert),
          keyFile: resolve(flags.tlsKey),
          ...(flags.tlsCa !== undefined ? { caFile: resolve(flags.tlsCa) } : {}),
          ...(flags.tlsVerify ? { verify: true } : {}),
        };
        if (tls.verify && tls.caFile === undefined) {
          throw new ConfigError('--tls-verify', 'mutual TLS needs --tls-ca (the CA of client certificates)');
        }
      }
      const generated = generateSecurity({ prefix: flags.prefix, identities: specs });
      const manifest = writeSecurity(resolve(flags.out), generated, {
        ...(tls !== undefined ? { tls } : {}),
        ...(flags.force ? { force: true } : {}),
      });
      if (flags.json) {
        ctx.stdout.write(`${JSON.stringify(manifest)}\n`);
        return;
      }
      ctx.stdout.write(`wrote ${join(flags.out, 'auth.conf')}${tls ? ' and tls.conf' : ''}\n`);
      for (const m of manifest) {
        const extra = m.tenants.length > 0 ? ` tenants=${m.tenants.join(',')}` : '';
        ctx.stdout.write(`  ${m.role} ${m.name}: ${m.seedFile} inbox=${m.inboxPrefix}${extra}\n`);
      }
      ctx.stdout.write(
        'include auth.conf from nats-server.conf; each process connects with --nats-nkey <its .nk file> ' +
          '(keep identities.json beside the seeds: the inbox prefix is read from it)\n',
      );
    });
}
