/**
 * Real `meshroute` processes on a secured nats-server: the server loads the `auth.conf` that
 * `meshroute security init` writes, and the built router, agent, `workload register` and
 * `publish` log in with their generated seed files (`--nats-nkey`; the inbox prefix comes from
 * `identities.json` beside the seed). A producer's event runs end to end; the server reports no
 * permission violation on the way (the generated permissions cover what the processes really
 * do); a producer without credentials, or publishing for a tenant it does not own, is refused.
 * On a second server requiring mutual TLS, `--nats-tls-ca/--nats-tls-cert/--nats-tls-key` with
 * the admin seed connect and register a workload.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(root, 'packages/cli/dist/bin.js');
const run = promisify(execFile);

let dir: string;
let nats: TestNatsServer;
const children: ChildProcess[] = [];

/** The environment of a child: no MESHROUTE_NATS_* variables from the caller's shell. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, MESHROUTE_LOG_LEVEL: 'info' };
  for (const k of Object.keys(env)) if (k.startsWith('MESHROUTE_NATS_')) delete env[k];
  return env;
}

function seed(role: string, name: string): string {
  return join(dir, `${role}-${name}.nk`);
}

/** Start a long-running `meshroute` process; its output is collected. */
function start(args: string[]): { child: ChildProcess; out: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cleanEnv(),
  });
  children.push(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return { child, out: () => out };
}

/** Run one `meshroute` command to completion; resolves with its exit code and output. */
async function meshroute(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { env: cleanEnv(), timeout: 15_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

let router: ReturnType<typeof start>;
let agent: ReturnType<typeof start>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshroute-security-processes-'));
  const init = await meshroute([
    'security',
    'init',
    '--out',
    dir,
    '--admin',
    'admin',
    '--router',
    'router-1',
    '--agent',
    'edge-1',
    '--producer',
    'acme=acme',
  ]);
  expect(init.code, init.stderr).toBe(0);
  nats = await startNatsServer({ extraConfig: readFileSync(join(dir, 'auth.conf'), 'utf8'), logTailLines: 2_000 });

  // The admin provisions the mesh and registers the workload.
  const reg = await meshroute([
    'workload',
    'register',
    join(root, 'deploy/workloads/checksum.yaml'),
    '--nats-url',
    nats.url,
    '--nats-nkey',
    seed('admin', 'admin'),
  ]);
  expect(reg.code, reg.stderr).toBe(0);
  expect(reg.stdout).toContain('registered checksum@1.0.0');

  router = start([
    'router',
    '--nats-url',
    nats.url,
    '--nats-nkey',
    seed('router', 'router-1'),
    '--router-id',
    'router-1',
    '--http-port',
    '0',
    '--policies',
    join(root, 'policies'),
  ]);
  await waitFor('the router listening', () => router.out().includes('listening on http'), { timeoutMs: 15_000 });
  agent = start([
    'agent',
    '--backend',
    'wasm',
    '--id',
    'edge-1',
    '--region',
    'eu-central',
    '--jurisdiction',
    'DE',
    '--carbon',
    '95',
    '--heartbeat-interval-ms',
    '250',
    '--nats-url',
    nats.url,
    '--nats-nkey',
    seed('agent', 'edge-1'),
  ]);
  await waitFor(
    'the router to see agent edge-1',
    () =>
      router
        .out()
        .split('\n')
        .some((l) => l.includes('"agent joined"') && l.includes('"edge-1"')),
    { timeoutMs: 15_000 },
  );
}, 30_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await nats?.stop();
});

describe('meshroute processes with credentials from `meshroute security init`', () => {
  it("runs a producer's event end to end on a secured server, without a permission violation", async () => {
    const r = await meshroute([
      'publish',
      '--nats-url',
      nats.url,
      '--nats-nkey',
      seed('producer', 'acme'),
      '--tenant',
      'acme',
      '--workload',
      'checksum',
      '--residency',
      'eu',
      '--data-text',
      'hello',
      '--wait',
      '--timeout-ms',
      '10000',
      '--json',
    ]);
    expect(r.code, `${r.stdout}${r.stderr}\n--- router ---\n${router.out()}\n--- agent ---\n${agent.out()}`).toBe(0);
    const out = JSON.parse(r.stdout) as { ok: boolean; agent?: { id: string } };
    expect(out).toMatchObject({ ok: true, agent: { id: 'edge-1' } });
    // Every process only did what its identity may do.
    expect(nats.logTail()).not.toMatch(/Violation/i);
    expect(`${router.out()}${agent.out()}`).not.toMatch(/PERMISSION_DENIED|permissions violation/i);
  });

  it('refuses a producer without credentials, and one publishing for a tenant it does not own', async () => {
    const args = ['--workload', 'checksum', '--residency', 'eu', '--data-text', 'hi', '--wait', '--timeout-ms', '3000'];
    const anon = await meshroute(['publish', '--nats-url', nats.url, '--tenant', 'acme', ...args]);
    expect(anon.code).not.toBe(0);
    expect(anon.stderr).toMatch(/PERMISSION_DENIED|authoriz/i);

    const other = await meshroute([
      'publish',
      '--nats-url',
      nats.url,
      '--nats-nkey',
      seed('producer', 'acme'),
      '--tenant',
      'globex',
      ...args,
    ]);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/PERMISSION_DENIED|violation/i);
    // The server logs the refused publish (so the first test's clean log means something).
    await waitFor('the violation in the server log', () => /Publish Violation.*ingress\.globex/i.test(nats.logTail()), {
      timeoutMs: 5_000,
    });
  });

  it('names the flag of a missing seed file', async () => {
    const r = await meshroute(['agents', '--nats-url', nats.url, '--nats-nkey', join(dir, 'nobody.nk')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('CONFIG_ERROR: --nats-nkey: cannot read');
  });
});

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
function makeCertificates(out: string): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: out, stdio: 'pipe' });
  ssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '1',
    '-subj',
    '/CN=meshroute-test-ca',
  );
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    writeFileSync(join(out, `${name}.ext`), `${ext}\n`);
    ssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${name}`,
    );
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
    );
  }
}

describe('meshroute with mutual TLS and credentials', () => {
  it('connects with --nats-tls-ca/--nats-tls-cert/--nats-tls-key and a seed', async () => {
    const certs = mkdtempSync(join(tmpdir(), 'meshroute-tls-'));
    makeCertificates(certs);
    const tlsServer = await startNatsServer({
      extraConfig: `${readFileSync(join(dir, 'auth.conf'), 'utf8')}\ntls {\n  cert_file: ${JSON.stringify(join(certs, 'server.pem'))}\n  key_file: ${JSON.stringify(join(certs, 'server.key'))}\n  ca_file: ${JSON.stringify(join(certs, 'ca.pem'))}\n  verify: true\n  timeout: 2\n}\n`,
    });
    try {
      const common = ['--json', '--nats-url', tlsServer.url, '--nats-nkey', seed('admin', 'admin')];
      const ca = ['--nats-tls-ca', join(certs, 'ca.pem')];
      const client = ['--nats-tls-cert', join(certs, 'client.pem'), '--nats-tls-key', join(certs, 'client.key')];
      const checksum = join(root, 'deploy/workloads/checksum.yaml');
      const reg = await meshroute(['workload', 'register', checksum, ...common, ...ca, ...client]);
      expect(reg.code, reg.stderr).toBe(0);
      expect(JSON.parse(reg.stdout)).toMatchObject({ name: 'checksum', version: '1.0.0' });
      // A certificate without its key is refused before connecting. (A client that presents no
      // certificate at all is cut off by the server during the TLS handshake; the client only
      // reports that as a connect TIMEOUT after 10 s, so it is not exercised here.)
      const noKey = await meshroute([
        'workload',
        'list',
        ...common,
        ...ca,
        '--nats-tls-cert',
        join(certs, 'client.pem'),
      ]);
      expect(noKey.code).toBe(1);
      expect(noKey.stderr).toContain('CONFIG_ERROR: --nats-tls-key');
    } finally {
      await tlsServer.stop();
    }
  });
});
