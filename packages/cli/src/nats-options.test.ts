import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, meshNames } from '@meshroute/mesh';
import { Command } from 'commander';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateSecurity, writeSecurity } from './commands/security.js';
import { addNatsOptions, inboxPrefixFromManifest, type NatsFlags, natsConnectOptions } from './nats-options.js';

let dir: string;
let agentSeedFile: string;
let agentSeed: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'meshroute-nats-options-'));
  const generated = generateSecurity({
    identities: [
      { role: 'agent', name: 'edge-1' },
      { role: 'producer', name: 'acme', tenants: ['acme'] },
    ],
  });
  writeSecurity(dir, generated);
  agentSeedFile = join(dir, 'agent-edge-1.nk');
  agentSeed = generated.identities[0]?.seed as string;
  writeFileSync(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\n');
  writeFileSync(join(dir, 'client.pem'), '-----BEGIN CERTIFICATE-----\n');
  writeFileSync(join(dir, 'client.key'), '-----BEGIN PRIVATE KEY-----\n');
});

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

/** Parse `args` with a command carrying the NATS flags; returns the flags. */
function parse(args: string[], env: Record<string, string> = {}): NatsFlags {
  const saved = { ...process.env };
  for (const k of Object.keys(process.env)) if (k.startsWith('MESHROUTE_NATS_')) delete process.env[k];
  Object.assign(process.env, env);
  try {
    const cmd = addNatsOptions(new Command('x').exitOverride());
    cmd.parse(['node', 'x', ...args]);
    return cmd.opts<NatsFlags>();
  } finally {
    process.env = saved;
  }
}

describe('addNatsOptions', () => {
  it('declares every flag with its environment variable, and a default URL', () => {
    const cmd = addNatsOptions(new Command('x'));
    const help = cmd.helpInformation().replace(/\s+/g, ' ');
    for (const [flag, env] of [
      ['--nats-url', 'MESHROUTE_NATS_URL'],
      ['--nats-nkey', 'MESHROUTE_NATS_NKEY'],
      ['--nats-creds', 'MESHROUTE_NATS_CREDS'],
      ['--nats-user', 'MESHROUTE_NATS_USER'],
      ['--nats-password', 'MESHROUTE_NATS_PASSWORD'],
      ['--nats-token', 'MESHROUTE_NATS_TOKEN'],
      ['--nats-tls-ca', 'MESHROUTE_NATS_TLS_CA'],
      ['--nats-tls-cert', 'MESHROUTE_NATS_TLS_CERT'],
      ['--nats-tls-key', 'MESHROUTE_NATS_TLS_KEY'],
      ['--nats-inbox-prefix', 'MESHROUTE_NATS_INBOX_PREFIX'],
      ['--nats-coalesce-writes', 'MESHROUTE_NATS_COALESCE_WRITES'],
    ] as const) {
      expect(help).toContain(flag);
      expect(help).toContain(`env: ${env}`);
    }
    expect(parse([]).natsUrl).toBe('nats://127.0.0.1:4222');
  });

  it('reads the flags from the environment, the command line winning', () => {
    const flags = parse(['--nats-url', 'nats://a:4222'], {
      MESHROUTE_NATS_URL: 'nats://env:4222',
      MESHROUTE_NATS_NKEY: agentSeedFile,
    });
    expect(flags).toMatchObject({ natsUrl: 'nats://a:4222', natsNkey: agentSeedFile });
  });

  it("leaves --nats-url to the command with url: 'none', and without default with 'optional'", () => {
    const none = addNatsOptions(new Command('x'), { url: 'none' });
    expect(none.helpInformation()).not.toContain('--nats-url');
    const optional = addNatsOptions(new Command('x').exitOverride(), { url: 'optional' });
    optional.parse(['node', 'x']);
    expect(optional.opts<NatsFlags>().natsUrl).toBe(process.env.MESHROUTE_NATS_URL);
  });
});

describe('natsConnectOptions', () => {
  it('turns --nats-coalesce-writes on or off, leaves it out when not given, and refuses anything else', () => {
    expect(natsConnectOptions({ natsCoalesceWrites: 'on' }).coalesceWrites).toBe(true);
    expect(natsConnectOptions({ natsCoalesceWrites: 'OFF' }).coalesceWrites).toBe(false);
    expect('coalesceWrites' in natsConnectOptions({})).toBe(false);
    expect(() => natsConnectOptions({ natsCoalesceWrites: 'yes' })).toThrow(/--nats-coalesce-writes.*on or off/);
  });

  it('splits the server list and gives nothing else without credentials', () => {
    expect(natsConnectOptions({ natsUrl: 'nats://a:4222, nats://b:4222' })).toEqual({
      servers: ['nats://a:4222', 'nats://b:4222'],
    });
  });

  it('reads the seed and derives the inbox prefix from identities.json beside it', () => {
    const opts = natsConnectOptions({ natsUrl: 'nats://a:4222', natsNkey: agentSeedFile });
    expect(opts.nkeySeed).toBe(agentSeed);
    expect(opts.inboxPrefix).toBe(`${meshNames().replyPrefix}.agent.edge-1`);
  });

  it('keeps an explicit inbox prefix over the derived one', () => {
    const opts = natsConnectOptions({ natsNkey: agentSeedFile, natsInboxPrefix: 'my.inbox' });
    expect(opts.inboxPrefix).toBe('my.inbox');
  });

  it('finds the identity by public key when the seed file was renamed, and none without a manifest', () => {
    const elsewhere = mkdtempSync(join(tmpdir(), 'meshroute-nats-options-'));
    const lone = join(elsewhere, 'renamed.nk');
    writeFileSync(lone, `${agentSeed}\n`);
    expect(natsConnectOptions({ natsNkey: lone }).inboxPrefix).toBeUndefined();
    const manifest = (path: string) =>
      path.endsWith('identities.json')
        ? JSON.stringify([
            { seedFile: 'other.nk', publicKey: 'UNOPE', inboxPrefix: 'x' },
            { seedFile: 'agent-edge-1.nk', publicKey: pub(), inboxPrefix: 'by.key' },
          ])
        : '';
    expect(inboxPrefixFromManifest(lone, agentSeed, manifest)).toBe('by.key');
  });

  it('names the flag of a missing or unreadable file', () => {
    const missing = join(dir, 'nope.nk');
    let e = configError(() => natsConnectOptions({ natsNkey: missing }));
    expect(e.option).toBe('--nats-nkey');
    expect(e.message).toContain(missing);
    expect(e.message).toContain('ENOENT');
    e = configError(() => natsConnectOptions({ natsCreds: join(dir, 'nope.creds') }));
    expect(e.option).toBe('--nats-creds');
    e = configError(() => natsConnectOptions({ natsTlsCa: join(dir, 'nope.pem') }));
    expect(e.option).toBe('--nats-tls-ca');
    e = configError(() =>
      natsConnectOptions({ natsTlsCert: join(dir, 'nope.pem'), natsTlsKey: join(dir, 'client.key') }),
    );
    expect(e.option).toBe('--nats-tls-cert');
    e = configError(() => natsConnectOptions({ natsTlsCert: join(dir, 'client.pem'), natsTlsKey: join(dir, 'x.key') }));
    expect(e.option).toBe('--nats-tls-key');
  });

  it('refuses a seed file without a seed and a creds file without its blocks, never echoing the content', () => {
    const bad = join(dir, 'bad.nk');
    writeFileSync(bad, 'not-a-seed-secret\n');
    const e = configError(() => natsConnectOptions({ natsNkey: bad }));
    expect(e.option).toBe('--nats-nkey');
    expect(e.message).toMatch(/does not hold a user nkey seed/);
    expect(e.message).not.toContain('not-a-seed-secret');
    expect(configError(() => natsConnectOptions({ natsCreds: bad })).message).toMatch(/not a NATS \.creds file/);
  });

  it('refuses two authentication methods, naming both', () => {
    const e = configError(() => natsConnectOptions({ natsNkey: agentSeedFile, natsToken: 't' }));
    expect(e.option).toBe('--nats-nkey');
    expect(e.message).toMatch(/--nats-nkey and --nats-token/);
    expect(configError(() => natsConnectOptions({ natsUser: 'u', natsPassword: 'p', natsCreds: 'c' })).message).toMatch(
      /--nats-creds and --nats-user\/--nats-password/,
    );
  });

  it('needs user and password together, and certificate and key together', () => {
    expect(configError(() => natsConnectOptions({ natsUser: 'u' })).option).toBe('--nats-password');
    expect(configError(() => natsConnectOptions({ natsPassword: 'p' })).option).toBe('--nats-user');
    expect(configError(() => natsConnectOptions({ natsTlsCert: join(dir, 'client.pem') })).option).toBe(
      '--nats-tls-key',
    );
    expect(configError(() => natsConnectOptions({ natsTlsKey: join(dir, 'client.key') })).option).toBe(
      '--nats-tls-cert',
    );
  });

  it('passes user/password, token, TLS files and a checked inbox prefix', () => {
    expect(natsConnectOptions({ natsUser: 'u', natsPassword: 'p' })).toEqual({ user: 'u', pass: 'p' });
    expect(natsConnectOptions({ natsToken: 's3cret' })).toEqual({ token: 's3cret' });
    expect(
      natsConnectOptions({
        natsTlsCa: join(dir, 'ca.pem'),
        natsTlsCert: join(dir, 'client.pem'),
        natsTlsKey: join(dir, 'client.key'),
      }).tls,
    ).toEqual({ caFile: join(dir, 'ca.pem'), certFile: join(dir, 'client.pem'), keyFile: join(dir, 'client.key') });
    expect(natsConnectOptions({ natsTlsCa: join(dir, 'ca.pem') }).tls).toEqual({ caFile: join(dir, 'ca.pem') });
    expect(configError(() => natsConnectOptions({ natsInboxPrefix: 'bad.*.prefix' })).option).toBe(
      '--nats-inbox-prefix',
    );
  });
});

function pub(): string {
  const manifest = JSON.parse(readFileSync(join(dir, 'identities.json'), 'utf8')) as {
    seedFile: string;
    publicKey: string;
  }[];
  return manifest.find((m) => m.seedFile === 'agent-edge-1.nk')?.publicKey as string;
}
