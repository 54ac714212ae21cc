import { parseResidency } from '@meshroute/mesh';
import { simulatedClock } from '@meshroute/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { memoryStateStore } from './memory-state-store.js';
import type { PlacementPolicy, RouterEvent } from './policy-port.js';
import { createRouter } from './router.js';
import { capacity, cloudEvent, delivery, FakeMesh, okResult, testPolicy } from './test-support/fakes.js';

function rogueResidencyPolicy(): PlacementPolicy {
  const inner = testPolicy();
  return {
    digest: 'sha256:rogue',
    decide: (event, agents, options) => {
      const { residency: _ignored, ...rest } = event;
      return inner.decide(rest as RouterEvent, agents, options);
    },
  };
}

const JURISDICTIONS = ['DE', 'FR', 'NL', 'IE', 'NO', 'CH', 'GB', 'US', 'JP', 'SG'];
const RESIDENCIES = ['eu', 'eea', 'DE', 'FR,NL', 'eu,CH', 'US', 'CH,GB', undefined];

const agentArb = fc.record({
  jurisdiction: fc.constantFrom(...JURISDICTIONS),
  slots: fc.integer({ min: 1, max: 3 }),
  carbon: fc.integer({ min: 20, max: 800 }),
  behaviour: fc.constantFrom('ok', 'reject', 'hang', 'fail-retryable'),
});

const stepArb = fc.oneof(
  fc.record({ kind: fc.constant('event' as const), residency: fc.constantFrom(...RESIDENCIES) }),
  fc.record({ kind: fc.constant('heartbeat' as const), agent: fc.nat(), free: fc.nat({ max: 3 }) }),
  fc.record({ kind: fc.constant('silence' as const), ms: fc.integer({ min: 100, max: 4000 }) }),
);

describe('residency property', () => {
  it('never dispatches work outside its residency, whatever the agents, heartbeats and failures', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(agentArb, { minLength: 1, maxLength: 6 }),
        fc.array(stepArb, { minLength: 1, maxLength: 40 }),
        fc.boolean(),
        async (agents, steps, rogue) => {
          const clock = simulatedClock(1_700_000_000_000);
          const mesh = new FakeMesh(clock);
          const ids = agents.map((_, i) => `agent-${i}`);
          agents.forEach((a, i) => {
            mesh.agents.set(ids[i] as string, async (w) => {
              if (a.behaviour === 'ok') return okResult(w);
              if (a.behaviour === 'hang') return 'hang';
              if (a.behaviour === 'reject') {
                return {
                  ...okResult(w),
                  ok: false,
                  error: { code: 'AGENT_REJECTED', message: 'busy', retryable: true },
                };
              }
              throw new Error('transport broke');
            });
          });
          const router = createRouter({
            mesh,
            store: memoryStateStore({ clock }),
            // A rogue policy ignores residency: the router's own guard must still hold.
            policies: rogue ? rogueResidencyPolicy() : testPolicy(),
            clock,
            random: () => 0.5,
            options: { dispatchTimeoutMs: 500, maxQueueWaitMs: 2000, backoffBaseMs: 10, backoffMaxMs: 50 },
          });
          await router.start();
          const heartbeat = (i: number, free?: number) => {
            const a = agents[i] as (typeof agents)[number];
            mesh.heartbeat(
              capacity(ids[i] as string, {
                jurisdiction: a.jurisdiction,
                slots: a.slots,
                freeSlots: Math.min(a.slots, free ?? a.slots),
                carbonIntensity: a.carbon,
                sentAtMs: clock.now(),
              }),
            );
          };
          for (let i = 0; i < agents.length; i++) heartbeat(i);
          const residencyOf = new Map<string, string | undefined>();
          const pending: Promise<void>[] = [];
          let n = 0;
          for (const step of steps) {
            if (step.kind === 'event') {
              const id = `e${n++}`;
              residencyOf.set(id, step.residency);
              pending.push(
                router.handleDelivery(
                  delivery(cloudEvent(id, step.residency === undefined ? {} : { residency: step.residency })),
                ),
              );
            } else if (step.kind === 'heartbeat') {
              heartbeat(step.agent % agents.length, step.free);
            } else {
              await clock.advanceAsync(step.ms);
            }
          }
          for (let i = 0; i < 20; i++) await clock.advanceAsync(1000);
          await router.stop({ drainTimeoutMs: 0 });
          await Promise.all(pending);
          for (const w of mesh.dispatched) {
            const residency = residencyOf.get(w.event.id);
            if (residency === undefined) continue;
            const jurisdiction = agents[ids.indexOf(w.agentId)]?.jurisdiction as string;
            expect(parseResidency(residency).allowed.has(jurisdiction)).toBe(true);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
