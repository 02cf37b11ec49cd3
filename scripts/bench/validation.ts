/**
 * Validation benchmark: resources/s through the write-time validator (JSON schema, then the French
 * profiles and rules), in-process, single core, on a realistic mix of valid French resources.
 *
 *   node --import tsx scripts/bench/validation.ts
 *
 * Environment: BENCH_RESOURCES (20000), BENCH_WARMUP (2000). Writes scripts/bench/results/validation.md.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { ProfileValidator } from '../../src/fhir/validation/profile-validator.ts';
import * as fixtures from '../../test/helpers/validation-fixtures.ts';

const RESOURCES = Number(process.env.BENCH_RESOURCES ?? 20000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 2000);

/** The mix of a DMP's writes: documents and patients first, then the summary's lines. */
const MIX: [string, number, () => any][] = [
  ['Patient (FR Core INS)', 25, fixtures.insPatient],
  ['DocumentReference (PDSm)', 30, fixtures.pdsmDocument],
  ['Immunization', 15, fixtures.immunization],
  ['AllergyIntolerance', 15, fixtures.allergy],
  ['MedicationStatement', 15, fixtures.medicationStatement],
];

/** Distinct instances (names, dates vary) so that nothing is validated twice from a cache. */
function population(count: number): [string, any][] {
  const weights = MIX.reduce((sum, [, weight]) => sum + weight, 0);
  const out: [string, any][] = [];
  for (let i = 0; i < count; i++) {
    let pick = (i * 7919) % weights;
    const [name, , build] = MIX.find(([, weight]) => (pick -= weight) < 0)!;
    const resource = build();
    resource.id = `r${i}`;
    if (resource.resourceType === 'Patient') resource.name[0].family = `Martin${i}`;
    if (resource.resourceType === 'DocumentReference') resource.content[0].attachment.title = `Compte rendu ${i}`;
    if (resource.resourceType === 'Immunization') resource.lotNumber = `LOT${i}`;
    out.push([name, resource]);
  }
  return out;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

const loadStart = performance.now();
const validator = new ProfileValidator({});
const loadMs = performance.now() - loadStart;

for (const [, resource] of population(WARMUP)) validator.check(resource.resourceType, resource);

const timings = new Map<string, number[]>(MIX.map(([name]) => [name, []]));
const all: number[] = [];
let errors = 0;
const resources = population(RESOURCES);
const start = performance.now();
for (const [name, resource] of resources) {
  const t0 = performance.now();
  const result = validator.check(resource.resourceType, resource);
  const elapsed = performance.now() - t0;
  if (result.failedStage) errors++;
  timings.get(name)!.push(elapsed);
  all.push(elapsed);
}
const totalMs = performance.now() - start;
const rss = process.resourceUsage().maxRSS / 1024;

const row = (name: string, values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const sum = values.reduce((a, b) => a + b, 0);
  const us = (ms: number) => (ms * 1000).toFixed(0);
  return `| ${name} | ${values.length} | ${((values.length / sum) * 1000).toFixed(0)} | ${us(percentile(sorted, 0.5))} | ${us(percentile(sorted, 0.95))} | ${us(percentile(sorted, 0.99))} |`;
};
const opsPerSecond = (RESOURCES / totalMs) * 1000;
const report = [
  '# Validation benchmark',
  '',
  `${new Date().toISOString()} — ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, one core, in-process.`,
  `Validator: JSON schema + French default profiles (FR Core, PDSm, dossier) + French rules. Loading took ${loadMs.toFixed(0)} ms.`,
  '',
  '| resource | count | ops/s | p50 µs | p95 µs | p99 µs |',
  '|---|---|---|---|---|---|',
  ...MIX.map(([name]) => row(name, timings.get(name)!)),
  row('**all**', all),
  '',
  `Throughput: **${opsPerSecond.toFixed(0)} resources/s** (target ≥ 5,000) over ${RESOURCES} resources after ${WARMUP} warm-up; peak RSS ${rss.toFixed(0)} MiB; refused: ${errors}.`,
  '',
].join('\n');
writeFileSync(new URL('./results/validation.md', import.meta.url), report);
console.log(report);
