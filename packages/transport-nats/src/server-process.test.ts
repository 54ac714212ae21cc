import { existsSync, readFileSync } from 'node:fs';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, type NatsServerProcess, NatsServerStartError, spawnNatsServer } from './server-process.js';

describe('spawnNatsServer', () => {
  const started: NatsServerProcess[] = [];
  afterAll(async () => {
    for (const s of started) await s.stop();
  });

  it('starts JetStream from a config file, keeps the file store across restart() on the same port', async () => {
    const s = await spawnNatsServer({ jetstream: true, serverName: 'solo', httpPort: 0 });
    started.push(s);
    expect(s.url).toBe(`nats://127.0.0.1:${s.port}`);
    expect(s.pid).toBeTypeOf('number');
    const conf = readFileSync(s.configFile, 'utf8');
    expect(conf).toContain('jetstream {');
    expect(conf).toContain(`port: ${s.port}`);
    expect(conf).toContain('server_name: "solo"');

    const health = await fetch(`${s.monitorUrl}/healthz`);
    expect(health.status).toBe(200);

    let nc = await connect({ servers: s.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'KEEP', subjects: ['keep.>'] });
    const js = jetstream(nc);
    for (let i = 0; i < 5; i++) await js.publish('keep.x', `m${i}`);
    await nc.close();

    const { port, storeDir } = s;
    const oldPid = s.pid;
    await s.restart();
    expect(s.port).toBe(port);
    expect(s.storeDir).toBe(storeDir);
    expect(s.pid).not.toBe(oldPid);

    nc = await connect({ servers: s.url });
    const info = await (await jetstreamManager(nc)).streams.info('KEEP');
    expect(info.state.messages).toBe(5);
    await nc.close();
  });

  it('kill() sends a signal and keeps the directory; stop() removes its own temporary directory', async () => {
    const s = await spawnNatsServer({ jetstream: true });
    started.push(s);
    await s.kill('SIGKILL');
    expect(s.running()).toBe(false);
    expect(s.pid).toBeUndefined();
    expect(existsSync(s.dir)).toBe(true);
    await s.restart();
    expect(s.running()).toBe(true);
    await s.stop();
    expect(existsSync(s.dir)).toBe(false);
    await expect(s.restart()).rejects.toBeInstanceOf(NatsServerStartError);
  });

  it('surfaces the server log tail when the config is refused', async () => {
    const err = await spawnNatsServer({ extraConfig: 'authorization { users = [ oops' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsServerStartError);
    expect((err as Error).message).toMatch(/exited before it was ready/);
    expect((err as Error).message).toMatch(/[Pp]arse error/);
  });

  it('says how to install nats-server when the binary is missing', async () => {
    const err = await spawnNatsServer({ binary: 'nats-server-not-installed' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsServerStartError);
    expect((err as Error).message).toContain('bash scripts/setup.sh');
  });

  it('rejects invalid options by name', async () => {
    await expect(spawnNatsServer({ port: 70_000 })).rejects.toThrow(/port: must be an integer port/);
    await expect(spawnNatsServer({ cluster: { name: 'bad name', routes: [] } })).rejects.toThrow(/cluster.name/);
  });

  it('uses a given port, and a clash on it is reported with the log', async () => {
    const port = await freePort();
    const a = await spawnNatsServer({ port });
    started.push(a);
    expect(a.port).toBe(port);
    const err = await spawnNatsServer({ port }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsServerStartError);
    expect(String((err as NatsServerStartError).details.logTail)).toMatch(/address already in use/i);
  });
});
