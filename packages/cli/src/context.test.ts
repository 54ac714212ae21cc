import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { pinoLogger } from './context.js';

function capture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l !== '') lines.push(l);
      done();
    },
  });
  return { lines, stream };
}

/** How many times `"key":` occurs in a raw JSON line (JSON.parse would hide repeats). */
const occurrences = (line: string, key: string): number => line.split(`"${key}":`).length - 1;

describe('pinoLogger', () => {
  it('writes each field once per line: a child replaces its parent field of the same name', async () => {
    const { lines, stream } = capture();
    const root = pinoLogger(pino({ base: { pid: 1 } }, stream), { component: 'agent' });
    const log = root.child({ agentId: 'a1' }).child({ component: 'agent-mesh', agentId: 'a1' });
    log.info('serving work', { subject: 'meshroute.work.a1' });
    root.warn('plain');
    await new Promise((r) => setImmediate(r));
    const [first, second] = lines;
    expect(occurrences(first ?? '', 'component')).toBe(1);
    expect(occurrences(first ?? '', 'agentId')).toBe(1);
    expect(JSON.parse(first ?? '')).toMatchObject({
      component: 'agent-mesh',
      agentId: 'a1',
      subject: 'meshroute.work.a1',
      msg: 'serving work',
    });
    expect(JSON.parse(second ?? '')).toMatchObject({ component: 'agent', msg: 'plain', level: 40 });
  });
});
