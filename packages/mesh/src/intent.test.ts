import { describe, expect, it } from 'vitest';
import { InvalidIntentError } from './errors.js';
import { intentToAttributes, parseIntent, parseResidency } from './intent.js';

describe('parseIntent', () => {
  it('reads every intent attribute from header strings', () => {
    const intent = parseIntent({
      residency: 'eu, CH',
      latencybudgetms: '50',
      carbonmax: '200',
      costmax: '0.25',
      workload: 'checksum',
      tenant: 'acme',
      deadline: '2026-11-22T18:00:00Z',
      pii: 'true',
    });
    expect(intent.residency?.has('DE')).toBe(true);
    expect(intent.residency?.has('CH')).toBe(true);
    expect(intent.residency?.has('NO')).toBe(false);
    expect(intent.latencyBudgetMs).toBe(50);
    expect(intent.carbonMax).toBe(200);
    expect(intent.costMax).toBe('0.25');
    expect(intent.deadlineMs).toBe(Date.parse('2026-11-22T18:00:00Z'));
    expect(intent.pii).toBe(true);
  });

  it('shares a parsed residency between events without letting one consumer widen it', () => {
    const first = parseIntent({ residency: 'eu' });
    const widened = first.residency as Set<string>;
    expect(() => widened.add('US')).toThrow(TypeError);
    expect(() => widened.delete('DE')).toThrow(TypeError);
    expect(() => widened.clear()).toThrow(TypeError);
    expect(() => (first.residencyTerms as string[]).push('us')).toThrow(TypeError);
    const second = parseIntent({ residency: 'eu' });
    expect(second.residency?.has('US')).toBe(false);
    expect(second.residency?.has('DE')).toBe(true);
    expect(second.residency?.size).toBe(27);
    // The exported parser still hands out a set of the caller's own.
    const own = parseResidency('eu').allowed;
    own.add('US');
    expect(parseIntent({ residency: 'eu' }).residency?.has('US')).toBe(false);
  });

  it('expands eea to the EU plus Iceland, Liechtenstein and Norway', () => {
    const { allowed } = parseResidency('eea');
    expect(allowed.size).toBe(30);
    expect(allowed.has('NO')).toBe(true);
  });

  it.each([
    ['residency', { residency: 'UK' }, 'iso3166'],
    ['residency', { residency: 'eu,,de' }, 'list'],
    ['latencybudgetms', { latencybudgetms: '5.5' }, 'integer'],
    ['latencybudgetms', { latencybudgetms: '0' }, 'range'],
    ['carbonmax', { carbonmax: '99999999999' }, 'integer'],
    ['costmax', { costmax: '-1' }, 'decimal'],
    ['workload', { workload: 'Bad Name' }, 'name'],
    ['deadline', { deadline: '2026-02-30T00:00:00Z' }, 'rfc3339'],
    ['pii', { pii: 'yes' }, 'boolean'],
  ])('rejects an invalid %s naming the attribute', (attribute, attrs, rule) => {
    try {
      parseIntent(attrs);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidIntentError);
      expect((err as InvalidIntentError).attribute).toBe(attribute);
      expect((err as InvalidIntentError).rule).toBe(rule);
      expect((err as InvalidIntentError).code).toBe('INVALID_INTENT');
    }
  });

  it('builds attributes from producer intent and validates them', () => {
    expect(intentToAttributes({ residency: ['eu', 'CH'], latencyBudgetMs: 50, pii: false })).toEqual({
      residency: 'eu,CH',
      latencybudgetms: 50,
      pii: false,
    });
    expect(() => intentToAttributes({ carbonMax: -3 })).toThrow(/carbonmax/);
  });
});
