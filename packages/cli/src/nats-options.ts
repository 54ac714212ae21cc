/**
 * The NATS connection flags shared by every `meshroute` command that connects: server URLs,
 * credentials (nkey seed file, `.creds` file, user/password, token), TLS files and the inbox
 * prefix. {@link addNatsOptions} declares them (each with its `MESHROUTE_NATS_*` environment
 * variable); {@link natsConnectOptions} turns the parsed flags, once, into the options of
 * `connectMesh`, or throws a {@link ConfigError} naming the flag at fault.
 *
 * With a seed file written by `meshroute security init` and no `--nats-inbox-prefix`, the inbox
 * prefix of that identity is read from the `identities.json` beside the seed: the generated
 * permissions only let an identity receive replies under its own prefix.
 */

import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ConfigError } from '@meshroute/mesh';
import { DEFAULT_NATS_URL, type NatsConnectOptions } from '@meshroute/transport-nats';
import { isSubjectToken } from '@meshroute/transport-nats/internal';
import { fromSeed } from '@nats-io/nkeys';
import { type Command, Option } from 'commander';

/** The connection flags as commander parses them (camel-cased long names). */
export interface NatsFlags {
  /** `--nats-url`: server URL(s), comma-separated. */
  natsUrl?: string;
  /** `--nats-nkey`: path of a user nkey seed file (`SU...`). */
  natsNkey?: string;
  /** `--nats-creds`: path of a `.creds` file (user JWT and seed). */
  natsCreds?: string;
  /** `--nats-user`: user name, with `--nats-password`. */
  natsUser?: string;
  /** `--nats-password`: password, with `--nats-user`. */
  natsPassword?: string;
  /** `--nats-token`: authentication token. */
  natsToken?: string;
  /** `--nats-tls-ca`: PEM file of the CA of the server certificate. */
  natsTlsCa?: string;
  /** `--nats-tls-cert`: PEM file of the client certificate (mutual TLS), with `--nats-tls-key`. */
  natsTlsCert?: string;
  /** `--nats-tls-key`: PEM file of the client key, with `--nats-tls-cert`. */
  natsTlsKey?: string;
  /** `--nats-inbox-prefix`: prefix of this connection's reply inboxes. */
  natsInboxPrefix?: string;
  /**
   * `--nats-coalesce-writes`: `on` or `off`, whether the connection coalesces its socket writes
   * (transport-nats `coalesceWrites`). Without it, each command keeps its own default (`on` for
   * `router` and `agent`, `off` for the rest).
   */
  natsCoalesceWrites?: string;
}

/** How {@link addNatsOptions} declares `--nats-url`. */
export interface AddNatsOptionsConfig {
  /**
   * `'default'`: `--nats-url` (env `MESHROUTE_NATS_URL`) defaults to {@link DEFAULT_NATS_URL};
   * `'optional'`: no default (the command decides what an absent URL means, e.g. `meshroute up`
   * starts its own server); `'none'`: the command declares `--nats-url` itself.
   * @default 'default'
   */
  url?: 'default' | 'optional' | 'none';
  /** Help text of `--nats-url`. @default 'NATS server(s), comma-separated' */
  urlDescription?: string;
}

/** The file `meshroute security init` writes beside the seeds. */
export const IDENTITIES_FILE = 'identities.json';

/**
 * Declare the NATS connection flags on `command` (each also read from its environment variable):
 * `--nats-url` (`MESHROUTE_NATS_URL`), `--nats-nkey <seed-file>` (`MESHROUTE_NATS_NKEY`),
 * `--nats-creds <file>` (`MESHROUTE_NATS_CREDS`), `--nats-user`/`--nats-password`
 * (`MESHROUTE_NATS_USER`/`MESHROUTE_NATS_PASSWORD`), `--nats-token` (`MESHROUTE_NATS_TOKEN`),
 * `--nats-tls-ca`/`--nats-tls-cert`/`--nats-tls-key` (`MESHROUTE_NATS_TLS_CA|CERT|KEY`) and
 * `--nats-inbox-prefix` (`MESHROUTE_NATS_INBOX_PREFIX`).
 * @returns `command`, for chaining
 * @example addNatsOptions(program.command('agents')).action((flags) => connectMesh({ ...natsConnectOptions(flags), name: 'x' }))
 */
export function addNatsOptions(command: Command, config: AddNatsOptionsConfig = {}): Command {
  const url = config.url ?? 'default';
  if (url !== 'none') {
    const option = new Option('--nats-url <url>', config.urlDescription ?? 'NATS server(s), comma-separated').env(
      'MESHROUTE_NATS_URL',
    );
    command.addOption(url === 'default' ? option.default(DEFAULT_NATS_URL) : option);
  }
  return command
    .addOption(
      new Option(
        '--nats-nkey <seed-file>',
        'NATS nkey seed file (e.g. <role>-<name>.nk from `meshroute security init`)',
      ).env('MESHROUTE_NATS_NKEY'),
    )
    .addOption(new Option('--nats-creds <file>', 'NATS .creds file (user JWT and seed)').env('MESHROUTE_NATS_CREDS'))
    .addOption(new Option('--nats-user <user>', 'NATS user (with --nats-password)').env('MESHROUTE_NATS_USER'))
    .addOption(new Option('--nats-password <password>', 'NATS password').env('MESHROUTE_NATS_PASSWORD'))
    .addOption(new Option('--nats-token <token>', 'NATS authentication token').env('MESHROUTE_NATS_TOKEN'))
    .addOption(
      new Option('--nats-tls-ca <file>', 'PEM CA of the NATS server certificate (enables TLS)').env(
        'MESHROUTE_NATS_TLS_CA',
      ),
    )
    .addOption(
      new Option('--nats-tls-cert <file>', 'PEM client certificate for mutual TLS (with --nats-tls-key)').env(
        'MESHROUTE_NATS_TLS_CERT',
      ),
    )
    .addOption(new Option('--nats-tls-key <file>', 'PEM client private key').env('MESHROUTE_NATS_TLS_KEY'))
    .addOption(
      new Option(
        '--nats-inbox-prefix <prefix>',
        "reply inbox prefix (default: the identity's prefix from identities.json beside --nats-nkey)",
      ).env('MESHROUTE_NATS_INBOX_PREFIX'),
    )
    .addOption(
      new Option(
        '--nats-coalesce-writes <on|off>',
        'coalesce socket writes per event-loop turn (default: on for router and agent, off otherwise)',
      ).env('MESHROUTE_NATS_COALESCE_WRITES'),
    );
}

/** Reads a file as UTF-8 text (injectable for tests). */
export type ReadTextFile = (path: string) => string;

const readText: ReadTextFile = (path) => readFileSync(path, 'utf8');

function readFlagFile(flag: string, path: string, read: ReadTextFile): string {
  try {
    return read(path);
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message;
    throw new ConfigError(flag, `cannot read ${path} (${reason})`, { cause });
  }
}

function given(value: string | undefined): value is string {
  return value !== undefined && value !== '';
}

interface ManifestEntry {
  seedFile?: unknown;
  publicKey?: unknown;
  inboxPrefix?: unknown;
}

/**
 * The inbox prefix of the identity whose seed is `seedPath`, from the `identities.json` beside it
 * (matched by seed file name, or by public key). `undefined` when there is no manifest or the
 * identity is not in it.
 * @throws ConfigError when the manifest exists but is not a `meshroute security init` manifest
 */
export function inboxPrefixFromManifest(
  seedPath: string,
  seed: string,
  read: ReadTextFile = readText,
): string | undefined {
  const manifestPath = join(dirname(seedPath), IDENTITIES_FILE);
  let text: string;
  try {
    text = read(manifestPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError('--nats-nkey', `cannot read ${manifestPath} beside the seed (${(err as Error).message})`, {
      cause: err,
    });
  }
  let entries: unknown;
  try {
    entries = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError('--nats-nkey', `${manifestPath} beside the seed is not JSON (${(cause as Error).message})`, {
      cause,
    });
  }
  if (!Array.isArray(entries)) {
    throw new ConfigError('--nats-nkey', `${manifestPath} beside the seed is not a list of identities`);
  }
  let publicKey: string | undefined;
  try {
    publicKey = fromSeed(new TextEncoder().encode(seed)).getPublicKey();
  } catch {
    publicKey = undefined;
  }
  const file = basename(seedPath);
  const entry = (entries as ManifestEntry[]).find(
    (e) => e !== null && typeof e === 'object' && (e.seedFile === file || (publicKey && e.publicKey === publicKey)),
  );
  if (entry === undefined) return undefined;
  if (typeof entry.inboxPrefix !== 'string') {
    throw new ConfigError('--nats-nkey', `${manifestPath}: the entry of ${file} has no inboxPrefix`);
  }
  return entry.inboxPrefix;
}

const SEED = /^SU[A-Z2-7]{50,}$/;

/**
 * Turn the parsed connection flags into `connectMesh` options (without `name`), reading and
 * checking every file once. Only the flags given appear in the result; `servers` is the split
 * `--nats-url` when given.
 * @throws ConfigError naming the flag: a missing or unreadable file, a seed file without a user
 *   seed, a `.creds` file without its blocks, two authentication methods, `--nats-user` without
 *   `--nats-password` (or the reverse), `--nats-tls-cert` without `--nats-tls-key` (or the
 *   reverse), a malformed inbox prefix
 * @example connectMesh({ ...natsConnectOptions(flags), name: 'meshroute-agents' })
 */
export function natsConnectOptions(flags: NatsFlags, read: ReadTextFile = readText): NatsConnectOptions {
  const out: NatsConnectOptions = {};
  if (given(flags.natsUrl)) {
    const servers = flags.natsUrl
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (servers.length === 0) throw new ConfigError('--nats-url', 'no server URL given');
    out.servers = servers;
  }

  const methods = [
    given(flags.natsNkey) ? '--nats-nkey' : undefined,
    given(flags.natsCreds) ? '--nats-creds' : undefined,
    given(flags.natsUser) || given(flags.natsPassword) ? '--nats-user/--nats-password' : undefined,
    given(flags.natsToken) ? '--nats-token' : undefined,
  ].filter((m): m is string => m !== undefined);
  if (methods.length > 1) {
    throw new ConfigError(
      methods[0] as string,
      `give one authentication method, got ${methods.join(' and ')} (flags or MESHROUTE_NATS_* variables)`,
    );
  }

  let derivedPrefix: string | undefined;
  if (given(flags.natsNkey)) {
    const path = flags.natsNkey;
    const seed = readFlagFile('--nats-nkey', path, read)
      .split(/\r?\n/)
      .map((l) => l.trim())
      .find((l) => l !== '' && !l.startsWith('#'));
    if (seed === undefined || !SEED.test(seed)) {
      throw new ConfigError('--nats-nkey', `${path} does not hold a user nkey seed (a line starting with "SU")`);
    }
    out.nkeySeed = seed;
    if (!given(flags.natsInboxPrefix)) derivedPrefix = inboxPrefixFromManifest(path, seed, read);
  } else if (given(flags.natsCreds)) {
    const text = readFlagFile('--nats-creds', flags.natsCreds, read);
    if (!text.includes('BEGIN NATS USER JWT') || !text.includes('BEGIN USER NKEY SEED')) {
      throw new ConfigError(
        '--nats-creds',
        `${flags.natsCreds} is not a NATS .creds file (needs a USER JWT and a USER NKEY SEED block)`,
      );
    }
    out.credsFile = flags.natsCreds;
  } else if (given(flags.natsUser) || given(flags.natsPassword)) {
    if (!given(flags.natsUser)) throw new ConfigError('--nats-user', '--nats-password needs --nats-user');
    if (!given(flags.natsPassword)) throw new ConfigError('--nats-password', '--nats-user needs --nats-password');
    out.user = flags.natsUser;
    out.pass = flags.natsPassword;
  } else if (given(flags.natsToken)) {
    out.token = flags.natsToken;
  }

  if (given(flags.natsTlsCert) !== given(flags.natsTlsKey)) {
    throw new ConfigError(
      given(flags.natsTlsCert) ? '--nats-tls-key' : '--nats-tls-cert',
      '--nats-tls-cert and --nats-tls-key go together (mutual TLS)',
    );
  }
  if (given(flags.natsTlsCa) || given(flags.natsTlsCert)) {
    const tls: NonNullable<NatsConnectOptions['tls']> = {};
    if (given(flags.natsTlsCa)) {
      readFlagFile('--nats-tls-ca', flags.natsTlsCa, read);
      tls.caFile = flags.natsTlsCa;
    }
    if (given(flags.natsTlsCert) && given(flags.natsTlsKey)) {
      readFlagFile('--nats-tls-cert', flags.natsTlsCert, read);
      readFlagFile('--nats-tls-key', flags.natsTlsKey, read);
      tls.certFile = flags.natsTlsCert;
      tls.keyFile = flags.natsTlsKey;
    }
    out.tls = tls;
  }

  const prefix = given(flags.natsInboxPrefix) ? flags.natsInboxPrefix : derivedPrefix;
  if (prefix !== undefined) {
    if (!prefix.split('.').every(isSubjectToken)) {
      throw new ConfigError(
        given(flags.natsInboxPrefix) ? '--nats-inbox-prefix' : '--nats-nkey',
        `${JSON.stringify(prefix)} is not a valid subject prefix (dot-separated tokens, no wildcards or spaces)`,
      );
    }
    out.inboxPrefix = prefix;
  }
  if (given(flags.natsCoalesceWrites)) {
    const v = flags.natsCoalesceWrites.trim().toLowerCase();
    if (v !== 'on' && v !== 'off') {
      throw new ConfigError(
        '--nats-coalesce-writes',
        `must be on or off, got ${JSON.stringify(flags.natsCoalesceWrites)} (flag or MESHROUTE_NATS_COALESCE_WRITES)`,
      );
    }
    out.coalesceWrites = v === 'on';
  }
  return out;
}
