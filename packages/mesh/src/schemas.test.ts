import { describe, expect, it } from 'vitest';
import { ErrorCode } from './errors.js';
import { type DecisionRecord, decodeMessage, encodeMessage } from './schemas.js';

const record = (sections: Pick<DecisionRecord, 'bundle' | 'engine'>): DecisionRecord => ({
  schema: 'meshroute.decision/v1',
  decisionId: 'd-1',
  time: '2026-11-22T00:00:00.000Z',
  routerId: 'r-1',
  ...sections,
  event: { id: 'e-1', type: 't', source: '/s', attributes: { residency: 'eu' } },
  attempt: 1,
  candidates: 2,
  registryRevision: 7,
  excluded: [{ agentId: 'us-1', rules: ['eu-residency/in-eu'] }],
  topK: [{ agentId: 'de-1', score: 0.9 }],
  chosen: { agentId: 'de-1', region: 'eu-central', jurisdiction: 'DE' },
  outcome: 'routed',
  shadow: [],
  evaluationUs: 12,
});

const frozenSections = () => ({
  bundle: Object.freeze({
    digest: 'sha256:abc',
    policies: Object.freeze([
      Object.freeze({ name: 'eu-residency', version: 1, hash: 'sha256:1', mode: 'enforce' as const }),
    ]),
  }) as DecisionRecord['bundle'],
  engine: Object.freeze({ name: 'cel', version: '1.0.0' }),
});

describe('encodeMessage of decision records', () => {
  it('round-trips a record whose bundle and engine sections are shared and frozen, every time', () => {
    const sections = frozenSections();
    for (const id of ['d-1', 'd-2']) {
      const r = { ...record(sections), decisionId: id };
      expect(decodeMessage('meshroute.decision/v1', encodeMessage('meshroute.decision/v1', r))).toEqual(r);
    }
  });

  it('round-trips a record with plain (unfrozen) sections, validating them on each encode', () => {
    const sections = { bundle: { digest: 'sha256:abc', policies: [] }, engine: { name: 'cel', version: '1' } };
    const r = record(sections);
    expect(decodeMessage('meshroute.decision/v1', encodeMessage('meshroute.decision/v1', r))).toEqual(r);
    (sections.bundle as { digest: unknown }).digest = 42;
    expect(() => encodeMessage('meshroute.decision/v1', r)).toThrow(/bundle\.digest/);
  });

  it('names every problem: in the record and in its sections', () => {
    const bad = {
      ...record({
        bundle: { digest: 'x', policies: [{ name: 'p' }] } as never,
        engine: Object.freeze({ name: 1 }) as never,
      }),
      outcome: 'maybe',
    } as never;
    let thrown: unknown;
    try {
      encodeMessage('meshroute.decision/v1', bad);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code: ErrorCode.INVALID_MESSAGE });
    const issues = (thrown as { issues: string[] }).issues.join('\n');
    expect(issues).toMatch(/^outcome:/m);
    expect(issues).toMatch(/^bundle\.policies\.0\.version:/m);
    expect(issues).toMatch(/^engine\.name:/m);
    // A frozen section that failed is not remembered as valid.
    expect(() => encodeMessage('meshroute.decision/v1', bad)).toThrow(/engine\.name/);
  });
});

describe('decodeMessage on bytes that are not a JSON message', () => {
  it('says where the JSON breaks, and tells invalid UTF-8 apart', () => {
    const bad = (bytes: Uint8Array) => {
      try {
        decodeMessage('meshroute.capacity/v1', bytes);
      } catch (e) {
        return e;
      }
      throw new Error('decoded');
    };
    expect(bad(new TextEncoder().encode('{"agentId": "a",\n "freeSlots": }'))).toMatchObject({
      code: ErrorCode.INVALID_MESSAGE,
      issues: ['(root): not JSON: line 2, column 15: unexpected "}", expected a value'],
    });
    expect(bad(new Uint8Array([0x7b, 0xff, 0x7d]))).toMatchObject({
      code: ErrorCode.INVALID_MESSAGE,
      issues: [expect.stringMatching(/^\(root\): not UTF-8: /)],
    });
  });
});
