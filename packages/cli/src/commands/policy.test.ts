import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { PassThrough } from 'node:stream';
import { noopLogger } from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import type { CliContext } from '../context.js';
import { main } from '../main.js';

const repo = new URL('../../../../', import.meta.url).pathname;
const policiesDir = join(repo, 'policies');

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => {
    out += String(d);
  });
  stderr.on('data', (d) => {
    err += String(d);
  });
  const ctx: CliContext = { stdout, stderr, env: {}, exitCode: 0, logger: () => noopLogger };
  const code = await main(['node', 'meshroute', ...args], ctx);
  return { code, out, err };
}

const POLICY = (version: number, require: string) => `metadata:
  name: eu
  version: ${version}
  owner: c@example.com
mode: enforce
selector: 'has(event.residency)'
constraints:
  - id: in-residency
    require: '${require}'
tests:
  - name: eu-stays
    event: { specversion: "1.0", id: x, source: /t, type: t, residency: eu }
    agents: [{ id: de-1, jurisdiction: DE }, { id: us-1, jurisdiction: US }]
    expect: { chosen: de-1 }
`;

function dirWith(files: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), 'meshroute-policy-'));
  for (const [p, c] of Object.entries(files)) writeFileSync(join(d, p), c);
  return d;
}

describe('meshroute policy', () => {
  it('test: the shipped policies all pass under both engines', async () => {
    const r = await cli('policy', 'test', policiesDir, '--coverage');
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines[lines.length - 1]).toMatch(/^\d+ passed, 0 failed$/);
    expect(r.out).toContain('eu-residency/in-allowed-jurisdiction');
  });

  it('validate: prints file:line:col and a hint, exit 1', async () => {
    const d = dirWith({
      'eu.yaml': POLICY(1, 'agent.jurisdiction in event.residency').replace('selector:', 'selectr:'),
    });
    const r = await cli('policy', 'validate', d);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${d}/eu.yaml:6:1: unknown-key: unknown key \`selectr\``);
    expect(r.err).toContain('hint: did you mean `selector`?');
  });

  it('test: a failing expectation fails the run', async () => {
    const d = dirWith({ 'eu.yaml': POLICY(1, 'agent.jurisdiction == "US"') });
    const r = await cli('policy', 'test', d);
    expect(r.code).toBe(1);
    expect(r.out.trim().split('\n').pop()).toBe('0 passed, 1 failed');
  });

  it('explain: every rule for every agent and the record', async () => {
    const d = dirWith({
      'e.json': JSON.stringify({ specversion: '1.0', id: 'e1', source: '/t', type: 't', residency: 'eu' }),
      'a.json': JSON.stringify([
        { id: 'de-1', jurisdiction: 'DE' },
        { id: 'us-1', jurisdiction: 'US' },
      ]),
    });
    const r = await cli(
      'policy',
      'explain',
      '--event',
      join(d, 'e.json'),
      '--agents',
      join(d, 'a.json'),
      '--dir',
      policiesDir,
      '--json',
    );
    expect(r.code).toBe(0);
    const x = JSON.parse(r.out) as {
      decision: { record: { outcome: string; chosen: { agentId: string } } };
      agents: { agentId: string; constraints: { ruleId: string; status: string }[] }[];
    };
    expect(x.decision.record.outcome).toBe('routed');
    expect(x.decision.record.chosen.agentId).toBe('de-1');
    const us = x.agents.find((a) => a.agentId === 'us-1');
    expect(us?.constraints.find((c) => c.ruleId === 'eu-residency/in-allowed-jurisdiction')?.status).toBe('fail');
  });

  it('diff and replay on two directories', async () => {
    const a = dirWith({ 'eu.yaml': POLICY(1, 'agent.jurisdiction in event.residency') });
    const b = dirWith({
      'eu.yaml': POLICY(2, 'agent.jurisdiction in event.residency && agent.jurisdiction != "DE"').replace(
        'chosen: de-1',
        'chosen: none',
      ),
    });
    const decisions = join(a, 'decisions.jsonl');
    writeFileSync(
      decisions,
      `${JSON.stringify({ event: { specversion: '1.0', id: 'r1', source: '/t', type: 't', residency: 'eu' }, agents: [{ id: 'de-1', jurisdiction: 'DE' }], decision: { outcome: 'routed', chosen: { agentId: 'de-1' } } })}\n`,
    );
    const d = await cli('policy', 'diff', a, b, '--decisions', decisions);
    expect(d.code).toBe(0);
    expect(d.out).toContain('~ eu/in-residency');
    expect(d.out).toMatch(/decisions\.jsonl:1 \(event r1\): routed de-1 -> no-eligible-agent -/);
    const r = await cli('policy', 'replay', '--decisions', decisions, b);
    expect(r.out).toContain('1 replayed, 1 changed');
  });

  it('diff between git refs', async () => {
    const r = await cli('policy', 'diff', 'HEAD', 'HEAD', '--path', relative(process.cwd(), policiesDir));
    expect(r.code).toBe(0);
    expect(r.out).toContain('0 changed');
  });

  it('fmt is idempotent', async () => {
    const d = dirWith({ 'eu.yaml': `mode: enforce\n${POLICY(1, 'true').replace('mode: enforce\n', '')}` });
    expect((await cli('policy', 'fmt', d, '--check')).code).toBe(1);
    await cli('policy', 'fmt', d);
    const once = readFileSync(join(d, 'eu.yaml'), 'utf8');
    expect(once.startsWith('metadata:')).toBe(true);
    expect((await cli('policy', 'fmt', d, '--check')).code).toBe(0);
    expect(readFileSync(join(d, 'eu.yaml'), 'utf8')).toBe(once);
  });
});
