/**
 * `meshroute policy validate|test|explain|diff|replay|fmt|push`: the policy author's tools.
 * Reads directories and git refs here (the policy package is pure).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import {
  type BundleDiff,
  diffBundles,
  type Explanation,
  fileRole,
  formatPolicySource,
  loadBundle,
  type PolicyBundle,
  type PolicyError,
  parseAgentViews,
  type ReplayCase,
  runPolicyTests,
} from '@meshroute/policy';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import type { CliContext } from '../context.js';
import { addNatsOptions, type NatsFlags, natsConnectOptions } from '../nats-options.js';

/** Default policies directory. */
export const DEFAULT_POLICIES_DIR = 'policies';

/** A file of a bundle: path relative to the bundle root. */
export interface BundleFile {
  path: string;
  content: string;
}

const BUNDLE_FILE_RE = /\.(ya?ml|json)$/;

/** Read every `.yaml`/`.yml`/`.json` file under `dir` (recursively), paths relative to `dir`. */
export function readPolicyDir(dir: string): BundleFile[] {
  const out: BundleFile[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && BUNDLE_FILE_RE.test(e.name))
        out.push({ path: relative(dir, p).split('\\').join('/'), content: readFileSync(p, 'utf8') });
    }
  };
  walk(dir);
  return out.sort((a, b) => (a.path < b.path ? -1 : 1));
}

/** Read a bundle at a git ref: the files under `path` in `ref` (run in `cwd`). */
export function readPolicyRef(ref: string, path: string, cwd: string = process.cwd()): BundleFile[] {
  const prefix = path.replace(/\/+$/, '');
  const top = execFileSync('git', ['rev-parse', '--show-toplevel'], { cwd, encoding: 'utf8' }).trim();
  const rel = relative(top, join(cwd, prefix)).split('\\').join('/');
  const list = execFileSync('git', ['ls-tree', '-r', '--name-only', ref, '--', `${rel}/`], {
    cwd: top,
    encoding: 'utf8',
  })
    .split('\n')
    .filter((l) => l !== '' && BUNDLE_FILE_RE.test(l));
  return list.map((p) => ({
    path: p.slice(rel.length + 1),
    content: execFileSync('git', ['show', `${ref}:${p}`], { cwd: top, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }),
  }));
}

/** Read a bundle from a directory, or else from a git ref. */
export function readBundleSource(source: string, refPath: string): { files: BundleFile[]; label: string } {
  if (existsSync(source) && statSync(source).isDirectory()) return { files: readPolicyDir(source), label: source };
  return { files: readPolicyRef(source, refPath), label: `${source}:${refPath}` };
}

/** Format one error as `file:line:col: code: message` plus an indented hint. */
export function formatPolicyError(e: PolicyError, dir: string): string {
  const file = dir === '' ? e.file : `${dir.replace(/\/+$/, '')}/${e.file}`;
  return `${file}:${e.line}:${e.col}: ${e.code}: ${e.message}\n${e.hint ? `  hint: ${e.hint}\n` : ''}`;
}

function loadOrReport(ctx: CliContext, files: BundleFile[], label: string): PolicyBundle | undefined {
  const r = loadBundle(files, { nowMs: Date.now() });
  if (r.bundle) return r.bundle;
  for (const e of r.errors) ctx.stderr.write(formatPolicyError(e, label));
  ctx.stderr.write(`${r.errors.length} error${r.errors.length === 1 ? '' : 's'}\n`);
  ctx.exitCode = 1;
  return undefined;
}

function readJsonOrYaml(path: string): unknown {
  const text = readFileSync(path, 'utf8');
  return path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
}

/** Render an explanation as text. */
export function renderExplanation(x: Explanation): string {
  const lines: string[] = [];
  lines.push(`event ${x.eventId}${x.tenant ? ` (tenant ${x.tenant})` : ''}`);
  lines.push('policies:');
  for (const p of x.policies)
    lines.push(
      `  ${p.name} v${p.version} [${p.mode}]: ${p.selected === 'pass' ? 'selected' : p.selected === 'n/a' ? 'not selected' : `selector error: ${p.message}`}`,
    );
  lines.push('agents:');
  for (const a of x.agents) {
    lines.push(`  ${a.agentId}: ${a.eligible ? `eligible, score ${a.score.toFixed(4)}` : 'excluded'}`);
    for (const c of a.constraints) {
      const extra = c.exception
        ? ` (relaxed by exception ${c.exception.id}, ticket ${c.exception.ticket}, approved by ${c.exception.approvedBy}, expires ${c.exception.expires})`
        : '';
      lines.push(
        `    ${c.status.padEnd(5)} ${c.ruleId}${c.mode === 'shadow' ? ' [shadow]' : ''}${c.message ? `: ${c.message}` : ''}${extra}`,
      );
    }
    for (const p of a.preferences) {
      lines.push(
        `    score ${p.ruleId}${p.mode === 'shadow' ? ' [shadow]' : ''}: ${p.status === 'scored' ? p.score.toFixed(4) : p.status}${p.message ? ` (${p.message})` : ''} x weight ${p.weight}`,
      );
    }
  }
  const d = x.decision;
  lines.push(`outcome: ${d.outcome}`);
  lines.push(`chosen: ${d.chosen?.id ?? 'none'}`);
  lines.push('decision record:');
  lines.push(JSON.stringify(d.record, null, 2));
  return `${lines.join('\n')}\n`;
}

/** Read a decisions file: JSON lines of `{ event, agents, decision? }`. */
export function readReplayFile(path: string): {
  cases: (ReplayCase & { recorded?: { outcome: string; chosen: string | null } })[];
  errors: string[];
} {
  const cases: (ReplayCase & { recorded?: { outcome: string; chosen: string | null } })[] = [];
  const errors: string[] = [];
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (line.trim() === '') return;
      let v: Record<string, unknown>;
      try {
        v = JSON.parse(line) as Record<string, unknown>;
      } catch (err) {
        errors.push(`${path}:${i + 1}: not JSON: ${(err as Error).message}`);
        return;
      }
      if (v.event === null || typeof v.event !== 'object') {
        errors.push(
          `${path}:${i + 1}: missing \`event\` (each line is { "event": CloudEvent, "agents": [AgentView], "decision"?: record })`,
        );
        return;
      }
      const a = parseAgentViews(v.agents ?? []);
      if (a.errors.length > 0) {
        errors.push(`${path}:${i + 1}: ${a.errors.join('; ')}`);
        return;
      }
      const rec = v.decision as { outcome?: string; chosen?: { agentId?: string } | null; time?: string } | undefined;
      const nowMs = typeof rec?.time === 'string' ? Date.parse(rec.time) : undefined;
      cases.push({
        label: `${path}:${i + 1}`,
        event: v.event as Record<string, unknown>,
        agents: a.agents,
        ...(nowMs !== undefined && !Number.isNaN(nowMs) ? { nowMs } : {}),
        ...(rec?.outcome ? { recorded: { outcome: rec.outcome, chosen: rec.chosen?.agentId ?? null } } : {}),
      });
    });
  return { cases, errors };
}

function renderDiff(d: BundleDiff, a: string, b: string): string {
  const out: string[] = [`policy diff ${a} -> ${b}`];
  for (const p of d.policies) {
    out.push(
      `  policy ${p.change.padEnd(7)} ${p.name}${p.before !== undefined ? ` v${p.before}` : ''}${p.after !== undefined ? ` -> v${p.after}` : ''}${p.versionBumped === false ? '  (WARNING: changed without a version bump)' : ''}`,
    );
  }
  for (const r of d.rules.added) out.push(`  + ${r}`);
  for (const r of d.rules.removed) out.push(`  - ${r}`);
  for (const r of d.rules.changed) out.push(`  ~ ${r}`);
  if (d.policies.length === 0 && d.rules.added.length + d.rules.removed.length + d.rules.changed.length === 0)
    out.push('  no rule changes');
  out.push(`behaviour: ${d.replayed} events replayed, ${d.changes.length} changed`);
  for (const c of d.changes) {
    out.push(
      `  ${c.label} (event ${c.eventId}): ${c.before.outcome} ${c.before.chosen ?? '-'} -> ${c.after.outcome} ${c.after.chosen ?? '-'}`,
    );
  }
  return `${out.join('\n')}\n`;
}

/** Register `meshroute policy`. */
export function register(program: Command, ctx: CliContext): void {
  const policy = program
    .command('policy')
    .description('validate, test, explain, diff, replay, format and push routing policies');

  policy
    .command('validate')
    .description('check policy files: YAML, structure, CEL parse and types, duplicate ids, tenant blocks, limits')
    .argument('[dir]', 'policies directory', DEFAULT_POLICIES_DIR)
    .action((dir: string) => {
      const bundle = loadOrReport(ctx, readPolicyDir(dir), dir);
      if (bundle)
        ctx.stdout.write(
          `ok: ${bundle.policies.length} policies, ${bundle.tests.length} tests, digest ${bundle.digest}\n`,
        );
    });

  policy
    .command('test')
    .description(
      'run every policy test through the compiled path, cel-js and @bufbuild/cel; prints "N passed, M failed" last',
    )
    .argument('[dir]', 'policies directory', DEFAULT_POLICIES_DIR)
    .option('--coverage', 'print per-rule coverage (seen passing, failing, not applicable)')
    .action((dir: string, opts: { coverage?: boolean }) => {
      const bundle = loadOrReport(ctx, readPolicyDir(dir), dir);
      if (!bundle) {
        ctx.stdout.write('0 passed, 1 failed\n');
        return;
      }
      const run = runPolicyTests(bundle, { nowMs: Date.now() });
      for (const r of run.results) {
        ctx.stdout.write(`${r.passed ? 'PASS' : 'FAIL'} ${r.name} (${dir}/${r.file}:${r.line})\n`);
        for (const f of r.failures) ctx.stdout.write(`     - ${f}\n`);
      }
      if (opts.coverage) {
        ctx.stdout.write('coverage (evaluations per rule):\n');
        ctx.stdout.write(
          `  ${'rule'.padEnd(48)} ${'pass'.padStart(6)} ${'fail'.padStart(6)} ${'n/a'.padStart(6)} ${'error'.padStart(6)}\n`,
        );
        for (const c of run.coverage) {
          const warn =
            c.kind === 'constraint' && c.fail === 0 && c.pass + c.error > 0
              ? '  (never seen failing)'
              : c.pass + c.fail + c.error === 0
                ? '  (never applicable)'
                : '';
          ctx.stdout.write(
            `  ${c.ruleId.padEnd(48)} ${String(c.pass).padStart(6)} ${String(c.fail).padStart(6)} ${String(c.na).padStart(6)} ${String(c.error).padStart(6)}${warn}\n`,
          );
        }
      }
      ctx.stdout.write(`${run.passed} passed, ${run.failed} failed\n`);
      if (run.failed > 0) ctx.exitCode = 1;
    });

  policy
    .command('explain')
    .description('show every rule for every agent, every score and weight, the chosen agent and the decision record')
    .requiredOption('--event <file>', 'the CloudEvent, JSON (structured mode)')
    .requiredOption('--agents <file>', 'the agents, JSON or YAML list of AgentView')
    .option('--dir <dir>', 'policies directory', DEFAULT_POLICIES_DIR)
    .option('--json', 'print JSON')
    .action((opts: { event: string; agents: string; dir: string; json?: boolean }) => {
      const bundle = loadOrReport(ctx, readPolicyDir(opts.dir), opts.dir);
      if (!bundle) return;
      const event = readJsonOrYaml(opts.event) as Record<string, unknown>;
      const parsed = parseAgentViews(readJsonOrYaml(opts.agents));
      if (parsed.errors.length > 0) {
        for (const e of parsed.errors) ctx.stderr.write(`${opts.agents}: ${e}\n`);
        ctx.exitCode = 1;
        return;
      }
      const x = bundle.explain(event, parsed.agents, { nowMs: Date.now() });
      ctx.stdout.write(
        opts.json
          ? `${JSON.stringify({ ...x, decision: { ...x.decision, ranking: x.decision.ranking } }, null, 2)}\n`
          : renderExplanation(x),
      );
    });

  policy
    .command('diff')
    .description('rules added, removed or changed, then every replayed event whose outcome changes')
    .argument('<a>', 'directory or git ref (the policies directory at that ref)')
    .argument('<b>', 'directory or git ref')
    .option('--decisions <file>', 'JSON lines of { event, agents, decision? } to replay through both')
    .option('--path <path>', 'policies directory inside the repository, for git refs', DEFAULT_POLICIES_DIR)
    .option('--json', 'print JSON')
    .action((a: string, b: string, opts: { decisions?: string; path: string; json?: boolean }) => {
      const sa = readBundleSource(a, opts.path);
      const sb = readBundleSource(b, opts.path);
      const ba = loadOrReport(ctx, sa.files, sa.label);
      const bb = loadOrReport(ctx, sb.files, sb.label);
      if (!ba || !bb) return;
      let cases: ReplayCase[] = [];
      if (opts.decisions) {
        const r = readReplayFile(opts.decisions);
        for (const e of r.errors) ctx.stderr.write(`${e}\n`);
        if (r.errors.length > 0) {
          ctx.exitCode = 1;
          return;
        }
        cases = r.cases;
      }
      const d = diffBundles(ba, bb, cases);
      ctx.stdout.write(opts.json ? `${JSON.stringify(d, null, 2)}\n` : renderDiff(d, sa.label, sb.label));
    });

  policy
    .command('replay')
    .description('replay recorded decisions through the policies and list every event whose outcome changes')
    .requiredOption('--decisions <file>', 'JSON lines of { event, agents, decision? }')
    .argument('[dir]', 'policies directory', DEFAULT_POLICIES_DIR)
    .option('--json', 'print JSON lines')
    .action((dir: string, opts: { decisions: string; json?: boolean }) => {
      const bundle = loadOrReport(ctx, readPolicyDir(dir), dir);
      if (!bundle) return;
      const r = readReplayFile(opts.decisions);
      for (const e of r.errors) ctx.stderr.write(`${e}\n`);
      if (r.errors.length > 0) {
        ctx.exitCode = 1;
        return;
      }
      let changed = 0;
      for (const c of r.cases) {
        const d = bundle.decide(c.event, c.agents, c.nowMs === undefined ? {} : { nowMs: c.nowMs });
        const now = { outcome: d.outcome, chosen: d.chosen?.id ?? null };
        const differs =
          c.recorded !== undefined && (c.recorded.outcome !== now.outcome || c.recorded.chosen !== now.chosen);
        if (differs) changed++;
        if (opts.json)
          ctx.stdout.write(
            `${JSON.stringify({ label: c.label, eventId: c.event.id, recorded: c.recorded ?? null, now, changed: differs, record: d.record })}\n`,
          );
        else
          ctx.stdout.write(
            `${differs ? 'CHANGED' : 'same   '} ${c.label} event ${String(c.event.id)}: ${c.recorded ? `${c.recorded.outcome} ${c.recorded.chosen ?? '-'} -> ` : ''}${now.outcome} ${now.chosen ?? '-'}\n`,
          );
      }
      if (!opts.json) ctx.stdout.write(`${r.cases.length} replayed, ${changed} changed\n`);
    });

  policy
    .command('fmt')
    .description('format policy files in place (canonical key order, two-space indent); --check only reports')
    .argument('[dir]', 'policies directory', DEFAULT_POLICIES_DIR)
    .option('--check', 'exit 1 when a file is not formatted, change nothing')
    .action((dir: string, opts: { check?: boolean }) => {
      let unformatted = 0;
      for (const f of readPolicyDir(dir)) {
        if (!/\.ya?ml$/.test(f.path) || fileRole(f.path) === 'ignored') continue;
        const out = formatPolicySource(f.content);
        if (out === undefined) {
          ctx.stderr.write(`${dir}/${f.path}: does not parse; run \`meshroute policy validate\`\n`);
          ctx.exitCode = 1;
          continue;
        }
        if (out === f.content) continue;
        unformatted++;
        if (opts.check) ctx.stdout.write(`would reformat ${dir}/${f.path}\n`);
        else {
          writeFileSync(join(dir, f.path), out);
          ctx.stdout.write(`formatted ${dir}/${f.path}\n`);
        }
      }
      if (opts.check && unformatted > 0) ctx.exitCode = 1;
    });

  addNatsOptions(policy.command('push'), { url: 'optional' })
    .description('validate, test and publish the bundle to the mesh (NATS KV) for hot reload by routers')
    .argument('[dir]', 'policies directory', DEFAULT_POLICIES_DIR)
    .option('--servers <urls>', 'NATS servers (same as --nats-url)')
    .option('--creds <file>', 'NATS credentials file (same as --nats-creds)')
    .option('--pushed-by <who>', 'recorded with the bundle (env USER)')
    .action(async (dir: string, opts: NatsFlags & { servers?: string; creds?: string; pushedBy?: string }) => {
      const files = readPolicyDir(dir);
      const bundle = loadOrReport(ctx, files, dir);
      if (!bundle) return;
      const run = runPolicyTests(bundle, { nowMs: Date.now() });
      if (run.failed > 0) {
        for (const r of run.results.filter((x) => !x.passed))
          ctx.stderr.write(`FAIL ${r.name}: ${r.failures.join('; ')}\n`);
        ctx.stderr.write(`${run.passed} passed, ${run.failed} failed: not pushed\n`);
        ctx.exitCode = 1;
        return;
      }
      const { connectMesh, natsPolicyStore } = await import('@meshroute/transport-nats');
      const nats = natsConnectOptions({
        ...opts,
        natsUrl: opts.servers ?? opts.natsUrl ?? ctx.env.MESHROUTE_NATS_URL,
        natsCreds: opts.creds ?? opts.natsCreds,
      });
      const conn = await connectMesh({ ...nats, name: 'meshroute-policy-push' });
      try {
        const revision = await natsPolicyStore(conn).put({
          files,
          digest: bundle.digest,
          pushedBy: opts.pushedBy ?? ctx.env.USER ?? 'unknown',
        });
        ctx.stdout.write(
          `pushed ${bundle.policies.length} policies (${run.passed} tests passed), digest ${bundle.digest}, revision ${revision}\n`,
        );
      } finally {
        await conn.close();
      }
    });
}
