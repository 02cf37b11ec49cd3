/**
 * CPU of `Patient/$summary` in the server's own process (issue 19, item 6): the records of
 * `patient-operations.ts` (4 patients of 200 resources, lib/patient-records.ts) written into a schema of
 * their own, then `$summary` asked BENCH_REQUESTS times, BENCH_CONCURRENCY at a time, over HTTP by the load generator
 * (its own process): CPU ms per request of the server's process (process.cpuUsage: the server's work, the
 * driver's included, PostgreSQL's and the client's not), statements
 * per request by kind, and with BENCH_CPU_PROFILE=file.cpuprofile a V8 profile of the measured requests only,
 * summarised by area and function.
 *
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres node --import tsx scripts/bench/summary-cpu.ts
 *
 * Environment: BENCH_DATABASE_URL (default `memory://`, an in-memory PGlite: its SQL then runs in this process
 * and counts as CPU), BENCH_REQUESTS (300), BENCH_WARMUP (50), BENCH_CONCURRENCY (1; bench:patient judges
 * `$summary` at 4 in flight), BENCH_AUDIT (on, as the server runs),
 * BENCH_ENCRYPTION (off, as patient-operations.ts runs; `on` seals content under a fixed test key),
 * BENCH_CPU_PROFILE, BENCH_OUTPUT (a file to write one answer to, ids and instants blanked, to compare answers
 * before and after a change). The schema (BENCH_SCHEMA, else `summary_cpu_<pid>`) is dropped at the end unless
 * BENCH_KEEP=1, which a later run with the same BENCH_SCHEMA reuses; nothing else is touched.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { buildApp } from '../../src/app.ts';
import { createProfileValidator } from '../../src/fhir/validation/profile-validator.ts';
import type { Database, SqlExecutor } from '../../src/store/database.ts';
import { DataKeys, LocalKeyWrapper } from '../../src/store/encryption.ts';
import { openDatabase } from '../../src/store/open-database.ts';
import { sqlStorage } from '../../src/store/storage.ts';
import { embeddedToken } from '../lib/embedded-token.ts';
import { organization, planPopulation, practitioner } from './lib/french-population.ts';
import { printProfileSummary } from './lib/cpu-profile.ts';
import { LoadClient } from './lib/load-client.ts';
import { PREFIX, record, shared, type Json } from './lib/patient-records.ts';

const PATIENTS = 4;
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 300);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 50);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 1);
const url = process.env.BENCH_DATABASE_URL ?? 'memory://';
const onPostgres = url.startsWith('postgres');
const schema = onPostgres ? process.env.BENCH_SCHEMA ?? `summary_cpu_${process.pid}` : undefined;
/** BENCH_KEEP=1 leaves the schema for the next run, which then reuses its records rather than writing them again. */
const keep = process.env.BENCH_KEEP === '1';

/** Statements run, by kind (their first words), through the store's handle and its transactions. */
const statements = new Map<string, number>();
function counted(db: Database): Database {
  const note = (sql: string) => {
    const kind = sql.trim().replace(/\s+/g, ' ').slice(0, 60);
    statements.set(kind, (statements.get(kind) ?? 0) + 1);
  };
  const wrap = (executor: SqlExecutor): SqlExecutor => ({
    query: (sql, params, name) => {
      note(sql);
      return executor.query(sql, params, name);
    },
  });
  return { ...db, ...wrap(db), transaction: (work) => db.transaction((tx) => work(wrap(tx))) };
}

const db = await openDatabase(url, schema ? { schema } : {});
const audience = 'http://localhost/fhir';
const dataKeys = process.env.BENCH_ENCRYPTION === 'on' ? new DataKeys(new LocalKeyWrapper(Buffer.alloc(32, 7))) : undefined;
const app = await buildApp({
  config: { logLevel: 'silent', bodyLimit: 1024 * 1024, rateLimit: 0, authAudience: audience, audit: process.env.BENCH_AUDIT === 'off' ? 'off' : 'on' },
  storage: sqlStorage(counted(db), dataKeys),
  validator: createProfileValidator({ defaultProfiles: 'none' }),
});
const client = LoadClient.start();
const authorization = `Bearer ${await embeddedToken(db, { audience, scope: 'system/*.cruds', clientId: 'bench' })}`;

try {
  // The population's practitioners and organisations the records name (as in a 1M population), then the records.
  const plan = planPopulation(1_000_000);
  const records = Array.from({ length: PATIENTS }, (_, n) => record(n, plan.practitioners, plan.organizations));
  const named = new Set<string>();
  const collect = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(collect);
    else if (value && typeof value === 'object') {
      for (const [key, child] of Object.entries(value)) {
        if (key === 'reference' && typeof child === 'string') named.add(child);
        else collect(child);
      }
    }
  };
  collect(records);
  const practitioners = Array.from({ length: plan.practitioners }, (_, k) => practitioner(k, plan.organizations)).filter((p) => named.has(`Practitioner/${p.id}`));
  collect(practitioners);
  const organizations = Array.from({ length: plan.organizations }, (_, k) => organization(k)).filter((o) => named.has(`Organization/${o.id}`));
  // The population is loaded without the server's validation; its generated FINESS and RPPS numbers do not pass it.
  for (const resource of [...practitioners, ...organizations]) delete resource.identifier;
  const put = async (resource: Json) => {
    const res = await app.inject({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, headers: { 'content-type': 'application/fhir+json', authorization }, payload: resource });
    if (res.statusCode >= 300) throw new Error(`PUT ${resource.resourceType}/${resource.id}: ${res.statusCode} ${res.body.slice(0, 500)}`);
  };
  const last = records[PATIENTS - 1]!.at(-1)!;
  const written = (await app.inject({ method: 'GET', url: `/fhir/${last.resourceType}/${last.id}`, headers: { authorization } })).statusCode === 200;
  if (!written) {
    for (const resource of [...organizations, ...practitioners, ...shared(), ...records.flat()]) await put(resource as Json);
    if (onPostgres) await db.query('ANALYZE');
  }

  // BENCH_PATH measures another request on the same records for comparison (`{id}` the patient's id), e.g. a read.
  const path = (k: number) => (process.env.BENCH_PATH ?? '/fhir/Patient/{id}/$summary').replace('{id}', `${PREFIX}-${k % PATIENTS}`);
  const ask = async (k: number) => {
    const res = await app.inject({ method: 'GET', url: path(k), headers: { accept: 'application/fhir+json', authorization } });
    if (res.statusCode !== 200) throw new Error(`${path(k)}: ${res.statusCode} ${res.body.slice(0, 500)}`);
    return res;
  };
  const sample = JSON.parse((await ask(0)).body) as { entry?: Array<{ fullUrl: string }> };
  if (process.env.BENCH_OUTPUT) {
    // Generated ids and instants blanked: what is left is the same from one run to the next.
    const text = JSON.stringify(sample, null, 1)
      .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, 'UUID')
      .replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(Z|\+00:00)/g, 'INSTANT')
      .replace(/"versionId": "\d+"/g, '"versionId": "N"')
      .replace(/(Générée le|Generated on) [^<]*? (par|by)/g, '$1 NOW $2');
    writeFileSync(process.env.BENCH_OUTPUT, text);
  }
  const origin = await app.listen({ host: '127.0.0.1', port: 0 });
  const paths = (count: number) => Array.from({ length: count }, (_, k) => path(k));
  const run = async (count: number) => {
    const result = await client.run({ origin, method: 'GET', paths: paths(count), concurrency: CONCURRENCY, authorization });
    if (result.statuses[200] !== count) throw new Error(`expected only 200, got ${JSON.stringify(result.statuses)}`);
    return result;
  };
  await run(WARMUP);

  const session = process.env.BENCH_CPU_PROFILE ? new Session() : undefined;
  if (session) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 200 });
    await session.post('Profiler.start');
  }
  statements.clear();
  const cpuBefore = process.cpuUsage();
  const result = await run(REQUESTS);
  const cpu = process.cpuUsage(cpuBefore);
  const latencies = [...result.latencies];
  const wall = result.elapsedMs;
  if (session) {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(process.env.BENCH_CPU_PROFILE!, JSON.stringify(profile));
    session.disconnect();
  }

  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!.toFixed(1);
  const total = [...statements.values()].reduce((sum, n) => sum + n, 0);
  console.log(`${process.env.BENCH_PATH ?? '$summary'} on ${onPostgres ? 'postgres' : 'PGlite'}: ${sample.entry?.length ?? 0} entries, ${REQUESTS} requests ${CONCURRENCY === 1 ? 'one at a time' : `${CONCURRENCY} at a time`} after ${WARMUP} warm-up (audit ${process.env.BENCH_AUDIT === 'off' ? 'off' : 'on'}, encryption ${dataKeys ? 'on' : 'off'})`);
  console.log(`  CPU ms/request: ${((cpu.user + cpu.system) / 1000 / REQUESTS).toFixed(2)} (user ${(cpu.user / 1000 / REQUESTS).toFixed(2)}, system ${(cpu.system / 1000 / REQUESTS).toFixed(2)})`);
  console.log(`  wall ms/request: mean ${(wall / REQUESTS).toFixed(2)}, p50 ${at(0.5)}, p95 ${at(0.95)}`);
  console.log(`  statements/request: ${(total / REQUESTS).toFixed(2)}`);
  for (const [kind, n] of [...statements].sort((a, b) => b[1] - a[1])) console.log(`    ${(n / REQUESTS).toFixed(2)}  ${kind}`);
  if (session) {
    printProfileSummary(process.env.BENCH_CPU_PROFILE!, 30);
  }
} finally {
  client.stop();
  await app.close();
  if (schema && !keep) await db.exec(`DROP SCHEMA ${schema} CASCADE`);
  await db.close();
}
