import { describe, expect, it } from 'vitest';
import { DEFAULT_TENANT_TOKEN, meshNames } from './subjects.js';

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
