/**
 * validator.check of this tree against another's (a checkout of main, say), in one process, in alternating
 * chunks: load on a shared machine then weighs on both alike, which separate runs cannot promise.
 *
 *   git -C /work/main archive main src profiles test/helpers | tar -x -C /tmp/baseline
 *   BASELINE=/tmp/baseline node --import tsx scripts/bench/validation-ab.ts
 *
 * Environment: BASELINE (required: a tree with src/ and profiles/), BENCH_CHUNKS (40) of BENCH_CHUNK (500)
 * resources per case, split evenly between the two. Writes scripts/bench/results/validation-ab.md.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ProfileValidator } from '../../src/fhir/validation/profile-validator.ts';
import * as fixtures from '../../test/helpers/validation-fixtures.ts';

const BASELINE = process.env.BASELINE;
if (!BASELINE) throw new Error('BASELINE: the directory of the tree to compare with');
const CHUNK = Number(process.env.BENCH_CHUNK ?? 500);
const CHUNKS = Number(process.env.BENCH_CHUNKS ?? 40);

type Checker = { check(resourceType: string, resource: unknown): unknown };
const baselineModule = (await import(pathToFileURL(join(BASELINE, 'src/fhir/validation/profile-validator.ts')).href)) as { ProfileValidator: new (options: object) => Checker };
const validators: Record<'baseline' | 'this tree', Checker> = { baseline: new baselineModule.ProfileValidator({}), 'this tree': new ProfileValidator({}) };

/** Distinct instances, so that nothing is validated twice from a cache; Patient's path is not the dossier one: a control. */
const CASES: [string, (i: number) => any][] = [
  ['Immunization, valid', (i) => ({ ...fixtures.immunization(), id: `i${i}`, lotNumber: `LOT${i}` })],
  ['Immunization, no lot number (a project-rule warning)', (i) => {
    const immunization = { ...fixtures.immunization(), id: `i${i}` };
    delete immunization.lotNumber;
    return immunization;
  }],
  ['Patient (FR Core INS)', (i) => {
    const patient = fixtures.insPatient();
    patient.id = `p${i}`;
    patient.name[0].family = `Martin${i}`;
    return patient;
  }],
];

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)]!;
const loadBefore = os.loadavg()[0]!;
const lines: string[] = [];
for (const [name, build] of CASES) {
  const latencies = { baseline: [] as number[], 'this tree': [] as number[] };
  const cpuUs = { baseline: 0, 'this tree': 0 };
  for (const validator of Object.values(validators)) {
    for (let i = 0; i < 2000; i++) {
      const resource = build(i);
      validator.check(resource.resourceType, resource);
    }
  }
  for (let chunk = 0; chunk < CHUNKS; chunk++) {
    const which = chunk % 2 === 0 ? 'baseline' : 'this tree';
    const resources = Array.from({ length: CHUNK }, (_, i) => build(chunk * CHUNK + i));
    const cpuStart = process.cpuUsage();
    for (const resource of resources) {
      const t0 = performance.now();
      validators[which].check(resource.resourceType, resource);
      latencies[which].push(performance.now() - t0);
    }
    const cpu = process.cpuUsage(cpuStart);
    cpuUs[which] += cpu.user + cpu.system;
  }
  for (const which of ['baseline', 'this tree'] as const) {
    const sorted = latencies[which].sort((a, b) => a - b);
    const us = (ms: number) => (ms * 1000).toFixed(0);
    lines.push(`| ${name} | ${which} | ${sorted.length} | ${(cpuUs[which] / sorted.length).toFixed(1)} | ${us(percentile(sorted, 0.5))} | ${us(percentile(sorted, 0.95))} | ${us(percentile(sorted, 0.99))} |`);
  }
}
const report = [
  '# Validation A/B: this tree against a baseline, in one process',
  '',
  `${new Date().toISOString()} · Node ${process.version} · ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length} · load average (1 min) ${loadBefore.toFixed(2)} / ${os.loadavg()[0]!.toFixed(2)} · peak RSS of both ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB`,
  `Baseline: ${BASELINE}. ${CHUNKS} chunks of ${CHUNK} resources per case, alternating, after 2000 warm-up each. CPU µs/op is the process's CPU time per resource.`,
  '',
  '| case | validator | resources | CPU µs/op | p50 µs | p95 µs | p99 µs |',
  '|---|---|---:|---:|---:|---:|---:|',
  ...lines,
  '',
].join('\n');
writeFileSync(new URL('./results/validation-ab.md', import.meta.url), report);
console.log(report);
