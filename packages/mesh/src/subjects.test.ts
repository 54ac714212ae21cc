import { describe, expect, it } from 'vitest';
import { DEFAULT_TENANT_TOKEN, eventBucket, meshNames } from './subjects.js';

describe('meshNames outcome subjects', () => {
  it('puts outcome questions under <prefix>.outcome.<tenant>, the tenant token as for ingress', () => {
    const names = meshNames();
    expect(names.outcomeSubject('acme')).toBe('meshroute.outcome.acme');
    expect(names.outcomeSubject()).toBe(`meshroute.outcome.${DEFAULT_TENANT_TOKEN}`);
    expect(names.outcomeSubject('')).toBe('meshroute.outcome._');
    expect(names.outcomeWildcard).toBe('meshroute.outcome.*');
    // Same tenant token as the ingress subject of the event the question is about.
    expect(names.outcomeSubject(undefined).split('.').at(-1)).toBe(names.ingressSubject(undefined).split('.').at(-1));
  });

  it('re-roots the outcome subjects with the prefix', () => {
    const names = meshNames('edge');
    expect(names.outcomeSubject('t1')).toBe('edge.outcome.t1');
    expect(names.outcomeWildcard).toBe('edge.outcome.*');
  });
});

describe('eventBucket', () => {
  it('is three hex digits, stable (FNV-1a of the UTF-8 id, low 12 bits), and spreads ids over the buckets', () => {
    // FNV-1a 32 of "" is 0x811c9dc5, of "a" 0xe40c292c.
    expect(eventBucket('')).toBe('dc5');
    expect(eventBucket('a')).toBe('92c');
    expect(eventBucket('é')).toMatch(/^[0-9a-f]{3}$/);
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) seen.add(eventBucket(`evt-${i}`));
    expect(seen.size).toBeGreaterThan(4000);
  });

  it('puts decision and dead-letter records one level below the tenant, and filters by event across tenants', () => {
    const n = meshNames();
    const b = eventBucket('1234');
    expect(n.decisionSubject('acme', '1234')).toBe(`meshroute.decisions.acme.${b}`);
    expect(n.decisionSubject(undefined, '1234')).toBe(`meshroute.decisions._.${b}`);
    expect(n.decisionsByEventFilter('1234')).toBe(`meshroute.decisions.*.${b}`);
    expect(n.deadLetterEventSubject('acme', '1234')).toBe(`meshroute.dlq.acme.${b}`);
    expect(n.deadLettersByEventFilter('1234')).toBe(`meshroute.dlq.*.${b}`);
  });
});
