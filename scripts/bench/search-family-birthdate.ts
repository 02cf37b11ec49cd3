/**
 * `Patient?family=<common surname>&birthdate=<date>` on PostgreSQL (issue 15, item 7): the search a peer
 * served 1.5 times faster, over patients of whom COMMON_FAMILY_SHARE bear one of 20 surnames. Loads
 * BENCH_PATIENTS patients of the search benchmark's population (french-population.ts: the same patients,
 * without their records) with the server's own index rows, then, for each date precision and prefix, runs
 * the page statement the server builds for many such searches and EXPLAINs (ANALYZE, BUFFERS) one.
 *
 *   BENCH_DATABASE_URL=postgres://… node --import tsx scripts/bench/search-family-birthdate.ts
 *
 * Environment: BENCH_DATABASE_URL (required), BENCH_PATIENTS (100000), BENCH_SCHEMA (reuse that schema when
 * it holds the patients already, and keep it: to compare two versions of the SQL on the same data),
 * BENCH_SAMPLES (200 searches per form). Results: scripts/bench/results/search-family-birthdate.md.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import type { Resource } from 'fhir/r4';
import { planSearch } from '../../src/store/search-executor.ts';
import { SearchIndexWriter } from '../../src/store/index-writer.ts';
import { parseSearch } from '../../src/search/parse.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../../src/search/registry.ts';
import { openDatabase } from '../../src/store/open-database.ts';
import { migrate } from '../../src/store/migrate.ts';
import { insertNew, StoredResource } from '../../src/store/repository.ts';
import { COMMON_FAMILIES, COMMON_FAMILY_SHARE, patientBundle, rng } from './lib/french-population.ts';

const URL_ = process.env.BENCH_DATABASE_URL;
if (!URL_) throw new Error('BENCH_DATABASE_URL=postgres://… is required');
const PATIENTS = Number(process.env.BENCH_PATIENTS ?? 100_000);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 200);
const BATCH = 500;
const RESULTS = new URL('./results/search-family-birthdate.md', import.meta.url);

type GeneratedPatient = { id: string; name: Array<{ family: string }>; birthDate: string };
const patientAt = (i: number) => patientBundle(i, 300, 100)[0] as unknown as GeneratedPatient & Resource;

async function load(db: Awaited<ReturnType<typeof openDatabase>>, registry: SearchParameterRegistry): Promise<void> {
  const index = new SearchIndexWriter(registry);
  const started = performance.now();
  for (let start = 0; start < PATIENTS; start += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, PATIENTS - start) }, (_, n) => {
      const patient = patientAt(start + n);
      const lastUpdated = new Date().toISOString();
      const stamped = { ...patient, meta: { versionId: '1', lastUpdated } } as Resource;
      return { stored: new StoredResource('Patient', patient.id, 1, lastUpdated, JSON.stringify(stamped), stamped), rows: index.rowsOf(stamped) };
    });
    await insertNew(db, batch);
    if ((start / BATCH) % 40 === 0) console.error(`  ${start + batch.length} / ${PATIENTS} patients, ${(performance.now() - started) / 1000 | 0} s`);
  }
}

/** The searches of one form: patients with a common surname drawn by a seeded RNG, their birth date at a precision. */
function searches(form: (birthDate: string) => Array<[string, string]>, seed: number): Array<Array<[string, string]>> {
  const r = rng(seed);
  const out: Array<Array<[string, string]>> = [];
  while (out.length < SAMPLES) {
    const patient = patientAt(Math.floor(r() * PATIENTS));
    if (!COMMON_FAMILIES.includes(patient.name[0]!.family)) continue;
    out.push([['family', patient.name[0]!.family], ...form(patient.birthDate)]);
  }
  return out;
}

const FORMS: Array<{ name: string; form: (birthDate: string) => Array<[string, string]> }> = [
  { name: 'birthdate=YYYY-MM-DD', form: (d) => [['birthdate', d]] },
  { name: 'birthdate=YYYY-MM', form: (d) => [['birthdate', d.slice(0, 7)]] },
  { name: 'birthdate=YYYY', form: (d) => [['birthdate', d.slice(0, 4)]] },
  { name: 'birthdate=geYYYY-MM-DD', form: (d) => [['birthdate', `ge${d}`]] },
  { name: 'birthdate=ltYYYY-MM-DD', form: (d) => [['birthdate', `lt${d}`]] },
  { name: 'birthdate=geYYYY-MM&birthdate=ltYYYY+1-MM', form: (d) => [['birthdate', `ge${d.slice(0, 7)}`], ['birthdate', `lt${Number(d.slice(0, 4)) + 1}${d.slice(4, 7)}`]] },
];

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

async function main(): Promise<void> {
  const reuse = process.env.BENCH_SCHEMA;
  const schema = reuse ?? `bench_family_${process.pid}_${randomBytes(3).toString('hex')}`;
  const db = await openDatabase(URL_!, { schema });
  const pool = new pg.Pool({ connectionString: URL_, max: 1, options: `-c search_path=${schema} -c jit=off` });
  const registry = new SearchParameterRegistry(loadSearchParameters());
  try {
    await migrate(db);
    const existing = Number((await pool.query(`SELECT count(*) AS n FROM resource WHERE resource_type = 'Patient'`)).rows[0].n);
    if (existing === 0) {
      console.error(`loading ${PATIENTS} patients into ${schema}…`);
      await load(db, registry);
      await pool.query('VACUUM ANALYZE');
    } else if (existing !== PATIENTS) throw new Error(`schema ${schema} holds ${existing} patients, not BENCH_PATIENTS=${PATIENTS}`);
    const lines = [
      `# Patient?family=<common>&birthdate=…: ${PATIENTS.toLocaleString('en')} patients, PostgreSQL`,
      '',
      `${new Date().toISOString()}. ${COMMON_FAMILIES.length} surnames borne by ${COMMON_FAMILY_SHARE * 100} % of the patients (about ${Math.round((PATIENTS * COMMON_FAMILY_SHARE) / COMMON_FAMILIES.length)} each), searched with one patient's birth date; ${SAMPLES} searches per form, one at a time, the page statement only (matches capped by the page size, 50). Times are the statement's, measured by the client; buffers from one EXPLAIN (ANALYZE, BUFFERS).`,
      '',
      '| form | matches (mean) | mean ms | p50 ms | p95 ms | EXPLAIN ms | shared buffers hit+read |',
      '|---|---:|---:|---:|---:|---:|---:|',
    ];
    const plans: string[] = [];
    for (const [n, { name, form }] of FORMS.entries()) {
      const statements = [];
      for (const pairs of searches(form, 0xfa111 + n)) {
        const parsed = parseSearch(['Patient'], pairs, registry, { strict: true, baseUrl: 'http://127.0.0.1/fhir' });
        statements.push({ pairs, segment: (await planSearch(db, parsed)).segments[0]! });
      }
      for (const { segment } of statements.slice(0, 20)) await pool.query(segment.sql, segment.params); // warm-up
      const times: number[] = [];
      let matches = 0;
      for (const { segment } of statements) {
        const started = performance.now();
        matches += (await pool.query(segment.sql, segment.params)).rowCount ?? 0;
        times.push(performance.now() - started);
      }
      const { pairs, segment } = statements[0]!;
      const { rows } = await pool.query(`EXPLAIN (ANALYZE, BUFFERS) ${segment.sql}`, segment.params);
      const plan = rows.map((row) => row['QUERY PLAN'] as string).join('\n');
      const explainMs = Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1]);
      const top = /Buffers: shared (?:hit=(\d+))?\s*(?:read=(\d+))?/.exec(plan);
      const buffers = Number(top?.[1] ?? 0) + Number(top?.[2] ?? 0);
      const mean = times.reduce((a, b) => a + b, 0) / times.length;
      lines.push(`| ${name} | ${(matches / statements.length).toFixed(1)} | ${mean.toFixed(2)} | ${quantile(times, 0.5).toFixed(2)} | ${quantile(times, 0.95).toFixed(2)} | ${explainMs.toFixed(2)} | ${buffers} |`);
      plans.push(`=== ${name}: ${new URLSearchParams(pairs).toString()}\n${segment.sql}\n-- params: ${JSON.stringify(segment.params)}\n${plan}\n`);
      console.error(lines[lines.length - 1]);
    }
    const report = `${lines.join('\n')}\n\nPlans:\n\n\`\`\`\n${plans.join('\n')}\`\`\`\n`;
    mkdirSync(new URL('.', RESULTS), { recursive: true });
    writeFileSync(RESULTS, report);
    console.log(report);
  } finally {
    if (!reuse) await pool.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => {});
    await pool.end();
    await db.close();
  }
}

await main();
