/**
 * Patient operations benchmark (issue 19, item 6) on PostgreSQL: latency of the patient-level operations
 * (OPERATIONS below: `Patient/$summary` and the first page of `Patient/$everything`)
 * for patients of 200 resources each, in the 1M-resource population `npm run bench:search` loads.
 *
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres BENCH_SCHEMA=bench1m npm run bench:patient
 *
 * The population's patients hold about 60 resources each (at most ~100), so the bench adds BENCH_PATIENTS
 * (4) patients of 200 resources (ids `bench-po-…`: Observations, Immunizations, DocumentReferences,
 * Conditions, Encounters, MedicationRequests, AllergyIntolerances) naming the population's practitioners and
 * organisations and a few medications and locations of their own, written once through the server's own
 * PUTs (validation, index rows) and found again on later runs: nothing of the population is changed.
 * The server encrypts, as by default and as bench:search's server does, under the benchmarks' fixed master key
 * (lib/bench-keys.ts): a schema bench:search loaded refuses a server without its keys. The records it writes are
 * sealed at rest, so reading them opens their content.
 *
 * Environment: BENCH_DATABASE_URL and BENCH_SCHEMA (required: the schema of a loaded population),
 * BENCH_PATIENTS (4), BENCH_REQUESTS (400 per operation), BENCH_WARMUP (50), BENCH_CONCURRENCY (4),
 * PG_POOL_SIZE (10), BENCH_AUDIT (`on`, as by default; `off` to see what the trail costs), BENCH_OPERATIONS (indexes into OPERATIONS, comma-separated: only those, e.g. `0` for $summary alone). Results: scripts/bench/results/patient-operations.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import pg from 'pg';
import { buildApp } from '../../src/app.ts';
import { backendAuthorization } from './lib/backend-token.ts';
import { createProfileValidator } from '../../src/fhir/validation/profile-validator.ts';
import { openDatabase } from '../../src/store/open-database.ts';
import { sqlStorage } from '../../src/store/storage.ts';
import { benchDataKeys } from './lib/bench-keys.ts';
import { planPopulation } from './lib/french-population.ts';
import { PREFIX, RECORD_SIZE, record, shared, type Json } from './lib/patient-records.ts';
import { LoadClient } from './lib/load-client.ts';
import { machine, summarise, type Measurement } from './lib/report.ts';
import { backendsCpuMs, backendsCpuMsSince } from './lib/process-cpu.ts';

const PATIENTS = positiveInteger('BENCH_PATIENTS', 4);
const REQUESTS = positiveInteger('BENCH_REQUESTS', 400);
const WARMUP = positiveInteger('BENCH_WARMUP', 50);
const CONCURRENCY = positiveInteger('BENCH_CONCURRENCY', 4);
const PG_POOL_SIZE = positiveInteger('PG_POOL_SIZE', 10);
const RESULTS_DIR = new URL('./results/', import.meta.url);

/** What is measured, per patient id; issue 19's target (p95 < 50 ms) is judged with BENCH_CONCURRENCY in flight. */
const OPERATIONS: Array<{ name: string; targetMs?: number; path: (patientId: string) => string }> = [
  { name: 'Patient/{id}/$summary (IPS document, French narrative)', targetMs: 50, path: (id) => `/fhir/Patient/${id}/$summary` },
  { name: 'Patient/{id}/$everything (first page, _count 50 by default)', targetMs: 50, path: (id) => `/fhir/Patient/${id}/$everything` },
  { name: 'Patient/{id}/$everything?_count=1000 (the whole record in one page)', path: (id) => `/fhir/Patient/${id}/$everything?_count=1000` },
  // Not an operation: a search returning a page of the same size, measured in the same conditions, as a yardstick.
  { name: 'baseline: Observation?patient={id}&_count=50 (a search, same page size)', path: (id) => `/fhir/Observation?patient=${id}&_count=50` },
];

function positiveInteger(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  if (!/^[1-9]\d*$/.test(value)) throw new Error(`${name} must be a positive integer, not '${value}'`);
  return Number(value);
}

async function main(): Promise<void> {
  const url = process.env.BENCH_DATABASE_URL;
  const schema = process.env.BENCH_SCHEMA;
  if (!url?.startsWith('postgres') || !schema) {
    throw new Error('BENCH_DATABASE_URL (postgres://…) and BENCH_SCHEMA (a schema `npm run bench:search` loaded and kept) are required');
  }
  // The CPU of the server's PostgreSQL backends is read from /proc when the database runs on this machine.
  const { hostname, pathname } = new URL(url);
  const databaseOnThisMachine = ['127.0.0.1', 'localhost', '[::1]', ''].includes(hostname);
  const database = decodeURIComponent(pathname.slice(1)) || 'postgres';
  const db = await openDatabase(url, { schema });
  const pool = new pg.Pool({ connectionString: url, max: 1, options: `-c search_path=${schema}` });
  const client = LoadClient.start();
  const audience = 'http://localhost/fhir';
  const app = await buildApp({ config: { logLevel: 'silent', bodyLimit: 1024 * 1024, rateLimit: 0, authAudience: audience, audit: process.env.BENCH_AUDIT === 'off' ? 'off' : 'on' }, storage: sqlStorage(db, benchDataKeys()), validator: createProfileValidator({ defaultProfiles: 'none' }) });
  const origin = await app.listen({ host: '127.0.0.1', port: 0 });
  // A token as a feed gets one (backend services, over HTTP); the records are written through inject, measured over HTTP.
  const authorization = await backendAuthorization(db, origin, 'bench', 'system/*.cruds');
  try {
    const population = Number((await pool.query(`SELECT count(*) AS n FROM resource WHERE id NOT LIKE '${PREFIX}-%' AND resource_type <> 'AuditEvent'`)).rows[0].n);
    if (population === 0) throw new Error(`schema ${schema} holds no population: load one with npm run bench:search (BENCH_SCHEMA keeps it)`);
    const plan = planPopulation(population);
    const patientIds = Array.from({ length: PATIENTS }, (_, n) => `${PREFIX}-${n}`);

    // Written once: a patient whose compartment already holds its 200 resources is left as it is.
    const put = async (resource: Json) => {
      const res = await app.inject({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, headers: { 'content-type': 'application/fhir+json', authorization }, payload: resource });
      if (res.statusCode >= 300) throw new Error(`PUT ${resource.resourceType}/${resource.id}: ${res.statusCode} ${res.body.slice(0, 500)}`);
    };
    let written = 0;
    for (const [n, id] of patientIds.entries()) {
      const { rows } = await pool.query(`SELECT count(*)::int AS n FROM compartment_member WHERE compartment_type = 'Patient' AND compartment_id = $1 AND resource_type <> 'AuditEvent'`, [id]);
      if (rows[0].n === RECORD_SIZE) continue;
      if (written === 0) for (const resource of shared()) await put(resource);
      for (const resource of record(n, plan.practitioners, plan.organizations)) await put(resource);
      written++;
    }
    if (written > 0) {
      console.error(`wrote ${written} record(s) of ${RECORD_SIZE} resources; ANALYZE…`);
      await pool.query('ANALYZE');
    } else console.error(`reusing the ${PATIENTS} records of ${RECORD_SIZE} resources in schema ${schema}`);
    const total = Number((await pool.query('SELECT count(*) AS n FROM resource')).rows[0].n);

    const loadBefore = os.loadavg()[0]!;
    const rows: Array<Measurement & { targetMs?: number; entries: number }> = [];
    const only = process.env.BENCH_OPERATIONS?.split(',').map(Number);
    for (const operation of OPERATIONS.filter((_, k) => !only || only.includes(k))) for (const inFlight of [...new Set([CONCURRENCY, 1])]) {
      // A sample answer: the operation must return the record, or its speed means nothing.
      const sample = await app.inject({ method: 'GET', url: operation.path(patientIds[0]!), headers: { accept: 'application/fhir+json', authorization } });
      if (sample.statusCode !== 200) throw new Error(`${operation.name}: ${sample.statusCode} ${sample.body.slice(0, 500)}`);
      const entries = (JSON.parse(sample.body) as { entry?: unknown[] }).entry?.length ?? 0;
      const paths = (count: number) => Array.from({ length: count }, (_, k) => operation.path(patientIds[k % patientIds.length]!));
      await client.run({ origin, method: 'GET', paths: paths(WARMUP), concurrency: inFlight, authorization });
      let peak = process.memoryUsage.rss();
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 10);
      const pgBefore = databaseOnThisMachine ? await backendsCpuMs(pool, database) : undefined;
      const cpuBefore = process.cpuUsage();
      const result = await client.run({ origin, method: 'GET', paths: paths(REQUESTS), concurrency: inFlight, authorization });
      clearInterval(sampler);
      const cpu = process.cpuUsage(cpuBefore);
      const pgCpuMsPerOp = pgBefore ? (await backendsCpuMsSince(pool, database, pgBefore)) / REQUESTS : undefined;
      const unexpected = Object.keys(result.statuses).filter((status) => status !== '200');
      if (unexpected.length > 0) throw new Error(`${operation.name}: expected only 200, got ${JSON.stringify(result.statuses)}`);
      const m = summarise(`${operation.name}, ${inFlight} in flight`, result, { peakRssBytes: Math.max(peak, process.memoryUsage.rss()), processCpuMs: (cpu.user + cpu.system) / 1000, clientCpuMs: result.cpuMs });
      // Judged under load, as bench:search judges its queries; one at a time is shown beside it.
      rows.push({ ...m, ...(operation.targetMs && inFlight === CONCURRENCY ? { targetMs: operation.targetMs } : {}), entries });
      // The load generator is a process of its own (LoadClient): this process's CPU is the server's.
      const serverCpuMsPerOp = (cpu.user + cpu.system) / 1000 / REQUESTS;
      console.error(`  ${operation.name}, ${inFlight} in flight: ${m.opsPerSec.toFixed(0)} ops/s, p50 ${m.p50Ms.toFixed(1)} ms, p95 ${m.p95Ms.toFixed(1)} ms, p99 ${m.p99Ms.toFixed(1)} ms, ${entries} entries, ${(sample.rawPayload.length / 1024).toFixed(0)} KiB, server Node CPU ${serverCpuMsPerOp.toFixed(2)} ms/op, ${pgCpuMsPerOp === undefined ? '' : `PostgreSQL CPU ${pgCpuMsPerOp.toFixed(2)} ms/op, `}load generator ${(result.cpuMs / REQUESTS).toFixed(2)} ms/op`);
    }
    const loadAfter = os.loadavg()[0]!;

    const f = (v: number, d = 1) => v.toFixed(d);
    const info = machine();
    const md = [
      `# Patient operations benchmark: postgres, ${total.toLocaleString('en')} resources`,
      '',
      `${new Date().toISOString()} · Node ${process.version} · ${info.cpu} × ${info.cores} cores · ${info.os} · ${info.memoryMiB} MiB`,
      `Load average (1 min) before/after: ${f(loadBefore, 2)} / ${f(loadAfter, 2)}` + (loadBefore > info.cores / 2 ? ' (**the machine was busy: numbers are pessimistic and noisy**)' : ''),
      `Schema \`${schema}\`: the population of \`npm run bench:search\` (${population.toLocaleString('en')} resources) and ${PATIENTS} patients of ${RECORD_SIZE} resources each ` +
        `(\`${PREFIX}-…\`: Observations, Immunizations, DocumentReferences, Encounters, Conditions, MedicationRequests, AllergyIntolerances naming the population's practitioners and organisations, and medications and locations of their own).`,
      `${REQUESTS} requests per operation over the ${PATIENTS} patients after ${WARMUP} warm-up, ${CONCURRENCY} in flight then 1 at a time, server pool ${PG_POOL_SIZE} connections, over HTTP to buildApp on 127.0.0.1.`,
      '',
      '| operation | entries | ops/s | p50 ms | p95 ms | p99 ms | peak RSS MiB | target p95 | met? |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---|',
      ...rows.map((m) => `| ${m.operation} | ${m.entries} | ${f(m.opsPerSec, 0)} | ${f(m.p50Ms)} | ${f(m.p95Ms)} | ${f(m.p99Ms)} | ${f(m.peakRssMiB, 0)} | ${m.targetMs ? `< ${m.targetMs} ms` : '—'} | ${m.targetMs ? (m.p95Ms < m.targetMs ? 'yes' : '**no**') : '—'} |`),
      '',
    ].join('\n');
    console.log(md);
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(new URL('patient-operations.md', RESULTS_DIR), md);
  } finally {
    client.stop();
    await app.close();
    await pool.end();
    await db.close();
  }
}

await main();
