/** The {@link EventSource} conformance suite (memory fake, JetStream durable consumer). */
import type { EventSource, IngressDelivery } from '@meshroute/mesh';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../wait.js';

/** What an event-source suite factory returns. */
export interface EventSourceFixture {
  /** A fresh source over an empty ingress, not started. */
  source: EventSource;
  /** Publish one raw message to the ingress the source reads. */
  publish(
    body: Uint8Array,
    options?: { headers?: Record<string, string>; replyTo?: string; admitted?: boolean },
  ): Promise<void>;
  cleanup?: () => void | Promise<void>;
}

/** Options the suite asks of the factory. */
export interface EventSourceSuiteOptions {
  /** Handlers at once. */
  maxInFlight: number;
  /** Deliveries of a message at most (JetStream's `max_deliver`); unlimited when not set. */
  maxDeliver?: number | undefined;
}

/** A factory of fresh event sources. */
export type EventSourceFactory = (options: EventSourceSuiteOptions) => EventSourceFixture | Promise<EventSourceFixture>;

const enc = new TextEncoder();
const dec = new TextDecoder();
const DEADLINE_MS = 15_000;

interface Seen {
  body: string;
  redeliveryCount: number;
  deliveriesLeft: number | undefined;
  headers: Record<string, string>;
  replyTo: string | undefined;
}

/**
 * Register the EventSource conformance tests under `describe(name)`.
 * @example runEventSourceSuite('memoryEventSource', ({ maxInFlight }) => { const s = memoryEventSource({ maxInFlight }); return { source: s, publish: async (b, o) => { s.push(b, o); } }; });
 */
export function runEventSourceSuite(name: string, factory: EventSourceFactory): void {
  describe(`EventSource conformance: ${name}`, () => {
    const fixtures: EventSourceFixture[] = [];
    const make = async (maxInFlight = 16, maxDeliver?: number) => {
      const fx = await factory({ maxInFlight, maxDeliver });
      fixtures.push(fx);
      return fx;
    };
    afterEach(async () => {
      for (const fx of fixtures.splice(0)) {
        await fx.source.close();
        await fx.cleanup?.();
      }
    });

    /** Start `fx` with `onDelivery`, recording every delivery. */
    const run = async (fx: EventSourceFixture, onDelivery: (d: IngressDelivery, seen: Seen) => Promise<void>) => {
      const seen: Seen[] = [];
      await fx.source.start(async (d) => {
        const s: Seen = {
          body: dec.decode(d.body),
          redeliveryCount: d.redeliveryCount,
          deliveriesLeft: d.deliveriesLeft,
          headers: Object.fromEntries(d.headers),
          replyTo: d.replyTo,
        };
        seen.push(s);
        await onDelivery(d, s);
      });
      return seen;
    };
    const until = (what: string, check: () => boolean) =>
      waitFor(what, () => check() || undefined, { timeoutMs: DEADLINE_MS, intervalMs: 10 });

    it('delivers body, headers and replyTo; an acked message is not delivered again', async () => {
      const fx = await make();
      const seen = await run(fx, async (d) => d.ack());
      await fx.publish(enc.encode('first'), {
        headers: { 'ce-id': 'e1', 'content-type': 'text/plain' },
        replyTo: '_INBOX.x.1',
      });
      await until('the first delivery', () => seen.length >= 1);
      expect(seen[0]).toMatchObject({ body: 'first', redeliveryCount: 0, replyTo: '_INBOX.x.1' });
      expect(seen[0]?.headers).toMatchObject({ 'ce-id': 'e1', 'content-type': 'text/plain' });
      await fx.publish(enc.encode('second'));
      await until('the second delivery', () => seen.some((s) => s.body === 'second'));
      expect(seen.map((s) => s.body)).toEqual(['first', 'second']);
      expect(seen[1]?.replyTo).toBeUndefined();
    });

    it('says which messages an edge published as admitted (counted against their rate limit already)', async () => {
      const fx = await make();
      const admitted = new Map<string, boolean | undefined>();
      await fx.source.start(async (d) => {
        admitted.set(dec.decode(d.body), d.admitted);
        await d.ack();
      });
      await fx.publish(enc.encode('from-a-producer'));
      await fx.publish(enc.encode('from-the-http-ingress'), { admitted: true });
      await until('both', () => admitted.size === 2);
      expect(admitted.get('from-a-producer')).toBeFalsy();
      expect(admitted.get('from-the-http-ingress')).toBe(true);
    });

    it("redelivers a nak'ed message with redeliveryCount + 1", async () => {
      const fx = await make();
      const seen = await run(fx, async (d, s) => {
        if (s.redeliveryCount < 2) d.nak(10);
        else await d.ack();
      });
      await fx.publish(enc.encode('retry-me'));
      await until('three deliveries', () => seen.length >= 3);
      expect(seen.slice(0, 3).map((s) => [s.body, s.redeliveryCount])).toEqual([
        ['retry-me', 0],
        ['retry-me', 1],
        ['retry-me', 2],
      ]);
    });

    it('counts deliveriesLeft down to 0 with maxDeliver, and never delivers a message handed back on its last delivery again', async () => {
      const fx = await make(1, 3);
      const seen = await run(fx, async (d, s) => {
        if (s.body === 'doomed') d.nak(10);
        else await d.ack();
      });
      await fx.publish(enc.encode('doomed'));
      await until('three deliveries', () => seen.length >= 3);
      expect(seen.map((s) => [s.redeliveryCount, s.deliveriesLeft])).toEqual([
        [0, 2],
        [1, 1],
        [2, 0],
      ]);
      // A fourth delivery would come 10 ms after the last nak, before this later message.
      await new Promise((r) => setTimeout(r, 300));
      await fx.publish(enc.encode('after'));
      await until('the later message', () => seen.some((s) => s.body === 'after'));
      expect(seen.map((s) => s.body)).toEqual(['doomed', 'doomed', 'doomed', 'after']);
    });

    it('redelivers a message whose handler threw', async () => {
      const fx = await make();
      const seen = await run(fx, async (d, s) => {
        if (s.redeliveryCount === 0) throw new Error('handler crashed');
        await d.ack();
      });
      await fx.publish(enc.encode('boom'));
      await until('the redelivery', () => seen.length >= 2);
      expect(seen[1]).toMatchObject({ body: 'boom', redeliveryCount: 1 });
    });

    it('never redelivers a terminated message, and ignores a second settlement', async () => {
      const fx = await make(1);
      const seen = await run(fx, async (d, s) => {
        if (s.body === 'poison') {
          d.term('invalid event');
          d.nak(0);
          return;
        }
        await d.ack();
        await d.ack();
        d.nak(0);
      });
      await fx.publish(enc.encode('poison'));
      await fx.publish(enc.encode('ok-1'));
      await fx.publish(enc.encode('ok-2'));
      await until('both later messages', () => seen.filter((s) => s.body.startsWith('ok')).length >= 2);
      // A redelivery after a nak(0) would have come before ok-2 with one handler at a time.
      expect(seen.map((s) => s.body)).toEqual(['poison', 'ok-1', 'ok-2']);
    });

    it('runs at most maxInFlight handlers at once, in publish order with one at a time', async () => {
      const fx = await make(2);
      let running = 0;
      let peak = 0;
      const gates: (() => void)[] = [];
      const seen = await run(fx, async (d) => {
        running++;
        peak = Math.max(peak, running);
        await new Promise<void>((resolve) => gates.push(resolve));
        running--;
        await d.ack();
      });
      for (let i = 0; i < 6; i++) await fx.publish(enc.encode(`m${i}`));
      await until('two handlers running', () => running === 2);
      expect(seen).toHaveLength(2);
      for (let released = 0; released < 6; released++) {
        await until('a blocked handler', () => gates.length > 0);
        gates.shift()?.();
      }
      await until('all six handled', () => running === 0 && seen.length === 6);
      expect(peak).toBe(2);
      expect(new Set(seen.map((s) => s.body))).toEqual(new Set(['m0', 'm1', 'm2', 'm3', 'm4', 'm5']));

      const one = await make(1);
      const ordered = await run(one, async (d) => d.ack());
      for (let i = 0; i < 5; i++) await one.publish(enc.encode(`o${i}`));
      await until('five ordered deliveries', () => ordered.filter((s) => s.body.startsWith('o')).length >= 5);
      expect(ordered.filter((s) => s.body.startsWith('o')).map((s) => s.body)).toEqual(['o0', 'o1', 'o2', 'o3', 'o4']);
    });

    it('refuses a second start and a start after close; close() is idempotent', async () => {
      const fx = await make();
      await fx.source.start(async (d) => d.ack());
      await expect(fx.source.start(async (d) => d.ack())).rejects.toThrow();
      await fx.source.close();
      await fx.source.close();
      const other = await make();
      await other.source.close();
      await expect(other.source.start(async (d) => d.ack())).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    });
  });
}
