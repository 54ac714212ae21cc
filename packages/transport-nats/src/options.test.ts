import { ConfigError, meshNames } from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import { mapNatsStatus, natsClientOptions } from './connection.js';
import { DEFAULT_MAX_RECONNECT_ATTEMPTS, DEFAULT_NATS_URL, resolveNatsOptions } from './options.js';
import { meshStreamPlan, resolveProvisionOptions } from './provision.js';
import { eventMsgId } from './publish.js';

const SEED = 'SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('resolveNatsOptions', () => {
  it('fills every default', () => {
    const o = resolveNatsOptions();
    expect(o.servers).toEqual([DEFAULT_NATS_URL]);
    expect(o.maxReconnectAttempts).toBe(DEFAULT_MAX_RECONNECT_ATTEMPTS);
    expect(o.auth).toEqual({ kind: 'none' });
    expect(o.inboxPrefix).toBe(meshNames().replyPrefix);
  });

  it('splits comma-separated servers and accepts host:port', () => {
    expect(resolveNatsOptions({ servers: 'nats://a:4222, b:4223' }).servers).toEqual(['nats://a:4222', 'b:4223']);
  });

  it('names the option at fault', () => {
    expect(configError(() => resolveNatsOptions({ servers: [] })).option).toBe('servers');
    expect(configError(() => resolveNatsOptions({ servers: 'http://x:1' })).option).toBe('servers');
    expect(configError(() => resolveNatsOptions({ user: 'u' })).option).toBe('pass');
    expect(configError(() => resolveNatsOptions({ pass: 'p' })).option).toBe('user');
    expect(configError(() => resolveNatsOptions({ user: 'u', pass: 'p', token: 't' })).message).toContain(
      'user/pass and token',
    );
    expect(configError(() => resolveNatsOptions({ nkeySeed: 'UABC' })).option).toBe('nkeySeed');
    expect(configError(() => resolveNatsOptions({ creds: 'hello' })).option).toBe('creds');
    expect(configError(() => resolveNatsOptions({ tls: { certFile: 'c.pem' } })).option).toBe('tls.keyFile');
    expect(configError(() => resolveNatsOptions({ maxReconnectAttempts: -2 })).option).toBe('maxReconnectAttempts');
    expect(configError(() => resolveNatsOptions({ reconnectTimeWaitMs: 0 })).option).toBe('reconnectTimeWaitMs');
    expect(configError(() => resolveNatsOptions({ inboxPrefix: 'a b' })).option).toBe('inboxPrefix');
  });

  it('maps each authentication method onto the client options', () => {
    const up = natsClientOptions(resolveNatsOptions({ user: 'u', pass: 'p' }));
    expect([up.user, up.pass, up.authenticator]).toEqual(['u', 'p', undefined]);
    expect(natsClientOptions(resolveNatsOptions({ token: 's3cret' })).token).toBe('s3cret');
    const nk = natsClientOptions(resolveNatsOptions({ nkeySeed: SEED }));
    const auth = (nk.authenticator as (nonce?: string) => { nkey?: string; sig?: string })('nonce');
    expect(auth.nkey).toMatch(/^U[A-Z2-7]{55}$/);
    expect(auth.sig).toBeTruthy();
    const tls = natsClientOptions(resolveNatsOptions({ tls: { caFile: '/ca.pem' } }));
    expect(tls.tls).toEqual({ caFile: '/ca.pem' });
  });
});

describe('mapNatsStatus', () => {
  it('maps client statuses to typed mesh events', () => {
    expect(mapNatsStatus({ type: 'disconnect', server: 's:1' })).toEqual({ type: 'disconnected', server: 's:1' });
    expect(mapNatsStatus({ type: 'reconnect', server: 's:1' })).toEqual({ type: 'reconnected', server: 's:1' });
    expect(mapNatsStatus({ type: 'reconnecting' })).toEqual({ type: 'reconnecting' });
    expect(mapNatsStatus({ type: 'ldm', server: 's:1' })).toEqual({ type: 'ldm', server: 's:1' });
    expect(mapNatsStatus({ type: 'close' })).toEqual({ type: 'closed' });
    expect(mapNatsStatus({ type: 'ping', pendingPings: 1 })).toBeUndefined();
    const e = mapNatsStatus({ type: 'error', error: new Error('boom') });
    expect(e?.type === 'error' && e.error.code).toBe('TRANSPORT_ERROR');
  });
});

describe('eventMsgId', () => {
  it('is stable and differs when source or id differ, without concatenation ambiguity', () => {
    const a = eventMsgId({ source: 'a b', id: 'c' });
    expect(a).toBe(eventMsgId({ source: 'a b', id: 'c' }));
    expect(a).not.toBe(eventMsgId({ source: 'a', id: 'b c' }));
    expect(a).not.toBe(eventMsgId({ source: 'a bc', id: '' }));
    expect(a).toMatch(/^ce-[0-9a-f]{64}$/);
  });
});

describe('meshStreamPlan', () => {
  it('uses work-queue retention and a de-dup window on ingress, and a durable explicit-ack consumer', () => {
    const plan = meshStreamPlan(
      resolveProvisionOptions({ duplicateWindowMs: 60_000, ingressAckWaitMs: 10_000, maxDeliver: 5 }),
    );
    expect(plan.streams.ingress).toMatchObject({
      name: 'MESHROUTE_INGRESS',
      subjects: ['meshroute.ingress.>'],
      retention: 'workqueue',
      duplicate_window: 60_000_000_000,
    });
    expect(plan.streams.results).toMatchObject({ subjects: ['meshroute.results.>'], retention: 'limits' });
    expect(plan.ingressConsumer).toMatchObject({
      durable_name: 'meshroute-routers',
      ack_policy: 'explicit',
      ack_wait: 10_000_000_000,
      max_deliver: 5,
    });
  });

  it('refuses a backoff longer than max deliver allows', () => {
    expect(
      configError(() => resolveProvisionOptions({ redeliveryBackoffMs: [1000, 2000], maxDeliver: 2 })).option,
    ).toBe('maxDeliver');
    expect(configError(() => resolveProvisionOptions({ storage: 'disk' as 'file' })).option).toBe('storage');
  });
});
