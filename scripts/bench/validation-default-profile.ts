/**
 * Cost of a type's default profile in validator.check, in-process, single core: an Immunization (the
 * project's dossier-immunization applies by default, its own rules as warnings unless FHIR_PROJECT_RULES=error),
 * the same with FHIR_PROJECT_RULES=error (the profile applied as any other) and a Patient (FR Core, for scale).
 *
 *   BENCH_LABEL=after node --import tsx scripts/bench/validation-default-profile.ts
 *
 * Environment: BENCH_LABEL (the run's name, default `run`), BENCH_RESOURCES per case (10000), BENCH_WARMUP (2000),
 * BENCH_ROUNDS (3; each row is the median round by ops/s). Each label is kept in
 * scripts/bench/results/validation-default-profile.json (a run replaces the one of the same label) and the
 * table of every label is written to validation-default-profile.md.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { ProfileValidator } from '../../src/fhir/validation/profile-validator.ts';
import * as fixtures from '../../test/helpers/validation-fixtures.ts';

const LABEL = process.env.BENCH_LABEL ?? 'run';
const RESOURCES = Number(process.env.BENCH_RESOURCES ?? 10000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const JSON_PATH = new URL('./results/validation-default-profile.json', import.meta.url);
const MD_PATH = new URL('./results/validation-default-profile.md', import.meta.url);

interface Row {
  case: string;
  resources: number;
  opsPerSec: number;
  opsPerSecRange: [number, number];
  /** CPU time of the process per resource over the median round: what load on the machine moves least. */
  cpuUsPerOp: number;
  p50Us: number;
  p95Us: number;
  p99Us: number;
  warnings: number;
  errors: number;
}

interface Run {
  label: string;
  date: string;
  node: string;
  cpu: string;
  loadAverage: { before: number; after: number };
  settings: { resources: number; warmup: number; rounds: number };
  rows: Row[];
  peakRssMiB: number;
}

const lenient = new ProfileValidator({});
const strict = new ProfileValidator({ projectRules: 'error' });

/** Distinct instances, so that nothing is validated twice from a cache. */
const CASES: [string, ProfileValidator, (i: number) => any][] = [
  ['Immunization, valid (default profile, project rules warn)', lenient, (i) => ({ ...fixtures.immunization(), id: `i${i}`, lotNumber: `LOT${i}` })],
  ['Immunization, no lot number (one project-rule warning)', lenient, (i) => {
    const immunization = { ...fixtures.immunization(), id: `i${i}` };
    delete immunization.lotNumber;
    return immunization;
  }],
  ['Immunization, valid, FHIR_PROJECT_RULES=error', strict, (i) => ({ ...fixtures.immunization(), id: `i${i}`, lotNumber: `LOT${i}` })],
  ['Patient (FR Core default profile)', lenient, (i) => {
    const patient = fixtures.insPatient();
    patient.id = `p${i}`;
    patient.name[0].family = `Martin${i}`;
    return patient;
  }],
];

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)]!;

function round(validator: ProfileValidator, build: (i: number) => any) {
  const resources = Array.from({ length: RESOURCES }, (_, i) => build(i));
  const latencies: number[] = [];
  let warnings = 0;
  let errors = 0;
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  for (const resource of resources) {
    const t0 = performance.now();
    const { issues } = validator.check(resource.resourceType, resource);
    latencies.push(performance.now() - t0);
    for (const issue of issues) {
      if (issue.severity === 'warning') warnings++;
      else if (issue.severity === 'error' || issue.severity === 'fatal') errors++;
    }
  }
  const elapsed = performance.now() - start;
  const cpu = process.cpuUsage(cpuStart);
  latencies.sort((a, b) => a - b);
  return { opsPerSec: (RESOURCES / elapsed) * 1000, cpuUsPerOp: (cpu.user + cpu.system) / RESOURCES, latencies, warnings: warnings / RESOURCES, errors: errors / RESOURCES };
}

const loadBefore = os.loadavg()[0]!;
for (const [, validator, build] of CASES) {
  for (let i = 0; i < WARMUP; i++) {
    const resource = build(i);
    validator.check(resource.resourceType, resource);
  }
}
const rounds = CASES.map(() => [] as ReturnType<typeof round>[]);
// Cases alternate within each round, each round starting with the next one, so that load on the machine
// and the garbage left by the case before spread over all of them.
for (let r = 0; r < ROUNDS; r++) {
  for (let k = 0; k < CASES.length; k++) {
    const index = (r + k) % CASES.length;
    const [, validator, build] = CASES[index]!;
    rounds[index]!.push(round(validator, build));
  }
}

const rows: Row[] = CASES.map(([name], index) => {
  const byOps = [...rounds[index]!].sort((a, b) => a.opsPerSec - b.opsPerSec);
  const median = byOps[Math.floor(byOps.length / 2)]!;
  const us = (ms: number) => Math.round(ms * 1000);
  return {
    case: name,
    resources: RESOURCES,
    opsPerSec: Math.round(median.opsPerSec),
    opsPerSecRange: [Math.round(byOps[0]!.opsPerSec), Math.round(byOps.at(-1)!.opsPerSec)],
    cpuUsPerOp: Math.round(median.cpuUsPerOp * 10) / 10,
    p50Us: us(percentile(median.latencies, 0.5)),
    p95Us: us(percentile(median.latencies, 0.95)),
    p99Us: us(percentile(median.latencies, 0.99)),
    warnings: median.warnings,
    errors: median.errors,
  };
});

const run: Run = {
  label: LABEL,
  date: new Date().toISOString(),
  node: process.version,
  cpu: `${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}`,
  loadAverage: { before: loadBefore, after: os.loadavg()[0]! },
  settings: { resources: RESOURCES, warmup: WARMUP, rounds: ROUNDS },
  rows,
  peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
};

const runs: Run[] = existsSync(JSON_PATH) ? (JSON.parse(readFileSync(JSON_PATH, 'utf8')) as Run[]).filter((r) => r.label !== LABEL) : [];
runs.push(run);
writeFileSync(JSON_PATH, `${JSON.stringify(runs, null, 2)}\n`);

const table = [
  '# Validation benchmark: a type\'s default profile',
  '',
  'validator.check in-process, one core, `scripts/bench/validation-default-profile.ts`. Each row is the median round',
  'by ops/s (its latencies and CPU); the range is over the rounds. CPU µs/op is the process\'s CPU time per resource,',
  'which load on a shared machine moves least; warnings and errors are per resource.',
  '',
  '| run | case | ops/s | range | CPU µs/op | p50 µs | p95 µs | p99 µs | warnings | errors |',
  '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...runs.flatMap((r) => r.rows.map((row) =>
    `| ${r.label} | ${row.case} | ${row.opsPerSec} | ${row.opsPerSecRange[0]}–${row.opsPerSecRange[1]} | ${row.cpuUsPerOp} | ${row.p50Us} | ${row.p95Us} | ${row.p99Us} | ${row.warnings} | ${row.errors} |`)),
  '',
  '| run | date | node | cpu | load avg before/after | resources × rounds (warm-up) | peak RSS MiB |',
  '|---|---|---|---|---|---|---:|',
  ...runs.map((r) => `| ${r.label} | ${r.date} | ${r.node} | ${r.cpu} | ${r.loadAverage.before.toFixed(2)} / ${r.loadAverage.after.toFixed(2)} | ${r.settings.resources} × ${r.settings.rounds} (${r.settings.warmup}) | ${r.peakRssMiB} |`),
  '',
].join('\n');
writeFileSync(MD_PATH, table);
console.log(table);
